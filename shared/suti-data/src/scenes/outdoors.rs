//! Scenes outdoors in nature: forest, snow, beach, mountains, fields and trees.

use super::{Drawn, Foreground, Placement, jitter, sky, textured_ground, tree};
use crate::canvas::{Canvas, mix, rgb, shade};
use crate::rng::SplitMix64;

/// Dense leaves over a forest floor, ferns in front.
pub(super) fn jungle(canvas: &mut Canvas, rng: &mut SplitMix64, noise_seed: u64) -> Drawn {
    canvas.vertical_gradient(0.0, 1.0, rgb(20, 70, 35), rgb(45, 110, 45));
    let greens = [
        rgb(30, 120, 40),
        rgb(60, 150, 50),
        rgb(20, 95, 45),
        rgb(90, 170, 60),
    ];
    for _ in 0..28 {
        let leaf = *rng.pick(&greens);
        let c = mix(jitter(rng, leaf, 0.15), *rng.pick(&greens), 0.5);
        canvas.ellipse(
            rng.unit(),
            rng.range(0.0, 0.8),
            rng.range(0.05, 0.14),
            rng.range(0.02, 0.06),
            c,
            1.0,
        );
    }
    for _ in 0..4 {
        let x = rng.unit();
        canvas.line(
            (x, 0.0),
            (x + rng.range(-0.08, 0.08), rng.range(0.3, 0.6)),
            0.012,
            rgb(50, 90, 30),
        );
    }
    textured_ground(
        canvas,
        0.8,
        rgb(60, 45, 25),
        rgb(95, 75, 40),
        (12.0, 12.0),
        noise_seed,
    );
    let fern = rgb(40, 140, 50);
    let foreground: Foreground = Box::new(move |c: &mut Canvas| {
        c.ellipse(0.04, 0.95, 0.12, 0.05, fern, 1.0);
        c.ellipse(0.97, 0.9, 0.1, 0.05, fern, 1.0);
    });
    (Placement::ground(0.93), Some(foreground))
}

/// Snowdrifts under a grey sky, flakes falling in front.
pub(super) fn snow(canvas: &mut Canvas, rng: &mut SplitMix64, noise_seed: u64) -> Drawn {
    canvas.vertical_gradient(0.0, 0.55, rgb(170, 190, 210), rgb(225, 232, 240));
    canvas.ellipse(0.25, 0.6, 0.45, 0.12, rgb(235, 240, 248), 1.0);
    canvas.ellipse(0.8, 0.62, 0.4, 0.1, rgb(228, 235, 245), 1.0);
    textured_ground(
        canvas,
        0.58,
        rgb(225, 232, 245),
        rgb(250, 252, 255),
        (8.0, 14.0),
        noise_seed,
    );
    let flakes: Vec<(f32, f32, f32)> = (0..40)
        .map(|_| (rng.unit(), rng.unit(), rng.range(0.006, 0.014)))
        .collect();
    let foreground: Foreground = Box::new(move |c: &mut Canvas| {
        for &(x, y, r) in &flakes {
            c.ellipse(x, y, r, r, rgb(255, 255, 255), 0.9);
        }
    });
    (Placement::ground(0.9), Some(foreground))
}

/// Sky, sun, sea with a line of surf, and sand.
pub(super) fn beach(canvas: &mut Canvas, rng: &mut SplitMix64, noise_seed: u64) -> Drawn {
    sky(canvas, rng, 0.45);
    canvas.ellipse(
        rng.range(0.1, 0.9),
        0.12,
        0.06,
        0.06,
        rgb(255, 235, 140),
        1.0,
    );
    canvas.vertical_gradient(0.45, 0.6, rgb(40, 120, 190), rgb(70, 160, 200));
    for i in 0..4 {
        let y = 0.48 + i as f32 * 0.03;
        canvas.line((0.0, y), (1.0, y + 0.005), 0.004, rgb(150, 200, 230));
    }
    canvas.rect(0.0, 0.6, 1.0, 0.625, rgb(240, 245, 240), 0.8);
    textured_ground(
        canvas,
        0.62,
        rgb(225, 195, 140),
        rgb(245, 220, 170),
        (20.0, 20.0),
        noise_seed,
    );
    (Placement::ground(0.9), None)
}

