//! The EmojiWorld renderer: composes a subject's artwork onto a DreamBench context at any
//! resolution, with a seeded pose (size, position, mirror), accessories drawn on live subjects and
//! property changes (colour, shine, wetness, cube shape). The same call renders the *true image*
//! of any (subject, prompt) pair, which evaluation uses as its real-image reference.

use crate::canvas::{Canvas, Rgb, mix, rgb, shade};
use crate::image::RgbaImage;
use crate::prompts::{Accessory, Prompt, Property, Scene};
use crate::rng::SplitMix64;
use crate::scenes;

/// Where the subject landed in the image (normalised), for accessories and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubjectBox {
    /// Left edge.
    pub x0: f32,
    /// Top edge.
    pub y0: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
    /// Mirrored horizontally.
    pub flipped: bool,
}

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
fn composite(
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
fn coverage(sprite: &RgbaImage, bx: SubjectBox, x: f32, y: f32) -> f32 {
    let mut u = (x - bx.x0) / bx.w * sprite.width as f32;
    let v = (y - bx.y0) / bx.h * sprite.height as f32;
    if bx.flipped {
        u = sprite.width as f32 - u;
    }
    sample(sprite, u, v)[3]
}

/// The sprite's mean colour, weighted by alpha.
fn mean_colour(sprite: &RgbaImage) -> Rgb {
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
fn visible_rows(sprite: &RgbaImage) -> (f32, f32) {
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

fn draw_accessory(canvas: &mut Canvas, sprite: &RgbaImage, bx: SubjectBox, accessory: Accessory) {
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
            canvas.polygon(
                &[
                    (cx - 0.3 * w, top + 0.04 * h),
                    (cx + 0.3 * w, top + 0.04 * h),
                    (cx + 0.38 * w, top - 0.3 * h),
                ],
                red,
                1.0,
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
            canvas.polygon(
                &[
                    (cx - 0.3 * w, top + 0.05 * h),
                    (cx + 0.3 * w, top + 0.05 * h),
                    (cx + 0.05 * w, top - 0.42 * h),
                ],
                purple,
                1.0,
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

/// Shine: a soft highlight over the subject's pixels and a star-shaped glint.
fn draw_shine(canvas: &mut Canvas, sprite: &RgbaImage, bx: SubjectBox) {
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
fn draw_wet(canvas: &mut Canvas, sprite: &RgbaImage, bx: SubjectBox, rng: &mut SplitMix64) {
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
fn draw_cube(canvas: &mut Canvas, sprite: &RgbaImage, bx: SubjectBox) -> SubjectBox {
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

/// Renders `sprite` for `prompt` at `size`×`size` pixels. Deterministic: the same inputs give the
/// same bytes.
pub fn render(sprite: &RgbaImage, prompt: &Prompt, seed: u64, size: u32) -> RgbaImage {
    render_with_box(
        sprite,
        prompt.scene,
        prompt.accessory,
        prompt.property,
        seed,
        size,
    )
    .0
}

/// Renders a subject in a scene with an optional accessory and property; also returns where the
/// subject landed.
pub fn render_with_box(
    sprite: &RgbaImage,
    scene: Scene,
    accessory: Option<Accessory>,
    property: Option<Property>,
    seed: u64,
    size: u32,
) -> (RgbaImage, SubjectBox) {
    let mut canvas = Canvas::new(size, size, rgb(0, 0, 0));
    let (placement, foreground) = scenes::draw(scene, &mut canvas, seed);
    let mut pose = SplitMix64::derive(seed, "pose");
    let mut extent = pose.range(placement.size_range.0, placement.size_range.1);
    if accessory.is_some() {
        // Leave room for a hat.
        extent *= 0.85;
    }
    let cx = pose.range(placement.x_range.0, placement.x_range.1);
    let bottom = placement.ground + pose.range(-0.02, 0.02);
    let (_, visible_bottom) = visible_rows(sprite);
    // Stand the visible bottom of the artwork on the ground line.
    let y0 = bottom - extent * visible_bottom;
    let bx = SubjectBox {
        x0: cx - extent / 2.0,
        y0,
        w: extent,
        h: extent,
        flipped: pose.chance(0.5),
    };
    if placement.shadow {
        canvas.ellipse(cx, bottom, extent * 0.42, extent * 0.06, rgb(0, 0, 0), 0.25);
    }
    if placement.reflection {
        let mirrored = SubjectBox {
            y0: bottom + (bottom - (y0 + extent)),
            ..bx
        };
        composite(&mut canvas, sprite, mirrored, property, 0.4, true);
    }
    let mut drawn = bx;
    match property {
        Some(Property::CubeShaped) => drawn = draw_cube(&mut canvas, sprite, bx),
        _ => composite(&mut canvas, sprite, bx, property, 1.0, false),
    }
    match property {
        Some(Property::Shiny) => draw_shine(&mut canvas, sprite, bx),
        Some(Property::Wet) => draw_wet(&mut canvas, sprite, bx, &mut pose),
        _ => {}
    }
    if let Some(accessory) = accessory {
        draw_accessory(&mut canvas, sprite, bx, accessory);
    }
    if let Some(liquid) = placement.liquid {
        // Submerge the lower part of the subject, with a ripple line at the surface.
        let surface = bottom - extent * 0.18;
        canvas.rect(
            bx.x0 - 0.05,
            surface,
            bx.x0 + bx.w + 0.05,
            bottom + 0.02,
            liquid,
            0.7,
        );
        canvas.ellipse(
            cx,
            surface,
            extent * 0.62,
            extent * 0.05,
            shade(liquid, 1.15),
            0.8,
        );
    }
    if let Some(foreground) = foreground {
        foreground(&mut canvas);
    }
    (canvas.to_image(), drawn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompts::all_prompts;

    /// A synthetic 64×64 sprite: an opaque orange disc, so renderer tests need no assets.
    pub(crate) fn disc_sprite() -> RgbaImage {
        let mut sprite = RgbaImage::new(64, 64);
        for y in 0..64 {
            for x in 0..64 {
                let d = ((x as f32 - 31.5).powi(2) + (y as f32 - 31.5).powi(2)).sqrt();
                if d < 26.0 {
                    sprite.put(x, y, [240, 140, 30, 255]);
                }
            }
        }
        sprite
    }

    #[test]
    fn rendering_is_deterministic_and_seeded() {
        let sprite = disc_sprite();
        for prompt in all_prompts() {
            let a = render(&sprite, &prompt, 7, 32);
            let b = render(&sprite, &prompt, 7, 32);
            assert_eq!(a, b, "{} is not deterministic", prompt.id);
            assert_eq!((a.width, a.height), (32, 32));
        }
        let prompt = crate::prompts::prompt("beach").unwrap();
        assert_ne!(
            render(&sprite, &prompt, 7, 64),
            render(&sprite, &prompt, 8, 64)
        );
    }

    #[test]
    fn the_subject_is_visible_in_every_context() {
        // The disc's orange must cover a good share of the pixels inside its box.
        let sprite = disc_sprite();
        for prompt in all_prompts() {
            if prompt.property.is_some() {
                continue; // recoloured or reshaped on purpose
            }
            let (img, bx) = render_with_box(&sprite, prompt.scene, prompt.accessory, None, 3, 64);
            let (mut orange, mut total) = (0, 0);
            for y in 0..64u32 {
                for x in 0..64u32 {
                    let (nx, ny) = ((x as f32 + 0.5) / 64.0, (y as f32 + 0.5) / 64.0);
                    let (dx, dy) = ((nx - bx.x0) / bx.w - 0.5, (ny - bx.y0) / bx.h - 0.5);
                    if dx * dx + dy * dy < 0.12 {
                        total += 1;
                        let p = img.get(x, y);
                        if p[0] > 200 && (120..170).contains(&p[1]) && p[2] < 70 {
                            orange += 1;
                        }
                    }
                }
            }
            assert!(
                orange * 3 > total,
                "{}: {orange}/{total} subject pixels",
                prompt.id
            );
        }
    }
}
