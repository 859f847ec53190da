//! [`super::layer_norm`], [`super::softmax_last_dim`] and [`super::gelu`] on the CPU: row-parallel
//! kernels, each with a row-parallel backward kernel.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::vector::{gelu, gelu_grad};
use super::{MIN_PARALLEL_CHUNK, f32_slice, mean_rstd, softmax_row};

/// The three row-wise kernels; their backward is the matching [`RowGrad`].
#[derive(Debug, Clone, Copy)]
pub(super) enum RowOp {
    LayerNorm,
    Softmax,
    Gelu,
}

/// Rows and row length of a tensor, rows along its last dimension.
fn rows_of(layout: &Layout) -> Result<(usize, usize)> {
    let dims = layout.shape().dims();
    let n = *dims.last().unwrap_or(&1);
    Ok((layout.shape().elem_count() / n.max(1), n))
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
                    let (mean, rstd) = mean_rstd(row);
                    for (o, v) in out.iter_mut().zip(row) {
                        *o = (v - mean) * rstd;
                    }
                }
            }),
            Self::Softmax => par_rows(x, n, |xs, ys| {
                ys.copy_from_slice(xs);
                for row in ys.chunks_exact_mut(n) {
                    softmax_row(row, None);
                }
            }),
            Self::Gelu => par_rows(x, n, gelu),
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
        let mut out = vec![0f32; saved.len()];
        let chunk = (MIN_PARALLEL_CHUNK / n.max(1)).max(1) * n;
        out.par_chunks_mut(chunk)
            .zip(saved.par_chunks(chunk))
            .zip(grad.par_chunks(chunk))
            .for_each(|((out, saved), grad)| {
                if let Self::Gelu = self {
                    // Elementwise: the whole chunk at once.
                    return gelu_grad(saved, grad, out);
                }
                for ((o, s), g) in out
                    .chunks_exact_mut(n)
                    .zip(saved.chunks_exact(n))
                    .zip(grad.chunks_exact(n))
                {
                    match self {
                        Self::LayerNorm => {
                            // dx = rstd · (dy − mean(dy) − y · mean(dy · y)), y = (x − mean) · rstd
                            let (mean, rstd) = mean_rstd(s);
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
                        Self::Gelu => unreachable!("handled per chunk above"),
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}
