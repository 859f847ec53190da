//! The hot operations of the denoiser, each with a backward pass. Where candle's own version is
//! slow on this CPU (DESIGN §7 pitfalls) there is a custom op with a hand-written backward, tested
//! against the composed reference (`tests` below) for values and gradients.
//!
//! - [`add_bias`]: candle's broadcast-add backward sums the bias gradient on one thread; here it is
//!   a matmul with a ones row, which gemm runs on every core.
//! - [`layer_norm`], [`softmax_last_dim`], [`gelu`]: row-parallel kernels (candle runs elementwise
//!   ops and reductions on one thread) whose backward is a second row-parallel kernel. candle's own
//!   `ops::layer_norm` and `softmax_last_dim` have no backward at all: gradients would stop there.
//!   GELU goes through `exp` rather than libm's `tanh`, which is several times slower.
//!
//! Off the CPU, each falls back to the composed candle expression.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, D, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Adds `bias` (`(n,)`) to every row of `x` (`(m, n)`).
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.broadcast_add(bias);
    }
    x.contiguous()?.apply_op2(&bias.contiguous()?, AddBias)
}

struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "suti-add-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, n) = l1.shape().dims2()?;
        let (CpuStorage::F32(x), CpuStorage::F32(b)) = (s1, s2) else {
            candle_core::bail!("add_bias supports f32 only");
        };
        let (Some((x0, x1)), Some((b0, b1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("add_bias needs contiguous inputs");
        };
        let (x, b) = (&x[x0..x1], &b[b0..b1]);
        if b.len() != n {
            candle_core::bail!("add_bias: bias has {} values for {n} columns", b.len());
        }
        let mut out = Vec::with_capacity(m * n);
        for row in x.chunks_exact(n) {
            out.extend(row.iter().zip(b).map(|(v, b)| v + b));
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (m, n) = x.dims2()?;
        let ones = Tensor::ones((1, m), grad.dtype(), grad.device())?;
        let grad_bias = ones.matmul(&grad.contiguous()?)?.reshape(n)?;
        Ok((Some(grad.clone()), Some(grad_bias)))
    }
}

/// Layer norm over the last dimension (no affine parameters), then `· (1 + scale) + shift` with
/// `shift` and `scale` broadcast over tokens.
pub fn layer_norm_modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let normed = layer_norm(x)?;
    normed.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
}

/// Layer-norm epsilon.
const LN_EPS: f32 = 1e-6;

/// Layer norm over the last dimension without affine parameters (ε = 1e-6).
pub fn layer_norm(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return layer_norm_composed(x);
    }
    x.contiguous()?.apply_op1(RowOp::LayerNorm)
}

/// The composed reference of [`layer_norm`].
pub fn layer_norm_composed(x: &Tensor) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(var + f64::from(LN_EPS))?.sqrt()?)
}

/// Softmax over the last dimension, with a backward pass.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return candle_nn::ops::softmax(x, D::Minus1);
    }
    x.contiguous()?.apply_op1(RowOp::Softmax)
}

/// GELU (tanh approximation).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.gelu();
    }
    x.contiguous()?.apply_op1(RowOp::Gelu)
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;

/// tanh through one `exp`: 1 − 2 / (e^{2u} + 1).
fn fast_tanh(u: f32) -> f32 {
    let u = u.clamp(-15.0, 15.0);
    1.0 - 2.0 / ((2.0 * u).exp() + 1.0)
}

/// The three row-wise kernels; their backward is the matching [`RowGrad`].
#[derive(Debug, Clone, Copy)]
enum RowOp {
    LayerNorm,
    Softmax,
    Gelu,
}

/// Rows processed per parallel task: big enough that scheduling costs nothing.
const MIN_PARALLEL_CHUNK: usize = 1 << 14;

fn rows_of(layout: &Layout) -> Result<(usize, usize)> {
    let dims = layout.shape().dims();
    let n = *dims.last().unwrap_or(&1);
    Ok((layout.shape().elem_count() / n.max(1), n))
}

fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("suti ops support f32 only");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("suti ops need contiguous inputs");
    };
    Ok(&values[start..end])
}

/// Splits `out` into whole rows and runs `f(input rows, output rows)` in parallel.
fn par_rows(input: &[f32], n: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; input.len()];
    let rows_per_chunk = (MIN_PARALLEL_CHUNK / n.max(1)).max(1);
    out.par_chunks_mut(rows_per_chunk * n)
        .zip(input.par_chunks(rows_per_chunk * n))
        .for_each(|(o, i)| f(i, o));
    out
}

impl CustomOp1 for RowOp {
    fn name(&self) -> &'static str {
        match self {
            Self::LayerNorm => "suti-layer-norm",
            Self::Softmax => "suti-softmax",
            Self::Gelu => "suti-gelu",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout)?;
        let (_, n) = rows_of(layout)?;
        let out = match self {
            Self::LayerNorm => par_rows(x, n, |xs, ys| {
                for (row, out) in xs.chunks_exact(n).zip(ys.chunks_exact_mut(n)) {
                    let mean = row.iter().sum::<f32>() / n as f32;
                    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
                    let rstd = 1.0 / (var + LN_EPS).sqrt();
                    for (o, v) in out.iter_mut().zip(row) {
                        *o = (v - mean) * rstd;
                    }
                }
            }),
            Self::Softmax => par_rows(x, n, |xs, ys| {
                for (row, out) in xs.chunks_exact(n).zip(ys.chunks_exact_mut(n)) {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f32;
                    for (o, v) in out.iter_mut().zip(row) {
                        *o = (v - max).exp();
                        sum += *o;
                    }
                    let inv = 1.0 / sum;
                    out.iter_mut().for_each(|o| *o *= inv);
                }
            }),
            Self::Gelu => par_rows(x, n, |xs, ys| {
                for (o, &v) in ys.iter_mut().zip(xs) {
                    let u = SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v);
                    *o = 0.5 * v * (1.0 + fast_tanh(u));
                }
            }),
        };
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        let grad_arg = match self {
            // Layer norm and GELU need the input; softmax needs only its output.
            Self::LayerNorm => arg.apply_op2_no_bwd(&grad, &RowGrad::LayerNorm)?,
            Self::Gelu => arg.apply_op2_no_bwd(&grad, &RowGrad::Gelu)?,
            Self::Softmax => res.apply_op2_no_bwd(&grad, &RowGrad::Softmax)?,
        };
        Ok(Some(grad_arg))
    }
}

/// Backward kernels: `(saved, upstream gradient) → input gradient`.
#[derive(Debug, Clone, Copy)]
enum RowGrad {
    LayerNorm,
    Softmax,
    Gelu,
}

