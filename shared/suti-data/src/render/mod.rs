//! The EmojiWorld renderer: composes a subject's artwork onto a DreamBench context at any
//! resolution, with a seeded pose (size, position, mirror), accessories drawn on live subjects and
//! property changes (colour, shine, wetness, cube shape). The same call renders the *true image*
//! of any (subject, prompt) pair, which evaluation uses as its real-image reference.

use crate::canvas::{Canvas, rgb, shade};
use crate::image::RgbaImage;
use crate::prompts::{Accessory, Prompt, Property, Scene};
use crate::rng::SplitMix64;
use crate::scenes;

mod accessories;
mod properties;
mod sprite;

use accessories::draw_accessory;
use properties::{draw_cube, draw_shine, draw_wet};
use sprite::{composite, visible_rows};

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
