//! The ΔCLIP filter (architecture.md §7.6): which of an expert's generations become training
//! targets.
//!
//! - ΔCLIP-T = cos(target, prompt) − mean over demonstrations of cos(demo, prompt), in the
//!   scorer's joint space: the target must follow the new prompt better than the demonstrations
//!   already do. A copy of a demonstration scores about zero and is rejected.
//!   With [`DeltaReference::Captions`] the subtrahend is instead the target's own mean cosine to
//!   the demonstrations' captions: one image against two texts, so a generation that is merely less
//!   crisp than the crawled photos is not penalised for it, while a copy of a demonstration still
//!   matches its caption at least as well as the new prompt and is rejected.
//! - Subject similarity = mean cos(target, demo) of image-tower features: a generation that lost
//!   the subject falls below the floor and is rejected.

use candle_core::{Device, Tensor};
use suti_data::RgbaImage;
use suti_messages::FilterThresholds;
use suti_models::image_tower::ImageTower;
use suti_models::text::TextEncoder;

use crate::Result;
use crate::bundle::ScorerModel;
use crate::scorer::tower_features;

/// The filter's defaults: ΔCLIP-T ≥ 0.02 (the paper's threshold), subject similarity ≥ 0.45.
pub fn default_thresholds() -> FilterThresholds {
    FilterThresholds {
        delta_clip_min: 0.02,
        subject_similarity_min: 0.45,
    }
}

pub use suti_runtime::DeltaReference;

/// A candidate's scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CandidateScores {
    /// cos(target, prompt).
    pub clip_t: f32,
    /// Mean cos(target, demo) in the scorer's space (CLIP-I).
    pub clip_i: f32,
    /// CLIP-T of the target minus the reference: the demonstrations' mean CLIP-T for the same
    /// prompt, or the target's mean CLIP-T against the demonstrations' captions.
    pub delta_clip_t: f32,
    /// Mean cosine similarity of the target's image-tower features to the demonstrations'.
    pub subject_similarity: f32,
}

/// Why a candidate was rejected (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// ΔCLIP-T under the threshold: it follows the prompt no better than the demonstrations.
    PromptNotFollowed,
    /// Subject similarity under the floor: the subject is gone.
    SubjectLost,
}

impl Rejection {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::PromptNotFollowed => "prompt_not_followed",
            Self::SubjectLost => "subject_lost",
        }
    }
}

/// Accepts or rejects by the thresholds (the subject check first: without the subject, nothing
/// else matters).
pub fn judge(
    scores: &CandidateScores,
    thresholds: &FilterThresholds,
) -> std::result::Result<(), Rejection> {
    if scores.subject_similarity < thresholds.subject_similarity_min {
        return Err(Rejection::SubjectLost);
    }
    if scores.delta_clip_t < thresholds.delta_clip_min {
        return Err(Rejection::PromptNotFollowed);
    }
    Ok(())
}

/// The models the filter scores with.
pub struct FilterModels<'a> {
    /// The frozen image tower.
    pub tower: &'a ImageTower,
    /// The scorer's heads.
    pub scorer: &'a ScorerModel,
    /// The frozen text encoder.
    pub text: &'a TextEncoder,
}

