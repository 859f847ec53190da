//! The procedural backgrounds of EmojiWorld: one drawing per DreamBench context, resolution
//! independent, varied by a seed (colours, layout), each with where a subject stands in it.

use crate::canvas::{Canvas, Rgb, mix, rgb, shade};
use crate::prompts::Scene;
use crate::rng::SplitMix64;

/// Where a subject goes in a scene.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Normalised y of the subject's bottom edge.
    pub ground: f32,
    /// Range of the subject's horizontal centre.
    pub x_range: (f32, f32),
    /// Range of the subject's size as a fraction of the image side.
    pub size_range: (f32, f32),
    /// Whether the subject floats in a liquid (its bottom is submerged).
    pub liquid: Option<Rgb>,
    /// Whether the subject is reflected below its ground line.
    pub reflection: bool,
    /// Whether to draw a soft contact shadow.
    pub shadow: bool,
}

impl Placement {
    fn ground(ground: f32) -> Self {
        Self {
            ground,
            x_range: (0.35, 0.65),
            size_range: (0.42, 0.6),
            liquid: None,
            reflection: false,
            shadow: true,
        }
    }
}

/// Things drawn in front of the subject (falling snow, foreground flowers).
pub type Foreground = Box<dyn Fn(&mut Canvas)>;

fn jitter(rng: &mut SplitMix64, c: Rgb, amount: f32) -> Rgb {
    shade(c, 1.0 + rng.range(-amount, amount))
}

fn sky(canvas: &mut Canvas, rng: &mut SplitMix64, horizon: f32) {
    let top = jitter(rng, rgb(110, 170, 235), 0.08);
    let bottom = jitter(rng, rgb(200, 225, 250), 0.05);
    canvas.vertical_gradient(0.0, horizon, top, bottom);
}

fn tree(canvas: &mut Canvas, rng: &mut SplitMix64, x: f32, base: f32, height: f32, leaves: &[Rgb]) {
    let trunk = jitter(rng, rgb(110, 75, 45), 0.1);
    canvas.rect(x - 0.02, base - height * 0.55, x + 0.02, base, trunk, 1.0);
    for _ in 0..6 {
        let c = *rng.pick(leaves);
        canvas.ellipse(
            x + rng.range(-0.09, 0.09),
            base - height * rng.range(0.55, 0.95),
            rng.range(0.06, 0.11),
            rng.range(0.05, 0.09),
            c,
            1.0,
        );
    }
}

