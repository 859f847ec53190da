//! Vectorisable row kernels shared by the ops: a branch-free `exp` and a softmax row, compiled for
//! AVX-512 and for AVX2 + FMA and chosen at run time, with a portable build for other CPUs.
//! Sums and maxima run over eight independent lanes, because a float loop that carries one
//! accumulator cannot be vectorised without reordering its additions.

/// `e^x` in f32 to within 2 ulp, branch-free so that loops over it vectorise, and exactly 0 below
/// −87.3 (where `e^x` leaves the normal range); it saturates at `e^88`. libm's `expf` was 14 % of a sampling run, most of
/// it the slow path that underflows and sets `errno` for the masked keys' −1e9 scores.
#[inline(always)]
pub(super) fn fast_exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts: the second restores the bits the first product rounds away.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2²³ rounds to the nearest integer in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.3, 88.0);
    let shifted = clamped * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    // Taylor series to r⁷ on |r| ≤ ln2/2: truncation error below 1e-8 relative.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let exponent = (shifted.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23;
    let value = p * f32::from_bits(exponent as u32);
    if x < -87.3 { 0.0 } else { value }
}

/// Softmax of one row in place, after adding `mask` (one value per column) if there is one.
pub(super) fn softmax_row(row: &mut [f32], mask: Option<&[f32]>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            #[allow(unsafe_code)]
            return unsafe { softmax_row_avx512(row, mask) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            #[allow(unsafe_code)]
            return unsafe { softmax_row_avx2(row, mask) };
        }
    }
    softmax_row_portable(row, mask);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn softmax_row_avx512(row: &mut [f32], mask: Option<&[f32]>) {
    softmax_row_portable(row, mask);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_row_avx2(row: &mut [f32], mask: Option<&[f32]>) {
    softmax_row_portable(row, mask);
}

/// The softmax row, inlined into each instruction-set build.
#[inline(always)]
fn softmax_row_portable(row: &mut [f32], mask: Option<&[f32]>) {
    if let Some(mask) = mask {
        row.iter_mut().zip(mask).for_each(|(s, k)| *s += k);
    }
    let max = lanes(row, f32::NEG_INFINITY, f32::max);
    row.iter_mut().for_each(|s| *s = fast_exp(*s - max));
    let inv = 1.0 / lanes(row, 0.0, |a, b| a + b);
    row.iter_mut().for_each(|s| *s *= inv);
}

/// Folds `values` with `f` over eight independent lanes, then the lanes together.
#[inline(always)]
fn lanes(values: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a = f(*a, *v);
        }
    }
    acc.iter().chain(rest).fold(init, |a, v| f(a, *v))
}
