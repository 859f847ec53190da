//! Training the CLIP-style scorer (`suti train scorer`, architecture.md §7.5): the image tower and
//! MiniLM stay frozen, so their outputs are computed once per pair; only the projection heads
//! learn, contrastively, and held-out pairs measure how often the right caption ranks first.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use suti_data::{RgbaImage, degrade};
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

/// One way of spoiling an image at the model side the way a small diffusion model's output is
/// spoilt: resampled down and back up, then box-blurred, then noised; each step is skipped when
/// its setting is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Degradation {
    /// The image is reduced to its side divided by this and scaled back up (`down_up`; 1: no
    /// resampling).
    pub downsample: u32,
    /// Box-blur radius in pixels (0: no blur).
    pub blur: u32,
    /// Amplitude of the uniform noise added to each colour channel, of 255 (0: no noise).
    pub noise: u8,
}

impl Default for Degradation {
    fn default() -> Self {
        Self {
            downsample: 1,
            blur: 0,
            noise: 0,
        }
    }
}

impl Degradation {
    /// The standard set, at the model side: half the resolution, a radius-1 blur, ±24 noise,
    /// and half the resolution with the noise — blur and noise are what the small models'
    /// generations show, often together.
    pub const STANDARD: [Degradation; 4] = [
        Degradation {
            downsample: 2,
            blur: 0,
            noise: 0,
        },
        Degradation {
            downsample: 1,
            blur: 1,
            noise: 0,
        },
        Degradation {
            downsample: 1,
            blur: 0,
            noise: 24,
        },
        Degradation {
            downsample: 2,
            blur: 0,
            noise: 24,
        },
    ];

    /// `img` degraded; `seed` draws the noise.
    pub fn apply(&self, img: &RgbaImage, seed: u64) -> RgbaImage {
        let mut out = if self.downsample > 1 {
            degrade::down_up(img, (img.width.min(img.height) / self.downsample).max(1))
        } else {
            img.clone()
        };
        if self.blur > 0 {
            out = degrade::box_blur(&out, self.blur);
        }
        if self.noise > 0 {
            out = degrade::add_noise(&out, self.noise, seed);
        }
        out
    }

    /// A short name, as the reports print it (`down_up 1/2 + noise ±24`).
    pub fn name(&self) -> String {
        let mut parts = Vec::new();
        if self.downsample > 1 {
            parts.push(format!("down_up 1/{}", self.downsample));
        }
        if self.blur > 0 {
            parts.push(format!("blur r{}", self.blur));
        }
        if self.noise > 0 {
            parts.push(format!("noise ±{}", self.noise));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" + ")
        }
    }
}

/// Which degraded copies of each training image the scorer trains on. The crawled images are
/// crisp and the generations it must judge are not; trained on crisp images only, the heads
/// score generations near zero against any caption.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Degradations {
    /// Crisp images only (the recipe before degraded copies).
    None,
    /// One copy per degradation of [`Degradation::STANDARD`].
    #[default]
    Standard,
    /// One copy per listed degradation.
    Custom(Vec<Degradation>),
}

impl Degradations {
    /// The degradations, one copy each.
    pub fn list(&self) -> Vec<Degradation> {
        match self {
            Self::None => Vec::new(),
            Self::Standard => Degradation::STANDARD.to_vec(),
            Self::Custom(list) => list.clone(),
        }
    }
}

impl std::str::FromStr for Degradations {
    type Err = String;

