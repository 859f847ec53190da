//! Vectorisable kernels shared by the ops: a branch-free `exp`, a softmax row and GELU, compiled for
//! AVX-512 and for AVX2 + FMA and chosen at run time, with a portable build for other CPUs.
//! Sums and maxima run over eight independent lanes, because a float loop that carries one
//! accumulator cannot be vectorised without reordering its additions.

/// `e^x` in f32 to within 2 ulp, branch-free so that loops over it vectorise, and exactly 0 below
/// −87.3 (where `e^x` leaves the normal range); it saturates at `e^88`. libm's `expf` was 14 % of
/// a sampling run, plus 4 % in the slow path that underflows and sets `errno` for the masked keys'
/// −1e9 scores.
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

/// Defines a kernel compiled three times, for AVX-512, for AVX2 + FMA and portably, and a
/// function of the given name that runs the widest build the CPU has (checked at run time; the
/// check is a cached load).
macro_rules! vectorised {
    ($(#[$doc:meta])* fn $name:ident, $avx512:ident, $avx2:ident, $portable:ident
        ($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        pub(super) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, checked just above.
                    #[allow(unsafe_code)]
                    return unsafe { $avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA, checked just above.
                    #[allow(unsafe_code)]
                    return unsafe { $avx2($($arg),*) };
                }
            }
            $portable($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,fma")]
        fn $avx512($($arg: $ty),*) $body

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $avx2($($arg: $ty),*) $body

        fn $portable($($arg: $ty),*) $body
    };
}

vectorised! {
    /// Softmax of one row in place, after adding `mask` (one value per column) if there is one.
    fn softmax_row, softmax_row_avx512, softmax_row_avx2, softmax_row_portable
    (row: &mut [f32], mask: Option<&[f32]>) {
        if let Some(mask) = mask {
            row.iter_mut().zip(mask).for_each(|(s, k)| *s += k);
        }
        let max = lanes(row, f32::NEG_INFINITY, f32::max);
        row.iter_mut().for_each(|s| *s = fast_exp(*s - max));
        let inv = 1.0 / lanes(row, 0.0, |a, b| a + b);
        row.iter_mut().for_each(|s| *s *= inv);
    }
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;

/// tanh through one `exp`: 1 − 2 / (e^{2u} + 1).
#[inline(always)]
fn fast_tanh(u: f32) -> f32 {
    let u = u.clamp(-15.0, 15.0);
    1.0 - 2.0 / (fast_exp(2.0 * u) + 1.0)
}

vectorised! {
    /// GELU (tanh approximation) of `xs` into `ys`.
    fn gelu, gelu_avx512, gelu_avx2, gelu_portable (xs: &[f32], ys: &mut [f32]) {
        for (o, &v) in ys.iter_mut().zip(xs) {
            let u = SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v);
            *o = 0.5 * v * (1.0 + fast_tanh(u));
        }
    }
}

vectorised! {
    /// GELU's input gradient: `out = dy · GELU'(x)`.
    fn gelu_grad, gelu_grad_avx512, gelu_grad_avx2, gelu_grad_portable
    (xs: &[f32], dys: &[f32], out: &mut [f32]) {
        for ((o, &v), dy) in out.iter_mut().zip(xs).zip(dys) {
            let u = SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v);
            let t = fast_tanh(u);
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * v * v);
            *o = dy * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du);
        }
    }
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

/// The sum of `f` over `values`, over eight independent lanes.
#[inline(always)]
pub(super) fn sum_of(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += f(*v);
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|v| f(*v)).sum::<f32>()
}
