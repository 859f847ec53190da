//! The base-model job: trains the text-to-image base on the crawled pairs (or, as a data-scale
//! diagnostic, on the renderer's true images), checkpointing as it goes, and publishes it as
//! `models/base/{version}/`.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use anyhow::bail;
use suti_data::Split;
use suti_models::{DitConfig, ModelPreset};
use suti_runtime::SutiConfig;
use suti_storage::SharedStore;

use super::{JobProgress, JobResult, crawled_pairs_for_training, emojiworld_assets};
use crate::artifacts::{
    BASE_MODEL, clear_checkpoint_pointer, read_latest_checkpoint, write_checkpoint,
};
use crate::base::{BaseTrainConfig, base_model, base_trainer};
use crate::bundle::{CONFIG_FILE, WEIGHTS_FILE, version_of};
use crate::pixels::to_chw;
use crate::training::Pair;
use crate::true_triplets::{TrueTripletSettings, true_pairs, true_triplet_subjects};

/// The pairs the base learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasePairs {
    /// Every crawled cluster's image–caption pairs in storage.
    Crawled,
    /// The renderer's true images of this many training-split subjects: a base that knows many
    /// classes without crawling them.
    TrueRenders {
        /// Training-split subjects drawn.
        subjects: usize,
    },
}

/// A base-model training run.
#[derive(Debug, Clone)]
pub struct BaseJob {
    /// What it learns from.
    pub pairs: BasePairs,
    /// The network's shape.
    pub preset: ModelPreset,
    /// Optimiser steps.
    pub steps: u64,
    /// Pairs per step.
    pub batch: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Start from scratch even when a checkpoint exists.
    pub fresh: bool,
    /// Stop after this many steps in this run, leaving a checkpoint to resume from.
    pub stop_after: Option<u64>,
    /// Seed of initialisation, batches and noise.
    pub seed: u64,
}

/// How a base-model run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum BaseJobOutcome {
    /// Every step is done and the model is published.
    Published {
        /// The published version.
        version: String,
        /// Pairs it learned from.
        pairs: usize,
        /// Optimiser steps of the whole run.
        steps: u64,
        /// Evaluation loss on a fixed subset of the pairs before this run's first step.
        loss_before: f32,
        /// The same loss at the end.
        loss_after: f32,
        /// Wall time of the training steps, seconds.
        seconds: f64,
    },
    /// `stop_after` ended the run at `step`; a checkpoint holds it.
    Stopped {
        /// The step the checkpoint holds.
        step: u64,
        /// Optimiser steps of the whole run.
        steps: u64,
    },
}