    /// `none` or `standard` (the command line's spelling).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "standard" => Ok(Self::Standard),
            other => Err(format!("{other:?}: expected none or standard")),
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
    rng: SplitMix64,
    heldout: Vec<usize>,
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

/// Trains on `clean[i]` and `copies[i]` (each with sentence `i`) for the training pairs, and
/// measures the held-out pairs crisp and under each `measured` degradation (features in the
/// order of `split.heldout`).
#[allow(clippy::too_many_arguments)]
fn fit(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 32×32 image of four coloured quadrants drawn from `seed`, with a one-pixel checker
    /// over it (detail the degradations remove).
    fn image(seed: u64) -> RgbaImage {
        let mut rng = SplitMix64::new(seed);
        let colours: Vec<[u8; 3]> = (0..4)
            .map(|_| [0; 3].map(|_| (rng.below(200) + 28) as u8))
            .collect();
        let mut img = RgbaImage::new(32, 32);
        for y in 0..32 {
            for x in 0..32 {
                let c = colours[(y / 16 * 2 + x / 16) as usize];
                let d = if (x + y) % 2 == 0 { 20 } else { 0 };
                img.put(x, y, [c[0] + d, c[1] + d, c[2] + d, 255]);
            }
        }
        img
    }

    #[test]
    fn degradations_spoil_images_reproducibly_and_are_named() {
        let img = image(1);
        let names: Vec<String> = Degradation::STANDARD
            .iter()
            .map(Degradation::name)
            .collect();
        assert_eq!(
            names,
            [
                "down_up 1/2",
                "blur r1",
                "noise ±24",
                "down_up 1/2 + noise ±24"
            ]
        );
        for d in Degradation::STANDARD {
            let spoilt = d.apply(&img, 7);
            assert_eq!((spoilt.width, spoilt.height), (32, 32));
            assert_ne!(spoilt, img, "{} changed nothing", d.name());
            assert_eq!(spoilt, d.apply(&img, 7), "{} is not reproducible", d.name());
        }
        assert_eq!(Degradation::default().apply(&img, 7), img);
        assert_eq!(Degradation::default().name(), "none");
        assert_eq!(Degradations::default(), Degradations::Standard);
        assert!(Degradations::None.list().is_empty());
        assert_eq!("none".parse(), Ok(Degradations::None));
        assert_eq!("standard".parse(), Ok(Degradations::Standard));
        assert!("blurry".parse::<Degradations>().is_err());
        let custom: ScorerTrainConfig =
            serde_json::from_str(r#"{"degradations": {"custom": [{"blur": 2}]}}"#).unwrap();
        assert_eq!(
            custom.degradations.list(),
            [Degradation {
                blur: 2,
                ..Degradation::default()
            }]
        );
    }

    #[test]
    fn copies_are_trained_for_training_pairs_and_only_measured_for_held_out_ones() {
        let device = Device::Cpu;
        let images: Vec<RgbaImage> = (0..10).map(image).collect();
        let mut rng = SplitMix64::new(3);
        let sentences: Vec<Vec<f32>> = (0..10).map(|_| rng.normals(6)).collect();
        let config = ScorerConfig {
            image_dim: 12,
            text_dim: 6,
            hidden: 16,
            embed_dim: 8,
            temperature: 0.07,
        };
        // Features: the mean colour of each quadrant.
        let featurise = |img: &RgbaImage| -> Vec<f32> {
            let mut f = vec![0f32; 12];
            for y in 0..32 {
                for x in 0..32 {
                    let q = (y / 16 * 2 + x / 16) as usize;
                    for c in 0..3 {
                        f[q * 3 + c] += f32::from(img.get(x, y)[c]) / (255.0 * 256.0);
                    }
                }
            }
            f
        };
        for (degradations, copies) in [(Degradations::None, 0), (Degradations::Standard, 4)] {
            let train = ScorerTrainConfig {
                steps: 5,
                batch: 4,
                degradations,
                ..ScorerTrainConfig::default()
            };
            let mut seen = Vec::new();
            let (_, report) = train_scorer_on_images(
                &images,
                &sentences,
                |batch| {
                    seen = batch.to_vec();
                    Ok(batch.iter().map(featurise).collect())
                },
                &config,
                &train,
                &device,
                |_, _| {},
            )
            .unwrap();
            assert_eq!((report.train_pairs, report.heldout_pairs), (8, 2));
            assert_eq!(report.degraded_copies, copies);
            // The crisp images, the training pairs' copies, then four measured copies of each
            // held-out pair; a copy's pair is the crisp image nearest it (the quadrants'
            // colours survive the degradations).
            assert_eq!(seen.len(), 10 + 8 * copies + 2 * 4);
            assert_eq!(seen[..10], images[..]);
            let pair_of = |img: &RgbaImage| {
                let f = featurise(img);
                (0..10)
                    .min_by(|&a, &b| {
                        let d = |i: usize| -> f32 {
                            featurise(&images[i])
                                .iter()
                                .zip(&f)
                                .map(|(x, y)| (x - y).powi(2))
                                .sum()
                        };
                        d(a).total_cmp(&d(b))
                    })
                    .unwrap()
            };
            let trained: std::collections::BTreeSet<usize> =
                seen[10..10 + 8 * copies].iter().map(pair_of).collect();
            let measured: std::collections::BTreeSet<usize> =
                seen[10 + 8 * copies..].iter().map(pair_of).collect();
            assert_eq!(trained.len(), if copies > 0 { 8 } else { 0 });
            assert_eq!(measured.len(), 2);
            assert!(
                trained.is_disjoint(&measured),
                "a held-out pair's copy was trained on"
            );
            assert_eq!(report.heldout_degraded.len(), 4);
            assert!(report.heldout_accuracy_degraded.is_some());
        }
        // Features without images: nothing degraded to measure.
        let features: Vec<Vec<f32>> = images.iter().map(featurise).collect();
        let (_, report) = train_scorer(
            &features,
            &sentences,
            &config,
            &ScorerTrainConfig {
                steps: 5,
                batch: 4,
                ..ScorerTrainConfig::default()
            },
            &device,
            |_, _| {},
        )
        .unwrap();
        assert_eq!(report.degraded_copies, 0);
        assert_eq!(report.heldout_accuracy_degraded, None);
    }
}
