//! Triplets whose targets are the renderer's true images instead of an expert's generations: a
//! diagnostic that is never the default. An apprentice trained on them shows what the
//! architecture and the amount of data allow when the teacher is perfect, so a gap between it
//! and the pipeline's apprentice is the teachers' and no gap is the architecture's.
//!
//! Each training-split subject gets five demonstrations in recontextualisation scenes, captioned
//! as the evaluation's are ("a photo of my teapot in the jungle"), and targets for prompts of
//! the kinds asked for (property prompts change the subject, so they are left out by default).

use std::sync::Arc;

use suti_data::prompts::{PromptKind, prompts_for};
use suti_data::render::{render, render_with_box};
use suti_data::{Assets, Scene, Split, Subject, SubjectKind};
use suti_models::text::TextEncoder;
use suti_rng::SplitMix64;

use crate::apprentice::{DemoSet, Triplet};
use crate::pixels::to_chw;
use crate::training::Pair;
use crate::{FactoryError, Result};

/// Demonstrations per subject, as the evaluation set has.
pub const DEMOS: usize = 5;

/// Side the scenes are rendered at before they are resampled to the model's side (the
/// evaluation set's resolution).
pub const RENDER_SIDE: u32 = 64;

/// Which true-image triplets to make.
#[derive(Debug, Clone)]
pub struct TrueTripletSettings {
    /// Training-split subjects (drawn at random from the catalogue; 0 for all).
    pub subjects: usize,
    /// Subjects of the draw left out first, with every other subject of their classes: an
    /// apprentice drawn after the `N` subjects a base was trained on (same seed) meets only
    /// classes that base never saw, as it does at evaluation.
    pub skip_subjects: usize,
    /// Targets per subject, each a different prompt.
    pub targets_per_subject: usize,
    /// The prompt kinds targets are drawn from.
    pub kinds: Vec<PromptKind>,
    /// Seed of the subject draw, scenes and poses.
    pub seed: u64,
    /// Share of the targets whose prompt names the subject by a generic word (`animal`,
    /// `object`) instead of its class noun, so that only the demonstrations say what it is: a
    /// held-out class's noun tells the model no more than that.
    pub generic_noun_share: f32,
}

impl Default for TrueTripletSettings {
    fn default() -> Self {
        Self {
            subjects: 200,
            skip_subjects: 0,
            targets_per_subject: 8,
            kinds: vec![PromptKind::Recontextualisation, PromptKind::Accessorisation],
            seed: 0,
            generic_noun_share: 0.0,
        }
    }
}

/// The subjects the triplets are made of: `settings.subjects` subjects of `split` (the training
/// split to train on, the held-out split to measure on).
pub fn true_triplet_subjects(
    assets: &Assets,
    split: Split,
    settings: &TrueTripletSettings,
) -> Vec<Subject> {
    let mut all = assets.catalog().subjects(split);
    let mut rng = SplitMix64::derive(settings.seed, "true-triplets/subjects");
    for k in (1..all.len()).rev() {
        all.swap(k, rng.below(k + 1));
    }
    let skipped: std::collections::HashSet<String> = all
        .iter()
        .take(settings.skip_subjects)
        .map(|s| s.class.unified.clone())
        .collect();
    all.retain(|s| !skipped.contains(&s.class.unified));
    if settings.subjects > 0 {
        all.truncate(settings.subjects);
    }
    all
}

/// One subject's true images: its demonstrations with their captions, and its targets with
/// their prompts, all at the model's side.
struct SubjectRenders {
    demo_images: Vec<Vec<f32>>,
    demo_captions: Vec<String>,
    targets: Vec<(String, Vec<f32>)>,
}

fn check(settings: &TrueTripletSettings) -> Result<()> {
    if settings.targets_per_subject == 0 || settings.kinds.is_empty() {
        return Err(FactoryError::Invalid(
            "true-image triplets need at least one target per subject and one prompt kind".into(),
        ));
    }
    Ok(())
}

