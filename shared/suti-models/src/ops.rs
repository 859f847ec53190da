//! The hot operations of the denoiser, each with a backward pass. Where candle's own version is
//! slow on this CPU (DESIGN §7 pitfalls) there is a custom op with a hand-written backward, tested
//! against the composed reference (`tests` below) for values and gradients.
//!
//! - [`add_bias`]: candle's broadcast-add backward sums the bias gradient on one thread; here it is
//!   a matmul with a ones row, which gemm runs on every core.
//! - [`layer_norm_modulate`], [`softmax_last_dim`], [`gelu`]: composed from candle ops that have a
//!   backward (`candle_nn::ops::layer_norm` and `softmax_last_dim` have none: gradients would stop).

use candle_core::{CpuStorage, CustomOp2, D, Layout, Result, Shape, Tensor};

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

/// Layer norm over the last dimension without affine parameters (ε = 1e-6).
pub fn layer_norm(x: &Tensor) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(var + 1e-6)?.sqrt()?)
}

/// Softmax over the last dimension, with a backward pass.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(x, D::Minus1)
}

/// GELU (tanh approximation).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    x.gelu()
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
