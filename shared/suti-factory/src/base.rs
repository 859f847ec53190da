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

/// A model of `config` with the weights `seed` initialises, untrained: for tests and benchmarks,
/// whose outcome does not depend on what the weights have learnt.
pub fn untrained_base_model(config: &DitConfig, seed: u64, device: &Device) -> Result<BaseModel> {
    let varmap = VarMap::new();
    Dit::new(
        config,
        &Builders::base(Params::train(&varmap, seed, device)),
    )?;
    let tensors = varmap
        .data()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect();
    Ok(BaseModel {
        config: config.clone(),
        tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untrained_model_loads_and_its_seed_decides_its_weights() {
        let config = DitConfig::test();
        let first = untrained_base_model(&config, 1, &Device::Cpu).unwrap();
        first.dit().unwrap();
        let again = untrained_base_model(&config, 1, &Device::Cpu).unwrap();
        let other = untrained_base_model(&config, 2, &Device::Cpu).unwrap();
        let values = |model: &BaseModel, name: &str| -> Vec<f32> {
            model.tensors[name]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let mut differs = false;
        for name in first.tensors.keys() {
            assert_eq!(values(&first, name), values(&again, name), "{name}");
            differs |= values(&first, name) != values(&other, name);
        }
        assert!(differs, "another seed gives other weights");
    }
}