fn render_subject(
    assets: &Assets,
    subject: &Subject,
    settings: &TrueTripletSettings,
    size: usize,
) -> Result<SubjectRenders> {
    let sprite = assets
        .sprite(subject)
        .map_err(|e| FactoryError::Invalid(e.to_string()))?;
    let id = subject.id();
    let noun = &subject.class.noun;
    let mut rng = SplitMix64::derive(settings.seed, &format!("true-triplets/{id}"));
    let mut scenes = Scene::RECONTEXTUALISATION.to_vec();
    for k in (1..scenes.len()).rev() {
        scenes.swap(k, rng.below(k + 1));
    }
    let shown: Vec<Scene> = scenes.into_iter().take(DEMOS).collect();
    let demo_images: Vec<Vec<f32>> = shown
        .iter()
        .map(|&scene| {
            let (img, _) = render_with_box(&sprite, scene, None, None, rng.next_u64(), RENDER_SIDE);
            to_chw(&img, size)
        })
        .collect();
    let demo_captions: Vec<String> = shown
        .iter()
        .map(|scene| format!("a photo of my {noun} {}", scene.phrase()))
        .collect();
    let mut prompts: Vec<_> = prompts_for(subject.class.kind)
        .into_iter()
        .filter(|p| settings.kinds.contains(&p.kind))
        .collect();
    for k in (1..prompts.len()).rev() {
        prompts.swap(k, rng.below(k + 1));
    }
    // A generator of its own, so that the renders do not depend on the share.
    let mut naming = SplitMix64::derive(settings.seed, &format!("true-triplets/generic/{id}"));
    let generic = match subject.class.kind {
        SubjectKind::Live => "animal",
        SubjectKind::Object => "object",
    };
    let targets = prompts
        .iter()
        .take(settings.targets_per_subject)
        .map(|prompt| {
            let img = render(&sprite, prompt, rng.next_u64(), RENDER_SIDE);
            let named = if naming.chance(settings.generic_noun_share) {
                generic
            } else {
                noun
            };
            (prompt.text(named), to_chw(&img, size))
        })
        .collect();
    Ok(SubjectRenders {
        demo_images,
        demo_captions,
        targets,
    })
}

/// Triplets for `subjects` at the model's `size`, with `on_subject` called after each subject
/// (for progress).
pub fn true_triplets(
    assets: &Assets,
    subjects: &[Subject],
    settings: &TrueTripletSettings,
    text: &TextEncoder,
    size: usize,
    on_subject: &mut dyn FnMut(),
) -> Result<Vec<Triplet>> {
    check(settings)?;
    let mut triplets = Vec::with_capacity(subjects.len() * settings.targets_per_subject);
    for subject in subjects {
        let renders = render_subject(assets, subject, settings, size)?;
        let demos = Arc::new(DemoSet::new(
            renders.demo_images,
            &renders.demo_captions,
            text,
        )?);
        for (prompt, target) in renders.targets {
            triplets.push(Triplet {
                demos: demos.clone(),
                prompt,
                target,
            });
        }
        on_subject();
    }
    Ok(triplets)
}

/// The same subjects' true images as text-to-image pairs (demonstrations with their captions,
/// targets with their prompts), for a base model that knows many classes: the data-scale
/// diagnostic, never the pipeline's default (its base learns from the crawl).
pub fn true_pairs(
    assets: &Assets,
    subjects: &[Subject],
    settings: &TrueTripletSettings,
    size: usize,
    on_subject: &mut dyn FnMut(),
) -> Result<Vec<Pair>> {
    check(settings)?;
    let mut pairs = Vec::with_capacity(subjects.len() * (DEMOS + settings.targets_per_subject));
    for subject in subjects {
        let renders = render_subject(assets, subject, settings, size)?;
        let demos = renders.demo_images.into_iter().zip(renders.demo_captions);
        for (image, caption) in demos.chain(renders.targets.into_iter().map(|(p, t)| (t, p))) {
            pairs.push(Pair { image, caption });
        }
        on_subject();
    }
    Ok(pairs)
}
