//! Fitting the heads contrastively, and measuring held-out retrieval before and after.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::Serialize;
use suti_models::train::{AdamW, AdamWConfig, LrSchedule};
use suti_models::{Params, Scorer, ScorerConfig};

use super::{ScorerTrainConfig, Split};
use crate::Result;
use crate::bundle::ScorerModel;

/// What training the scorer measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScorerReport {
    /// Pairs trained on.
    pub train_pairs: usize,
    /// Pairs held out.
    pub heldout_pairs: usize,
    /// Degraded copies of each training pair's image trained on beside it (0: crisp only).
    pub degraded_copies: usize,
    /// Mean contrastive loss of the first and last tenth of the steps.
    pub loss_first: f32,
    /// See `loss_first`.
    pub loss_last: f32,
    /// Share of held-out images whose own caption ranks first among the held-out captions.
    pub heldout_accuracy: f32,
    /// The same before training (the untrained heads), for comparison.
    pub heldout_accuracy_untrained: f32,
    /// The same over the held-out images degraded in each way of [`Degradation::STANDARD`]
    /// (whatever was trained on, so that recipes compare), against the same held-out captions;
    /// `None` when only features were given ([`train_scorer`]).
    pub heldout_accuracy_degraded: Option<f32>,
    /// See `heldout_accuracy_degraded`, for the untrained heads.
    pub heldout_accuracy_degraded_untrained: Option<f32>,
    /// `heldout_accuracy_degraded` by degradation.
    pub heldout_degraded: Vec<DegradedAccuracy>,
}

/// Held-out retrieval accuracy under one degradation.
#[derive(Debug, Clone, Serialize)]
pub struct DegradedAccuracy {
    /// The degradation ([`Degradation::name`]).
    pub degradation: String,
    /// With the trained heads.
    pub accuracy: f32,
    /// With the untrained heads.
    pub untrained: f32,
}

/// The rows `picks` of `data` as one `(picks, width)` tensor.
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

/// Trains on `clean[i]` and `copies[i]` (each with sentence `i`) for the training pairs, and
/// measures the held-out pairs crisp and under each `measured` degradation (features in the
/// order of `split.heldout`).
#[allow(clippy::too_many_arguments)]
pub(super) fn fit(
    split: Split,
    clean: &[Vec<f32>],
    copies: &[Vec<Vec<f32>>],
    measured: &[(String, Vec<Vec<f32>>)],
    sentences: &[Vec<f32>],
    config: &ScorerConfig,
    train: &ScorerTrainConfig,
    device: &Device,
    mut progress: impl FnMut(u64, f32),
) -> Result<(ScorerModel, ScorerReport)> {
    let Split {
        mut rng,
        heldout: test_idx,
        train: train_idx,
    } = split;
    let pick =
        |data: &[Vec<f32>], idx: &[usize]| idx.iter().map(|&i| data[i].clone()).collect::<Vec<_>>();
    let (test_f, test_s) = (pick(clean, &test_idx), pick(sentences, &test_idx));
    let degraded_accuracy = |scorer: &Scorer| -> Result<Vec<f32>> {
        measured
            .iter()
            .map(|(_, f)| retrieval_accuracy(scorer, f, &test_s, device))
            .collect()
    };

    let varmap = VarMap::new();
    let scorer = Scorer::new(config, &Params::train(&varmap, train.seed, device))?;
    let untrained = retrieval_accuracy(&scorer, &test_f, &test_s, device)?;
    let untrained_degraded = degraded_accuracy(&scorer)?;
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
        // Distinct pairs in a batch: a pair that met itself (or its copy) would be its own
        // negative.
        let mut picks: Vec<usize> = train_idx.clone();
        for k in 0..batch {
            let j = k + rng.below(picks.len() - k);
            picks.swap(k, j);
        }
        picks.truncate(batch);
        // Each pair shows one of its versions, crisp or degraded, with equal chance; no draw
        // when it has no copies, so that recipe's batches stay as they were.
        let shown: Vec<&[f32]> = picks
            .iter()
            .map(|&i| match copies[i].len() {
                0 => clean[i].as_slice(),
                n => match rng.below(n + 1) {
                    0 => clean[i].as_slice(),
                    v => copies[i][v - 1].as_slice(),
                },
            })
            .collect();
        let images = Tensor::from_vec(
            shown.concat(),
            (picks.len(), shown.first().map_or(0, |r| r.len())),
            device,
        )?;
        let loss = scorer.contrastive_loss(&images, &rows(sentences, &picks, device)?)?;
        let value = loss.to_scalar::<f32>()?;
        optimizer.step(&loss.backward()?, schedule.at(step))?;
        losses.push(value);
        progress(step + 1, value);
    }
    let accuracy = retrieval_accuracy(&scorer, &test_f, &test_s, device)?;
    let trained_degraded = degraded_accuracy(&scorer)?;
    let tenth = (losses.len() / 10).max(1);
    let mean = |xs: &[f32]| xs.iter().sum::<f32>() / xs.len().max(1) as f32;
    let tensors = varmap
        .data()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect::<candle_core::Result<_>>()?;
    // Every degradation measures the same held-out pairs, so the overall share is the mean.
    let overall = |xs: &[f32]| (!xs.is_empty()).then(|| mean(xs));
    let report = ScorerReport {
        train_pairs: train_idx.len(),
        heldout_pairs: test_idx.len(),
        degraded_copies: train_idx.first().map_or(0, |&i| copies[i].len()),
        loss_first: mean(&losses[..tenth.min(losses.len())]),
        loss_last: mean(&losses[losses.len().saturating_sub(tenth)..]),
        heldout_accuracy: accuracy,
        heldout_accuracy_untrained: untrained,
        heldout_accuracy_degraded: overall(&trained_degraded),
        heldout_accuracy_degraded_untrained: overall(&untrained_degraded),
        heldout_degraded: measured
            .iter()
            .zip(trained_degraded.iter().zip(&untrained_degraded))
            .map(|((name, _), (&accuracy, &untrained))| DegradedAccuracy {
                degradation: name.clone(),
                accuracy,
                untrained,
            })
            .collect(),
    };
    Ok((
        ScorerModel::from_tensors(config.clone(), tensors, device)?,
        report,
    ))
}
