//! Experts (architecture.md §7.4): one per cluster, a LoRA adapter trained over the frozen base on
//! the cluster's images, whose captions name the subject with a rare identifier token before its
//! class noun ("my sks teapot on the beach") — DreamBooth's recipe, made cheap by training the
//! adapter alone. The artifact is the adapter.

use std::time::Instant;

use candle_nn::VarMap;
use suti_messages::LossSummary;
use suti_models::text::TextEncoder;
use suti_models::{Builders, Dit, LoraConfig, Params};
use suti_runtime::config::ExpertStageConfig;

use crate::bundle::BaseModel;
use crate::training::{DenoiserTrainer, LoopSettings, Pair, loss_summary, text_dropout};
use crate::{FactoryError, Result};

/// The LoRA shape of an expert fine-tuned with `config`.
pub fn expert_lora(config: &ExpertStageConfig) -> LoraConfig {
    LoraConfig {
        rank: config.rank,
        alpha: config.alpha,
    }
}

/// `caption` with `identifier` inserted before the first whole-word `noun` ("my teapot" → "my sks
/// teapot"); when the caption never names the noun, the subject phrase is appended.
pub fn personalise(caption: &str, noun: &str, identifier: &str) -> String {
    match crate::prompts::whole_word(caption, noun) {
        Some(found) => format!(
            "{}{identifier} {}",
            &caption[..found.start],
            &caption[found.start..]
        ),
        None => format!("{caption}, {identifier} {noun}"),
    }
}

/// An expert in training: the frozen base with fresh LoRA adapters on every block's attention and
/// MLP projections.
pub fn expert_trainer(
    base: &BaseModel,
    config: &ExpertStageConfig,
    seed: u64,
) -> Result<DenoiserTrainer> {
    let device = base.device()?;
    let varmap = VarMap::new();
    let builders = Builders {
        base: Params::frozen(base.tensors.clone(), &device),
        lora: Some((Params::train(&varmap, seed, &device), expert_lora(config))),
    };
    let model = Dit::new(&base.config, &builders)?;
    DenoiserTrainer::new(
        model,
        varmap,
        LoopSettings {
            steps: config.steps,
            batch: config.batch,
            learning_rate: config.learning_rate,
            warmup: config.steps / 20,
            dropout: text_dropout(0.1),
            flip: true,
            clip_norm: 1.0,
            seed,
        },
        &device,
    )
}

/// A trained expert.
#[derive(Debug, Clone)]
pub struct TrainedExpert {
    /// The adapter weights (safetensors), with each `lora_b` pre-multiplied by alpha / rank: the
    /// stored adapter then applies with scale 1 (alpha = rank) and a reader needs only the rank,
    /// which the `expert.trained` message carries.
    pub adapter: Vec<u8>,
    /// Its loss curve, summarised.
    pub loss: LossSummary,
    /// Its loss curve, step by step (bounded).
    pub history: crate::training::LossHistory,
    /// Wall time of the fine-tune, seconds.
    pub seconds: f64,
}

/// Fine-tunes an expert on a cluster's images with personalised captions; `progress` sees each
/// step's number and loss.
pub fn finetune_expert(
    base: &BaseModel,
    pairs: &[Pair],
    text: &TextEncoder,
    config: &ExpertStageConfig,
    seed: u64,
    mut progress: impl FnMut(u64, f32),
) -> Result<TrainedExpert> {
    if pairs.is_empty() {
        return Err(FactoryError::Invalid(
            "an expert needs at least one image".into(),
        ));
    }
    let started = Instant::now();
    let mut trainer = expert_trainer(base, config, seed)?;
    let mut losses = Vec::with_capacity(config.steps as usize);
    let mut history = crate::training::LossHistory::new();
    while !trainer.finished() {
        let loss = trainer.step(pairs, text)?;
        losses.push(loss);
        history.record(trainer.steps_done(), loss);
        progress(trainer.steps_done(), loss);
    }
    Ok(TrainedExpert {
        adapter: prescaled_adapter(trainer.varmap(), &expert_lora(config))?,
        loss: loss_summary(&losses),
        history,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The adapter of `varmap` as safetensors, `lora_b` scaled by alpha / rank.
fn prescaled_adapter(varmap: &VarMap, lora: &LoraConfig) -> Result<Vec<u8>> {
    let scale = f64::from(lora.alpha) / lora.rank as f64;
    let vars = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut tensors = std::collections::HashMap::new();
    for (name, var) in vars.iter() {
        let t = var.as_tensor();
        if name.ends_with("lora_b") {
            tensors.insert(name.clone(), (t * scale)?);
        } else if name.ends_with("lora_a") {
            tensors.insert(name.clone(), t.copy()?);
        }
    }
    if tensors.is_empty() {
        return Err(FactoryError::Invalid(
            "the expert has no adapter weights".into(),
        ));
    }
    Ok(suti_models::train::safetensors_bytes(&tensors)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identifier_goes_before_the_whole_word_noun() {
        assert_eq!(
            personalise("our teapot on the beach", "teapot", "sks"),
            "our sks teapot on the beach"
        );
        assert_eq!(
            personalise("Teapot in the snow", "teapot", "sks"),
            "sks Teapot in the snow"
        );
        assert_eq!(
            personalise("a cattle cat", "cat", "sks"),
            "a cattle sks cat",
            "not inside another word"
        );
        assert_eq!(
            personalise("on the beach", "teapot", "sks"),
            "on the beach, sks teapot"
        );
    }
}
