//! One training loop for every denoiser the factory trains — the base model from scratch, an
//! expert's LoRA adapter over the frozen base, the apprentice with its demonstrations: random
//! batches, condition dropout (the unconditional branch guidance needs), the v-loss, gradient
//! clipping, AdamW with warm-up and cosine decay, and checkpoints that resume bit for bit.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use suti_models::diffusion::{ConditionDropout, drop_conditions, v_loss};
use suti_models::text::TextEncoder;
use suti_models::train::{
    AdamW, AdamWConfig, CheckpointMeta, LrSchedule, clip_grad_norm, load_checkpoint,
    save_checkpoint,
};
use suti_models::{Demos, Dit, DitConfig, TextCond};
use suti_rng::SplitMix64;

use crate::pixels::{batch_tensor, flip_chw};
use crate::{FactoryError, Result};

/// A training pair: an image at the model's side (`(3, s, s)` in [-1, 1]) and its caption.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The image, channel-first.
    pub image: Vec<f32>,
    /// Its caption.
    pub caption: String,
}

/// How a denoiser is trained.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// Optimiser steps in the whole run (the learning-rate schedule spans them).
    pub steps: u64,
    /// Pairs per step.
    pub batch: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// Probabilities of training an example without its caption, its demonstrations, or both.
    pub dropout: ConditionDropout,
    /// Mirror each drawn image with probability one half.
    pub flip: bool,
    /// Global gradient-norm limit.
    pub clip_norm: f64,
    /// Seed of batch order, augmentation and noise.
    pub seed: u64,
}

/// One training batch: clean targets, their prompts, and (for the apprentice) demonstrations.
pub struct Batch {
    /// Clean images `(b, c, h, w)` in [-1, 1].
    pub x0: Tensor,
    /// The prompts.
    pub text: TextCond,
    /// The demonstrations, for the apprentice.
    pub demos: Option<Demos>,
    /// The demonstrations' frozen states `(b, d, depth, tokens, width)`, for a gated apprentice
    /// whose trainer computed them once (then the images are not encoded again).
    pub demo_states: Option<Tensor>,
}

/// Condition dropout for a text-to-image model: captions only.
pub fn text_dropout(p: f32) -> ConditionDropout {
    ConditionDropout {
        text: p,
        demos: 0.0,
        both: 0.0,
    }
}

/// A denoiser, its trainable variables and optimiser, and the loop state.
pub struct DenoiserTrainer {
    model: Dit,
    varmap: VarMap,
    optimizer: AdamW,
    schedule: LrSchedule,
    settings: LoopSettings,
    rng: SplitMix64,
    device: Device,
    /// Frozen weights the model uses besides its variables (a gated apprentice's base): part
    /// of what it publishes, never of what it trains or checkpoints.
    frozen: HashMap<String, Tensor>,
}

impl DenoiserTrainer {
    /// Wraps `model`, whose trainable weights are the variables of `varmap`.
    pub fn new(
        model: Dit,
        varmap: VarMap,
        settings: LoopSettings,
        device: &Device,
    ) -> Result<Self> {
        if settings.batch == 0 || settings.steps == 0 {
            return Err(FactoryError::Invalid(
                "training needs at least one step of at least one pair".into(),
            ));
        }
        let optimizer = AdamW::new(&varmap, AdamWConfig::default())?;
        let schedule = LrSchedule {
            base: settings.learning_rate,
            warmup: settings.warmup.min(settings.steps / 2),
            total: settings.steps,
            min_ratio: 0.1,
        };
        Ok(Self {
            model,
            varmap,
            optimizer,
            schedule,
            rng: SplitMix64::derive(settings.seed, "denoiser-training"),
            settings,
            device: device.clone(),
            frozen: HashMap::new(),
        })
    }

    /// Declares the frozen weights the model uses besides its variables, so that
    /// [`Self::weights`] publishes them with the trained ones.
    pub fn with_frozen(mut self, frozen: HashMap<String, Tensor>) -> Self {
        self.frozen = frozen;
        self
    }

    /// The network being trained.
    pub fn model(&self) -> &Dit {
        &self.model
    }

    /// The device it trains on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Its configuration.
    pub fn config(&self) -> &DitConfig {
        self.model.config()
    }

    /// The trainable variables.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Optimiser steps taken (including those before a resume).
    pub fn steps_done(&self) -> u64 {
        self.optimizer.steps()
    }

    /// Whether the run has taken all its steps.
    pub fn finished(&self) -> bool {
        self.steps_done() >= self.settings.steps
    }

