//! [`super::attention`] on the CPU: multi-head scaled dot-product attention in one op, forward and
//! backward, on token-major `(batch, tokens, width)` tensors.
//!
//! The composed version split heads by copy, materialised the `(b, heads, n, keys)` scores, their
//! scaled and masked copies and the softmax, merged heads by copy, and ran each batched matmul as a
//! sequential loop of small gemm calls that each handed work to every thread. Here one task per
//! (example, head) reads its head's columns in place through gemm's strides, keeps the scores in a
//! scratch buffer of its own and writes its output columns directly; the backward recomputes the
//! softmax from the inputs (a few small gemms) instead of keeping it.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::matmul::{View, ViewMut, gemm_views};

/// Attention of `(b, n, w)` queries over `(b, m, w)` keys and values, `heads` heads, with an
/// additive key mask per example (`b × m` values) if any.
pub(super) struct FusedAttention {
    pub(super) heads: usize,
    pub(super) mask: Option<Vec<f32>>,
}

/// Sizes of one call: batch, queries, keys, width, heads, head width.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    n: usize,
    m: usize,
    w: usize,
    heads: usize,
    hd: usize,
}

impl Dims {
    fn of(heads: usize, q: &Layout, k: &Layout, v: &Layout) -> Result<Self> {
        let (b, n, w) = q.shape().dims3()?;
        let (kb, m, kw) = k.shape().dims3()?;
        if (kb, kw) != (b, w) || v.shape().dims3()? != (b, m, w) {
            candle_core::bail!(
                "attention: queries {:?}, keys {:?} and values {:?} do not fit",
                q.shape(),
                k.shape(),
                v.shape()
            );
        }
        if heads == 0 || !w.is_multiple_of(heads) {
            candle_core::bail!("attention: width {w} does not split into {heads} heads");
        }
        Ok(Self {
            b,
            n,
            m,
            w,
            heads,
            hd: w / heads,
        })
    }

    /// Whether there is nothing to compute (no queries or no keys).
    fn is_empty(&self) -> bool {
        self.b * self.n * self.m == 0
    }

    fn scale(&self) -> f32 {
        1.0 / (self.hd as f32).sqrt()
    }
}

/// Row-wise softmax of `scores` (`n × m`) after adding `mask` (`m` values) to every row.
fn masked_softmax(scores: &mut [f32], m: usize, mask: Option<&[f32]>) {
    for row in scores.chunks_exact_mut(m) {
        super::softmax_row(row, mask);
    }
}

/// A flat buffer's address, shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct Shared(usize);

impl Shared {
    fn of(buffer: &mut [f32]) -> Self {
        Self(buffer.as_mut_ptr() as usize)
    }

    /// The `rows_stride`-strided view starting `offset` elements in.
    fn at(self, offset: usize, rows_stride: usize) -> ViewMut {
        ViewMut {
            ptr: (self.0 as *mut f32).wrapping_add(offset),
            rows_stride,
        }
    }
}

fn view(values: &[f32], offset: usize, rows_stride: usize) -> View {
    View {
        ptr: values[offset..].as_ptr(),
        rows_stride,
    }
}

impl FusedAttention {
    fn mask_of(&self, d: &Dims, example: usize) -> Option<&[f32]> {
        self.mask
            .as_deref()
            .map(|mask| &mask[example * d.m..(example + 1) * d.m])
    }

    /// The softmaxed scores of one (example, head) into `probs` (`n × m`).
    fn probabilities(&self, d: &Dims, q: &[f32], k: &[f32], task: usize, probs: &mut [f32]) {
        let (example, head) = (task / d.heads, task % d.heads);
        let q_h = view(q, example * d.n * d.w + head * d.hd, d.w);
        let k_h = view(k, example * d.m * d.w + head * d.hd, d.w);
        let p = Shared::of(probs).at(0, d.m);
        // SAFETY: q_h is n × hd and k_h m × hd inside their tensors (strides w, offsets inside an
        // example's block); probs holds n × m and belongs to this task.
        #[allow(unsafe_code)]
        unsafe {
            gemm_views(
                (d.n, d.m, d.hd),
                p,
                false,
                q_h,
                false,
                k_h,
                true,
                d.scale(),
                gemm::Parallelism::None,
            )
        };
        masked_softmax(probs, d.m, self.mask_of(d, example));
    }

