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
//! - [`linear`]: `x Wᵀ + b` as one gemm into a buffer holding the bias, and one backward node
//!   that returns the three gradients (none for a frozen weight).
//! - [`attention`]: multi-head attention in one op on token-major tensors, one task per
//!   (example, head), with no head-split copies and no materialised score tensors.
//!
//! Off the CPU, each falls back to the composed candle expression.

use candle_core::{CpuStorage, D, Layout, Result, Storage, Tensor};

mod attention;
mod bias;
mod linear;
mod matmul;
mod modulated;
mod rows;
#[cfg(test)]
pub(crate) mod tests;
mod vector;

use attention::FusedAttention;
use bias::AddBias;
use linear::FusedLinear;
use modulated::Modulated;
use rows::RowOp;
#[cfg(test)]
use vector::fast_exp;
use vector::softmax_row;

/// Runs `f` on one of rayon's worker threads (inline when already on one). From a worker, every
/// parallel op inside `f` splits its work through that worker's own deque; from any other thread,
/// each op is injected into the pool while the caller sleeps on a latch until it is done, two
/// context switches per op, thousands of times per request. Wrap whole passes (a sampling
/// request, a training step) in it.
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

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

/// Whether `SUTI_COMPOSED_OPS=1` asks for the composed references of [`attention`] and [`linear`]
/// instead of the fused ops: a switch for benchmarks (`benches/ab.py`), read once; the fused ops
/// are tested against those references and give the same values to rounding.
pub(crate) fn composed_requested() -> bool {
    static COMPOSED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *COMPOSED.get_or_init(|| std::env::var("SUTI_COMPOSED_OPS").is_ok_and(|v| v == "1"))
}

/// `x Wᵀ + b` for `x` of shape `(rows, in)`, `weight` `(out, in)` and `bias` `(out,)`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || composed_requested() {
        return linear_composed(x, weight, bias);
    }
    fused_linear(x, weight, bias, false)
}

/// [`linear`] with the weight given as its `(in, out)` transpose, contiguous: a frozen layer keeps
/// that copy, which gemm reads straight. The weight takes no gradient.
pub fn linear_in_out(x: &Tensor, weight_in_out: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || composed_requested() {
        return add_bias(&x.matmul(weight_in_out)?, bias);
    }
    fused_linear(x, weight_in_out, bias, true)
}

fn fused_linear(x: &Tensor, weight: &Tensor, bias: &Tensor, weight_in_out: bool) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        FusedLinear { weight_in_out },
    )
}

/// The composed reference of [`linear`].
pub fn linear_composed(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    add_bias(&x.matmul(&weight.t()?)?, bias)
}

/// Multi-head scaled dot-product attention of queries `q` (`(b, n, w)`) over keys `k` and values
/// `v` (`(b, m, w)`), `heads` heads of `w / heads` channels (head `h` is channels `h·w/heads…`),
/// with an additive key mask broadcastable to `(b, 1, 1, m)`; returns the heads' outputs side by
/// side, `(b, n, w)`, before any output projection. The mask takes no gradient.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    heads: usize,
) -> Result<Tensor> {
    if !q.device().is_cpu() || composed_requested() {
        return attention_composed(q, k, v, mask, heads);
    }
    let mask = match mask {
        Some(mask) => {
            let (b, m, _) = k.dims3()?;
            Some(
                mask.broadcast_as((b, 1, 1, m))?
                    .flatten_all()?
                    .to_dtype(candle_core::DType::F32)?
                    .to_vec1::<f32>()?,
            )
        }
        None => None,
    };
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        FusedAttention { heads, mask },
    )
}

/// The composed reference of [`attention`]: heads split by copy, scores materialised.
pub fn attention_composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    heads: usize,
) -> Result<Tensor> {
    let (b, n, w) = q.dims3()?;
    let split = |x: &Tensor| -> Result<Tensor> {
        let (b, t, w) = x.dims3()?;
        x.reshape((b, t, heads, w / heads))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q, k, v) = (split(q)?, split(k)?, split(v)?);
    let scale = 1.0 / ((w / heads) as f64).sqrt();
    let mut scores = (q.matmul(&k.t()?)? * scale)?;
    if let Some(mask) = mask {
        scores = scores.broadcast_add(mask)?;
    }
    softmax_last_dim(&scores)?
        .matmul(&v)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, n, w))
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
    let mean = vector::sum_of(row, |v| v) / n;
    let var = vector::sum_of(row, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + LN_EPS).sqrt())
}

/// The f32 values of a contiguous tensor held on the CPU, borrowed from its storage (the fused
/// ops' backward passes read their saved inputs this way, without copying them).
fn cpu_f32<'a>(storage: &'a Storage, layout: &Layout) -> Result<&'a [f32]> {
    match storage {
        Storage::Cpu(cpu) => f32_slice(cpu, layout),
        _ => candle_core::bail!("suti's fused backward passes run on the CPU only"),
    }
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
