//! EmojiWorld data and the pretrained towers for the factory's learning tests.
#![allow(dead_code)]

use candle_core::Device;
use suti_data::{Assets, RgbaImage, Scene, Split, Subject};
use suti_factory::pixels::to_chw;
use suti_factory::training::Pair;
use suti_models::image_tower::ImageTower;
use suti_models::text::TextEncoder;

pub fn assets() -> Assets {
    Assets::open_default().expect("EmojiWorld assets (scripts/fetch-assets fetches them)")
}

pub fn text_encoder() -> TextEncoder {
    suti_factory::towers::load_text_encoder(
        &suti_factory::towers::text_encoder_dir(""),
        &Device::Cpu,
    )
    .unwrap()
}

pub fn image_tower() -> ImageTower {
    suti_factory::towers::load_image_tower(
        &suti_factory::towers::image_tower_path(""),
        &Device::Cpu,
    )
    .unwrap()
}

/// `n` training-split subjects spread over the catalogue.
pub fn subjects(assets: &Assets, n: usize, stride: usize) -> Vec<Subject> {
    assets
        .catalog()
        .subjects(Split::Train)
        .into_iter()
        .step_by(stride)
        .take(n)
        .collect()
}

/// `subject` in `scene` (pose from `seed`), at `size` pixels.
pub fn render(assets: &Assets, subject: &Subject, scene: Scene, seed: u64, size: u32) -> RgbaImage {
    let sprite = assets.sprite(subject).unwrap();
    suti_data::render::render_with_box(&sprite, scene, None, None, seed, size).0
}

/// `scene` with nothing in it.
pub fn empty_scene(scene: Scene, seed: u64, size: u32) -> RgbaImage {
    let nothing = RgbaImage::new(8, 8);
    suti_data::render::render_with_box(&nothing, scene, None, None, seed, size).0
}

/// The caption a page would give `subject` in `scene`.
pub fn caption(subject: &Subject, scene: Scene) -> String {
    format!("a {} {}", subject.class.noun, scene.phrase())
}

/// Training pairs: every subject in every scene, `per_scene` poses each, at the model's side.
pub fn pairs(
    assets: &Assets,
    subjects: &[Subject],
    scenes: &[Scene],
    per_scene: u64,
    size: usize,
) -> Vec<Pair> {
    let mut out = Vec::new();
    for subject in subjects {
        for &scene in scenes {
            for k in 0..per_scene {
                let img = render(assets, subject, scene, k * 7919 + scene as u64, 64);
                out.push(Pair {
                    image: to_chw(&img, size),
                    caption: caption(subject, scene),
                });
            }
        }
    }
    out
}

/// Mean RGB of images.
pub fn mean_rgb(images: &[RgbaImage]) -> [f32; 3] {
    let mut acc = [0f64; 3];
    let mut n = 0f64;
    for img in images {
        for px in img.pixels.chunks_exact(4) {
            for c in 0..3 {
                acc[c] += f64::from(px[c]);
            }
            n += 1.0;
        }
    }
    [0, 1, 2].map(|c| (acc[c] / n.max(1.0)) as f32)
}

pub fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    (0..3).map(|c| (a[c] - b[c]).powi(2)).sum::<f32>().sqrt()
}
