//! Scenes indoors: fabric, floors, a mirror, a rug and a studio backdrop.

use super::{Drawn, Placement, jitter, textured_ground};
use crate::canvas::{Canvas, rgb, shade};
use crate::rng::SplitMix64;

/// Folded pink fabric filling the frame.
pub(super) fn pink_fabric(canvas: &mut Canvas, rng: &mut SplitMix64) -> Drawn {
    let base = jitter(rng, rgb(240, 160, 190), 0.06);
    let phase = rng.range(0.0, std::f32::consts::TAU);
    let freq = rng.range(9.0, 14.0);
    canvas.for_each_in(0.0, 0.0, 1.0, 1.0, |x, y, p| {
        let fold = ((x * 0.6 + y) * freq + phase).sin() * 0.5 + 0.5;
        *p = shade(base, 0.8 + 0.28 * fold);
    });
    (Placement::ground(0.85), None)
}

/// A wall and a floor of wooden planks.
pub(super) fn wooden_floor(canvas: &mut Canvas, rng: &mut SplitMix64, noise_seed: u64) -> Drawn {
    canvas.vertical_gradient(0.0, 0.45, rgb(235, 225, 205), rgb(220, 210, 190));
    canvas.rect(0.0, 0.43, 1.0, 0.46, rgb(250, 250, 245), 1.0);
    let planks = 7;
    for i in 0..planks {
        let y0 = 0.46 + i as f32 * 0.54 / planks as f32;
        let y1 = y0 + 0.54 / planks as f32;
        let wood = jitter(rng, rgb(165, 110, 65), 0.12);
        canvas.noise(
            0.0,
            y0,
            1.0,
            y1,
            shade(wood, 0.85),
            wood,
            (3.0, 40.0),
            noise_seed ^ i as u64,
        );
        canvas.rect(0.0, y1 - 0.006, 1.0, y1, rgb(90, 60, 35), 1.0);
    }
    (Placement::ground(0.9), None)
}

/// A mirror behind a pale floor: the subject is seen again, reflected below its ground line.
pub(super) fn mirror(canvas: &mut Canvas, rng: &mut SplitMix64) -> Drawn {
    canvas.vertical_gradient(0.0, 0.55, rgb(200, 195, 210), rgb(170, 165, 180));
    canvas.vertical_gradient(0.55, 1.0, rgb(215, 222, 230), rgb(170, 180, 192));
    canvas.rect(0.0, 0.54, 1.0, 0.56, rgb(120, 120, 130), 1.0);
    for _ in 0..3 {
        let x = rng.range(0.0, 0.9);
        canvas.line((x, 0.98), (x + 0.12, 0.6), 0.01, rgb(240, 245, 250));
    }
    let placement = Placement {
        ground: 0.74,
        x_range: (0.38, 0.62),
        size_range: (0.36, 0.48),
        liquid: None,
        reflection: true,
        shadow: false,
    };
    (placement, None)
}

/// A white rug on a wooden floor.
pub(super) fn white_rug(canvas: &mut Canvas, noise_seed: u64) -> Drawn {
    canvas.vertical_gradient(0.0, 0.5, rgb(210, 205, 195), rgb(190, 185, 175));
    textured_ground(
        canvas,
        0.5,
        rgb(150, 110, 75),
        rgb(175, 130, 90),
        (3.0, 30.0),
        noise_seed,
    );
    canvas.ellipse(0.5, 0.82, 0.48, 0.17, rgb(235, 235, 232), 1.0);
    canvas.for_each_in(0.02, 0.65, 0.98, 0.99, |x, y, p| {
        let (dx, dy) = ((x - 0.5) / 0.48, (y - 0.82) / 0.17);
        if dx * dx + dy * dy <= 1.0 {
            let n = crate::rng::value_noise(x * 60.0, y * 60.0, noise_seed);
            *p = shade(rgb(245, 245, 242), 0.9 + 0.1 * n);
        }
    });
    let mut placement = Placement::ground(0.88);
    placement.x_range = (0.4, 0.6);
    (placement, None)
}

/// A plain pastel studio backdrop.
pub(super) fn studio(canvas: &mut Canvas, rng: &mut SplitMix64) -> Drawn {
    let pastels = [
        rgb(230, 225, 240),
        rgb(220, 235, 230),
        rgb(240, 230, 220),
        rgb(225, 230, 240),
    ];
    let c = *rng.pick(&pastels);
    canvas.vertical_gradient(0.0, 1.0, shade(c, 1.05), shade(c, 0.85));
    let mut placement = Placement::ground(0.88);
    placement.size_range = (0.5, 0.62);
    placement.x_range = (0.45, 0.55);
    (placement, None)
}
