//! Training the CLIP-style scorer (`suti train scorer`, architecture.md §7.5): the image tower and
//! MiniLM stay frozen, so their outputs are computed once per pair; only the projection heads
//! learn, contrastively, and held-out pairs measure how often the right caption ranks first.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use suti_data::RgbaImage;
use suti_models::ScorerConfig;
use suti_models::image_tower::{ImageTower, preprocess};
use suti_rng::SplitMix64;

use crate::bundle::ScorerModel;
use crate::{FactoryError, Result};

mod degradation;
mod fit;
#[cfg(test)]
mod tests;

pub use degradation::{Degradation, Degradations};
pub use fit::{DegradedAccuracy, ScorerReport, retrieval_accuracy};

use fit::fit;

/// How the scorer's heads are trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScorerTrainConfig {
    /// Optimiser steps.
    pub steps: u64,
    /// Pairs per contrastive batch.
    pub batch: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Share of the pairs held out to measure retrieval.
    pub holdout: f32,
    /// Seed of initialisation, the split, batches and the degradations' noise.
    pub seed: u64,
    /// Degraded copies of each training image trained on beside it, with its caption (only
    /// [`train_scorer_on_images`] makes them: [`train_scorer`] trains on the features it is
    /// given).
    pub degradations: Degradations,
}

impl Default for ScorerTrainConfig {
    fn default() -> Self {
        Self {
            steps: 600,
            batch: 64,
            learning_rate: 1e-3,
            holdout: 0.2,
            seed: 0,
            degradations: Degradations::default(),
        }
    }
}
/// The seed of the noise of copy `copy` of pair `pair`: fixed by the pair, so the runs being
/// compared see the same noisy images.
fn noise_seed(seed: u64, pair: usize, copy: usize) -> u64 {
    SplitMix64::derive(seed, &format!("scorer/degrade/{pair}/{copy}")).next_u64()
}

/// Image-tower features `(1280,)` of each image, computed in small batches.
pub fn tower_features(tower: &ImageTower, images: &[RgbaImage]) -> Result<Vec<Vec<f32>>> {
    let device = tower.device().clone();
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(8) {
        let inputs = chunk
            .iter()
            .map(|img| {
                preprocess(
                    img.width as usize,
                    img.height as usize,
                    &img.pixels,
                    &device,
                )
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let features = tower.features(&Tensor::stack(&inputs, 0)?)?;
        out.extend(features.to_vec2::<f32>()?);
    }
    Ok(out)
}
/// Trains the heads on pairs of image-tower features and sentence vectors; `progress` sees each
/// step's number and loss. Only these features are trained on: degraded copies need the images
/// ([`train_scorer_on_images`]).
pub fn train_scorer(
    features: &[Vec<f32>],
    sentences: &[Vec<f32>],
    config: &ScorerConfig,
    train: &ScorerTrainConfig,
    device: &Device,
    progress: impl FnMut(u64, f32),
) -> Result<(ScorerModel, ScorerReport)> {
    check_pairs(features.len(), sentences.len())?;
    let split = Split::new(features.len(), train);
    let copies = vec![Vec::new(); features.len()];
    fit(
        split,
        features,
        &copies,
        &[],
        sentences,
        config,
        train,
        device,
        progress,
    )
}

/// Trains the heads on images at the model side and their captions' sentence vectors: each
/// training image also appears as its degraded copies ([`ScorerTrainConfig::degradations`]) with
/// the same caption, and the held-out images are also measured degraded
/// ([`Degradation::STANDARD`]). The split is by pair, so a held-out pair's copies are never
/// trained on. `features` turns images into image-tower features ([`tower_features`]); it is
/// called once, with every image needed, so the frozen tower sees each copy once.
#[allow(clippy::too_many_arguments)]
pub fn train_scorer_on_images(
    images: &[RgbaImage],
    sentences: &[Vec<f32>],
    features: impl FnOnce(&[RgbaImage]) -> Result<Vec<Vec<f32>>>,
    config: &ScorerConfig,
    train: &ScorerTrainConfig,
    device: &Device,
    progress: impl FnMut(u64, f32),
) -> Result<(ScorerModel, ScorerReport)> {
    check_pairs(images.len(), sentences.len())?;
    let split = Split::new(images.len(), train);
    let trained_on = train.degradations.list();
    let measured_on = Degradation::STANDARD;
    // Every image the tower must see, in one list: the crisp ones, the training pairs' copies,
    // then the held-out pairs' copies.
    let mut batch: Vec<RgbaImage> = images.to_vec();
    for &pair in &split.train {
        for (k, d) in trained_on.iter().enumerate() {
            batch.push(d.apply(&images[pair], noise_seed(train.seed, pair, k)));
        }
    }
    for (k, d) in measured_on.iter().enumerate() {
        for &pair in &split.heldout {
            batch.push(d.apply(&images[pair], noise_seed(train.seed, pair, k)));
        }
    }
    let mut all = features(&batch)?.into_iter();
    if all.len() != batch.len() {
        return Err(FactoryError::Invalid(format!(
            "{} features for {} images",
            all.len(),
            batch.len()
        )));
    }
    let clean: Vec<Vec<f32>> = all.by_ref().take(images.len()).collect();
    let mut copies = vec![Vec::new(); images.len()];
    for &pair in &split.train {
        copies[pair] = all.by_ref().take(trained_on.len()).collect();
    }
    let measured: Vec<(String, Vec<Vec<f32>>)> = measured_on
        .iter()
        .map(|d| (d.name(), all.by_ref().take(split.heldout.len()).collect()))
        .collect();
    fit(
        split, &clean, &copies, &measured, sentences, config, train, device, progress,
    )
}

/// Refuses lists of different lengths, or too short to split.
fn check_pairs(images: usize, sentences: usize) -> Result<()> {
    if images != sentences || images < 4 {
        return Err(FactoryError::Invalid(format!(
            "the scorer needs matching image and caption lists of at least 4 pairs (got {images} and {sentences})"
        )));
    }
    Ok(())
}

/// The held-out split by pair, and the generator that goes on to draw the batches (one stream,
/// so the recipe without copies draws what it always drew).
struct Split {
    /// Draws the batches once the split is made.
    rng: SplitMix64,
    /// The held-out pairs.
    heldout: Vec<usize>,
    /// The training pairs.
    train: Vec<usize>,
}

impl Split {
    fn new(pairs: usize, train: &ScorerTrainConfig) -> Self {
        let mut rng = SplitMix64::derive(train.seed, "scorer");
        let mut order: Vec<usize> = (0..pairs).collect();
        for k in (1..order.len()).rev() {
            order.swap(k, rng.below(k + 1));
        }
        let heldout = ((pairs as f32 * train.holdout).round() as usize).min(pairs - 2);
        let train = order.split_off(heldout);
        Self {
            rng,
            heldout: order,
            train,
        }
    }
}
