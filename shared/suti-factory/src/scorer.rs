//! Training the CLIP-style scorer (`suti train scorer`, DESIGN §7.5): the image tower and MiniLM
//! stay frozen, so their outputs are computed once per pair; only the projection heads learn,
//! contrastively, and held-out pairs measure how often the right caption ranks first.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use suti_data::RgbaImage;
use suti_models::image_tower::{ImageTower, preprocess};
use suti_models::train::{AdamW, AdamWConfig, LrSchedule};
use suti_models::{Params, Scorer, ScorerConfig};
use suti_rng::SplitMix64;

use crate::bundle::ScorerModel;
use crate::{FactoryError, Result};

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
    /// Seed of initialisation, the split and batches.
    pub seed: u64,
}

impl Default for ScorerTrainConfig {
    fn default() -> Self {
        Self {
            steps: 600,
            batch: 64,
            learning_rate: 1e-3,
            holdout: 0.2,
            seed: 0,
        }
    }
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

/// What training the scorer measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScorerReport {
    /// Pairs trained on.
    pub train_pairs: usize,
    /// Pairs held out.
    pub heldout_pairs: usize,
    /// Mean contrastive loss of the first and last tenth of the steps.
    pub loss_first: f32,
    /// See `loss_first`.
    pub loss_last: f32,
    /// Share of held-out images whose own caption ranks first among the held-out captions.
    pub heldout_accuracy: f32,
    /// The same before training (the untrained heads), for comparison.
    pub heldout_accuracy_untrained: f32,
}

fn rows(data: &[Vec<f32>], picks: &[usize], device: &Device) -> Result<Tensor> {
    let width = data.first().map(Vec::len).unwrap_or(0);
    let flat: Vec<f32> = picks
        .iter()
        .flat_map(|&i| data[i].iter().copied())
        .collect();
    Ok(Tensor::from_vec(flat, (picks.len(), width), device)?)
}

/// Share of `features[i]` whose best-matching sentence among `sentences` is `sentences[i]`.
pub fn retrieval_accuracy(
    scorer: &Scorer,
    features: &[Vec<f32>],
    sentences: &[Vec<f32>],
    device: &Device,
) -> Result<f32> {
    if features.is_empty() {
        return Ok(0.0);
    }
    let all: Vec<usize> = (0..features.len()).collect();
    let images = scorer.embed_images(&rows(features, &all, device)?)?;
    let texts = scorer.embed_texts(&rows(sentences, &all, device)?)?;
    let best: Vec<u32> = images.matmul(&texts.t()?)?.argmax(1)?.to_vec1()?;
    let right = best
        .iter()
        .enumerate()
        .filter(|(i, b)| **b as usize == *i)
        .count();
    Ok(right as f32 / features.len() as f32)
}

/// Trains the heads on pairs of image-tower features and sentence vectors; `progress` sees each
/// step's number and loss.
pub fn train_scorer(
    features: &[Vec<f32>],
    sentences: &[Vec<f32>],
    config: &ScorerConfig,
    train: &ScorerTrainConfig,
    device: &Device,
    mut progress: impl FnMut(u64, f32),
) -> Result<(ScorerModel, ScorerReport)> {
    if features.len() != sentences.len() || features.len() < 4 {
        return Err(FactoryError::Invalid(format!(
            "the scorer needs matching image and caption lists of at least 4 pairs (got {} and {})",
            features.len(),
            sentences.len()
        )));
    }
    let mut rng = SplitMix64::derive(train.seed, "scorer");
    let mut order: Vec<usize> = (0..features.len()).collect();
    for k in (1..order.len()).rev() {
        order.swap(k, rng.below(k + 1));
    }
    let heldout =
        ((features.len() as f32 * train.holdout).round() as usize).min(features.len() - 2);
    let (test_idx, train_idx) = order.split_at(heldout);
    let pick =
        |data: &[Vec<f32>], idx: &[usize]| idx.iter().map(|&i| data[i].clone()).collect::<Vec<_>>();
    let (test_f, test_s) = (pick(features, test_idx), pick(sentences, test_idx));

    let varmap = VarMap::new();
    let scorer = Scorer::new(config, &Params::train(&varmap, train.seed, device))?;
    let untrained = retrieval_accuracy(&scorer, &test_f, &test_s, device)?;
    let mut optimizer = AdamW::new(&varmap, AdamWConfig::default())?;
    let schedule = LrSchedule {
        base: train.learning_rate,
        warmup: train.steps / 20,
        total: train.steps,
        min_ratio: 0.1,
    };
    let batch = train.batch.clamp(2, train_idx.len());
    let mut losses = Vec::with_capacity(train.steps as usize);
    for step in 0..train.steps {
        // Distinct pairs in a batch: a pair that met itself would be its own negative.
        let mut picks: Vec<usize> = train_idx.to_vec();
        for k in 0..batch {
            let j = k + rng.below(picks.len() - k);
            picks.swap(k, j);
        }
        picks.truncate(batch);
        let loss = scorer.contrastive_loss(
            &rows(features, &picks, device)?,
            &rows(sentences, &picks, device)?,
        )?;
        let value = loss.to_scalar::<f32>()?;
        optimizer.step(&loss.backward()?, schedule.at(step))?;
        losses.push(value);
        progress(step + 1, value);
    }
    let accuracy = retrieval_accuracy(&scorer, &test_f, &test_s, device)?;
    let tenth = (losses.len() / 10).max(1);
    let mean = |xs: &[f32]| xs.iter().sum::<f32>() / xs.len().max(1) as f32;
    let tensors = varmap
        .data()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect::<candle_core::Result<_>>()?;
    let report = ScorerReport {
        train_pairs: train_idx.len(),
        heldout_pairs: test_idx.len(),
        loss_first: mean(&losses[..tenth.min(losses.len())]),
        loss_last: mean(&losses[losses.len().saturating_sub(tenth)..]),
        heldout_accuracy: accuracy,
        heldout_accuracy_untrained: untrained,
    };
    Ok((
        ScorerModel::from_tensors(config.clone(), tensors, device)?,
        report,
    ))
}
