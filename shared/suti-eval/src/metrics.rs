//! The subject metrics of one image against a subject and its distractors:
//!
//! - **similarity** S(g, A): mean cosine of centred subject features between the image and A's
//!   demonstrations;
//! - **matched-context margin** M(g) = S(g, A) − mean over distractors B of S(g, B), where B's
//!   demonstrations show B in A's scenes from A's seeds, so background, pose and crispness cancel
//!   and only the subject is left to decide;
//! - **identification**: whether A's demonstrations are the nearest of the K candidate sets;
//! - **instance**: whether A's are nearer than the other drawing of A's class (A′). Prompts name
//!   only the class, so text alone leaves this at chance.

use serde::{Deserialize, Serialize};
use suti_data::RgbaImage;

use crate::Result;
use crate::features::{Centring, SubjectEncoder, mean_cosine, prepare};
use crate::subjects::EvalSubject;

/// A subject's demonstrations and its distractors' in the subject encoder's space (centred, unit).
pub struct ReferenceSets {
    /// A's demonstrations.
    pub own: Vec<Vec<f32>>,
    /// Each distractor's demonstrations.
    pub distractors: Vec<Vec<Vec<f32>>>,
    /// Which distractor is the other drawing of A's class.
    pub other_drawing: Option<usize>,
}

impl ReferenceSets {
    /// Encodes `subject`'s demonstrations and its distractors' at `side` pixels (the side of the
    /// images they will be compared with, so a crisp photo is not told apart by its size alone).
    pub fn build(
        encoder: &SubjectEncoder,
        centring: Option<&Centring>,
        subject: &EvalSubject,
        side: u32,
    ) -> Result<Self> {
        let at_side = |images: &[RgbaImage]| -> Vec<RgbaImage> {
            images.iter().map(|i| i.centre_square(side)).collect()
        };
        let own = prepare(
            &encoder.features(&at_side(&subject.demo_images()))?,
            centring,
        );
        // One encoder call for every distractor image, then split back per distractor.
        let all: Vec<RgbaImage> = subject
            .distractors
            .iter()
            .flat_map(|d| at_side(&d.demos))
            .collect();
        let mut features = prepare(&encoder.features(&all)?, centring).into_iter();
        let distractors = subject
            .distractors
            .iter()
            .map(|d| features.by_ref().take(d.demos.len()).collect())
            .collect();
        Ok(Self {
            own,
            distractors,
            other_drawing: subject.other_drawing(),
        })
    }

    /// The subject scores of one image's prepared features.
    pub fn score(&self, x: &[f32]) -> SubjectScore {
        let similarity = mean_cosine(x, &self.own);
        let others: Vec<f32> = self
            .distractors
            .iter()
            .map(|set| mean_cosine(x, set))
            .collect();
        let (margin, identified) = if others.is_empty() {
            (None, None)
        } else {
            let mean = others.iter().sum::<f32>() / others.len() as f32;
            let best = others.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            (Some(similarity - mean), Some(similarity > best))
        };
        SubjectScore {
            similarity,
            margin,
            identified,
            instance: self.other_drawing.map(|i| similarity > others[i]),
        }
    }

    /// Candidates identification chooses among (the subject and its distractors).
    pub fn candidates(&self) -> usize {
        1 + self.distractors.len()
    }
}

/// One image's subject scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SubjectScore {
    /// S(g, A).
    pub similarity: f32,
    /// M(g); absent without distractors.
    pub margin: Option<f32>,
    /// Whether A's set is the nearest of all candidates.
    pub identified: Option<bool>,
    /// Whether A's set is nearer than the other drawing's.
    pub instance: Option<bool>,
}
