//! What the learning tests build on: stand-in captions and random images from seeds, a trainable
//! denoiser, one optimiser step, a short warm-up that opens the demonstration readers, and
//! distances between outputs.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use suti_models::diffusion::v_loss;
use suti_models::train::{AdamW, AdamWConfig};
use suti_models::{Builders, DemoCache, Demos, Dit, DitConfig, Params, TextCond};
use suti_rng::SplitMix64;

const TEXT_LEN: usize = 6;

/// A stand-in text condition: a fixed pseudo-random embedding per caption id (the MiniLM encoder
/// replaces it in the pipeline; the network does not care where the vectors come from).
pub fn text_for(ids: &[u64], dim: usize, device: &Device) -> TextCond {
    let b = ids.len();
    let mut tokens = Vec::new();
    let mut pooled = Vec::new();
    for id in ids {
        let mut rng = SplitMix64::new(*id);
        tokens.extend(rng.normals(TEXT_LEN * dim));
        pooled.extend(rng.normals(dim).iter().map(|v| v / (dim as f32).sqrt()));
    }
    TextCond {
        tokens: Tensor::from_vec(tokens, (b, TEXT_LEN, dim), device).unwrap(),
        mask: Tensor::ones((b, TEXT_LEN), DType::F32, device).unwrap(),
        pooled: Tensor::from_vec(pooled, (b, dim), device).unwrap(),
    }
}

/// `b` images of `cfg`'s shape, in the pixel range, from `seed`.
pub fn random_images(b: usize, cfg: &DitConfig, seed: u64, device: &Device) -> Tensor {
    let n = b * cfg.channels * cfg.image_size * cfg.image_size;
    let values: Vec<f32> = SplitMix64::new(seed)
        .normals(n)
        .iter()
        .map(|v| v.tanh())
        .collect();
    Tensor::from_vec(
        values,
        (b, cfg.channels, cfg.image_size, cfg.image_size),
        device,
    )
    .unwrap()
}

/// `d` demonstrations (random images with stand-in captions) for each of `b` requests.
pub fn demos_for(b: usize, d: usize, cfg: &DitConfig, seed: u64, device: &Device) -> Demos {
    let images = random_images(b * d, cfg, seed, device)
        .reshape((b, d, cfg.channels, cfg.image_size, cfg.image_size))
        .unwrap();
    let pooled = text_for(
        &(0..(b * d) as u64).map(|i| seed + i).collect::<Vec<_>>(),
        cfg.text_dim,
        device,
    )
    .pooled
    .reshape((b, d, cfg.text_dim))
    .unwrap();
    Demos {
        images,
        pooled,
        mask: Tensor::ones((b, d), DType::F32, device).unwrap(),
    }
}

/// A denoiser of `cfg` initialised from `seed`, every weight trainable.
pub fn trainable(cfg: &DitConfig, seed: u64) -> (VarMap, Dit) {
    let varmap = VarMap::new();
    let params = Params::train(&varmap, seed, &Device::Cpu);
    let model = Dit::new(cfg, &Builders::base(params)).unwrap();
    (varmap, model)
}

/// One optimiser step at `learning_rate` on the v-prediction loss of `x0` under `text` and
/// `demos`.
pub fn train_step(
    model: &Dit,
    opt: &mut AdamW,
    (x0, text): (&Tensor, &TextCond),
    demos: Option<&DemoCache>,
    rng: &mut SplitMix64,
    learning_rate: f64,
) {
    let grads = v_loss(model, x0, text, demos, rng)
        .unwrap()
        .backward()
        .unwrap();
    opt.step(&grads, learning_rate).unwrap();
}

/// The seeds of a warm-up: step `s` trains on the random images of seed `images + s` captioned
/// `[s, caption]`, with noise from `noise`.
pub struct Warmup {
    /// Optimiser steps.
    pub steps: u64,
    /// Seed of the noise generator.
    pub noise: u64,
    /// Seed of the first step's images.
    pub images: u64,
    /// Second caption id of every step.
    pub caption: u64,
}

/// Trains `model` for a few steps with `demos` encoded afresh at each step (as the trainer does),
/// so that its zero-initialised demonstration readers open. Returns the noise generator, to draw
/// on after.
pub fn warm_up_with_demos(
    model: &Dit,
    varmap: &VarMap,
    cfg: &DitConfig,
    demos: &Demos,
    warmup: Warmup,
) -> SplitMix64 {
    let dev = Device::Cpu;
    let b = demos.images.dim(0).unwrap();
    let mut opt = AdamW::new(varmap, AdamWConfig::default()).unwrap();
    let mut rng = SplitMix64::new(warmup.noise);
    for step in 0..warmup.steps {
        let cache = model.encode_demos(demos).unwrap();
        let x0 = random_images(b, cfg, warmup.images + step, &dev);
        let text = text_for(&[step, warmup.caption], cfg.text_dim, &dev);
        train_step(model, &mut opt, (&x0, &text), Some(&cache), &mut rng, 5e-3);
    }
    rng
}

/// A tensor's values in order.
pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// The largest absolute difference between `a` and `b`.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The mean absolute difference between `a` and `b`.
pub fn mean_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
