//! The image tower's CPU forward pass in channels-last (NHWC) layout, batch norms folded in.
//!
//! candle runs a grouped convolution as one convolution per group, so each depthwise layer of
//! EfficientNet-Lite0 (up to 1,152 channels) became over a thousand small convolutions, and every
//! 1×1 convolution paid for an im2col copy of its whole input. Here a 1×1 convolution is one gemm
//! over every pixel of an image, written straight into a buffer that already holds the bias; the
//! depthwise convolution is a direct kernel that runs along the contiguous channel axis
//! (vectorised for AVX-512 or AVX2 where the CPU has them, chosen at run time); ReLU6 and the
//! residual add are fused into passes that already touch each value. A batch runs one image per
//! thread, so each image's activations stay in the core's cache and no layer waits for the others
//! to finish; a batch smaller than the thread count runs image by image with every layer
//! parallel instead. Inference only: nothing here keeps a gradient.

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

/// One image's activations, channels last: `data[(y · width + x) · channels + c]`.
pub(super) struct Activations {
    /// The values.
    pub data: Vec<f32>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Channels.
    pub channels: usize,
}

impl Activations {
    /// Each image of a normalised NCHW batch (`(b, c, h, w)`, any layout), channels last.
    pub fn from_nchw(images: &Tensor) -> Result<Vec<Self>> {
        let (batch, channels, height, width) = images.dims4()?;
        let data = images
            .permute((0, 2, 3, 1))?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let plane = height * width * channels;
        Ok((0..batch)
            .map(|i| Self {
                data: data[i * plane..(i + 1) * plane].to_vec(),
                height,
                width,
                channels,
            })
            .collect())
    }

    /// Pixels of the image.
    fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// The spatial mean of every channel.
    pub fn pooled(&self) -> Vec<f32> {
        let mut sums = vec![0f32; self.channels];
        for pixel in self.data.chunks_exact(self.channels) {
            for (s, v) in sums.iter_mut().zip(pixel) {
                *s += v;
            }
        }
        let n = self.pixels() as f32;
        sums.iter_mut().for_each(|s| *s /= n);
        sums
    }

    /// Adds `other` (same shape) in place: the inverted-residual skip.
    pub fn add_assign(&mut self, other: &Self) {
        self.data
            .iter_mut()
            .zip(&other.data)
            .for_each(|(a, b)| *a += b);
    }
}

/// How one image's layers use the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Threads {
    /// On the calling thread only (the batch is parallel over images).
    One,
    /// Every layer parallel over rayon's threads (the batch is smaller than the thread count).
    All,
}

/// TensorFlow "SAME" padding of one axis: the output length and the padding before the first
/// input (the rest goes after the last).
fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let pad = ((out - 1) * stride + kernel).saturating_sub(input);
    (out, pad / 2)
}

/// How a folded convolution runs.
enum Kind {
    /// Every input channel to every output channel over a k×k window: im2col (rows of
    /// `[ky][kx][cin]`) then one gemm with the `(k·k·cin, cout)` weight.
    Dense {
        weight: Vec<f32>,
        in_channels: usize,
    },
    /// 1×1: one gemm of the `(pixels, cin)` activations with the `(cin, cout)` weight.
    Pointwise {
        weight: Vec<f32>,
        in_channels: usize,
    },
    /// One k×k filter per channel, stored `[ky][kx][c]`.
    Depthwise { weight: Vec<f32> },
}

/// A convolution with its batch norm folded in, laid out for the channels-last kernels.
pub(super) struct FusedConv {
    kind: Kind,
    bias: Vec<f32>,
    kernel: usize,
    stride: usize,
}

