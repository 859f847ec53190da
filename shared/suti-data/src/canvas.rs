//! A small floating-point raster for procedural scenes. Shapes are given in normalised
//! coordinates (0..1 across the image, y down), so the same scene description renders at 32, 64 or
//! any other resolution; each pixel is sampled at its centre.

use crate::image::RgbaImage;
use crate::rng::fractal_noise;

/// Linear RGB in [0, 1].
pub type Rgb = [f32; 3];

/// A colour from 8-bit sRGB-ish components (the renderer works directly in these values).
pub const fn rgb(r: u8, g: u8, b: u8) -> Rgb {
    [r as f32 / 255.0, g as f32 / 255.0, b as f32 / 255.0]
}

/// Mixes `a` toward `b` by `t`.
pub fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Multiplies a colour's brightness.
pub fn shade(c: Rgb, factor: f32) -> Rgb {
    [
        (c[0] * factor).clamp(0.0, 1.0),
        (c[1] * factor).clamp(0.0, 1.0),
        (c[2] * factor).clamp(0.0, 1.0),
    ]
}

/// An opaque RGB canvas.
#[derive(Debug, Clone)]
pub struct Canvas {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major pixels.
    pub pixels: Vec<Rgb>,
}

impl Canvas {
    /// A canvas filled with `color`.
    pub fn new(width: u32, height: u32, color: Rgb) -> Self {
        Self {
            width,
            height,
            pixels: vec![color; width as usize * height as usize],
        }
    }

    /// Pixel range covering normalised [a, b) along an axis of `n` pixels.
    fn span(a: f32, b: f32, n: u32) -> (u32, u32) {
        let lo = (a.min(b) * n as f32).floor().clamp(0.0, n as f32) as u32;
        let hi = (a.max(b) * n as f32).ceil().clamp(0.0, n as f32) as u32;
        (lo, hi)
    }

    /// Calls `f(x, y, &mut pixel)` with normalised pixel-centre coordinates over a region.
    pub fn for_each_in(
        &mut self,
        x0: f32,
        y0: f32,
        x1: f32,
        y1: f32,
        mut f: impl FnMut(f32, f32, &mut Rgb),
    ) {
        let (px0, px1) = Self::span(x0, x1, self.width);
        let (py0, py1) = Self::span(y0, y1, self.height);
        let (w, h) = (self.width as f32, self.height as f32);
        for py in py0..py1 {
            let y = (py as f32 + 0.5) / h;
            let row = py as usize * self.width as usize;
            for px in px0..px1 {
                let x = (px as f32 + 0.5) / w;
                f(x, y, &mut self.pixels[row + px as usize]);
            }
        }
    }

    /// Fills everything with a vertical gradient from `top` to `bottom` between y0 and y1.
    pub fn vertical_gradient(&mut self, y0: f32, y1: f32, top: Rgb, bottom: Rgb) {
        self.for_each_in(0.0, y0, 1.0, y1, |_, y, p| {
            let t = ((y - y0) / (y1 - y0).max(1e-6)).clamp(0.0, 1.0);
            *p = mix(top, bottom, t);
        });
    }

    /// Fills a rectangle, blending with `alpha`.
    pub fn rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, color: Rgb, alpha: f32) {
        self.for_each_in(x0, y0, x1, y1, |_, _, p| *p = mix(*p, color, alpha));
    }

    /// Fills an axis-aligned ellipse.
    pub fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, color: Rgb, alpha: f32) {
        self.for_each_in(cx - rx, cy - ry, cx + rx, cy + ry, |x, y, p| {
            let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
            if dx * dx + dy * dy <= 1.0 {
                *p = mix(*p, color, alpha);
            }
        });
    }

    /// Draws an ellipse outline of normalised thickness `width`.
    pub fn ring(&mut self, cx: f32, cy: f32, r: f32, width: f32, color: Rgb) {
        self.for_each_in(
            cx - r - width,
            cy - r - width,
            cx + r + width,
            cy + r + width,
            |x, y, p| {
                let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                if (d - r).abs() <= width / 2.0 {
                    *p = color;
                }
            },
        );
    }

    /// Fills a polygon (even-odd rule).
    pub fn polygon(&mut self, points: &[(f32, f32)], color: Rgb, alpha: f32) {
        if points.len() < 3 {
            return;
        }
        let (mut x0, mut y0, mut x1, mut y1) = (1.0f32, 1.0f32, 0.0f32, 0.0f32);
        for &(x, y) in points {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
        self.for_each_in(x0, y0, x1, y1, |x, y, p| {
            let mut inside = false;
            let mut j = points.len() - 1;
            for i in 0..points.len() {
                let (xi, yi) = points[i];
                let (xj, yj) = points[j];
                if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                    inside = !inside;
                }
                j = i;
            }
            if inside {
                *p = mix(*p, color, alpha);
            }
        });
    }

    /// Draws a line of normalised thickness `width`.
    pub fn line(&mut self, a: (f32, f32), b: (f32, f32), width: f32, color: Rgb) {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = (dx * dx + dy * dy).max(1e-9);
        let half = width / 2.0;
        self.for_each_in(
            a.0.min(b.0) - half,
            a.1.min(b.1) - half,
            a.0.max(b.0) + half,
            a.1.max(b.1) + half,
            |x, y, p| {
                let t = (((x - a.0) * dx + (y - a.1) * dy) / len2).clamp(0.0, 1.0);
                let (qx, qy) = (a.0 + t * dx, a.1 + t * dy);
                if (x - qx).powi(2) + (y - qy).powi(2) <= half * half {
                    *p = color;
                }
            },
        );
    }

    /// Textures a region with fractal noise between two colours at spatial frequency `freq`.
    #[allow(clippy::too_many_arguments)]
    pub fn noise(
        &mut self,
        x0: f32,
        y0: f32,
        x1: f32,
        y1: f32,
        a: Rgb,
        b: Rgb,
        freq: (f32, f32),
        seed: u64,
    ) {
        self.for_each_in(x0, y0, x1, y1, |x, y, p| {
            *p = mix(a, b, fractal_noise(x * freq.0, y * freq.1, seed));
        });
    }

    /// Quantises to an opaque 8-bit image.
    pub fn to_image(&self) -> RgbaImage {
        let mut pixels = Vec::with_capacity(self.pixels.len() * 4);
        for p in &self.pixels {
            pixels.extend_from_slice(&[
                (p[0].clamp(0.0, 1.0) * 255.0 + 0.5) as u8,
                (p[1].clamp(0.0, 1.0) * 255.0 + 0.5) as u8,
                (p[2].clamp(0.0, 1.0) * 255.0 + 0.5) as u8,
                255,
            ]);
        }
        RgbaImage {
            width: self.width,
            height: self.height,
            pixels,
        }
    }
}