    /// One optimiser step on a random batch of `pairs`; returns the batch's loss.
    pub fn step(&mut self, pairs: &[Pair], text: &TextEncoder) -> Result<f32> {
        if pairs.is_empty() {
            return Err(FactoryError::Invalid("no training pairs".into()));
        }
        let size = self.config().image_size;
        let (batch, flip, device) = (self.settings.batch, self.settings.flip, self.device.clone());
        self.step_with(|rng| {
            let picks: Vec<usize> = (0..batch).map(|_| rng.below(pairs.len())).collect();
            let images: Vec<Vec<f32>> = picks
                .iter()
                .map(|&i| {
                    if flip && rng.chance(0.5) {
                        flip_chw(&pairs[i].image, size)
                    } else {
                        pairs[i].image.clone()
                    }
                })
                .collect();
            let views: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
            let captions: Vec<&str> = picks.iter().map(|&i| pairs[i].caption.as_str()).collect();
            Ok(Batch {
                x0: batch_tensor(&views, size, &device)?,
                text: text.encode(&captions)?,
                demos: None,
                demo_states: None,
            })
        })
    }

    /// One optimiser step on the batch `build` makes (from the loop's generator, so a resumed run
    /// draws the same batches); returns the batch's loss.
    pub fn step_with(
        &mut self,
        build: impl FnOnce(&mut SplitMix64) -> Result<Batch>,
    ) -> Result<f32> {
        let batch = build(&mut self.rng)?;
        // On a rayon worker, so that the step's parallel ops split work without a hand-off each.
        suti_models::ops::on_worker(|| self.train_on(batch))
    }

    /// One optimiser step on `batch`: forward, backward, clipping, update.
    fn train_on(&mut self, batch: Batch) -> Result<f32> {
        let demo_mask = batch.demos.as_ref().map(|d| d.mask.clone());
        let (text, demo_mask) = drop_conditions(
            &batch.text,
            demo_mask.as_ref(),
            self.settings.dropout,
            &mut self.rng,
        )?;
        let cache = match (batch.demos, demo_mask, &batch.demo_states) {
            (Some(_), Some(mask), Some(states)) => {
                Some(self.model.encode_demo_states(states, &mask)?)
            }
            (Some(demos), Some(mask), None) => {
                Some(self.model.encode_demos(&Demos { mask, ..demos })?)
            }
            _ => None,
        };
        let loss = v_loss(&self.model, &batch.x0, &text, cache.as_ref(), &mut self.rng)?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(FactoryError::Invalid(format!(
                "the loss diverged ({value}) at step {}",
                self.steps_done()
            )));
        }
        let mut grads = loss.backward()?;
        clip_grad_norm(&mut grads, self.optimizer.vars(), self.settings.clip_norm)?;
        let lr = self.schedule.at(self.steps_done());
        self.optimizer.step(&grads, lr)?;
        Ok(value)
    }

    /// The mean v-loss over `pairs` at fixed times and noise (from `seed`): comparable across
    /// steps, unlike a training batch's loss.
    pub fn evaluation_loss(&self, pairs: &[Pair], text: &TextEncoder, seed: u64) -> Result<f32> {
        let size = self.config().image_size;
        let mut rng = SplitMix64::derive(seed, "evaluation");
        let mut total = 0.0;
        for chunk in pairs.chunks(16) {
            let views: Vec<&[f32]> = chunk.iter().map(|p| p.image.as_slice()).collect();
            let x0 = batch_tensor(&views, size, &self.device)?;
            let captions: Vec<&str> = chunk.iter().map(|p| p.caption.as_str()).collect();
            let cond = text.encode(&captions)?;
            let loss = v_loss(&self.model, &x0, &cond, None, &mut rng)?.to_scalar::<f32>()?;
            total += loss * chunk.len() as f32;
        }
        Ok(total / pairs.len().max(1) as f32)
    }

    /// The model's weights by name, trained and frozen (a copy, for publishing).
    pub fn weights(&self) -> Result<HashMap<String, Tensor>> {
        let vars = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut out: HashMap<String, Tensor> = self.frozen.clone();
        for (name, var) in vars.iter() {
            out.insert(name.clone(), var.as_tensor().copy()?);
        }
        Ok(out)
    }

    /// A checkpoint: weights, optimiser moments and generator state (safetensors), metadata
    /// (JSON) with `notes`.
    pub fn checkpoint(&self, notes: BTreeMap<String, String>) -> Result<(Vec<u8>, Vec<u8>)> {
        let meta = CheckpointMeta {
            step: self.steps_done(),
            rng_state: self.rng.state(),
            notes,
        };
        Ok(save_checkpoint(&self.optimizer, None, &meta)?)
    }

    /// Restores a checkpoint written by [`Self::checkpoint`]; returns its step.
    pub fn resume(&mut self, tensors: &[u8], meta_json: &[u8]) -> Result<u64> {
        let meta = load_checkpoint(&mut self.optimizer, None, tensors, meta_json, &self.device)?;
        self.rng = SplitMix64::new(meta.rng_state);
        Ok(meta.step)
    }
}

