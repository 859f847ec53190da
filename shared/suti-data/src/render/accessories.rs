//! Accessories drawn on a live subject: hats, glasses and outfits, placed by the subject's box and
//! the top of its visible artwork.

use super::SubjectBox;
use super::sprite::{coverage, visible_rows};
use crate::canvas::{Canvas, Rgb, mix, rgb, shade};
use crate::image::RgbaImage;
use crate::prompts::Accessory;

/// Draws clothing: `colour` over the subject's own pixels in the rows [from, to] of its box.
fn clothe(
    canvas: &mut Canvas,
    sprite: &RgbaImage,
    bx: SubjectBox,
    from: f32,
    to: f32,
    colour: Rgb,
) {
    let (y0, y1) = (bx.y0 + bx.h * from, bx.y0 + bx.h * to);
    canvas.for_each_in(bx.x0, y0, bx.x0 + bx.w, y1, |x, y, p| {
        let a = coverage(sprite, bx, x, y);
        if a > 0.5 {
            *p = mix(*p, colour, 0.92);
        }
    });
}

/// A pointed hat: a triangle from the brim line at `brim`, 0.3 of the box width either side of
/// `cx`, up to `tip`.
fn cone(canvas: &mut Canvas, cx: f32, w: f32, brim: f32, tip: (f32, f32), colour: Rgb) {
    canvas.polygon(
        &[(cx - 0.3 * w, brim), (cx + 0.3 * w, brim), tip],
        colour,
        1.0,
    );
}

