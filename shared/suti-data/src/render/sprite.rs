//! Reading the subject's artwork: sampling it, compositing it into its box with a property's
//! colour change, and the measures of it the renderer places things by.

use super::SubjectBox;
use crate::canvas::{Canvas, Rgb, mix, rgb, shade};
use crate::image::RgbaImage;
use crate::prompts::Property;

/// Bilinear sample of premultiplied RGBA at sprite coordinates (u, v) in pixels.
fn sample(sprite: &RgbaImage, u: f32, v: f32) -> [f32; 4] {
    let (w, h) = (sprite.width as i32, sprite.height as i32);
    let (x, y) = (u - 0.5, v - 0.5);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let mut acc = [0.0f32; 4];
    for (dx, dy, weight) in [
        (0, 0, (1.0 - fx) * (1.0 - fy)),
        (1, 0, fx * (1.0 - fy)),
        (0, 1, (1.0 - fx) * fy),
        (1, 1, fx * fy),
    ] {
        let (sx, sy) = (x0 as i32 + dx, y0 as i32 + dy);
        if sx < 0 || sy < 0 || sx >= w || sy >= h || weight == 0.0 {
            continue;
        }
        let p = sprite.get(sx as u32, sy as u32);
        let a = p[3] as f32 / 255.0;
        acc[0] += weight * a * p[0] as f32 / 255.0;
        acc[1] += weight * a * p[1] as f32 / 255.0;
        acc[2] += weight * a * p[2] as f32 / 255.0;
        acc[3] += weight * a;
    }
    acc
}

/// Perceived brightness of a colour.
fn luminance(c: Rgb) -> f32 {
    0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2]
}

/// Applies a property's colour change to one un-premultiplied colour.
fn recolour(property: Option<Property>, c: Rgb) -> Rgb {
    match property {
        Some(Property::Red) => {
            let l = luminance(c);
            [0.25 + 0.85 * l, 0.05 + 0.3 * l * l, 0.05 + 0.3 * l * l]
        }
        Some(Property::Purple) => {
            let l = luminance(c);
            [0.3 + 0.55 * l, 0.08 + 0.35 * l * l, 0.45 + 0.55 * l]
        }
        Some(Property::Shiny) => {
            // More contrast and saturation: a polished look.
            let l = luminance(c);
            let saturated = [
                l + (c[0] - l) * 1.5,
                l + (c[1] - l) * 1.5,
                l + (c[2] - l) * 1.5,
            ];
            saturated.map(|v| ((v - 0.5) * 1.3 + 0.55).clamp(0.0, 1.0))
        }
        Some(Property::Wet) => {
            let darker = shade(c, 0.72);
            [
                darker[0] * 0.92,
                darker[1] * 0.97,
                (darker[2] + 0.08).min(1.0),
            ]
        }
        _ => c,
    }
}

/// Composites the sprite into `bx` on the canvas. `alpha_scale` fades it; `mirror_y` draws it
/// upside down (reflections).
pub(super) fn composite(
    canvas: &mut Canvas,
    sprite: &RgbaImage,
    bx: SubjectBox,
    property: Option<Property>,
    alpha_scale: f32,
    mirror_y: bool,
) {
    let (sw, sh) = (sprite.width as f32, sprite.height as f32);
    canvas.for_each_in(bx.x0, bx.y0, bx.x0 + bx.w, bx.y0 + bx.h, |x, y, p| {
        let mut u = (x - bx.x0) / bx.w * sw;
        let mut v = (y - bx.y0) / bx.h * sh;
        if bx.flipped {
            u = sw - u;
        }
        if mirror_y {
            v = sh - v;
        }
        let s = sample(sprite, u, v);
        let a = s[3] * alpha_scale;
        if a <= 0.0 {
            return;
        }
        let colour = recolour(property, [s[0] / s[3], s[1] / s[3], s[2] / s[3]]);
        *p = mix(*p, colour, a);
    });
}

/// The sprite's alpha at a normalised canvas point inside the subject box.
pub(super) fn coverage(sprite: &RgbaImage, bx: SubjectBox, x: f32, y: f32) -> f32 {
    let mut u = (x - bx.x0) / bx.w * sprite.width as f32;
    let v = (y - bx.y0) / bx.h * sprite.height as f32;
    if bx.flipped {
        u = sprite.width as f32 - u;
    }
    sample(sprite, u, v)[3]
}

/// The sprite's mean colour, weighted by alpha.
pub(super) fn mean_colour(sprite: &RgbaImage) -> Rgb {
    let (mut sum, mut weight) = ([0.0f32; 3], 0.0f32);
    for px in sprite.pixels.chunks_exact(4) {
        let a = px[3] as f32 / 255.0;
        for c in 0..3 {
            sum[c] += a * px[c] as f32 / 255.0;
        }
        weight += a;
    }
    if weight == 0.0 {
        return rgb(128, 128, 128);
    }
    sum.map(|s| s / weight)
}

/// The vertical extent of the sprite's visible pixels, as fractions of its height.
pub(super) fn visible_rows(sprite: &RgbaImage) -> (f32, f32) {
    let (mut top, mut bottom) = (sprite.height, 0);
    for y in 0..sprite.height {
        if (0..sprite.width).any(|x| sprite.get(x, y)[3] > 32) {
            top = top.min(y);
            bottom = bottom.max(y + 1);
        }
    }
    if bottom == 0 {
        return (0.0, 1.0);
    }
    (
        top as f32 / sprite.height as f32,
        bottom as f32 / sprite.height as f32,
    )
}