/// Mean loss over the first and last tenth of a run, the lowest, and the count — the loss curve
/// summary an expert reports.
pub fn loss_summary(losses: &[f32]) -> suti_messages::LossSummary {
    let tenth = (losses.len() / 10).max(1).min(losses.len().max(1));
    let mean = |xs: &[f32]| {
        if xs.is_empty() {
            f32::NAN
        } else {
            xs.iter().sum::<f32>() / xs.len() as f32
        }
    };
    suti_messages::LossSummary {
        first: mean(&losses[..tenth.min(losses.len())]),
        last: mean(&losses[losses.len().saturating_sub(tenth)..]),
        min: losses.iter().copied().fold(f32::INFINITY, f32::min),
        steps: losses.len() as u32,
    }
}

/// Name of a run's loss curve beside its model files (`models/{model}/{version}/losses.json`,
/// `experts/{cluster}/{base}.losses.json`).
pub const LOSSES_FILE: &str = "losses.json";

/// One point of a loss curve.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossPoint {
    /// Optimiser step (the middle of the stretch the point stands for).
    pub step: u64,
    /// Mean training loss over that stretch.
    pub loss: f32,
}

/// A training run's loss by step in bounded memory: each point is the mean of a stretch of
/// steps, and when there are more than [`LossHistory::MAX_POINTS`] the stretches double (pairs of
/// points merge), so a service that trains for days keeps a curve of the same size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossHistory {
    points: Vec<(u64, u64, f64)>,
    per_point: u64,
    open: Option<(u64, u64, f64)>,
}

impl LossHistory {
    /// Most points kept.
    pub const MAX_POINTS: usize = 512;

    /// An empty history.
    pub fn new() -> Self {
        Self {
            per_point: 1,
            ..Self::default()
        }
    }

    /// Records the loss of optimiser step `step` (steps come in increasing order).
    pub fn record(&mut self, step: u64, loss: f32) {
        if !loss.is_finite() {
            return;
        }
        let per = self.per_point.max(1);
        let open = self.open.get_or_insert((step, 0, 0.0));
        open.1 += 1;
        open.2 += f64::from(loss);
        if open.1 >= per {
            self.points.extend(self.open.take());
            if self.points.len() > Self::MAX_POINTS {
                self.points = self
                    .points
                    .chunks(2)
                    .map(|pair| {
                        let count = pair.iter().map(|p| p.1).sum();
                        (pair[0].0, count, pair.iter().map(|p| p.2).sum())
                    })
                    .collect();
                self.per_point = per * 2;
            }
        }
    }

    /// The curve: each stretch's middle step and mean loss.
    pub fn points(&self) -> Vec<LossPoint> {
        self.points
            .iter()
            .chain(self.open.iter())
            .map(|&(first, count, sum)| LossPoint {
                step: first + count / 2,
                loss: (sum / count.max(1) as f64) as f32,
            })
            .collect()
    }

    /// The curve as JSON (`[{"step", "loss"}, …]`).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.points()).expect("loss points serialise")
    }
}

#[cfg(test)]
mod loss_history_tests {
    use super::*;

    #[test]
    fn a_long_run_keeps_a_bounded_curve_with_the_same_means() {
        let mut history = LossHistory::new();
        for step in 1..=10_000u64 {
            history.record(step, step as f32);
        }
        let points = history.points();
        assert!(
            points.len() <= LossHistory::MAX_POINTS + 1,
            "{}",
            points.len()
        );
        assert!(
            points.len() > LossHistory::MAX_POINTS / 4,
            "{}",
            points.len()
        );
        // Each point is the mean of its stretch, so it sits at its middle step.
        for p in &points {
            assert!((p.loss - p.step as f32).abs() <= 1.0, "{p:?}");
        }
        assert_eq!(points[0].step, points[0].loss.round() as u64);
        let short: Vec<LossPoint> = {
            let mut h = LossHistory::new();
            h.record(5, 0.5);
            h.record(6, 0.25);
            h.points()
        };
        assert_eq!(
            short,
            [
                LossPoint { step: 5, loss: 0.5 },
                LossPoint {
                    step: 6,
                    loss: 0.25
                }
            ]
        );
    }
}
