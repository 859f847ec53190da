//! Rendering from a loaded apprentice release: requests (a prompt, its demonstrations, seeds)
//! denoised together as one batch. Serving's dynamic batcher, `suti generate` and the evaluation
//! all render through [`render_batch`].

use candle_core::{DType, Tensor};
use suti_data::RgbaImage;
use suti_models::diffusion::{Conditioning, SamplerConfig, SamplerKind, sample_seeded};
use suti_models::text::TextEncoder;
use suti_models::{Demos, Dit, TextCond};

use crate::BaseModel;
use crate::apprentice::DemoSet;
use crate::pixels::{images_from_tensor, to_chw};

/// Caption of a demonstration given without one (by the API, `suti generate`).
pub const DEFAULT_CAPTION: &str = "a photo";

/// A loaded apprentice release.
pub struct LoadedModel {
    /// Release version.
    pub version: String,
    /// The network, frozen.
    pub dit: Dit,
}

impl LoadedModel {
    /// Builds the network of a release from its stored bundle.
    pub fn from_bundle(version: String, bundle: &BaseModel) -> crate::Result<Self> {
        if bundle.config.max_demos == 0 {
            return Err(crate::FactoryError::Invalid(format!(
                "release {version} takes no demonstrations"
            )));
        }
        Ok(Self {
            version,
            dit: bundle.dit()?,
        })
    }

    /// The side of the images it renders.
    pub fn image_size(&self) -> usize {
        self.dit.config().image_size
    }
}

/// A demonstration: an image and its caption.
#[derive(Debug, Clone)]
pub struct Demonstration {
    /// The image, any size (resampled to the model's).
    pub image: RgbaImage,
    /// Its caption.
    pub caption: String,
}

/// One rendering request: a prompt, its demonstrations and one seed per image.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The prompt.
    pub prompt: String,
    /// 0–8 demonstrations.
    pub demonstrations: Vec<Demonstration>,
    /// One seed per image wanted.
    pub seeds: Vec<u64>,
    /// Denoising steps.
    pub steps: usize,
    /// Guidance weight.
    pub guidance: f32,
    /// Separate guidance weight of the demonstrations (`SamplerConfig::demo_guidance`).
    pub demo_guidance: Option<f32>,
}

/// Renders requests as one batch: one row per image, each row with its request's prompt and
/// demonstrations (padded to the batch's most and masked), each from its own seed. Requests must
/// share steps and guidance.
pub fn render_batch(
    model: &LoadedModel,
    text: &TextEncoder,
    requests: &[&Generation],
) -> crate::Result<Vec<Vec<RgbaImage>>> {
    let Some(first) = requests.first() else {
        return Ok(Vec::new());
    };
    let device = model.dit.device().clone();
    let size = model.image_size();
    let plane = 3 * size * size;
    let dmax = requests
        .iter()
        .map(|r| r.demonstrations.len())
        .max()
        .unwrap_or(0);
    let rows: Vec<(usize, u64)> = requests
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.seeds.iter().map(move |s| (i, *s)))
        .collect();
    let prompts: Vec<&str> = rows
        .iter()
        .map(|(i, _)| requests[*i].prompt.as_str())
        .collect();
    let prompt_cond = text.encode(&prompts)?;
    let null = TextCond::null(rows.len(), model.dit.config().text_dim, &device)?;
    let cache = if dmax == 0 {
        None
    } else {
        // Each request's demonstrations once, then copied into its rows.
        let encoded: Vec<DemoSet> = requests
            .iter()
            .map(|r| {
                Ok(DemoSet {
                    images: r
                        .demonstrations
                        .iter()
                        .map(|d| to_chw(&d.image, size))
                        .collect(),
                    pooled: r
                        .demonstrations
                        .iter()
                        .map(|d| text.sentence_vector(&d.caption))
                        .collect::<Result<Vec<_>, _>>()?,
                    frozen_states: Default::default(),
                })
            })
            .collect::<crate::Result<_>>()?;
        let text_dim = model.dit.config().text_dim;
        let mut images = vec![0f32; rows.len() * dmax * plane];
        let mut pooled = vec![0f32; rows.len() * dmax * text_dim];
        let mut mask = vec![0f32; rows.len() * dmax];
        for (row, (i, _)) in rows.iter().enumerate() {
            let set = &encoded[*i];
            for (slot, (image, vector)) in set.images.iter().zip(&set.pooled).enumerate() {
                let at = row * dmax + slot;
                images[at * plane..(at + 1) * plane].copy_from_slice(image);
                pooled[at * text_dim..(at + 1) * text_dim].copy_from_slice(vector);
                mask[at] = 1.0;
            }
        }
        let demos = Demos {
            images: Tensor::from_vec(images, (rows.len(), dmax, 3, size, size), &device)?,
            pooled: Tensor::from_vec(pooled, (rows.len(), dmax, text_dim), &device)?,
            mask: Tensor::from_vec(mask, (rows.len(), dmax), &device)?.to_dtype(DType::F32)?,
        };
        Some(model.dit.encode_demos(&demos)?)
    };
    let sampler = SamplerConfig {
        steps: first.steps,
        guidance: first.guidance,
        demo_guidance: first.demo_guidance,
        kind: SamplerKind::DpmSolver2m,
        ..SamplerConfig::default()
    };
    let seeds: Vec<u64> = rows.iter().map(|(_, s)| *s).collect();
    let images = sample_seeded(
        &model.dit,
        &Conditioning {
            text: &prompt_cond,
            demos: cache.as_ref(),
            null_text: &null,
        },
        &sampler,
        &seeds,
    )?;
    let mut images = images_from_tensor(&images)?.into_iter();
    Ok(requests
        .iter()
        .map(|r| images.by_ref().take(r.seeds.len()).collect())
        .collect())
}
