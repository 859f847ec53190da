//! The scorer job: trains the scorer's projection heads over the frozen image tower and MiniLM on
//! every crawled pair and degraded copies of its image, measures held-out retrieval, and publishes
//! it as `models/scorer/{version}/`.

use std::sync::Mutex;

use suti_models::ScorerConfig;
use suti_runtime::SutiConfig;
use suti_storage::SharedStore;

use super::{JobProgress, JobResult, PhaseProgress, crawled_pairs_for_training};
use crate::artifacts::SCORER_MODEL;
use crate::bundle::{CONFIG_FILE, WEIGHTS_FILE, version_of};
use crate::scorer::{
    Degradations, ScorerReport, ScorerTrainConfig, tower_features, train_scorer_on_images,
};

/// A scorer training run.
#[derive(Debug, Clone)]
pub struct ScorerJob {
    /// Optimiser steps.
    pub steps: u64,
    /// Pairs per contrastive batch.
    pub batch: usize,
    /// Seed of initialisation, the held-out split and batches.
    pub seed: u64,
    /// Side the images are resampled to before the image tower: the generations' side, so the
    /// scorer judges them in the domain it learned.
    pub image_size: u32,
    /// Degraded copies of each training image also trained on.
    pub degradations: Degradations,
}

/// What a scorer run published and measured.
#[derive(Debug, Clone)]
pub struct ScorerJobOutcome {
    /// The published version.
    pub version: String,
    /// Losses and held-out retrieval, crisp and degraded, trained and untrained.
    pub report: ScorerReport,
}

/// Trains and publishes the scorer on every crawled pair (the members of every manifest under
/// `clusters/`, a fifth held out by pair).
pub async fn train_scorer(
    store: &SharedStore,
    config: &SutiConfig,
    job: &ScorerJob,
    progress: &dyn JobProgress,
) -> JobResult<ScorerJobOutcome> {
    let device = crate::device::model_device(config.models.device)?;
    let text = crate::towers::configured_text_encoder(&config.models.text_encoder, &device)?;
    let tower = crate::towers::load_image_tower(
        &crate::towers::image_tower_path(&config.models.image_tower),
        &device,
    )?;
    let pairs = crawled_pairs_for_training(store, progress).await?;
    let images: Vec<_> = pairs
        .iter()
        .map(|(i, _)| i.centre_square(job.image_size))
        .collect();
    let sentences = pairs
        .iter()
        .map(|(_, c)| text.sentence_vector(c))
        .collect::<Result<Vec<_>, _>>()?;
    let train = ScorerTrainConfig {
        steps: job.steps,
        batch: job.batch,
        seed: job.seed,
        degradations: job.degradations.clone(),
        ..ScorerTrainConfig::default()
    };
    // The steps' phase starts with the first step, after the features are in.
    let steps_phase: Mutex<Option<Box<dyn PhaseProgress>>> = Mutex::new(None);
    let (scorer, report) = tokio::task::block_in_place(|| {
        train_scorer_on_images(
            &images,
            &sentences,
            |batch| {
                // The crisp images and every copy, through the frozen tower once.
                let phase = progress.phase("image features", "images", batch.len() as u64);
                let mut features = Vec::with_capacity(batch.len());
                for chunk in batch.chunks(16) {
                    features.extend(tower_features(&tower, chunk)?);
                    phase.advance(chunk.len() as u64);
                }
                phase.finish();
                Ok(features)
            },
            &ScorerConfig::default(),
            &train,
            &device,
            |_, loss| {
                let mut phase = steps_phase.lock().unwrap_or_else(|e| e.into_inner());
                let phase =
                    phase.get_or_insert_with(|| progress.phase("scorer", "steps", job.steps));
                phase.set_status(format!("loss {loss:.3}"));
                phase.advance(1);
            },
        )
    })?;
    if let Some(phase) = steps_phase.into_inner().unwrap_or_else(|e| e.into_inner()) {
        phase.finish();
    }
    let (config_json, weights) = scorer.to_bytes()?;
    let version = version_of(&weights);
    suti_stage::publish_model_version(
        store,
        SCORER_MODEL,
        &version,
        vec![(CONFIG_FILE, config_json), (WEIGHTS_FILE, weights)],
    )
    .await?;
    Ok(ScorerJobOutcome { version, report })
}