impl FusedConv {
    /// From a folded OIHW weight and bias; `groups` is 1 or the channel count.
    pub fn new(weight: &Tensor, bias: &Tensor, stride: usize, groups: usize) -> Result<Self> {
        let (out, in_per_group, kernel, _) = weight.dims4()?;
        let weight = weight.to_device(&Device::Cpu)?;
        let values = |t: Tensor| t.contiguous()?.flatten_all()?.to_vec1::<f32>();
        let kind = if groups > 1 {
            Kind::Depthwise {
                weight: values(weight.reshape((out, kernel * kernel))?.t()?)?,
            }
        } else if kernel == 1 {
            Kind::Pointwise {
                weight: values(weight.reshape((out, in_per_group))?.t()?)?,
                in_channels: in_per_group,
            }
        } else {
            Kind::Dense {
                weight: values(
                    weight
                        .permute((2, 3, 1, 0))?
                        .reshape((kernel * kernel * in_per_group, out))?,
                )?,
                in_channels: in_per_group,
            }
        };
        Ok(Self {
            kind,
            bias: bias.to_device(&Device::Cpu)?.to_vec1()?,
            kernel,
            stride,
        })
    }

    /// The convolution of one image, its bias and (if `relu6`) the clamp to [0, 6].
    pub fn forward(&self, x: &Activations, relu6: bool, threads: Threads) -> Result<Activations> {
        let (height, top) = same_padding(x.height, self.kernel, self.stride);
        let (width, left) = same_padding(x.width, self.kernel, self.stride);
        let channels = self.bias.len();
        let pixels = height * width;
        let mut out = Vec::with_capacity(pixels * channels);
        for _ in 0..pixels {
            out.extend_from_slice(&self.bias);
        }
        match &self.kind {
            Kind::Pointwise {
                weight,
                in_channels,
            } => {
                check_channels(x.channels, *in_channels)?;
                gemm_accumulate(&mut out, &x.data, weight, pixels, *in_channels, threads);
            }
            Kind::Dense {
                weight,
                in_channels,
            } => {
                check_channels(x.channels, *in_channels)?;
                let columns = im2col(x, self.kernel, self.stride, (height, width), (top, left));
                let depth = self.kernel * self.kernel * in_channels;
                gemm_accumulate(&mut out, &columns, weight, pixels, depth, threads);
            }
            Kind::Depthwise { weight } => {
                check_channels(x.channels, channels)?;
                let shape = DepthwiseShape {
                    in_height: x.height,
                    in_width: x.width,
                    out_width: width,
                    channels,
                    kernel: self.kernel,
                    stride: self.stride,
                    top,
                    left,
                };
                let row = |(y, out_row): (usize, &mut [f32])| {
                    depthwise_row(&x.data, weight, &shape, y, out_row)
                };
                match threads {
                    Threads::One => out.chunks_mut(width * channels).enumerate().for_each(row),
                    Threads::All => out
                        .par_chunks_mut(width * channels)
                        .enumerate()
                        .for_each(row),
                }
            }
        }
        if relu6 {
            out.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
        }
        Ok(Activations {
            data: out,
            height,
            width,
            channels,
        })
    }
}

fn check_channels(got: usize, want: usize) -> Result<()> {
    if got != want {
        candle_core::bail!("the image tower got {got} channels where a layer takes {want}");
    }
    Ok(())
}