/// Snow-capped peaks over a meadow.
pub(super) fn mountain(canvas: &mut Canvas, rng: &mut SplitMix64, noise_seed: u64) -> Drawn {
    sky(canvas, rng, 0.65);
    for _ in 0..3 {
        let peak_x = rng.range(0.1, 0.9);
        let peak_y = rng.range(0.12, 0.35);
        let half = rng.range(0.3, 0.5);
        let rock = jitter(rng, rgb(110, 120, 140), 0.12);
        canvas.polygon(
            &[
                (peak_x - half, 0.68),
                (peak_x, peak_y),
                (peak_x + half, 0.68),
            ],
            rock,
            1.0,
        );
        let cap = (0.68 - peak_y) * 0.3;
        let k = cap / (0.68 - peak_y) * half;
        canvas.polygon(
            &[
                (peak_x - k, peak_y + cap),
                (peak_x, peak_y),
                (peak_x + k, peak_y + cap),
            ],
            rgb(245, 248, 252),
            1.0,
        );
    }
    textured_ground(
        canvas,
        0.66,
        rgb(80, 150, 60),
        rgb(120, 185, 80),
        (10.0, 10.0),
        noise_seed,
    );
    (Placement::ground(0.92), None)
}

/// A purple rug on a forest floor among trees.
pub(super) fn purple_rug_in_forest(
    canvas: &mut Canvas,
    rng: &mut SplitMix64,
    noise_seed: u64,
) -> Drawn {
    canvas.vertical_gradient(0.0, 0.75, rgb(60, 110, 70), rgb(90, 140, 80));
    for _ in 0..7 {
        let x = rng.unit();
        let height = rng.range(0.45, 0.7);
        tree(
            canvas,
            rng,
            x,
            0.75,
            height,
            &[rgb(40, 100, 45), rgb(55, 125, 55)],
        );
    }
    textured_ground(
        canvas,
        0.72,
        rgb(70, 95, 45),
        rgb(100, 125, 60),
        (14.0, 14.0),
        noise_seed,
    );
    let rug = jitter(rng, rgb(130, 70, 170), 0.08);
    canvas.ellipse(0.5, 0.88, 0.42, 0.1, rug, 1.0);
    canvas.ellipse(0.5, 0.88, 0.36, 0.075, shade(rug, 1.2), 1.0);
    let mut placement = Placement::ground(0.9);
    placement.x_range = (0.4, 0.6);
    (placement, None)
}

/// A wheat field under the sky.
pub(super) fn wheat_field(canvas: &mut Canvas, rng: &mut SplitMix64, noise_seed: u64) -> Drawn {
    sky(canvas, rng, 0.45);
    textured_ground(
        canvas,
        0.43,
        rgb(200, 160, 60),
        rgb(240, 205, 100),
        (60.0, 4.0),
        noise_seed,
    );
    (Placement::ground(0.93), None)
}

/// One autumn tree, its leaves also on the grass.
pub(super) fn autumn_tree(canvas: &mut Canvas, rng: &mut SplitMix64, noise_seed: u64) -> Drawn {
    sky(canvas, rng, 0.7);
    textured_ground(
        canvas,
        0.68,
        rgb(120, 140, 60),
        rgb(150, 160, 80),
        (10.0, 10.0),
        noise_seed,
    );
    let autumn = [
        rgb(220, 100, 30),
        rgb(200, 60, 35),
        rgb(235, 170, 40),
        rgb(190, 120, 40),
    ];
    let x = if rng.chance(0.5) {
        rng.range(0.15, 0.3)
    } else {
        rng.range(0.7, 0.85)
    };
    canvas.rect(x - 0.03, 0.3, x + 0.03, 0.72, rgb(100, 65, 40), 1.0);
    for _ in 0..14 {
        let c = *rng.pick(&autumn);
        canvas.ellipse(
            x + rng.range(-0.22, 0.22),
            rng.range(0.08, 0.4),
            rng.range(0.06, 0.12),
            rng.range(0.05, 0.09),
            c,
            1.0,
        );
    }
    for _ in 0..25 {
        let c = *rng.pick(&autumn);
        canvas.ellipse(rng.unit(), rng.range(0.72, 1.0), 0.012, 0.007, c, 1.0);
    }
    (Placement::ground(0.92), None)
}

