//! The base text-to-image model (`suti train base`): a DiT trained from scratch on the crawled
//! image–caption pairs. It plays Imagen's role in the paper: the frozen model every expert adapts
//! and the apprentice starts from.

use candle_core::Device;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use suti_models::{Builders, Dit, DitConfig, Params};

use crate::Result;
use crate::bundle::BaseModel;
use crate::training::{DenoiserTrainer, LoopSettings, text_dropout};

/// How the base model is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaseTrainConfig {
    /// Optimiser steps.
    pub steps: u64,
    /// Pairs per step.
    pub batch: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// Probability of dropping a caption (for classifier-free guidance).
    pub text_dropout: f32,
    /// Seed of initialisation, batches and noise.
    pub seed: u64,
}

impl Default for BaseTrainConfig {
    fn default() -> Self {
        Self {
            steps: 3000,
            batch: 16,
            learning_rate: 5e-4,
            warmup: 100,
            text_dropout: 0.1,
            seed: 0,
        }
    }
}

/// A base model in training: fresh weights from `train.seed`, every weight trainable.
pub fn base_trainer(
    config: &DitConfig,
    train: &BaseTrainConfig,
    device: &Device,
) -> Result<DenoiserTrainer> {
    // The base is a plain text-to-image model; the apprentice adds its demonstration weights.
    let config = DitConfig {
        max_demos: 0,
        ..config.clone()
    };
    let varmap = VarMap::new();
    let model = Dit::new(
        &config,
        &Builders::base(Params::train(&varmap, train.seed, device)),
    )?;
    DenoiserTrainer::new(
        model,
        varmap,
        LoopSettings {
            steps: train.steps,
            batch: train.batch,
            learning_rate: train.learning_rate,
            warmup: train.warmup,
            dropout: text_dropout(train.text_dropout),
            flip: true,
            clip_norm: 1.0,
            seed: train.seed,
        },
        device,
    )
}

/// The trained weights as a base model artifact.
pub fn base_model(trainer: &DenoiserTrainer) -> Result<BaseModel> {
    Ok(BaseModel {
        config: trainer.config().clone(),
        tensors: trainer.weights()?,
    })
}
