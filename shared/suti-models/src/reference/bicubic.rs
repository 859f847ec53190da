//! PyTorch's bicubic resize (`F.interpolate(mode="bicubic", align_corners=False)`), which HF's
//! DINOv2 applies to its position embeddings when the input grid differs from the stored one.

/// PyTorch's bicubic kernel weights (A = −0.75) for the four taps around a fractional offset `t`.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// Source taps and weights of each output index, as ATen's `upsample_bicubic2d` with
/// `align_corners=False` and an explicit output size: source = (dst + ½)·in/out − ½, unclamped,
/// with out-of-range taps clamped to the edge.
fn cubic_taps(inp: usize, out: usize) -> Vec<([usize; 4], [f64; 4])> {
    let scale = inp as f64 / out as f64;
    (0..out)
        .map(|o| {
            let real = scale * (o as f64 + 0.5) - 0.5;
            let base = real.floor();
            let taps = std::array::from_fn(|i| {
                (base as i64 - 1 + i as i64).clamp(0, inp as i64 - 1) as usize
            });
            (taps, cubic_weights(real - base))
        })
        .collect()
}

/// Bicubic resize of a channels-last grid `(in_h, in_w, c)` to `(out_h, out_w, c)`, as
/// `F.interpolate(mode="bicubic", align_corners=False)` on the channels-first view (the kernel is
/// separable, so rows then columns is the same sum).
pub(super) fn bicubic_resize(
    src: &[f32],
    (in_h, in_w): (usize, usize),
    c: usize,
    (out_h, out_w): (usize, usize),
) -> Vec<f32> {
    let xs = cubic_taps(in_w, out_w);
    let ys = cubic_taps(in_h, out_h);
    // Along x first: (in_h, out_w, c).
    let mut mid = vec![0f64; in_h * out_w * c];
    for y in 0..in_h {
        for (ox, (taps, w)) in xs.iter().enumerate() {
            let dst = &mut mid[(y * out_w + ox) * c..][..c];
            for (&tx, &wx) in taps.iter().zip(w) {
                let row = &src[(y * in_w + tx) * c..][..c];
                for (d, &s) in dst.iter_mut().zip(row) {
                    *d += wx * s as f64;
                }
            }
        }
    }
    let mut out = vec![0f32; out_h * out_w * c];
    for (oy, (taps, w)) in ys.iter().enumerate() {
        for ox in 0..out_w {
            let dst = &mut out[(oy * out_w + ox) * c..][..c];
            let mut acc = vec![0f64; c];
            for (&ty, &wy) in taps.iter().zip(w) {
                let row = &mid[(ty * out_w + ox) * c..][..c];
                for (a, &m) in acc.iter_mut().zip(row) {
                    *a += wy * m;
                }
            }
            for (d, a) in dst.iter_mut().zip(acc) {
                *d = a as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_matches_aten() {
        // Hand-evaluated from ATen's formula: [0, 1, 2, 3] → 2 samples at sources 0.5 and 2.5,
        // t = ½ (weights −0.09375, 0.59375, 0.59375, −0.09375), edge taps clamped.
        let out = bicubic_resize(&[0.0, 1.0, 2.0, 3.0], (1, 4), 1, (1, 2));
        assert!(
            (out[0] - 0.40625).abs() < 1e-6 && (out[1] - 2.59375).abs() < 1e-6,
            "{out:?}"
        );
        // A constant field stays constant (weights sum to one), up and down.
        for (inp, out) in [(4, 16), (37, 16)] {
            let src = vec![0.7f32; inp * inp * 2];
            let r = bicubic_resize(&src, (inp, inp), 2, (out, out));
            assert!(r.iter().all(|v| (v - 0.7).abs() < 1e-6));
        }
        // The same size is the identity.
        let src: Vec<f32> = (0..9).map(|i| i as f32 * 0.37).collect();
        let r = bicubic_resize(&src, (3, 3), 1, (3, 3));
        assert!(src.iter().zip(&r).all(|(a, b)| (a - b).abs() < 1e-6));
    }
}
