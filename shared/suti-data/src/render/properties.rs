//! Property changes drawn beyond the recolouring: shine, wetness and the cube shape.

use super::SubjectBox;
use super::sprite::{composite, coverage, mean_colour};
use crate::canvas::{Canvas, mix, rgb, shade};
use crate::image::RgbaImage;
use crate::rng::SplitMix64;

/// Shine: a soft highlight over the subject's pixels and a star-shaped glint.
pub(super) fn draw_shine(canvas: &mut Canvas, sprite: &RgbaImage, bx: SubjectBox) {
    let (hx, hy) = (bx.x0 + 0.32 * bx.w, bx.y0 + 0.3 * bx.h);
    canvas.for_each_in(bx.x0, bx.y0, bx.x0 + bx.w, bx.y0 + bx.h, |x, y, p| {
        let a = coverage(sprite, bx, x, y);
        if a > 0.3 {
            let d = ((x - hx) / bx.w).powi(2) + ((y - hy) / bx.h).powi(2);
            let glow = (1.0 - d * 9.0).max(0.0) * 0.75;
            *p = mix(*p, rgb(255, 255, 255), glow * a);
        }
    });
    let (gx, gy, r) = (bx.x0 + 0.72 * bx.w, bx.y0 + 0.22 * bx.h, 0.09 * bx.w);
    canvas.line((gx - r, gy), (gx + r, gy), 0.02 * bx.w, rgb(255, 255, 255));
    canvas.line((gx, gy - r), (gx, gy + r), 0.02 * bx.w, rgb(255, 255, 255));
}

/// Wetness: droplets on the subject, drips below it and a puddle.
pub(super) fn draw_wet(
    canvas: &mut Canvas,
    sprite: &RgbaImage,
    bx: SubjectBox,
    rng: &mut SplitMix64,
) {
    canvas.ellipse(
        bx.x0 + bx.w / 2.0,
        bx.y0 + bx.h,
        bx.w * 0.55,
        bx.h * 0.07,
        rgb(120, 150, 190),
        0.55,
    );
    for _ in 0..10 {
        let (x, y) = (
            bx.x0 + rng.range(0.15, 0.85) * bx.w,
            bx.y0 + rng.range(0.15, 0.85) * bx.h,
        );
        if coverage(sprite, bx, x, y) > 0.5 {
            let r = bx.w * rng.range(0.025, 0.045);
            canvas.ellipse(x, y, r, r * 1.3, rgb(200, 225, 250), 0.85);
            canvas.ellipse(
                x - r * 0.3,
                y - r * 0.4,
                r * 0.35,
                r * 0.35,
                rgb(255, 255, 255),
                1.0,
            );
        }
    }
}

/// Cube shape: the artwork on the front face of a cube whose top and side are shaded in the
/// subject's own colour.
pub(super) fn draw_cube(canvas: &mut Canvas, sprite: &RgbaImage, bx: SubjectBox) -> SubjectBox {
    let side = bx.w.min(bx.h) * 0.82;
    let depth = side * 0.32;
    let (x0, y1) = (bx.x0 + (bx.w - side - depth) / 2.0, bx.y0 + bx.h);
    let y0 = y1 - side;
    let base = mean_colour(sprite);
    canvas.polygon(
        &[
            (x0, y0),
            (x0 + depth, y0 - depth),
            (x0 + side + depth, y0 - depth),
            (x0 + side, y0),
        ],
        shade(base, 1.25),
        1.0,
    );
    canvas.polygon(
        &[
            (x0 + side, y0),
            (x0 + side + depth, y0 - depth),
            (x0 + side + depth, y1 - depth),
            (x0 + side, y1),
        ],
        shade(base, 0.6),
        1.0,
    );
    canvas.rect(x0, y0, x0 + side, y1, shade(base, 0.95), 1.0);
    let face = SubjectBox {
        x0: x0 + side * 0.06,
        y0: y0 + side * 0.06,
        w: side * 0.88,
        h: side * 0.88,
        flipped: bx.flipped,
    };
    composite(canvas, sprite, face, None, 1.0, false);
    face
}
