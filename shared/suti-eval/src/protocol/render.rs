//! Rendering a group of subjects' images for one method: the base and the experts from text, the
//! apprentice from text and demonstrations, each image from the seed every method shares.

use std::time::Instant;

use suti_data::RgbaImage;
use suti_factory::expert::{finetune_expert, personalise};
use suti_factory::generate::{image_seed, render_rows};
use suti_factory::pixels::to_chw;
use suti_factory::render::{Generation, render_batch};
use suti_factory::training::Pair;
use suti_models::Dit;
use suti_models::diffusion::SamplerConfig;
use suti_models::text::TextEncoder;

use super::{EvalModels, EvalSettings};
use crate::Result;
use crate::subjects::EvalSubject;

/// One subject's images from one method (prompt by prompt) and the seconds spent on them; absent
/// where the method did not run on the subject.
pub(super) type SubjectImages = Option<(Vec<RgbaImage>, f64)>;

/// Renders `(prompt, seed)` rows with a text-to-image network, `max_batch` rows per batch.
pub(super) fn render_text_rows(
    dit: &Dit,
    text: &TextEncoder,
    rows: &[(String, u64)],
    sampler: &SamplerConfig,
    max_batch: usize,
) -> Result<Vec<RgbaImage>> {
    let rows: Vec<(&str, u64)> = rows.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    Ok(render_rows(dit, text, &rows, sampler, max_batch)?)
}

/// The subject whose demonstrations the shuffled control gives `si`'s prompts: the nearest
/// following subject of another class.
pub(super) fn shuffled_partner(subjects: &[EvalSubject], si: usize) -> Option<usize> {
    let n = subjects.len();
    (1..n)
        .map(|k| (si + k) % n)
        .find(|&j| subjects[j].noun != subjects[si].noun)
        .or_else(|| (n > 1).then(|| (si + 1) % n))
}

/// Splits a group's images (subject by subject, `per_prompt` per prompt) back per subject, the
/// wall time shared out by images.
pub(super) fn split_by_subject(
    subjects: &[EvalSubject],
    group: &[usize],
    images: Vec<RgbaImage>,
    per_prompt: usize,
    started: Instant,
) -> Vec<SubjectImages> {
    let seconds = started.elapsed().as_secs_f64();
    let total = images.len().max(1) as f64;
    let mut it = images.into_iter();
    group
        .iter()
        .map(|&si| {
            let n = subjects[si].prompts.len() * per_prompt;
            let mine: Vec<RgbaImage> = it.by_ref().take(n).collect();
            let share = seconds * mine.len() as f64 / total;
            Some((mine, share))
        })
        .collect()
}

/// Fine-tunes an expert on the subject's demonstrations and renders its prompts with the
/// identifier.
pub(super) fn render_expert(
    models: &EvalModels,
    subject: &EvalSubject,
    settings: &EvalSettings,
    sampler: &SamplerConfig,
    si: usize,
    side: u32,
) -> Result<Vec<RgbaImage>> {
    let pairs: Vec<Pair> = subject
        .demos
        .iter()
        .map(|d| Pair {
            image: to_chw(&d.image, side as usize),
            caption: personalise(&d.caption, &subject.noun, &settings.expert.identifier_token),
        })
        .collect();
    let trained = finetune_expert(
        &models.base,
        &pairs,
        &models.text,
        &settings.expert,
        settings.seed ^ si as u64,
        |_, _| {},
    )?;
    let dit = models.base.with_adapter(
        &trained.adapter,
        suti_factory::artifacts::stored_adapter_lora(settings.expert.rank),
    )?;
    let rows: Vec<(String, u64)> = (0..subject.prompts.len())
        .flat_map(|i| {
            (0..settings.images).map(move |k| {
                (
                    subject.prompts[i].personalised.clone(),
                    image_seed(settings.seed, i, k),
                )
            })
        })
        .collect();
    render_text_rows(&dit, &models.text, &rows, sampler, 16)
}

/// Renders each subject of `group` from the apprentice, its prompts given the first `demos`
/// demonstrations of `given[k]` (itself, or another subject for the shuffled control).
pub(super) fn render_apprentice(
    models: &EvalModels,
    subjects: &[EvalSubject],
    group: &[usize],
    given: &[usize],
    demos: usize,
    settings: &EvalSettings,
    seeds: &dyn Fn(usize) -> Vec<(usize, u64)>,
) -> Result<Vec<SubjectImages>> {
    let start = Instant::now();
    let mut requests = Vec::new();
    for (&si, &gi) in group.iter().zip(given) {
        let subject = &subjects[si];
        for (i, p) in subject.prompts.iter().enumerate() {
            requests.push(Generation {
                prompt: p.plain.clone(),
                demonstrations: subjects[gi].demos.iter().take(demos).cloned().collect(),
                seeds: seeds(subject.prompts.len())
                    .into_iter()
                    .filter(|(pi, _)| *pi == i)
                    .map(|(_, s)| s)
                    .collect(),
                steps: settings.steps,
                guidance: settings.apprentice_guidance,
                // With no demonstrations there is nothing to guide towards.
                demo_guidance: if demos == 0 {
                    None
                } else {
                    settings.demo_guidance
                },
            });
        }
    }
    let refs: Vec<&Generation> = requests.iter().collect();
    let images: Vec<RgbaImage> = render_batch(&models.apprentice, &models.text, &refs)?
        .into_iter()
        .flatten()
        .collect();
    Ok(split_by_subject(
        subjects,
        group,
        images,
        settings.images,
        start,
    ))
}