fn unit_rows(rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    rows.iter()
        .map(|r| {
            let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            r.iter().map(|v| v / norm).collect()
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn matrix(rows: &[Vec<f32>], device: &Device) -> Result<Tensor> {
    let width = rows.first().map(Vec::len).unwrap_or(0);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (rows.len(), width), device)?)
}

impl FilterModels<'_> {
    /// Scores each candidate (an image and the prompt, with the class noun, it was generated
    /// for) against the cluster's demonstrations, ΔCLIP-T as the paper defines it.
    pub fn score(
        &self,
        demos: &[RgbaImage],
        candidates: &[(RgbaImage, String)],
    ) -> Result<Vec<CandidateScores>> {
        self.score_against(demos, &[], candidates, DeltaReference::Demonstrations)
    }

    /// [`Self::score`] with ΔCLIP-T against `reference`; `demo_captions` (one per demonstration)
    /// are needed for [`DeltaReference::Captions`].
    pub fn score_against(
        &self,
        demos: &[RgbaImage],
        demo_captions: &[String],
        candidates: &[(RgbaImage, String)],
        reference: DeltaReference,
    ) -> Result<Vec<CandidateScores>> {
        if reference == DeltaReference::Captions && demo_captions.is_empty() {
            return Err(crate::FactoryError::Invalid(
                "ΔCLIP-T against captions needs the demonstrations' captions".into(),
            ));
        }
        if demos.is_empty() || candidates.is_empty() {
            return Ok(Vec::new());
        }
        let device = self.tower.device().clone();
        // Demonstrations are compared at the generations' resolution: a crisp crawled photo and a
        // model-sized render of the same thing must not look different for their size alone.
        let side = candidates
            .iter()
            .map(|(i, _)| i.width.min(i.height))
            .min()
            .unwrap_or(1);
        let demos_at_side: Vec<RgbaImage> = demos.iter().map(|d| d.centre_square(side)).collect();
        let demo_features = tower_features(self.tower, &demos_at_side)?;
        let candidate_images: Vec<RgbaImage> = candidates.iter().map(|(i, _)| i.clone()).collect();
        let candidate_features = tower_features(self.tower, &candidate_images)?;
        let scorer = &self.scorer.scorer;
        let demo_joint: Vec<Vec<f32>> = scorer
            .embed_images(&matrix(&demo_features, &device)?)?
            .to_vec2()?;
        let candidate_joint: Vec<Vec<f32>> = scorer
            .embed_images(&matrix(&candidate_features, &device)?)?
            .to_vec2()?;
        let sentences = candidates
            .iter()
            .map(|(_, prompt)| self.text.sentence_vector(prompt))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let prompt_joint: Vec<Vec<f32>> = scorer
            .embed_texts(&matrix(&sentences, &device)?)?
            .to_vec2()?;
        let caption_joint: Vec<Vec<f32>> = if reference == DeltaReference::Captions {
            let vectors = demo_captions
                .iter()
                .map(|c| self.text.sentence_vector(c))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            scorer.embed_texts(&matrix(&vectors, &device)?)?.to_vec2()?
        } else {
            Vec::new()
        };
        let demo_unit = unit_rows(&demo_features);
        let candidate_unit = unit_rows(&candidate_features);
        Ok((0..candidates.len())
            .map(|i| {
                let clip_t = dot(&candidate_joint[i], &prompt_joint[i]);
                let reference_clip_t = match reference {
                    DeltaReference::Demonstrations => {
                        demo_joint
                            .iter()
                            .map(|d| dot(d, &prompt_joint[i]))
                            .sum::<f32>()
                            / demo_joint.len() as f32
                    }
                    DeltaReference::Captions => {
                        caption_joint
                            .iter()
                            .map(|c| dot(&candidate_joint[i], c))
                            .sum::<f32>()
                            / caption_joint.len() as f32
                    }
                };
                let clip_i = demo_joint
                    .iter()
                    .map(|d| dot(d, &candidate_joint[i]))
                    .sum::<f32>()
                    / demo_joint.len() as f32;
                let subject_similarity = demo_unit
                    .iter()
                    .map(|d| dot(d, &candidate_unit[i]))
                    .sum::<f32>()
                    / demo_unit.len() as f32;
                CandidateScores {
                    clip_t,
                    clip_i,
                    delta_clip_t: clip_t - reference_clip_t,
                    subject_similarity,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_check_comes_before_the_prompt_check() {
        let t = default_thresholds();
        let good = CandidateScores {
            clip_t: 0.3,
            clip_i: 0.7,
            delta_clip_t: 0.05,
            subject_similarity: 0.8,
        };
        assert_eq!(judge(&good, &t), Ok(()));
        let copy = CandidateScores {
            delta_clip_t: 0.0,
            ..good
        };
        assert_eq!(judge(&copy, &t), Err(Rejection::PromptNotFollowed));
        let lost = CandidateScores {
            subject_similarity: 0.2,
            delta_clip_t: 0.0,
            ..good
        };
        assert_eq!(judge(&lost, &t), Err(Rejection::SubjectLost));
    }
}
