//! The procedural backgrounds of EmojiWorld: one drawing per DreamBench context, resolution
//! independent, varied by a seed (colours, layout), each with where a subject stands in it.

use crate::canvas::{Canvas, Rgb, rgb, shade};
use crate::prompts::Scene;
use crate::rng::SplitMix64;

mod indoors;
mod outdoors;
mod town;

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
    /// Standing on the ground at `ground`, about the middle, with a shadow.
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

/// `c` brightened or darkened by up to `amount`.
fn jitter(rng: &mut SplitMix64, c: Rgb, amount: f32) -> Rgb {
    shade(c, 1.0 + rng.range(-amount, amount))
}

/// A blue sky gradient from the top edge down to `horizon`.
fn sky(canvas: &mut Canvas, rng: &mut SplitMix64, horizon: f32) {
    let top = jitter(rng, rgb(110, 170, 235), 0.08);
    let bottom = jitter(rng, rgb(200, 225, 250), 0.05);
    canvas.vertical_gradient(0.0, horizon, top, bottom);
}

/// A tree standing on `base`: a trunk and a crown of leaves in the colours `leaves`.
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

/// Textures the full width from `top` down to the bottom edge with noise between `a` and `b` at
/// frequency `freq`: the ground of most scenes.
fn textured_ground(canvas: &mut Canvas, top: f32, a: Rgb, b: Rgb, freq: (f32, f32), seed: u64) {
    canvas.noise(0.0, top, 1.0, 1.0, a, b, freq, seed);
}

/// A drawn scene: where the subject goes, and what stands in front of it.
type Drawn = (Placement, Option<Foreground>);

/// Draws `scene` onto `canvas` and says where the subject goes; the returned closure draws what
/// stands in front of the subject.
pub fn draw(scene: Scene, canvas: &mut Canvas, seed: u64) -> (Placement, Option<Foreground>) {
    let mut rng = SplitMix64::derive(seed, "scene");
    let noise_seed = rng.next_u64();
    match scene {
        Scene::Jungle => outdoors::jungle(canvas, &mut rng, noise_seed),
        Scene::Snow => outdoors::snow(canvas, &mut rng, noise_seed),
        Scene::Beach => outdoors::beach(canvas, &mut rng, noise_seed),
        Scene::CobblestoneStreet => town::cobblestone_street(canvas, &mut rng, noise_seed),
        Scene::PinkFabric => indoors::pink_fabric(canvas, &mut rng),
        Scene::WoodenFloor => indoors::wooden_floor(canvas, &mut rng, noise_seed),
        Scene::City => town::city(canvas, &mut rng),
        Scene::Mountain => outdoors::mountain(canvas, &mut rng, noise_seed),
        Scene::BlueHouse => town::blue_house(canvas, &mut rng, noise_seed),
        Scene::PurpleRugInForest => outdoors::purple_rug_in_forest(canvas, &mut rng, noise_seed),
        Scene::WheatField => outdoors::wheat_field(canvas, &mut rng, noise_seed),
        Scene::AutumnTree => outdoors::autumn_tree(canvas, &mut rng, noise_seed),
        Scene::EiffelTower => town::eiffel_tower(canvas, &mut rng, noise_seed),
        Scene::FloatingOnWater => outdoors::water(canvas, &mut rng, false),
        Scene::OceanOfMilk => outdoors::water(canvas, &mut rng, true),
        Scene::GrassWithSunflowers => outdoors::grass_with_sunflowers(canvas, &mut rng, noise_seed),
        Scene::Mirror => indoors::mirror(canvas, &mut rng),
        Scene::CrowdedSidewalk => town::crowded_sidewalk(canvas, &mut rng),
        Scene::DirtRoad => outdoors::dirt_road(canvas, &mut rng, noise_seed),
        Scene::WhiteRug => indoors::white_rug(canvas, noise_seed),
        Scene::Studio => indoors::studio(canvas, &mut rng),
    }
}