/// Draws `scene` onto `canvas` and says where the subject goes; the returned closure draws what
/// stands in front of the subject.
pub fn draw(scene: Scene, canvas: &mut Canvas, seed: u64) -> (Placement, Option<Foreground>) {
    let mut rng = SplitMix64::derive(seed, "scene");
    let noise_seed = rng.next_u64();
    match scene {
        Scene::Jungle => {
            canvas.vertical_gradient(0.0, 1.0, rgb(20, 70, 35), rgb(45, 110, 45));
            let greens = [
                rgb(30, 120, 40),
                rgb(60, 150, 50),
                rgb(20, 95, 45),
                rgb(90, 170, 60),
            ];
            for _ in 0..28 {
                let leaf = *rng.pick(&greens);
                let c = mix(jitter(&mut rng, leaf, 0.15), *rng.pick(&greens), 0.5);
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
            canvas.noise(
                0.0,
                0.8,
                1.0,
                1.0,
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
        Scene::Snow => {
            canvas.vertical_gradient(0.0, 0.55, rgb(170, 190, 210), rgb(225, 232, 240));
            canvas.ellipse(0.25, 0.6, 0.45, 0.12, rgb(235, 240, 248), 1.0);
            canvas.ellipse(0.8, 0.62, 0.4, 0.1, rgb(228, 235, 245), 1.0);
            canvas.noise(
                0.0,
                0.58,
                1.0,
                1.0,
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
        Scene::Beach => {
            sky(canvas, &mut rng, 0.45);
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
            canvas.noise(
                0.0,
                0.62,
                1.0,
                1.0,
                rgb(225, 195, 140),
                rgb(245, 220, 170),
                (20.0, 20.0),
                noise_seed,
            );
            (Placement::ground(0.9), None)
        }
        Scene::CobblestoneStreet => {
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
                    let stone = jitter(&mut rng, rgb(140, 135, 128), 0.18);
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
        Scene::PinkFabric => {
            let base = jitter(&mut rng, rgb(240, 160, 190), 0.06);
            let phase = rng.range(0.0, std::f32::consts::TAU);
            let freq = rng.range(9.0, 14.0);
            canvas.for_each_in(0.0, 0.0, 1.0, 1.0, |x, y, p| {
                let fold = ((x * 0.6 + y) * freq + phase).sin() * 0.5 + 0.5;
                *p = shade(base, 0.8 + 0.28 * fold);
            });
            (Placement::ground(0.85), None)
        }
        Scene::WoodenFloor => {
            canvas.vertical_gradient(0.0, 0.45, rgb(235, 225, 205), rgb(220, 210, 190));
            canvas.rect(0.0, 0.43, 1.0, 0.46, rgb(250, 250, 245), 1.0);
            let planks = 7;
            for i in 0..planks {
                let y0 = 0.46 + i as f32 * 0.54 / planks as f32;
                let y1 = y0 + 0.54 / planks as f32;
                let wood = jitter(&mut rng, rgb(165, 110, 65), 0.12);
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
        Scene::City => {
            sky(canvas, &mut rng, 0.8);
            let mut x = -0.02;
            while x < 1.0 {
                let w = rng.range(0.08, 0.16);
                let top = rng.range(0.15, 0.55);
                let c = jitter(&mut rng, rgb(95, 105, 125), 0.2);
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
        Scene::Mountain => {
            sky(canvas, &mut rng, 0.65);
            for _ in 0..3 {
                let peak_x = rng.range(0.1, 0.9);
                let peak_y = rng.range(0.12, 0.35);
                let half = rng.range(0.3, 0.5);
                let rock = jitter(&mut rng, rgb(110, 120, 140), 0.12);
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
            canvas.noise(
                0.0,
                0.66,
                1.0,
                1.0,
                rgb(80, 150, 60),
                rgb(120, 185, 80),
                (10.0, 10.0),
                noise_seed,
            );
            (Placement::ground(0.92), None)
        }
        Scene::BlueHouse => {
            sky(canvas, &mut rng, 0.72);
            canvas.noise(
                0.0,
                0.7,
                1.0,
                1.0,
                rgb(70, 150, 60),
                rgb(110, 180, 80),
                (10.0, 10.0),
                noise_seed,
            );
            let left = rng.chance(0.5);
            let (x0, x1) = if left { (0.03, 0.4) } else { (0.6, 0.97) };
            let blue = jitter(&mut rng, rgb(60, 110, 200), 0.1);
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
        Scene::PurpleRugInForest => {
            canvas.vertical_gradient(0.0, 0.75, rgb(60, 110, 70), rgb(90, 140, 80));
            for _ in 0..7 {
                let x = rng.unit();
                let height = rng.range(0.45, 0.7);
                tree(
                    canvas,
                    &mut rng,
                    x,
                    0.75,
                    height,
                    &[rgb(40, 100, 45), rgb(55, 125, 55)],
                );
            }
            canvas.noise(
                0.0,
                0.72,
                1.0,
                1.0,
                rgb(70, 95, 45),
                rgb(100, 125, 60),
                (14.0, 14.0),
                noise_seed,
            );
            let rug = jitter(&mut rng, rgb(130, 70, 170), 0.08);
            canvas.ellipse(0.5, 0.88, 0.42, 0.1, rug, 1.0);
            canvas.ellipse(0.5, 0.88, 0.36, 0.075, shade(rug, 1.2), 1.0);
            let mut placement = Placement::ground(0.9);
            placement.x_range = (0.4, 0.6);
            (placement, None)
        }
        Scene::WheatField => {
            sky(canvas, &mut rng, 0.45);
            canvas.noise(
                0.0,
                0.43,
                1.0,
                1.0,
                rgb(200, 160, 60),
                rgb(240, 205, 100),
                (60.0, 4.0),
                noise_seed,
            );
            (Placement::ground(0.93), None)
        }
        Scene::AutumnTree => {
            sky(canvas, &mut rng, 0.7);
            canvas.noise(
                0.0,
                0.68,
                1.0,
                1.0,
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
        Scene::EiffelTower => {
            canvas.vertical_gradient(
                0.0,
                0.85,
                jitter(&mut rng, rgb(250, 200, 150), 0.05),
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
            canvas.noise(
                0.0,
                0.85,
                1.0,
                1.0,
                rgb(200, 185, 150),
                rgb(225, 210, 175),
                (16.0, 16.0),
                noise_seed,
            );
            let mut placement = Placement::ground(0.95);
            placement.x_range = if cx < 0.5 { (0.6, 0.72) } else { (0.28, 0.4) };
            (placement, None)
        }
        Scene::FloatingOnWater | Scene::OceanOfMilk => {
            let milk = scene == Scene::OceanOfMilk;
            let (deep, light) = if milk {
                (rgb(235, 230, 215), rgb(252, 250, 244))
            } else {
                (jitter(&mut rng, rgb(30, 90, 160), 0.1), rgb(90, 160, 210))
            };
            sky(canvas, &mut rng, 0.3);
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
        Scene::GrassWithSunflowers => {
            sky(canvas, &mut rng, 0.4);
            canvas.noise(
                0.0,
                0.38,
                1.0,
                1.0,
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
        Scene::Mirror => {
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
        Scene::CrowdedSidewalk => {
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
                let coat = jitter(&mut rng, coat, 0.2);
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
        Scene::DirtRoad => {
            sky(canvas, &mut rng, 0.45);
            canvas.noise(
                0.0,
                0.43,
                1.0,
                1.0,
                rgb(80, 150, 60),
                rgb(120, 180, 80),
                (12.0, 12.0),
                noise_seed,
            );
            let road = jitter(&mut rng, rgb(150, 110, 70), 0.08);
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
        Scene::WhiteRug => {
            canvas.vertical_gradient(0.0, 0.5, rgb(210, 205, 195), rgb(190, 185, 175));
            canvas.noise(
                0.0,
                0.5,
                1.0,
                1.0,
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
        Scene::Studio => {
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
    }
}
