//! Rendering prompts with a text-to-image model (an expert, or the base): several images per
//! prompt, each from its own seed so any one can be regenerated alone, batched for throughput.

use suti_data::RgbaImage;
use suti_models::diffusion::{Conditioning, SamplerConfig, sample_seeded};
use suti_models::text::TextEncoder;
use suti_models::{Dit, TextCond};
use suti_rng::fnv1a64;

use crate::Result;
use crate::pixels::images_from_tensor;

/// One generated image.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Index of its prompt.
    pub prompt_index: usize,
    /// The seed that regenerates it.
    pub seed: u64,
    /// The image.
    pub image: RgbaImage,
}

/// The seed of image `k` of prompt `i` in a run seeded by `seed`.
pub fn image_seed(seed: u64, prompt_index: usize, k: usize) -> u64 {
    fnv1a64(format!("{seed}/{prompt_index}/{k}").as_bytes())
}

/// Renders `per_prompt` images of every prompt, at most `max_batch` images per denoising batch.
pub fn generate(
    model: &Dit,
    text: &TextEncoder,
    prompts: &[String],
    per_prompt: usize,
    sampler: &SamplerConfig,
    max_batch: usize,
) -> Result<Vec<Generated>> {
    let jobs: Vec<(usize, u64)> = (0..prompts.len())
        .flat_map(|i| (0..per_prompt).map(move |k| (i, image_seed(sampler.seed, i, k))))
        .collect();
    let rows: Vec<(&str, u64)> = jobs
        .iter()
        .map(|(i, s)| (prompts[*i].as_str(), *s))
        .collect();
    let images = render_rows(model, text, &rows, sampler, max_batch)?;
    Ok(jobs
        .iter()
        .zip(images)
        .map(|((prompt_index, seed), image)| Generated {
            prompt_index: *prompt_index,
            seed: *seed,
            image,
        })
        .collect())
}

/// Renders one image per `(prompt, seed)` row, at most `max_batch` rows per denoising batch;
/// each image is the one its seed gives alone, whatever shares its batch.
pub fn render_rows(
    model: &Dit,
    text: &TextEncoder,
    rows: &[(&str, u64)],
    sampler: &SamplerConfig,
    max_batch: usize,
) -> Result<Vec<RgbaImage>> {
    let text_dim = model.config().text_dim;
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(max_batch.max(1)) {
        let captions: Vec<&str> = chunk.iter().map(|(p, _)| *p).collect();
        let cond = text.encode(&captions)?;
        let device = cond.pooled.device().clone();
        let null = TextCond::null(chunk.len(), text_dim, &device)?;
        let seeds: Vec<u64> = chunk.iter().map(|(_, s)| *s).collect();
        let images = sample_seeded(
            model,
            &Conditioning {
                text: &cond,
                demos: None,
                null_text: &null,
            },
            sampler,
            &seeds,
        )?;
        out.extend(images_from_tensor(&images)?);
    }
    Ok(out)
}
