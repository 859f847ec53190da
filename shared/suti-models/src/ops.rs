//! The hot operations of the denoiser, each with a backward pass. Where candle's own version is
//! slow on this CPU (architecture.md §7 pitfalls) there is a custom op with a hand-written
//! backward, tested against the composed reference (`tests` below) for values and gradients.
//!
//! - [`add_bias`]: candle's broadcast-add backward sums the bias gradient on one thread; here it is
//!   a matmul with a ones row, which gemm runs on every core.
//! - [`layer_norm`], [`softmax_last_dim`], [`gelu`]: row-parallel kernels (candle runs elementwise
//!   ops and reductions on one thread) whose backward is a second row-parallel kernel. candle's own
//!   `ops::layer_norm` and `softmax_last_dim` have no backward at all: gradients would stop there.
//!   GELU goes through `exp` rather than libm's `tanh`, which is several times slower.
//!
//! Off the CPU, each falls back to the composed candle expression.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, D, Layout, Result, Shape, Tensor};
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

/// Layer norm over the last dimension (no affine parameters), then `· (1 + scale) + shift`, with
/// `shift` and `scale` either per example (`(b, 1, w)`, broadcast over tokens) or per token
/// (`(b, t, w)`).
pub fn layer_norm_modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.rank() != 3 {
        return layer_norm_modulate_composed(x, shift, scale);
    }
    x.contiguous()?.apply_op3(
        &shift.contiguous()?,
        &scale.contiguous()?,
        Modulated::LayerNorm,
    )
}

/// The composed reference of [`layer_norm_modulate`].
pub fn layer_norm_modulate_composed(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    layer_norm(x)?
        .broadcast_mul(&(scale + 1.0)?)?
        .broadcast_add(shift)
}

/// `x + branch · gate`: the gated residual of adaLN-Zero, `gate` per example (`(b, 1, w)`) or per
/// token (`(b, t, w)`).
pub fn gated_residual(x: &Tensor, branch: &Tensor, gate: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.rank() != 3 {
        return gated_residual_composed(x, branch, gate);
    }
    x.contiguous()?.apply_op3(
        &branch.contiguous()?,
        &gate.contiguous()?,
        Modulated::GatedResidual,
    )
}

/// The composed reference of [`gated_residual`].
pub fn gated_residual_composed(x: &Tensor, branch: &Tensor, gate: &Tensor) -> Result<Tensor> {
    x + branch.broadcast_mul(gate)?
}

/// Per-example or per-token conditioning `(b, 1 or t, w)` for row `r` of a `(b, t, w)` input.
fn cond_row(cond: &[f32], per_token: bool, t: usize, w: usize, r: usize) -> &[f32] {
    let row = if per_token { r } else { r / t };
    &cond[row * w..(row + 1) * w]
}

/// Ops of one `(b, t, w)` input with per-example or per-token conditioning.
#[derive(Debug, Clone, Copy)]
enum Modulated {
    /// `LN(x) · (1 + scale) + shift` on (x, shift, scale).
    LayerNorm,
    /// `x + branch · gate` on (x, branch, gate).
    GatedResidual,
}

/// Whether a conditioning operand is per token (`(b, t, w)` with t > 1) rather than per example.
fn per_token(layout: &Layout, t: usize) -> Result<bool> {
    Ok(layout.shape().dims3()?.1 == t && t > 1)
}

type RowGrads = (Vec<f32>, Vec<f32>, Vec<f32>);

