//! Scenes in town: streets, buildings and landmarks.

use super::{Drawn, Placement, jitter, sky, textured_ground};
use crate::canvas::{Canvas, rgb};
use crate::rng::SplitMix64;

/// A cobbled street before a wall.
pub(super) fn cobblestone_street(
    canvas: &mut Canvas,
    rng: &mut SplitMix64,
    noise_seed: u64,
) -> Drawn {
    canvas.noise(
        0.0,
        0.0,
        1.0,
        0.38,
        rgb(190, 170, 140),
        rgb(215, 195, 165),
        (6.0, 6.0),
        noise_seed,
    );
    canvas.rect(0.0, 0.36, 1.0, 0.4, rgb(120, 110, 100), 1.0);
    canvas.rect(0.0, 0.4, 1.0, 1.0, rgb(70, 65, 60), 1.0);
    let rows = 8;
    for row in 0..rows {
        let y0 = 0.4 + row as f32 * 0.6 / rows as f32;
        let h = 0.6 / rows as f32;
        let cols = 6 + row;
        let offset = if row % 2 == 0 { 0.0 } else { 0.5 / cols as f32 };
        for col in 0..=cols {
            let x0 = col as f32 / cols as f32 - offset;
            let stone = jitter(rng, rgb(140, 135, 128), 0.18);
            canvas.ellipse(
                x0 + 0.5 / cols as f32,
                y0 + h / 2.0,
                0.42 / cols as f32,
                h * 0.42,
                stone,
                1.0,
            );
        }
    }
    (Placement::ground(0.92), None)
}

/// Buildings with lit windows, a pavement in front.
pub(super) fn city(canvas: &mut Canvas, rng: &mut SplitMix64) -> Drawn {
    sky(canvas, rng, 0.8);
    let mut x = -0.02;
    while x < 1.0 {
        let w = rng.range(0.08, 0.16);
        let top = rng.range(0.15, 0.55);
        let c = jitter(rng, rgb(95, 105, 125), 0.2);
        canvas.rect(x, top, x + w, 0.82, c, 1.0);
        let mut wy = top + 0.03;
        while wy < 0.78 {
            let mut wx = x + 0.015;
            while wx < x + w - 0.02 {
                let lit = if rng.chance(0.4) {
                    rgb(250, 225, 140)
                } else {
                    rgb(60, 70, 90)
                };
                canvas.rect(wx, wy, wx + 0.018, wy + 0.025, lit, 1.0);
                wx += 0.035;
            }
            wy += 0.05;
        }
        x += w + rng.range(0.0, 0.02);
    }
    canvas.rect(0.0, 0.82, 1.0, 1.0, rgb(120, 120, 125), 1.0);
    (Placement::ground(0.95), None)
}

/// A blue house to one side on a lawn; the subject stands to the other.
pub(super) fn blue_house(canvas: &mut Canvas, rng: &mut SplitMix64, noise_seed: u64) -> Drawn {
    sky(canvas, rng, 0.72);
    textured_ground(
        canvas,
        0.7,
        rgb(70, 150, 60),
        rgb(110, 180, 80),
        (10.0, 10.0),
        noise_seed,
    );
    let left = rng.chance(0.5);
    let (x0, x1) = if left { (0.03, 0.4) } else { (0.6, 0.97) };
    let blue = jitter(rng, rgb(60, 110, 200), 0.1);
    canvas.rect(x0, 0.4, x1, 0.75, blue, 1.0);
    canvas.polygon(
        &[
            (x0 - 0.03, 0.41),
            ((x0 + x1) / 2.0, 0.22),
            (x1 + 0.03, 0.41),
        ],
        rgb(110, 50, 45),
        1.0,
    );
    let mid = (x0 + x1) / 2.0;
    canvas.rect(mid - 0.035, 0.6, mid + 0.035, 0.75, rgb(250, 250, 250), 1.0);
    canvas.rect(x0 + 0.04, 0.48, x0 + 0.1, 0.55, rgb(235, 240, 250), 1.0);
    canvas.rect(x1 - 0.1, 0.48, x1 - 0.04, 0.55, rgb(235, 240, 250), 1.0);
    let mut placement = Placement::ground(0.93);
    placement.x_range = if left { (0.62, 0.72) } else { (0.28, 0.38) };
    (placement, None)
}

/// The Eiffel Tower to one side at dusk; the subject stands to the other.
pub(super) fn eiffel_tower(canvas: &mut Canvas, rng: &mut SplitMix64, noise_seed: u64) -> Drawn {
    canvas.vertical_gradient(
        0.0,
        0.85,
        jitter(rng, rgb(250, 200, 150), 0.05),
        rgb(250, 230, 200),
    );
    let cx = if rng.chance(0.5) { 0.25 } else { 0.75 };
    let iron = rgb(90, 70, 55);
    canvas.polygon(
        &[
            (cx - 0.16, 0.86),
            (cx - 0.015, 0.05),
            (cx + 0.015, 0.05),
            (cx + 0.16, 0.86),
        ],
        iron,
        1.0,
    );
    canvas.ellipse(cx, 0.86, 0.08, 0.12, rgb(250, 228, 195), 1.0);
    canvas.rect(cx - 0.1, 0.55, cx + 0.1, 0.575, iron, 1.0);
    canvas.rect(cx - 0.06, 0.32, cx + 0.06, 0.34, iron, 1.0);
    canvas.rect(cx - 0.004, 0.0, cx + 0.004, 0.06, iron, 1.0);
    textured_ground(
        canvas,
        0.85,
        rgb(200, 185, 150),
        rgb(225, 210, 175),
        (16.0, 16.0),
        noise_seed,
    );
    let mut placement = Placement::ground(0.95);
    placement.x_range = if cx < 0.5 { (0.6, 0.72) } else { (0.28, 0.4) };
    (placement, None)
}

/// People walking behind, a paved sidewalk.
pub(super) fn crowded_sidewalk(canvas: &mut Canvas, rng: &mut SplitMix64) -> Drawn {
    canvas.vertical_gradient(0.0, 0.6, rgb(180, 170, 160), rgb(150, 140, 135));
    for _ in 0..14 {
        let x = rng.unit();
        let y = rng.range(0.32, 0.5);
        let coats = [
            rgb(60, 60, 90),
            rgb(150, 50, 50),
            rgb(70, 110, 70),
            rgb(40, 40, 40),
            rgb(200, 160, 70),
        ];
        let coat = *rng.pick(&coats);
        let coat = jitter(rng, coat, 0.2);
        canvas.rect(x - 0.035, y, x + 0.035, y + 0.3, coat, 1.0);
        canvas.ellipse(x, y - 0.035, 0.028, 0.035, rgb(225, 185, 150), 1.0);
    }
    canvas.rect(0.0, 0.7, 1.0, 1.0, rgb(165, 165, 165), 1.0);
    for i in 0..8 {
        let x = i as f32 / 8.0;
        canvas.line((x, 0.7), (x - 0.05, 1.0), 0.006, rgb(130, 130, 130));
    }
    canvas.line((0.0, 0.82), (1.0, 0.82), 0.006, rgb(130, 130, 130));
    (Placement::ground(0.95), None)
}