/// Trains and publishes the base model.
pub async fn train_base(
    store: &SharedStore,
    config: &SutiConfig,
    job: &BaseJob,
    progress: &dyn JobProgress,
) -> JobResult<BaseJobOutcome> {
    let model_config = DitConfig::of(job.preset);
    let device = crate::device::model_device(config.models.device)?;
    let text = crate::towers::configured_text_encoder(&config.models.text_encoder, &device)?;
    let size = model_config.image_size;
    let pairs: Vec<Pair> = match job.pairs {
        BasePairs::Crawled => crawled_pairs_for_training(store, progress)
            .await?
            .iter()
            .map(|(image, caption)| Pair {
                image: to_chw(image, size),
                caption: caption.clone(),
            })
            .collect(),
        BasePairs::TrueRenders { subjects } => {
            let assets = emojiworld_assets()?;
            let settings = TrueTripletSettings {
                subjects,
                seed: job.seed,
                ..TrueTripletSettings::default()
            };
            let drawn = true_triplet_subjects(&assets, Split::Train, &settings);
            let phase = progress.phase("true renders", "images", drawn.len() as u64);
            let pairs = true_pairs(&assets, &drawn, &settings, size, &mut || phase.advance(1))?;
            phase.finish();
            let classes: HashSet<_> = drawn.iter().map(|s| &s.class.noun).collect();
            progress.note(&format!(
                "{} true-image pairs of {} training subjects ({} classes)",
                pairs.len(),
                drawn.len(),
                classes.len()
            ));
            pairs
        }
    };
    let train = BaseTrainConfig {
        steps: job.steps,
        batch: job.batch,
        learning_rate: job.learning_rate,
        seed: job.seed,
        ..BaseTrainConfig::default()
    };
    let mut trainer = base_trainer(&model_config, &train, &device)?;
    // A checkpoint resumes only a run with the same settings.
    let notes: BTreeMap<String, String> = [
        (
            "model".to_string(),
            serde_json::to_string(trainer.config())?,
        ),
        ("train".to_string(), serde_json::to_string(&train)?),
        (
            "pairs".to_string(),
            match job.pairs {
                BasePairs::Crawled => "crawled".to_string(),
                BasePairs::TrueRenders { subjects } => {
                    format!("true-renders of {subjects} subjects")
                }
            },
        ),
    ]
    .into();
    if !job.fresh
        && let Some(saved) = read_latest_checkpoint(store, BASE_MODEL)
            .await
            .map_err(|e| anyhow::anyhow!("reading the base checkpoint: {e}"))?
    {
        let meta: suti_models::train::CheckpointMeta = serde_json::from_slice(&saved.meta)?;
        if meta.notes != notes {
            bail!(
                "the checkpoint at step {} was made with other settings; pass --fresh to start over",
                saved.step
            );
        }
        trainer.resume(&saved.tensors, &saved.meta)?;
        progress.note(&format!(
            "resumed from the checkpoint at step {}",
            saved.step
        ));
    }
    let eval: Vec<Pair> = pairs
        .iter()
        .step_by((pairs.len() / 64).max(1))
        .cloned()
        .collect();
    let loss_before = trainer.evaluation_loss(&eval, &text, 7)?;
    let phase = progress.phase("base model", "steps", job.steps);
    phase.set_done(trainer.steps_done());
    let started = Instant::now();
    let mut smoothed = None::<f32>;
    let mut history = crate::training::LossHistory::new();
    let stop_at = job.stop_after.map(|n| trainer.steps_done() + n);
    while !trainer.finished() {
        let loss = tokio::task::block_in_place(|| trainer.step(&pairs, &text))?;
        let s = smoothed.map_or(loss, |s| 0.98 * s + 0.02 * loss);
        smoothed = Some(s);
        phase.set_status(format!("loss {s:.4}"));
        phase.advance(1);
        let step = trainer.steps_done();
        history.record(step, loss);
        let stopping = stop_at == Some(step);
        if (step % job.checkpoint_every.max(1) == 0 || stopping) && !trainer.finished() {
            let (tensors, meta) = trainer.checkpoint(notes.clone())?;
            write_checkpoint(store, BASE_MODEL, step, tensors, meta)
                .await
                .map_err(|e| anyhow::anyhow!("writing a checkpoint: {e}"))?;
        }
        if stopping && !trainer.finished() {
            phase.finish();
            return Ok(BaseJobOutcome::Stopped {
                step,
                steps: job.steps,
            });
        }
    }
    phase.finish();
    let loss_after = trainer.evaluation_loss(&eval, &text, 7)?;
    let (config_json, weights) = base_model(&trainer)?.to_bytes()?;
    let version = version_of(&weights);
    suti_stage::publish_model_version(
        store,
        BASE_MODEL,
        &version,
        vec![
            (CONFIG_FILE, config_json),
            (WEIGHTS_FILE, weights),
            (crate::training::LOSSES_FILE, history.to_json()),
        ],
    )
    .await?;
    clear_checkpoint_pointer(store, BASE_MODEL)
        .await
        .map_err(|e| anyhow::anyhow!("clearing the checkpoint: {e}"))?;
    Ok(BaseJobOutcome::Published {
        version,
        pairs: pairs.len(),
        steps: job.steps,
        loss_before,
        loss_after,
        seconds: started.elapsed().as_secs_f64(),
    })
}