impl CustomOp3 for Modulated {
    fn name(&self) -> &'static str {
        match self {
            Self::LayerNorm => "suti-layer-norm-modulate",
            Self::GatedResidual => "suti-gated-residual",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, a, c) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        let (_, t, w) = l1.shape().dims3()?;
        let (a_per_token, c_per_token) = (per_token(l2, t)?, per_token(l3, t)?);
        let mut out = vec![0f32; x.len()];
        let rows_per_chunk = (MIN_PARALLEL_CHUNK / w.max(1)).max(1);
        out.par_chunks_mut(rows_per_chunk * w)
            .enumerate()
            .for_each(|(chunk, o)| {
                for (k, orow) in o.chunks_exact_mut(w).enumerate() {
                    let r = chunk * rows_per_chunk + k;
                    let xrow = &x[r * w..(r + 1) * w];
                    let arow = cond_row(a, a_per_token, t, w, r);
                    let crow = cond_row(c, c_per_token, t, w, r);
                    match self {
                        Self::LayerNorm => {
                            let mean = xrow.iter().sum::<f32>() / w as f32;
                            let var = xrow.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()
                                / w as f32;
                            let rstd = 1.0 / (var + LN_EPS).sqrt();
                            for i in 0..w {
                                orow[i] = (xrow[i] - mean) * rstd * (1.0 + crow[i]) + arow[i];
                            }
                        }
                        Self::GatedResidual => {
                            for i in 0..w {
                                orow[i] = xrow[i] + arow[i] * crow[i];
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        c: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, w) = x.dims3()?;
        let a_per_token = a.dim(1)? == t && t > 1;
        let c_per_token = c.dim(1)? == t && t > 1;
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let as_ = a.flatten_all()?.to_vec1::<f32>()?;
        let cs = c.flatten_all()?.to_vec1::<f32>()?;
        // Per row: the input gradient, and the row's contributions to the two conditioning
        // gradients (summed over tokens afterwards where the conditioning is per example).
        let per_row: Vec<RowGrads> = (0..b * t)
            .into_par_iter()
            .map(|r| {
                let (xrow, grow) = (&xs[r * w..(r + 1) * w], &g[r * w..(r + 1) * w]);
                let arow = cond_row(&as_, a_per_token, t, w, r);
                let crow = cond_row(&cs, c_per_token, t, w, r);
                match self {
                    Self::LayerNorm => {
                        let mean = xrow.iter().sum::<f32>() / w as f32;
                        let var =
                            xrow.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / w as f32;
                        let rstd = 1.0 / (var + LN_EPS).sqrt();
                        let y: Vec<f32> = xrow.iter().map(|v| (v - mean) * rstd).collect();
                        let dy: Vec<f32> =
                            grow.iter().zip(crow).map(|(g, c)| g * (1.0 + c)).collect();
                        let mean_dy = dy.iter().sum::<f32>() / w as f32;
                        let mean_dyy =
                            dy.iter().zip(&y).map(|(d, y)| d * y).sum::<f32>() / w as f32;
                        let dx = (0..w)
                            .map(|i| rstd * (dy[i] - mean_dy - y[i] * mean_dyy))
                            .collect();
                        let dscale = grow.iter().zip(&y).map(|(g, y)| g * y).collect();
                        (dx, grow.to_vec(), dscale)
                    }
                    Self::GatedResidual => {
                        let dbranch = grow.iter().zip(crow).map(|(g, c)| g * c).collect();
                        let dgate = grow.iter().zip(arow).map(|(g, b)| g * b).collect();
                        (grow.to_vec(), dbranch, dgate)
                    }
                }
            })
            .collect();
        let device = x.device();
        let gather = |pick: fn(&RowGrads) -> &Vec<f32>, per_token: bool| -> Result<Tensor> {
            if per_token {
                let all: Vec<f32> = per_row
                    .iter()
                    .flat_map(|r| pick(r).iter().copied())
                    .collect();
                Tensor::from_vec(all, (b, t, w), device)
            } else {
                let mut sums = vec![0f32; b * w];
                for (r, row) in per_row.iter().enumerate() {
                    let dst = &mut sums[(r / t) * w..(r / t + 1) * w];
                    for (d, v) in dst.iter_mut().zip(pick(row)) {
                        *d += v;
                    }
                }
                Tensor::from_vec(sums, (b, 1, w), device)
            }
        };
        let dx = gather(|r| &r.0, true)?;
        let da = gather(|r| &r.1, a_per_token)?;
        let dc = gather(|r| &r.2, c_per_token)?;
        Ok((Some(dx), Some(da), Some(dc)))
    }
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

    /// Values and all three gradients of a fused (x, a, c) op against its composed reference.
    fn check3(
        fused: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
        reference: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
        a_shape: (usize, usize, usize),
        c_shape: (usize, usize, usize),
    ) {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 5, 24), &dev).unwrap()).unwrap();
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, a_shape, &dev).unwrap()).unwrap();
        let c = Var::from_tensor(&Tensor::randn(0f32, 1.0, c_shape, &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (2, 5, 24), &dev).unwrap();
        let f = fused(x.as_tensor(), a.as_tensor(), c.as_tensor()).unwrap();
        let r = reference(x.as_tensor(), a.as_tensor(), c.as_tensor()).unwrap();
        close(&f, &r, 1e-5);
        let gf = (f * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gr = (r * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &a, &c] {
            close(gf.get(v).unwrap(), gr.get(v).unwrap(), 1e-4);
        }
    }

    #[test]
    fn fused_modulated_layer_norm_and_gated_residual_match_the_composed_ops() {
        let per_example = (2, 1, 24);
        let per_token = (2, 5, 24);
        check3(
            layer_norm_modulate,
            layer_norm_modulate_composed,
            per_example,
            per_example,
        );
        check3(
            layer_norm_modulate,
            layer_norm_modulate_composed,
            per_token,
            per_token,
        );
        check3(
            gated_residual,
            gated_residual_composed,
            per_token,
            per_example,
        );
        check3(
            gated_residual,
            gated_residual_composed,
            per_token,
            per_token,
        );
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
