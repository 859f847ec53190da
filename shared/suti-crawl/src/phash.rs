//! Perceptual hashing for near-duplicate images (the same photo re-encoded, resized or slightly
//! retouched): the 64-bit DCT hash — grey levels at 32×32, a 2-D DCT, the 8×8 lowest frequencies
//! without the DC term, each bit set where the coefficient is above their median.

use suti_data::RgbaImage;

const SIDE: usize = 32;
const LOW: usize = 8;

/// Grey levels of `img` resampled to 32×32 by area averaging (alpha composited on white).
fn grey_32(img: &RgbaImage) -> Vec<f32> {
    let (w, h) = (img.width as usize, img.height as usize);
    let mut out = vec![0f32; SIDE * SIDE];
    for oy in 0..SIDE {
        let (y0, y1) = (
            oy * h / SIDE,
            ((oy + 1) * h / SIDE).max(oy * h / SIDE + 1).min(h),
        );
        for ox in 0..SIDE {
            let (x0, x1) = (
                ox * w / SIDE,
                ((ox + 1) * w / SIDE).max(ox * w / SIDE + 1).min(w),
            );
            let (mut sum, mut n) = (0f32, 0f32);
            for y in y0..y1 {
                for x in x0..x1 {
                    let p = img.get(x as u32, y as u32);
                    let a = f32::from(p[3]) / 255.0;
                    let grey =
                        0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
                    sum += grey * a + 255.0 * (1.0 - a);
                    n += 1.0;
                }
            }
            out[oy * SIDE + ox] = sum / n.max(1.0);
        }
    }
    out
}

/// The 64-bit perceptual hash of an image.
pub fn phash(img: &RgbaImage) -> u64 {
    let grey = grey_32(img);
    let cos: Vec<f32> = (0..LOW * SIDE)
        .map(|i| {
            let (k, n) = (i / SIDE, i % SIDE);
            ((2 * n + 1) as f32 * k as f32 * std::f32::consts::PI / (2 * SIDE) as f32).cos()
        })
        .collect();
    // Separable DCT, keeping only the lowest 8×8 frequencies.
    let mut rows = vec![0f32; SIDE * LOW];
    for y in 0..SIDE {
        for k in 0..LOW {
            rows[y * LOW + k] = (0..SIDE)
                .map(|x| grey[y * SIDE + x] * cos[k * SIDE + x])
                .sum();
        }
    }
    let mut coeffs = Vec::with_capacity(LOW * LOW);
    for ky in 0..LOW {
        for kx in 0..LOW {
            coeffs.push(
                (0..SIDE)
                    .map(|y| rows[y * LOW + kx] * cos[ky * SIDE + y])
                    .sum::<f32>(),
            );
        }
    }
    let ac = &coeffs[1..];
    let mut sorted = ac.to_vec();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[sorted.len() / 2];
    coeffs.iter().enumerate().fold(0u64, |hash, (i, c)| {
        if i > 0 && *c > median {
            hash | (1 << i)
        } else {
            hash
        }
    })
}

/// Bits that differ between two hashes.
pub fn distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;
    use suti_data::canvas::{Canvas, rgb};

    fn scene(seed: u64, size: u32) -> RgbaImage {
        let mut c = Canvas::new(size, size, rgb(200, 220, 240));
        c.noise(
            0.0,
            0.5,
            1.0,
            1.0,
            rgb(40, 120, 40),
            rgb(90, 180, 70),
            (6.0, 6.0),
            seed,
        );
        c.ellipse(0.5, 0.45, 0.2, 0.25, rgb(230, 120, 20), 1.0);
        c.to_image()
    }

    #[test]
    fn near_duplicates_are_close_and_different_images_are_far() {
        let original = scene(1, 96);
        let smaller = scene(1, 64);
        let mut retouched = original.clone();
        for px in retouched.pixels.chunks_exact_mut(4).step_by(7) {
            px[0] = px[0].saturating_add(12);
        }
        let other = scene(99, 96);
        let h = phash(&original);
        assert!(
            distance(h, phash(&smaller)) <= 6,
            "resized: {}",
            distance(h, phash(&smaller))
        );
        assert!(
            distance(h, phash(&retouched)) <= 6,
            "retouched: {}",
            distance(h, phash(&retouched))
        );
        assert!(
            distance(h, phash(&other)) >= 12,
            "different: {}",
            distance(h, phash(&other))
        );
        assert_eq!(phash(&original), h, "deterministic");
    }
}