/// Grass with sunflowers behind and in front of the subject.
pub(super) fn grass_with_sunflowers(
    canvas: &mut Canvas,
    rng: &mut SplitMix64,
    noise_seed: u64,
) -> Drawn {
    sky(canvas, rng, 0.4);
    textured_ground(
        canvas,
        0.38,
        rgb(60, 140, 50),
        rgb(100, 180, 70),
        (14.0, 14.0),
        noise_seed,
    );
    let mut flowers: Vec<(f32, f32, f32)> = Vec::new();
    for _ in 0..7 {
        let x = if rng.chance(0.5) {
            rng.range(0.0, 0.28)
        } else {
            rng.range(0.72, 1.0)
        };
        flowers.push((x, rng.range(0.45, 0.95), rng.range(0.04, 0.07)));
    }
    let sunflower = |c: &mut Canvas, x: f32, y: f32, r: f32| {
        c.line((x, y), (x, (y + 0.3).min(1.0)), 0.012, rgb(50, 120, 40));
        c.ellipse(x, y, r, r, rgb(250, 200, 30), 1.0);
        c.ellipse(x, y, r * 0.45, r * 0.45, rgb(110, 70, 30), 1.0);
    };
    for &(x, y, r) in &flowers[..4] {
        sunflower(canvas, x, y, r);
    }
    let front: Vec<(f32, f32, f32)> = flowers[4..].to_vec();
    let foreground: Foreground = Box::new(move |c: &mut Canvas| {
        for &(x, y, r) in &front {
            sunflower(c, x, y, r);
        }
    });
    (Placement::ground(0.88), Some(foreground))
}

/// A dirt road running into the distance between fields.
pub(super) fn dirt_road(canvas: &mut Canvas, rng: &mut SplitMix64, noise_seed: u64) -> Drawn {
    sky(canvas, rng, 0.45);
    textured_ground(
        canvas,
        0.43,
        rgb(80, 150, 60),
        rgb(120, 180, 80),
        (12.0, 12.0),
        noise_seed,
    );
    let road = jitter(rng, rgb(150, 110, 70), 0.08);
    canvas.polygon(
        &[(0.46, 0.44), (0.54, 0.44), (0.95, 1.0), (0.05, 1.0)],
        road,
        1.0,
    );
    canvas.for_each_in(0.05, 0.44, 0.95, 1.0, |x, y, p| {
        let t = (y - 0.44) / 0.56;
        let half = 0.04 + 0.41 * t;
        if (x - 0.5).abs() < half {
            let n = crate::rng::fractal_noise(x * 30.0, y * 30.0, noise_seed);
            *p = shade(*p, 0.85 + 0.3 * n);
        }
    });
    (Placement::ground(0.93), None)
}

/// Open water, or an ocean of milk: the subject floats, its bottom submerged.
pub(super) fn water(canvas: &mut Canvas, rng: &mut SplitMix64, milk: bool) -> Drawn {
    let (deep, light) = if milk {
        (rgb(235, 230, 215), rgb(252, 250, 244))
    } else {
        (jitter(rng, rgb(30, 90, 160), 0.1), rgb(90, 160, 210))
    };
    sky(canvas, rng, 0.3);
    canvas.vertical_gradient(0.3, 1.0, light, deep);
    let wave = if milk {
        rgb(215, 208, 190)
    } else {
        rgb(160, 205, 235)
    };
    for i in 0..9 {
        let y = 0.33 + i as f32 * 0.075;
        let x = rng.range(-0.2, 0.3);
        canvas.line((x, y), (x + rng.range(0.3, 0.7), y), 0.006, wave);
    }
    let placement = Placement {
        ground: 0.8,
        x_range: (0.4, 0.6),
        size_range: (0.42, 0.58),
        liquid: Some(mix(deep, light, 0.5)),
        reflection: false,
        shadow: false,
    };
    (placement, None)
}
