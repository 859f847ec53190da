//! One wrapper over the `gemm` crate for the fused ops: row-major operands read straight or
//! transposed through their strides, into a row-major destination, overwritten or accumulated.

/// A row-major matrix view into a flat buffer: its first element and its row stride (columns are
/// adjacent).
#[derive(Clone, Copy)]
pub(super) struct View {
    pub(super) ptr: *const f32,
    pub(super) rows_stride: usize,
}

/// The same for a destination.
#[derive(Clone, Copy)]
pub(super) struct ViewMut {
    pub(super) ptr: *mut f32,
    pub(super) rows_stride: usize,
}

/// `dst (rows × cols) = [dst +] alpha · lhs (rows × depth) · rhs (depth × cols)`, each operand
/// optionally read transposed (`lhs_t`: lhs is stored `depth × rows`; `rhs_t`: rhs is stored
/// `cols × depth`), on `parallelism`'s threads.
///
/// SAFETY (callers): every view covers the elements its shape and stride describe, and `dst`
/// overlaps no operand and no other thread's destination.
#[allow(unsafe_code, clippy::too_many_arguments)]
pub(super) unsafe fn gemm_views(
    (rows, cols, depth): (usize, usize, usize),
    dst: ViewMut,
    accumulate: bool,
    lhs: View,
    lhs_t: bool,
    rhs: View,
    rhs_t: bool,
    alpha: f32,
    parallelism: gemm::Parallelism,
) {
    let strides = |view: View, transposed: bool| {
        if transposed {
            (view.rows_stride as isize, 1)
        } else {
            (1, view.rows_stride as isize)
        }
    };
    let ((lhs_cs, lhs_rs), (rhs_cs, rhs_rs)) = (strides(lhs, lhs_t), strides(rhs, rhs_t));
    // SAFETY: as the caller promises.
    unsafe {
        gemm::gemm(
            rows,
            cols,
            depth,
            dst.ptr,
            1,
            dst.rows_stride as isize,
            accumulate,
            lhs.ptr,
            lhs_cs,
            lhs_rs,
            rhs.ptr,
            rhs_cs,
            rhs_rs,
            if accumulate { 1.0 } else { 0.0 },
            alpha,
            false,
            false,
            false,
            parallelism,
        )
    }
}
