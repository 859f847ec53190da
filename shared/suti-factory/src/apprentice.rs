//! The apprentice (DESIGN §7.7): the base model's network with demonstration tokens, initialised
//! from the base and trained on the accepted (demonstrations, prompt, target) triplets. Each
//! example draws how many demonstrations it sees (1–5 by default) and which, so one model learns to
//! work from any number; condition dropout (text, demonstrations, both) gives guidance its
//! unconditional branches.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use suti_models::diffusion::ConditionDropout;
use suti_models::text::TextEncoder;
use suti_models::{Builders, Demos, Dit, DitConfig, Params};
use suti_rng::SplitMix64;

use crate::bundle::BaseModel;
use crate::pixels::batch_tensor;
use crate::training::{Batch, DenoiserTrainer, LoopSettings};
use crate::{FactoryError, Result};

/// How the apprentice is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprenticeConfig {
    /// Optimiser steps the learning-rate schedule spans.
    pub steps: u64,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// Fewest demonstrations an example is shown.
    pub min_demos: usize,
    /// Most demonstrations an example is shown (the model takes up to its `max_demos`).
    pub max_demos: usize,
    /// Seed of the new weights, batches and noise.
    pub seed: u64,
}

impl Default for ApprenticeConfig {
    fn default() -> Self {
        Self {
            steps: 20_000,
            batch: 8,
            learning_rate: 3e-4,
            warmup: 100,
            min_demos: 1,
            max_demos: 5,
            seed: 0,
        }
    }
}

/// A cluster's demonstrations, shared by all its examples.
#[derive(Debug)]
pub struct DemoSet {
    /// Images at the model's side, `(3, s, s)` in [-1, 1].
    pub images: Vec<Vec<f32>>,
    /// Pooled sentence vectors of their captions.
    pub pooled: Vec<Vec<f32>>,
}

impl DemoSet {
    /// Demonstrations from images (already at the model's side) and their captions.
    pub fn new(images: Vec<Vec<f32>>, captions: &[String], text: &TextEncoder) -> Result<Self> {
        if images.is_empty() || images.len() != captions.len() {
            return Err(FactoryError::Invalid(
                "demonstrations need one caption per image and at least one image".into(),
            ));
        }
        let pooled = captions
            .iter()
            .map(|c| text.sentence_vector(c))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self { images, pooled })
    }
}

/// One training triplet.
#[derive(Debug, Clone)]
pub struct Triplet {
    /// The cluster's demonstrations.
    pub demos: Arc<DemoSet>,
    /// The prompt, with the class noun alone.
    pub prompt: String,
    /// The target image, `(3, s, s)` in [-1, 1].
    pub target: Vec<f32>,
}

/// The apprentice's shape: the base's, taking up to 8 demonstrations.
pub fn apprentice_shape(base: &DitConfig) -> DitConfig {
    DitConfig {
        max_demos: 8,
        ..base.clone()
    }
}

/// An apprentice in training, initialised from `base` (the demonstration embeddings are new).
pub fn apprentice_trainer(base: &BaseModel, config: &ApprenticeConfig) -> Result<DenoiserTrainer> {
    let device = base.device();
    let varmap = VarMap::new();
    {
        let mut vars = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        for (name, tensor) in &base.tensors {
            vars.insert(name.clone(), Var::from_tensor(tensor)?);
        }
    }
    let shape = apprentice_shape(&base.config);
    if config.min_demos == 0
        || config.min_demos > config.max_demos
        || config.max_demos > shape.max_demos
    {
        return Err(FactoryError::Invalid(format!(
            "demonstrations per example must be within 1..={} (got {}..={})",
            shape.max_demos, config.min_demos, config.max_demos
        )));
    }
    let model = Dit::new(
        &shape,
        &Builders::base(Params::train(&varmap, config.seed, &device)),
    )?;
    DenoiserTrainer::new(
        model,
        varmap,
        LoopSettings {
            steps: config.steps,
            batch: config.batch,
            learning_rate: config.learning_rate,
            warmup: config.warmup,
            dropout: ConditionDropout::default(),
            flip: false,
            clip_norm: 1.0,
            seed: config.seed,
        },
        &device,
    )
}

/// A random batch of `triplets`: each example with between `min_demos` and `max_demos` of its
/// cluster's demonstrations (distinct, as many as it has), padded and masked.
pub fn apprentice_batch(
    triplets: &[Triplet],
    batch: usize,
    (min_demos, max_demos): (usize, usize),
    size: usize,
    text: &TextEncoder,
    rng: &mut SplitMix64,
    device: &Device,
) -> Result<Batch> {
    if triplets.is_empty() {
        return Err(FactoryError::Invalid("no training triplets".into()));
    }
    let picks: Vec<usize> = (0..batch).map(|_| rng.below(triplets.len())).collect();
    let chosen: Vec<Vec<usize>> = picks
        .iter()
        .map(|&i| {
            let available = triplets[i].demos.images.len();
            let hi = max_demos.min(available);
            let lo = min_demos.min(hi);
            let count = lo + rng.below(hi - lo + 1);
            let mut order: Vec<usize> = (0..available).collect();
            for k in 0..count {
                let j = k + rng.below(available - k);
                order.swap(k, j);
            }
            order.truncate(count);
            order
        })
        .collect();
    let width = chosen.iter().map(Vec::len).max().unwrap_or(1);
    let plane = 3 * size * size;
    let text_dim = triplets[0].demos.pooled[0].len();
    let mut images = vec![0f32; batch * width * plane];
    let mut pooled = vec![0f32; batch * width * text_dim];
    let mut mask = vec![0f32; batch * width];
    for (b, (&i, demos)) in picks.iter().zip(&chosen).enumerate() {
        for (slot, &d) in demos.iter().enumerate() {
            let at = b * width + slot;
            images[at * plane..(at + 1) * plane].copy_from_slice(&triplets[i].demos.images[d]);
            pooled[at * text_dim..(at + 1) * text_dim]
                .copy_from_slice(&triplets[i].demos.pooled[d]);
            mask[at] = 1.0;
        }
    }
    let targets: Vec<&[f32]> = picks
        .iter()
        .map(|&i| triplets[i].target.as_slice())
        .collect();
    let prompts: Vec<&str> = picks.iter().map(|&i| triplets[i].prompt.as_str()).collect();
    Ok(Batch {
        x0: batch_tensor(&targets, size, device)?,
        text: text.encode(&prompts)?,
        demos: Some(Demos {
            images: Tensor::from_vec(images, (batch, width, 3, size, size), device)?,
            pooled: Tensor::from_vec(pooled, (batch, width, text_dim), device)?,
            mask: Tensor::from_vec(mask, (batch, width), device)?.to_dtype(DType::F32)?,
        }),
    })
}

/// One apprentice training step on `triplets`.
pub fn apprentice_step(
    trainer: &mut DenoiserTrainer,
    triplets: &[Triplet],
    config: &ApprenticeConfig,
    text: &TextEncoder,
) -> Result<f32> {
    let size = trainer.config().image_size;
    let device = trainer.device().clone();
    trainer.step_with(|rng| {
        apprentice_batch(
            triplets,
            config.batch,
            (config.min_demos, config.max_demos),
            size,
            text,
            rng,
            &device,
        )
    })
}
