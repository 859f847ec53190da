//! [`super::linear`] on the CPU: `x Wᵀ + b` as one gemm into a buffer that already holds the bias,
//! and a backward that returns all three gradients from three gemms.
//!
//! Composed, a linear layer was a matmul with a transposed view of the weight, then the bias add
//! (a second pass and buffer); its backward went through the matmul's two products, the
//! transpose's backward (a strided pass that turns the weight gradient around) and the bias op,
//! each accumulated into a fresh zeroed buffer by autograd.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::matmul::{View, ViewMut, gemm_views};

/// `(rows, in) · (out, in)ᵀ + (out,)`, or with the weight stored `(in, out)`.
pub(super) struct FusedLinear {
    /// The weight is stored `(in, out)`: a frozen weight's copy that gemm reads straight (it
    /// repacks an `(out, in)` weight read through transposed strides on every call).
    pub(super) weight_in_out: bool,
}

impl FusedLinear {
    /// `(outputs, inputs)` of a weight stored as this op stores it.
    fn weight_dims(&self, weight: &Shape) -> Result<(usize, usize)> {
        let (rows, cols) = weight.dims2()?;
        Ok(if self.weight_in_out {
            (cols, rows)
        } else {
            (rows, cols)
        })
    }

    /// The weight as the `(in, out)` right operand of `x · Wᵀ`.
    fn weight_operand<'a>(&self, values: &'a [f32], inputs: usize, outputs: usize) -> Operand<'a> {
        if self.weight_in_out {
            Operand {
                values,
                stride: outputs,
                transposed: false,
            }
        } else {
            Operand {
                values,
                stride: inputs,
                transposed: true,
            }
        }
    }
}

/// Rows at or above which a product is split over rayon's threads: below it one thread finishes
/// before the hand-off to the others would pay off.
const PARALLEL_ROWS: usize = 128;

fn parallelism(rows: usize) -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && rows >= PARALLEL_ROWS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// A row-major operand: its values and whether to read it transposed.
struct Operand<'a> {
    values: &'a [f32],
    /// Elements between consecutive rows as stored.
    stride: usize,
    transposed: bool,
}

impl Operand<'_> {
    /// The same values read as the transposed matrix.
    fn turned(self) -> Self {
        Self {
            transposed: !self.transposed,
            ..self
        }
    }

    fn view(&self) -> View {
        View {
            ptr: self.values.as_ptr(),
            rows_stride: self.stride,
        }
    }
}

/// `dst (rows × cols) = [dst +] lhs (rows × depth) · rhs (depth × cols)`, `dst` row-major.
fn product(
    dst: &mut [f32],
    accumulate: bool,
    shape: (usize, usize, usize),
    lhs: Operand<'_>,
    rhs: Operand<'_>,
) {
    let (rows, cols, depth) = shape;
    assert_eq!(dst.len(), rows * cols);
    assert!(lhs.values.len() >= rows * depth && rhs.values.len() >= depth * cols);
    let out = ViewMut {
        ptr: dst.as_mut_ptr(),
        rows_stride: cols,
    };
    // SAFETY: the asserts above bound every operand by the elements its shape and strides reach
    // (all three are dense matrices, read straight or transposed); `dst` is borrowed mutably, so
    // it aliases neither operand.
    #[allow(unsafe_code)]
    unsafe {
        gemm_views(
            shape,
            out,
            accumulate,
            lhs.view(),
            lhs.transposed,
            rhs.view(),
            rhs.transposed,
            1.0,
            parallelism(rows.max(cols)),
        )
    }
}

impl CustomOp3 for FusedLinear {
    fn name(&self) -> &'static str {
        "suti-linear"
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
        let (rows, inputs) = l1.shape().dims2()?;
        let (outputs, w_in) = self.weight_dims(l2.shape())?;
        if w_in != inputs || l3.shape().dims1()? != outputs {
            candle_core::bail!(
                "linear: input {:?}, weight {:?} and bias {:?} do not fit",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let (x, w, b) = (
            super::f32_slice(s1, l1)?,
            super::f32_slice(s2, l2)?,
            super::f32_slice(s3, l3)?,
        );
        let mut out = Vec::with_capacity(rows * outputs);
        for _ in 0..rows {
            out.extend_from_slice(b);
        }
        product(
            &mut out,
            true,
            (rows, outputs, inputs),
            Operand {
                values: x,
                stride: inputs,
                transposed: false,
            },
            self.weight_operand(w, inputs, outputs),
        );
        Ok((CpuStorage::F32(out), Shape::from((rows, outputs))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.contiguous()?;
        let (rows, inputs) = x.dims2()?;
        let (outputs, _) = self.weight_dims(w.shape())?;
        if self.weight_in_out && w.track_op() {
            candle_core::bail!(
                "linear: a weight stored (in, out) is a frozen copy and takes no gradient"
            );
        }
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (xv, wv, gv) = (
            super::cpu_f32(&xs, xl)?,
            super::cpu_f32(&ws, wl)?,
            super::cpu_f32(&gs, gl)?,
        );
        let g = |transposed| Operand {
            values: gv,
            stride: outputs,
            transposed,
        };
        // Only what something upstream needs: a frozen weight (LoRA training) gets no gradient.
        let grad_x = x.track_op().then(|| {
            let mut dx = vec![0f32; rows * inputs];
            // dX = dY · W: the forward's right operand read the other way round.
            let w = self.weight_operand(wv, inputs, outputs).turned();
            product(&mut dx, false, (rows, inputs, outputs), g(false), w);
            dx
        });
        let grad_w = w.track_op().then(|| {
            let mut dw = vec![0f32; outputs * inputs];
            let x = Operand {
                values: xv,
                stride: inputs,
                transposed: false,
            };
            product(&mut dw, false, (outputs, inputs, rows), g(true), x);
            dw
        });
        let grad_b = b.track_op().then(|| {
            let mut db = vec![0f32; outputs];
            let ones = vec![1f32; rows];
            let ones = Operand {
                values: &ones,
                stride: rows,
                transposed: false,
            };
            product(&mut db, false, (1, outputs, rows), ones, g(false));
            db
        });
        let device = x.device();
        Ok((
            grad_x
                .map(|v| Tensor::from_vec(v, (rows, inputs), device))
                .transpose()?,
            grad_w
                .map(|v| Tensor::from_vec(v, (outputs, inputs), device))
                .transpose()?,
            grad_b
                .map(|v| Tensor::from_vec(v, outputs, device))
                .transpose()?,
        ))
    }
}
