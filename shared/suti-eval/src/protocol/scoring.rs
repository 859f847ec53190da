//! Scoring a subject's images: against its reference sets (the subject metrics) and, in the
//! joint space, against its demonstrations (CLIP-I) and prompts (CLIP-T).

use suti_data::RgbaImage;

use super::{EvalModels, SubjectResult};
use crate::Result;
use crate::features::{dot, mean_cosine, prepare};
use crate::metrics::ReferenceSets;
use crate::subjects::EvalSubject;

/// One subject's scoring context: its reference sets and its demonstrations and prompts in the
/// scorer's space.
pub(super) struct Scoring {
    /// The subject metrics' reference sets.
    refs: ReferenceSets,
    /// The demonstrations in the joint space.
    demo_joint: Vec<Vec<f32>>,
    /// The prompts in the joint space.
    prompt_joint: Vec<Vec<f32>>,
}

impl Scoring {
    /// The context of `subject`, its images at `side`.
    pub(super) fn new(models: &EvalModels, subject: &EvalSubject, side: u32) -> Result<Self> {
        let demos: Vec<RgbaImage> = subject
            .demo_images()
            .iter()
            .map(|d| d.centre_square(side))
            .collect();
        let prompts: Vec<String> = subject.prompts.iter().map(|p| p.plain.clone()).collect();
        Ok(Self {
            refs: ReferenceSets::build(&models.subject, models.centring.as_ref(), subject, side)?,
            demo_joint: models.scorer.embed_images(&demos)?,
            prompt_joint: models.scorer.embed_texts(&prompts)?,
        })
    }

    /// Scores images, image `k` rendered for prompt `prompt_of[k]` (none: no prompt to follow).
    pub(super) fn score(
        &self,
        models: &EvalModels,
        images: &[RgbaImage],
        prompt_of: &dyn Fn(usize) -> Option<usize>,
        refs: Option<&ReferenceSets>,
        seconds: f64,
    ) -> Result<SubjectResult> {
        let refs = refs.unwrap_or(&self.refs);
        let features = prepare(&models.subject.features(images)?, models.centring.as_ref());
        let joint = models.scorer.embed_images(images)?;
        let n = images.len().max(1) as f64;
        let (mut margin, mut identified, mut instance) = (Vec::new(), Vec::new(), Vec::new());
        let (mut similarity, mut clip_i, mut clip_t, mut with_text) = (0.0, 0.0, 0.0, 0usize);
        for (k, (f, j)) in features.iter().zip(&joint).enumerate() {
            let s = refs.score(f);
            similarity += f64::from(s.similarity);
            margin.extend(s.margin.map(f64::from));
            identified.extend(s.identified.map(|b| f64::from(u8::from(b))));
            instance.extend(s.instance.map(|b| f64::from(u8::from(b))));
            clip_i += f64::from(mean_cosine(j, &self.demo_joint));
            if let Some(p) = prompt_of(k) {
                clip_t += f64::from(dot(j, &self.prompt_joint[p]));
                with_text += 1;
            }
        }
        Ok(SubjectResult {
            margin: mean(&margin),
            identification: mean(&identified),
            instance: mean(&instance),
            similarity: similarity / n,
            clip_i: clip_i / n,
            clip_t: (with_text > 0).then(|| clip_t / with_text as f64),
            seconds,
            images: images.len(),
        })
    }
}

/// The real-images row of a set without true images: each photo scored against the subject's
/// other photos.
pub(super) fn leave_one_out(
    models: &EvalModels,
    scoring: &Scoring,
    subject: &EvalSubject,
    side: u32,
) -> Result<SubjectResult> {
    let photos: Vec<RgbaImage> = subject
        .demo_images()
        .iter()
        .map(|d| d.centre_square(side))
        .collect();
    let mut results = Vec::new();
    for i in 0..photos.len() {
        let refs = ReferenceSets {
            own: scoring
                .refs
                .own
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, f)| f.clone())
                .collect(),
            distractors: scoring.refs.distractors.clone(),
            other_drawing: scoring.refs.other_drawing,
        };
        let mut result = scoring.score(models, &photos[i..=i], &|_| None, Some(&refs), 0.0)?;
        // CLIP-I against the other photos too (the photo's own embedding is `demo_joint[i]`).
        let others: Vec<Vec<f32>> = scoring
            .demo_joint
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, e)| e.clone())
            .collect();
        result.clip_i = f64::from(mean_cosine(&scoring.demo_joint[i], &others));
        results.push(result);
    }
    let n = results.len() as f64;
    let avg = |f: &dyn Fn(&SubjectResult) -> Option<f64>| -> Option<f64> {
        mean(&results.iter().filter_map(f).collect::<Vec<f64>>())
    };
    Ok(SubjectResult {
        margin: avg(&|r| r.margin),
        identification: avg(&|r| r.identification),
        instance: avg(&|r| r.instance),
        similarity: results.iter().map(|r| r.similarity).sum::<f64>() / n,
        clip_i: results.iter().map(|r| r.clip_i).sum::<f64>() / n,
        clip_t: None,
        seconds: 0.0,
        images: results.len(),
    })
}

/// The mean of `xs`, absent when there is nothing to average.
fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}
