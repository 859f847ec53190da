//! Image degradations that make a crisp render look like a small model's output: resampling down
//! and back up, a box blur and seeded pixel noise. The scorer trains on them so that it can read
//! generated images, and the evaluation's sanity check uses `down_up` to ask whether a metric
//! mistakes blur for a different subject.

use crate::RgbaImage;
use crate::rng::SplitMix64;

/// Reduces `img` to `side`×`side` by area averaging and scales it back to its own size with
/// bilinear sampling: detail finer than `side` pixels is lost, as in a low-resolution generation.
pub fn down_up(img: &RgbaImage, side: u32) -> RgbaImage {
    let small = img.centre_square(side.max(1));
    resize_bilinear(&small, img.width, img.height)
}

/// `img` resampled to `width`×`height` with bilinear interpolation (pixel centres aligned).
pub fn resize_bilinear(img: &RgbaImage, width: u32, height: u32) -> RgbaImage {
    let mut out = RgbaImage::new(width, height);
    let (sx, sy) = (
        img.width as f32 / width as f32,
        img.height as f32 / height as f32,
    );
    let max_x = (img.width - 1) as f32;
    let max_y = (img.height - 1) as f32;
    for oy in 0..height {
        for ox in 0..width {
            let fx = ((ox as f32 + 0.5) * sx - 0.5).clamp(0.0, max_x);
            let fy = ((oy as f32 + 0.5) * sy - 0.5).clamp(0.0, max_y);
            let (x0, y0) = (fx.floor() as u32, fy.floor() as u32);
            let (x1, y1) = ((x0 + 1).min(img.width - 1), (y0 + 1).min(img.height - 1));
            let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
            let (a, b, c, d) = (
                img.get(x0, y0),
                img.get(x1, y0),
                img.get(x0, y1),
                img.get(x1, y1),
            );
            let mut px = [0u8; 4];
            for k in 0..4 {
                let top = f32::from(a[k]) * (1.0 - tx) + f32::from(b[k]) * tx;
                let bottom = f32::from(c[k]) * (1.0 - tx) + f32::from(d[k]) * tx;
                px[k] = (top * (1.0 - ty) + bottom * ty).round().clamp(0.0, 255.0) as u8;
            }
            out.put(ox, oy, px);
        }
    }
    out
}

/// A box blur of the given radius (each pixel averages the `(2r+1)²` pixels around it, clamped at
/// the edges).
pub fn box_blur(img: &RgbaImage, radius: u32) -> RgbaImage {
    if radius == 0 {
        return img.clone();
    }
    let r = radius as i64;
    let (w, h) = (i64::from(img.width), i64::from(img.height));
    let mut out = RgbaImage::new(img.width, img.height);
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0u32; 4];
            let mut n = 0u32;
            for dy in -r..=r {
                for dx in -r..=r {
                    let p = img.get(
                        (x + dx).clamp(0, w - 1) as u32,
                        (y + dy).clamp(0, h - 1) as u32,
                    );
                    for k in 0..4 {
                        acc[k] += u32::from(p[k]);
                    }
                    n += 1;
                }
            }
            out.put(x as u32, y as u32, acc.map(|v| ((v + n / 2) / n) as u8));
        }
    }
    out
}

/// Adds seeded noise, uniform in `[-amplitude, amplitude]` on each colour channel (alpha kept).
pub fn add_noise(img: &RgbaImage, amplitude: u8, seed: u64) -> RgbaImage {
    let mut rng = SplitMix64::derive(seed, "degrade/noise");
    let mut out = img.clone();
    let a = f32::from(amplitude);
    for px in out.pixels.chunks_exact_mut(4) {
        for v in &mut px[..3] {
            *v = (f32::from(*v) + rng.range(-a, a)).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(side: u32) -> RgbaImage {
        let mut img = RgbaImage::new(side, side);
        for y in 0..side {
            for x in 0..side {
                let v = if (x + y) % 2 == 0 { 255 } else { 0 };
                img.put(x, y, [v, v, v, 255]);
            }
        }
        img
    }

    fn variance(img: &RgbaImage) -> f32 {
        let values: Vec<f32> = img
            .pixels
            .chunks_exact(4)
            .map(|p| f32::from(p[0]))
            .collect();
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32
    }

    #[test]
    fn down_up_and_blur_remove_fine_detail_and_keep_the_size() {
        let img = checker(32);
        for degraded in [down_up(&img, 16), box_blur(&img, 1)] {
            assert_eq!((degraded.width, degraded.height), (32, 32));
            assert!(
                variance(&degraded) < variance(&img) / 10.0,
                "a one-pixel checkerboard survives: {}",
                variance(&degraded)
            );
        }
        // A flat image is a fixed point of both.
        let mut flat = RgbaImage::new(8, 8);
        flat.pixels.fill(90);
        assert_eq!(down_up(&flat, 4), flat);
        assert_eq!(box_blur(&flat, 2), flat);
    }

    #[test]
    fn noise_is_seeded_and_bounded() {
        let mut flat = RgbaImage::new(16, 16);
        flat.pixels.fill(128);
        let a = add_noise(&flat, 20, 1);
        assert_eq!(a, add_noise(&flat, 20, 1));
        assert_ne!(a, add_noise(&flat, 20, 2));
        for px in a.pixels.chunks_exact(4) {
            assert!(px[..3].iter().all(|v| (108..=148).contains(v)));
            assert_eq!(px[3], 128);
        }
        assert!(variance(&a) > 10.0);
    }
}