impl CustomOp2 for RowGrad {
    fn name(&self) -> &'static str {
        match self {
            Self::LayerNorm => "suti-layer-norm-grad",
            Self::Softmax => "suti-softmax-grad",
            Self::Gelu => "suti-gelu-grad",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let saved = f32_slice(s1, l1)?;
        let grad = f32_slice(s2, l2)?;
        let (_, n) = rows_of(l1)?;
        if saved.len() != grad.len() {
            candle_core::bail!("gradient shape mismatch");
        }
        // Interleave rows of (saved, grad) so one parallel pass sees both.
        let mut paired = Vec::with_capacity(saved.len() * 2);
        for (s, g) in saved.chunks_exact(n).zip(grad.chunks_exact(n)) {
            paired.extend_from_slice(s);
            paired.extend_from_slice(g);
        }
        let mut out = vec![0f32; saved.len()];
        let rows_per_chunk = (MIN_PARALLEL_CHUNK / n.max(1)).max(1);
        out.par_chunks_mut(rows_per_chunk * n)
            .zip(paired.par_chunks(rows_per_chunk * 2 * n))
            .for_each(|(out, pairs)| {
                for (o, pair) in out.chunks_exact_mut(n).zip(pairs.chunks_exact(2 * n)) {
                    let (s, g) = pair.split_at(n);
                    match self {
                        Self::LayerNorm => {
                            // dx = rstd · (dy − mean(dy) − y · mean(dy · y)), y = (x − mean) · rstd
                            let mean = s.iter().sum::<f32>() / n as f32;
                            let var =
                                s.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
                            let rstd = 1.0 / (var + LN_EPS).sqrt();
                            let (mut mean_g, mut mean_gy) = (0f32, 0f32);
                            for (v, dy) in s.iter().zip(g) {
                                mean_g += dy;
                                mean_gy += dy * (v - mean) * rstd;
                            }
                            mean_g /= n as f32;
                            mean_gy /= n as f32;
                            for ((o, v), dy) in o.iter_mut().zip(s).zip(g) {
                                let y = (v - mean) * rstd;
                                *o = rstd * (dy - mean_g - y * mean_gy);
                            }
                        }
                        Self::Softmax => {
                            // dx = y · (dy − Σ dy · y)
                            let dot: f32 = s.iter().zip(g).map(|(y, dy)| y * dy).sum();
                            for ((o, y), dy) in o.iter_mut().zip(s).zip(g) {
                                *o = y * (dy - dot);
                            }
                        }
                        Self::Gelu => {
                            for ((o, &v), dy) in o.iter_mut().zip(s).zip(g) {
                                let u = SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v);
                                let t = fast_tanh(u);
                                let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * v * v);
                                *o = dy * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du);
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff <= tol, "max difference {diff}");
    }

    /// Value and input gradient of `fused` against `reference` on the same random input and
    /// upstream gradient.
    fn check(
        fused: impl Fn(&Tensor) -> Result<Tensor>,
        reference: impl Fn(&Tensor) -> Result<Tensor>,
        shape: (usize, usize, usize),
        tol: f32,
    ) {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 1.0, shape, &dev).unwrap() * 2.0).unwrap())
            .unwrap();
        let w = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        let a = fused(x.as_tensor()).unwrap();
        let b = reference(x.as_tensor()).unwrap();
        close(&a, &b, tol);
        let ga = (a * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (b * &w).unwrap().sum_all().unwrap().backward().unwrap();
        close(ga.get(&x).unwrap(), gb.get(&x).unwrap(), tol * 10.0);
    }

    #[test]
    fn fused_layer_norm_matches_the_composed_op() {
        check(layer_norm, layer_norm_composed, (3, 17, 64), 1e-5);
        check(layer_norm, layer_norm_composed, (1, 1, 7), 1e-5);
    }

    #[test]
    fn fused_softmax_matches_candle_softmax() {
        check(
            softmax_last_dim,
            |x| candle_nn::ops::softmax(x, D::Minus1),
            (4, 9, 33),
            1e-6,
        );
        let masked = |f: fn(&Tensor) -> Result<Tensor>| {
            move |x: &Tensor| {
                let mask = Tensor::from_vec(vec![0f32, -1e9, 0.0], (1, 1, 3), x.device())?;
                f(&x.broadcast_add(&mask)?)
            }
        };
        check(
            masked(softmax_last_dim),
            masked(|x| candle_nn::ops::softmax(x, D::Minus1)),
            (2, 5, 3),
            1e-6,
        );
    }

    #[test]
    fn fused_gelu_matches_candle_gelu() {
        check(gelu, |x| x.gelu(), (2, 13, 50), 2e-6);
    }

    #[test]
    fn add_bias_matches_broadcast_add_in_value_and_gradient() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (37, 19), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 19, &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (37, 19), &dev).unwrap();
        let fused = add_bias(x.as_tensor(), b.as_tensor()).unwrap();
        let reference = x.as_tensor().broadcast_add(b.as_tensor()).unwrap();
        close(&fused, &reference, 1e-6);
        let g1 = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (reference * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        close(g1.get(&x).unwrap(), g2.get(&x).unwrap(), 1e-6);
        close(g1.get(&b).unwrap(), g2.get(&b).unwrap(), 1e-5);
    }
}