/// `out += lhs · rhs` for a row-major `(rows, depth)` lhs and `(depth, n)` rhs, `out` being
/// `(rows, n)` (it holds the bias on entry, so the bias costs no pass of its own).
fn gemm_accumulate(
    out: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    rows: usize,
    depth: usize,
    threads: Threads,
) {
    let n = out.len() / rows.max(1);
    assert_eq!(out.len(), rows * n);
    assert_eq!(lhs.len(), rows * depth);
    assert_eq!(rhs.len(), depth * n);
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: the three buffers have exactly the sizes the strides describe (asserted above),
    // `out` is borrowed mutably and does not alias `lhs` or `rhs`.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            rows,
            n,
            depth,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            depth as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// The k×k windows of a channels-last image as rows `[ky][kx][cin]`, zeros where a window hangs
/// over the padding.
fn im2col(
    x: &Activations,
    kernel: usize,
    stride: usize,
    (height, width): (usize, usize),
    (top, left): (usize, usize),
) -> Vec<f32> {
    let c = x.channels;
    let depth = kernel * kernel * c;
    let mut columns = vec![0f32; height * width * depth];
    for (oy, out) in columns.chunks_mut(width * depth).enumerate() {
        for ox in 0..width {
            for ky in 0..kernel {
                let Some(iy) = (oy * stride + ky).checked_sub(top) else {
                    continue;
                };
                if iy >= x.height {
                    continue;
                }
                for kx in 0..kernel {
                    let Some(ix) = (ox * stride + kx).checked_sub(left) else {
                        continue;
                    };
                    if ix >= x.width {
                        continue;
                    }
                    let from = (iy * x.width + ix) * c;
                    let to = ox * depth + (ky * kernel + kx) * c;
                    out[to..to + c].copy_from_slice(&x.data[from..from + c]);
                }
            }
        }
    }
    columns
}

/// Geometry of a depthwise layer.
struct DepthwiseShape {
    in_height: usize,
    in_width: usize,
    out_width: usize,
    channels: usize,
    kernel: usize,
    stride: usize,
    top: usize,
    left: usize,
}

/// Adds one output row of a depthwise convolution of one image to `out`: the widest vector unit
/// the CPU has.
fn depthwise_row(input: &[f32], weight: &[f32], shape: &DepthwiseShape, y: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            #[allow(unsafe_code)]
            return unsafe { depthwise_row_avx512(input, weight, shape, y, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            #[allow(unsafe_code)]
            return unsafe { depthwise_row_avx2(input, weight, shape, y, out) };
        }
    }
    depthwise_row_portable::<false>(input, weight, shape, y, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn depthwise_row_avx512(
    input: &[f32],
    weight: &[f32],
    shape: &DepthwiseShape,
    y: usize,
    out: &mut [f32],
) {
    depthwise_row_portable::<true>(input, weight, shape, y, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn depthwise_row_avx2(
    input: &[f32],
    weight: &[f32],
    shape: &DepthwiseShape,
    y: usize,
    out: &mut [f32],
) {
    depthwise_row_portable::<true>(input, weight, shape, y, out);
}

/// The row kernel, compiled once per instruction set: the channel loop is contiguous in input,
/// weight and output, so it vectorises; `FMA` uses fused multiply-adds, which only pay where the
/// CPU has them.
#[inline(always)]
fn depthwise_row_portable<const FMA: bool>(
    input: &[f32],
    weight: &[f32],
    s: &DepthwiseShape,
    y: usize,
    out: &mut [f32],
) {
    let c = s.channels;
    for ky in 0..s.kernel {
        let Some(iy) = (y * s.stride + ky).checked_sub(s.top) else {
            continue;
        };
        if iy >= s.in_height {
            continue;
        }
        let input_row = &input[iy * s.in_width * c..(iy + 1) * s.in_width * c];
        for kx in 0..s.kernel {
            let taps = &weight[(ky * s.kernel + kx) * c..(ky * s.kernel + kx + 1) * c];
            for x in 0..s.out_width {
                let Some(ix) = (x * s.stride + kx).checked_sub(s.left) else {
                    continue;
                };
                if ix >= s.in_width {
                    continue;
                }
                let pixel = &input_row[ix * c..(ix + 1) * c];
                let acc = &mut out[x * c..(x + 1) * c];
                for ((a, w), v) in acc.iter_mut().zip(taps).zip(pixel) {
                    *a = if FMA { w.mul_add(*v, *a) } else { *a + w * v };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A depthwise row kernel.
    type RowKernel = fn(&[f32], &[f32], &DepthwiseShape, usize, &mut [f32]);

    /// The depthwise convolution by its definition, one output value at a time.
    fn direct(x: &Activations, weight: &[f32], k: usize, stride: usize) -> Vec<f32> {
        let (oh, top) = same_padding(x.height, k, stride);
        let (ow, left) = same_padding(x.width, k, stride);
        let c = x.channels;
        let mut out = vec![0f32; oh * ow * c];
        for y in 0..oh {
            for xo in 0..ow {
                for ch in 0..c {
                    let mut acc = 0f32;
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (y * stride + ky) as isize - top as isize;
                            let ix = (xo * stride + kx) as isize - left as isize;
                            if iy < 0 || ix < 0 || iy >= x.height as isize || ix >= x.width as isize
                            {
                                continue;
                            }
                            let (iy, ix) = (iy as usize, ix as usize);
                            acc += weight[(ky * k + kx) * c + ch]
                                * x.data[(iy * x.width + ix) * c + ch];
                        }
                    }
                    out[(y * ow + xo) * c + ch] = acc;
                }
            }
        }
        out
    }

    #[test]
    fn depthwise_rows_match_the_direct_convolution_for_every_instruction_set() {
        let mut rng = suti_rng::SplitMix64::new(7);
        for (k, stride, side, c) in [(3, 1, 9, 5), (5, 2, 11, 19), (3, 2, 8, 33), (5, 1, 6, 16)] {
            // A non-square input, so that rows and columns cannot be swapped unnoticed.
            let x = Activations {
                data: (0..side * (side + 1) * c)
                    .map(|_| rng.range(-0.5, 0.5))
                    .collect(),
                height: side,
                width: side + 1,
                channels: c,
            };
            let weight: Vec<f32> = (0..k * k * c).map(|_| rng.range(-0.5, 0.5)).collect();
            let want = direct(&x, &weight, k, stride);
            let (_, top) = same_padding(x.height, k, stride);
            let (ow, left) = same_padding(x.width, k, stride);
            let shape = DepthwiseShape {
                in_height: x.height,
                in_width: x.width,
                out_width: ow,
                channels: c,
                kernel: k,
                stride,
                top,
                left,
            };
            let kernels: [(&str, RowKernel); 3] = [
                ("portable", depthwise_row_portable::<false>),
                ("fused multiply-add", depthwise_row_portable::<true>),
                ("dispatched", depthwise_row),
            ];
            for (name, kernel) in kernels {
                let mut got = vec![0f32; want.len()];
                for (y, out) in got.chunks_mut(ow * c).enumerate() {
                    kernel(&x.data, &weight, &shape, y, out);
                }
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-5, "k {k} stride {stride} {name}: {worst}");
            }
        }
    }

    #[test]
    fn one_thread_and_every_thread_give_the_same_layer() {
        let mut rng = suti_rng::SplitMix64::new(8);
        let x = Activations {
            data: (0..20 * 18 * 24).map(|_| rng.range(-1.0, 1.0)).collect(),
            height: 20,
            width: 18,
            channels: 24,
        };
        let random = |shape: &[usize], rng: &mut suti_rng::SplitMix64| {
            let n = shape.iter().product();
            Tensor::from_vec(rng.normals(n), shape, &Device::Cpu).unwrap()
        };
        let bias = random(&[24], &mut rng);
        for (weight, stride, groups) in [
            (random(&[24, 24, 1, 1], &mut rng), 1, 1),
            (random(&[24, 1, 3, 3], &mut rng), 2, 24),
            (random(&[24, 24, 3, 3], &mut rng), 2, 1),
        ] {
            let conv = FusedConv::new(&weight, &bias, stride, groups).unwrap();
            let one = conv.forward(&x, true, Threads::One).unwrap();
            let all = conv.forward(&x, true, Threads::All).unwrap();
            assert_eq!((one.height, one.width), (all.height, all.width));
            let worst = one
                .data
                .iter()
                .zip(&all.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "groups {groups}: {worst}");
        }
    }
}
