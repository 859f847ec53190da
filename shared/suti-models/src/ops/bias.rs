//! [`super::add_bias`] on the CPU: the bias gradient as a matmul with a ones row, so that gemm sums
//! it on every core.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// `x + bias` over the rows of an `(m, n)` input.
pub(super) struct AddBias;

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