    fn check_mask(&self, d: &Dims) -> Result<()> {
        match &self.mask {
            Some(mask) if mask.len() != d.b * d.m => candle_core::bail!(
                "attention: a mask of {} values for {} examples of {} keys",
                mask.len(),
                d.b,
                d.m
            ),
            _ => Ok(()),
        }
    }
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "suti-attention"
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
        let d = Dims::of(self.heads, l1, l2, l3)?;
        self.check_mask(&d)?;
        let (q, k, v) = (
            super::f32_slice(s1, l1)?,
            super::f32_slice(s2, l2)?,
            super::f32_slice(s3, l3)?,
        );
        let mut out = vec![0f32; d.b * d.n * d.w];
        if d.is_empty() {
            // No queries, or nothing to attend to: the empty product is zero.
            return Ok((CpuStorage::F32(out), l1.shape().clone()));
        }
        let dst = Shared::of(&mut out);
        (0..d.b * d.heads).into_par_iter().for_each_init(
            || vec![0f32; d.n * d.m],
            |probs, task| {
                self.probabilities(&d, q, k, task, probs);
                let (example, head) = (task / d.heads, task % d.heads);
                let v_h = view(v, example * d.m * d.w + head * d.hd, d.w);
                let o_h = dst.at(example * d.n * d.w + head * d.hd, d.w);
                // SAFETY: probs is n × m, v_h m × hd inside v; o_h is this task's n × hd block
                // of `out` (its example's rows, its head's columns), written by no other task.
                #[allow(unsafe_code)]
                unsafe {
                    gemm_views(
                        (d.n, d.hd, d.m),
                        o_h,
                        false,
                        view(probs, 0, d.m),
                        false,
                        v_h,
                        false,
                        1.0,
                        gemm::Parallelism::None,
                    )
                };
            },
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.contiguous()?;
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let d = Dims::of(self.heads, ql, kl, vl)?;
        self.check_mask(&d)?;
        // Borrowed in place: the backward copies none of its inputs.
        let (qv, kv, vv, gv) = (
            super::cpu_f32(&qs, ql)?,
            super::cpu_f32(&ks, kl)?,
            super::cpu_f32(&vs, vl)?,
            super::cpu_f32(&gs, gl)?,
        );
        let mut dq = vec![0f32; d.b * d.n * d.w];
        let mut dk = vec![0f32; d.b * d.m * d.w];
        let mut dv = vec![0f32; d.b * d.m * d.w];
        let device = q.device();
        let (b, n, m, w) = (d.b, d.n, d.m, d.w);
        if d.is_empty() {
            return Ok((
                Some(Tensor::from_vec(dq, (b, n, w), device)?),
                Some(Tensor::from_vec(dk, (b, m, w), device)?),
                Some(Tensor::from_vec(dv, (b, m, w), device)?),
            ));
        }
        let (dq_all, dk_all, dv_all) = (
            Shared::of(&mut dq),
            Shared::of(&mut dk),
            Shared::of(&mut dv),
        );
        (0..d.b * d.heads).into_par_iter().for_each_init(
            || (vec![0f32; d.n * d.m], vec![0f32; d.n * d.m]),
            |(probs, dprobs), task| {
                self.probabilities(&d, qv, kv, task, probs);
                let (example, head) = (task / d.heads, task % d.heads);
                let q_off = example * d.n * d.w + head * d.hd;
                let kv_off = example * d.m * d.w + head * d.hd;
                let g_h = view(gv, q_off, d.w);
                let p = view(probs, 0, d.m);
                // SAFETY (all four): the operands are n × m scratch of this task or head blocks
                // inside q, k, v and the gradient (stride w); each destination is this task's
                // block of dq, dk or dv (its example, its head's columns) or its own scratch.
                #[allow(unsafe_code)]
                unsafe {
                    // dV = Pᵀ dO
                    gemm_views(
                        (d.m, d.hd, d.n),
                        dv_all.at(kv_off, d.w),
                        false,
                        p,
                        true,
                        g_h,
                        false,
                        1.0,
                        gemm::Parallelism::None,
                    );
                    // dP = dO Vᵀ
                    gemm_views(
                        (d.n, d.m, d.hd),
                        Shared::of(dprobs).at(0, d.m),
                        false,
                        g_h,
                        false,
                        view(vv, kv_off, d.w),
                        true,
                        1.0,
                        gemm::Parallelism::None,
                    );
                }
                // dS = P ⊙ (dP − Σⱼ P dP), into dprobs.
                for (p_row, dp_row) in probs.chunks_exact(d.m).zip(dprobs.chunks_exact_mut(d.m)) {
                    let dot: f32 = p_row.iter().zip(dp_row.iter()).map(|(p, g)| p * g).sum();
                    dp_row
                        .iter_mut()
                        .zip(p_row)
                        .for_each(|(g, p)| *g = p * (*g - dot));
                }
                let ds = view(dprobs, 0, d.m);
                #[allow(unsafe_code)]
                unsafe {
                    // dQ = scale · dS K
                    gemm_views(
                        (d.n, d.hd, d.m),
                        dq_all.at(q_off, d.w),
                        false,
                        ds,
                        false,
                        view(kv, kv_off, d.w),
                        false,
                        d.scale(),
                        gemm::Parallelism::None,
                    );
                    // dK = scale · dSᵀ Q
                    gemm_views(
                        (d.m, d.hd, d.n),
                        dk_all.at(kv_off, d.w),
                        false,
                        ds,
                        true,
                        view(qv, q_off, d.w),
                        false,
                        d.scale(),
                        gemm::Parallelism::None,
                    );
                }
            },
        );
        Ok((
            Some(Tensor::from_vec(dq, (b, n, w), device)?),
            Some(Tensor::from_vec(dk, (b, m, w), device)?),
            Some(Tensor::from_vec(dv, (b, m, w), device)?),
        ))
    }
}
