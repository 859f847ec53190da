//! The hot operations of the denoiser, each with a backward pass. Where candle's own version is
//! slow on this CPU (architecture.md §7 pitfalls) there is a custom op with a hand-written
//! backward, tested against the composed reference (the `tests` module) for values and gradients.
//!
//! - [`add_bias`]: candle's broadcast-add backward sums the bias gradient on one thread; here it is
//!   a matmul with a ones row, which gemm runs on every core.
//! - [`layer_norm`], [`softmax_last_dim`], [`gelu`]: row-parallel kernels (candle runs elementwise
//!   ops and reductions on one thread) whose backward is a second row-parallel kernel. candle's own
//!   `ops::layer_norm` and `softmax_last_dim` have no backward at all: gradients would stop there.
//!   GELU goes through `exp` rather than libm's `tanh`, which is several times slower.
//! - [`layer_norm_modulate`], [`gated_residual`]: adaLN-Zero's modulated norm and gated residual
//!   fused into one pass each, conditioning per example or per token.
//!
//! Off the CPU, each falls back to the composed candle expression.

use candle_core::{CpuStorage, D, Layout, Result, Tensor};

mod bias;
mod modulated;
mod rows;
#[cfg(test)]
pub(crate) mod tests;

use bias::AddBias;
use modulated::Modulated;
use rows::RowOp;

/// Adds `bias` (`(n,)`) to every row of `x` (`(m, n)`).
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.broadcast_add(bias);
    }
    x.contiguous()?.apply_op2(&bias.contiguous()?, AddBias)
}

/// Layer norm over the last dimension (no affine parameters), then `· (1 + scale) + shift`, with
/// `shift` and `scale` either per example (`(b, 1, w)`, broadcast over tokens) or per token
/// (`(b, t, w)`).
pub fn layer_norm_modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    Modulated::LayerNorm.apply(x, shift, scale)
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
    Modulated::GatedResidual.apply(x, branch, gate)
}

/// The composed reference of [`gated_residual`].
pub fn gated_residual_composed(x: &Tensor, branch: &Tensor, gate: &Tensor) -> Result<Tensor> {
    x + branch.broadcast_mul(gate)?
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

/// Rows processed per parallel task: big enough that scheduling costs nothing.
const MIN_PARALLEL_CHUNK: usize = 1 << 14;

/// A row's mean and reciprocal standard deviation (ε = [`LN_EPS`]): what every layer-norm kernel,
/// forward and backward, normalises the row with.
fn mean_rstd(row: &[f32]) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + LN_EPS).sqrt())
}

/// The f32 values of a contiguous input.
fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("suti ops support f32 only");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("suti ops need contiguous inputs");
    };
    Ok(&values[start..end])
}
