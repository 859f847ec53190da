//! [`super::layer_norm_modulate`] and [`super::gated_residual`] on the CPU: one `(b, t, w)` input
//! with its conditioning per example or per token, a row-parallel pass each way.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{
    MIN_PARALLEL_CHUNK, f32_slice, gated_residual_composed, layer_norm_modulate_composed, mean_rstd,
};

/// Per-example or per-token conditioning `(b, 1 or t, w)` for row `r` of a `(b, t, w)` input.
fn cond_row(cond: &[f32], per_token: bool, t: usize, w: usize, r: usize) -> &[f32] {
    let row = if per_token { r } else { r / t };
    &cond[row * w..(row + 1) * w]
}

/// Ops of one `(b, t, w)` input with per-example or per-token conditioning.
#[derive(Debug, Clone, Copy)]
pub(super) enum Modulated {
    /// `LN(x) · (1 + scale) + shift` on (x, shift, scale).
    LayerNorm,
    /// `x + branch · gate` on (x, branch, gate).
    GatedResidual,
}

impl Modulated {
    /// The op on `(x, a, c)`: fused on the CPU for a `(b, t, w)` input, else composed.
    pub(super) fn apply(self, x: &Tensor, a: &Tensor, c: &Tensor) -> Result<Tensor> {
        if !x.device().is_cpu() || x.rank() != 3 {
            return match self {
                Self::LayerNorm => layer_norm_modulate_composed(x, a, c),
                Self::GatedResidual => gated_residual_composed(x, a, c),
            };
        }
        x.contiguous()?
            .apply_op3(&a.contiguous()?, &c.contiguous()?, self)
    }
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
                            let (mean, rstd) = mean_rstd(xrow);
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
                        let (mean, rstd) = mean_rstd(xrow);
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