/// Draws `accessory` on the subject in `bx`.
pub(super) fn draw_accessory(
    canvas: &mut Canvas,
    sprite: &RgbaImage,
    bx: SubjectBox,
    accessory: Accessory,
) {
    let (visible_top, _) = visible_rows(sprite);
    let top = bx.y0 + bx.h * visible_top;
    let (cx, w, h) = (bx.x0 + bx.w / 2.0, bx.w, bx.h);
    match accessory {
        Accessory::RedHat => {
            canvas.ellipse(
                cx,
                top + 0.02 * h,
                0.42 * w,
                0.06 * h,
                rgb(170, 20, 25),
                1.0,
            );
            canvas.ellipse(
                cx,
                top - 0.05 * h,
                0.26 * w,
                0.13 * h,
                rgb(215, 30, 35),
                1.0,
            );
        }
        Accessory::SantaHat => {
            let red = rgb(210, 25, 30);
            cone(
                canvas,
                cx,
                w,
                top + 0.04 * h,
                (cx + 0.38 * w, top - 0.3 * h),
                red,
            );
            canvas.rect(
                cx - 0.34 * w,
                top - 0.02 * h,
                cx + 0.34 * w,
                top + 0.08 * h,
                rgb(250, 250, 250),
                1.0,
            );
            canvas.ellipse(
                cx + 0.38 * w,
                top - 0.3 * h,
                0.07 * w,
                0.07 * h,
                rgb(250, 250, 250),
                1.0,
            );
        }
        Accessory::RainbowScarf => {
            let bands = [
                rgb(230, 40, 40),
                rgb(245, 140, 30),
                rgb(245, 220, 40),
                rgb(60, 180, 70),
                rgb(50, 110, 220),
                rgb(140, 60, 190),
            ];
            let (y0, band) = (bx.y0 + 0.6 * h, 0.035 * h);
            for (i, c) in bands.iter().enumerate() {
                let y = y0 + i as f32 * band;
                canvas.rect(cx - 0.36 * w, y, cx + 0.36 * w, y + band, *c, 1.0);
                canvas.rect(
                    cx + 0.12 * w,
                    y + 0.2 * h,
                    cx + 0.22 * w,
                    y + 0.2 * h + band,
                    *c,
                    1.0,
                );
            }
            canvas.rect(
                cx + 0.12 * w,
                y0,
                cx + 0.22 * w,
                y0 + 0.2 * h,
                rgb(230, 40, 40),
                1.0,
            );
        }
        Accessory::TopHatAndMonocle => {
            let black = rgb(20, 20, 24);
            canvas.rect(
                cx - 0.2 * w,
                top - 0.32 * h,
                cx + 0.2 * w,
                top + 0.02 * h,
                black,
                1.0,
            );
            canvas.rect(
                cx - 0.2 * w,
                top - 0.08 * h,
                cx + 0.2 * w,
                top - 0.03 * h,
                rgb(150, 20, 30),
                1.0,
            );
            canvas.ellipse(cx, top + 0.03 * h, 0.36 * w, 0.05 * h, black, 1.0);
            let (mx, my) = (cx + 0.16 * w, bx.y0 + 0.42 * h);
            canvas.ring(mx, my, 0.1 * w, 0.025 * w, rgb(200, 170, 60));
            canvas.line(
                (mx + 0.1 * w, my),
                (mx + 0.14 * w, my + 0.3 * h),
                0.012 * w,
                rgb(200, 170, 60),
            );
        }
        Accessory::ChefOutfit => {
            let white = rgb(250, 250, 250);
            canvas.rect(
                cx - 0.22 * w,
                top - 0.14 * h,
                cx + 0.22 * w,
                top + 0.04 * h,
                white,
                1.0,
            );
            for dx in [-0.17, 0.0, 0.17] {
                canvas.ellipse(cx + dx * w, top - 0.2 * h, 0.14 * w, 0.11 * h, white, 1.0);
            }
            clothe(canvas, sprite, bx, 0.66, 1.0, white);
            canvas.ellipse(
                cx,
                bx.y0 + 0.74 * h,
                0.03 * w,
                0.03 * h,
                rgb(40, 40, 40),
                1.0,
            );
        }
        Accessory::FirefighterOutfit => {
            let yellow = rgb(240, 190, 20);
            canvas.ellipse(cx, top - 0.03 * h, 0.3 * w, 0.15 * h, yellow, 1.0);
            canvas.ellipse(
                cx,
                top + 0.05 * h,
                0.42 * w,
                0.05 * h,
                shade(yellow, 0.85),
                1.0,
            );
            canvas.rect(
                cx - 0.05 * w,
                top - 0.15 * h,
                cx + 0.05 * w,
                top - 0.02 * h,
                rgb(200, 40, 30),
                1.0,
            );
            clothe(canvas, sprite, bx, 0.64, 1.0, rgb(150, 120, 70));
            canvas.rect(
                bx.x0,
                bx.y0 + 0.8 * h,
                bx.x0 + w,
                bx.y0 + 0.84 * h,
                rgb(230, 230, 120),
                0.9,
            );
        }
        Accessory::PoliceOutfit => {
            let navy = rgb(25, 35, 80);
            canvas.rect(
                cx - 0.26 * w,
                top - 0.13 * h,
                cx + 0.26 * w,
                top + 0.02 * h,
                navy,
                1.0,
            );
            canvas.ellipse(cx, top + 0.03 * h, 0.3 * w, 0.04 * h, rgb(15, 15, 20), 1.0);
            canvas.ellipse(
                cx,
                top - 0.06 * h,
                0.05 * w,
                0.05 * h,
                rgb(230, 190, 60),
                1.0,
            );
            clothe(canvas, sprite, bx, 0.64, 1.0, navy);
            canvas.ellipse(
                cx - 0.12 * w,
                bx.y0 + 0.74 * h,
                0.04 * w,
                0.04 * h,
                rgb(230, 190, 60),
                1.0,
            );
        }
        Accessory::PinkGlasses => {
            let pink = rgb(245, 100, 180);
            let y = bx.y0 + 0.4 * h;
            canvas.ring(cx - 0.15 * w, y, 0.1 * w, 0.04 * w, pink);
            canvas.ring(cx + 0.15 * w, y, 0.1 * w, 0.04 * w, pink);
            canvas.line((cx - 0.05 * w, y), (cx + 0.05 * w, y), 0.03 * w, pink);
        }
        Accessory::YellowShirt => {
            clothe(canvas, sprite, bx, 0.6, 1.0, rgb(250, 215, 40));
            canvas.polygon(
                &[
                    (cx - 0.08 * w, bx.y0 + 0.6 * h),
                    (cx + 0.08 * w, bx.y0 + 0.6 * h),
                    (cx, bx.y0 + 0.68 * h),
                ],
                rgb(250, 250, 250),
                1.0,
            );
        }
        Accessory::PurpleWizardOutfit => {
            let purple = rgb(110, 40, 160);
            cone(
                canvas,
                cx,
                w,
                top + 0.05 * h,
                (cx + 0.05 * w, top - 0.42 * h),
                purple,
            );
            canvas.ellipse(
                cx,
                top + 0.05 * h,
                0.4 * w,
                0.045 * h,
                shade(purple, 0.8),
                1.0,
            );
            canvas.ellipse(
                cx - 0.05 * w,
                top - 0.12 * h,
                0.035 * w,
                0.035 * h,
                rgb(250, 225, 60),
                1.0,
            );
            canvas.ellipse(
                cx + 0.08 * w,
                top - 0.24 * h,
                0.025 * w,
                0.025 * h,
                rgb(250, 225, 60),
                1.0,
            );
            clothe(canvas, sprite, bx, 0.62, 1.0, purple);
            canvas.ellipse(
                cx + 0.1 * w,
                bx.y0 + 0.8 * h,
                0.03 * w,
                0.03 * h,
                rgb(250, 225, 60),
                1.0,
            );
        }
    }
}
