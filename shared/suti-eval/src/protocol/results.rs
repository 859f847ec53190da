//! What the protocol produces: per-subject means, the table's rows with their intervals, the
//! leads between methods, and the images for contact sheets.

use serde::{Deserialize, Serialize};
use suti_data::RgbaImage;

use super::{EvalSettings, Method};
use crate::stats::{Estimate, bootstrap_difference, bootstrap_mean, resamples};

/// One method's means on one subject.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SubjectResult {
    /// Mean matched-context margin.
    pub margin: Option<f64>,
    /// Share identified among the candidates.
    pub identification: Option<f64>,
    /// Share nearer its own drawing than the other drawing of its class.
    pub instance: Option<f64>,
    /// Mean similarity to the subject's demonstrations (centred features).
    pub similarity: f64,
    /// Mean CLIP-I.
    pub clip_i: f64,
    /// Mean CLIP-T (absent where there is no prompt).
    pub clip_t: Option<f64>,
    /// Wall time spent on this subject, seconds.
    pub seconds: f64,
    /// Images scored.
    pub images: usize,
}

/// A row of the table: means over subjects with 95 % intervals.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodRow {
    /// The method.
    pub method: Method,
    /// Its label.
    pub label: String,
    /// Subjects it ran on.
    pub subjects: usize,
    /// Images scored.
    pub images: usize,
    /// Matched-context margin (the primary subject metric).
    pub margin: Option<Estimate>,
    /// Identification accuracy among the candidates (chance: 1 / candidates).
    pub identification: Option<Estimate>,
    /// Instance accuracy, own drawing against the class's other (chance 50 %).
    pub instance: Option<Estimate>,
    /// Similarity to the demonstrations.
    pub similarity: Option<Estimate>,
    /// CLIP-I.
    pub clip_i: Option<Estimate>,
    /// CLIP-T.
    pub clip_t: Option<Estimate>,
    /// Mean wall time per subject, seconds (fine-tune + generation for the expert).
    pub seconds_per_subject: f64,
}

/// A paired difference between two methods over the subjects both ran on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lead {
    /// `apprentice, 3 demos − base (text only)`.
    pub name: String,
    /// The method ahead.
    pub ahead: Method,
    /// The method behind.
    pub behind: Method,
    /// Subjects compared.
    pub subjects: usize,
    /// Margin difference.
    pub margin: Option<Estimate>,
    /// Identification difference.
    pub identification: Option<Estimate>,
    /// Instance-accuracy difference.
    pub instance: Option<Estimate>,
    /// CLIP-T difference.
    pub clip_t: Option<Estimate>,
}

/// The whole result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// Which set.
    pub set: String,
    /// Subject ids.
    pub subjects: Vec<String>,
    /// Prompts per subject.
    pub prompts_per_subject: usize,
    /// Images per prompt.
    pub images_per_prompt: usize,
    /// Expert fine-tuning steps.
    pub expert_steps: u64,
    /// Subjects the expert ran on.
    pub expert_subjects: usize,
    /// Denoising steps of every method.
    pub steps: usize,
    /// Guidance weight of the base model and the experts.
    pub guidance: f32,
    /// Guidance weight of the apprentice's text.
    pub apprentice_guidance: f32,
    /// Separate guidance weight of the apprentice's demonstrations (none: one weight for both).
    pub demo_guidance: Option<f32>,
    /// Apprentice release version.
    pub apprentice_version: String,
    /// The subject encoder.
    pub subject_encoder: String,
    /// What its features are centred on.
    pub centring: String,
    /// The image–text scorer.
    pub scorer: String,
    /// Candidates identification chooses among (chance is one over this).
    pub candidates: usize,
    /// Whether distractors were rendered in each subject's own scenes.
    pub matched_contexts: bool,
    /// Wall time of the whole protocol, seconds.
    pub seconds: f64,
    /// The table.
    pub rows: Vec<MethodRow>,
    /// Leads between methods.
    pub leads: Vec<Lead>,
    /// Per-subject means, `per_subject[row][subject]` (absent where the method did not run).
    pub per_subject: Vec<Vec<Option<SubjectResult>>>,
    /// The pipeline's own figures (loss curves, filter verdicts) when the caller knows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<crate::plots::PipelineFigures>,
}

impl EvalReport {
    /// The row of `method`.
    pub fn row(&self, method: Method) -> Option<&MethodRow> {
        self.rows.iter().find(|r| r.method == method)
    }

    /// The lead of `ahead` over `behind`.
    pub fn lead(&self, ahead: Method, behind: Method) -> Option<&Lead> {
        self.leads
            .iter()
            .find(|l| l.ahead == ahead && l.behind == behind)
    }
}

/// A subject's images per method, for contact sheets.
pub struct SubjectSheet {
    /// The subject.
    pub subject: String,
    /// Demonstrations at the model's side.
    pub demos: Vec<RgbaImage>,
    /// Each method's images, prompt by prompt.
    pub methods: Vec<(Method, Vec<RgbaImage>)>,
}

/// The table's rows and the leads between methods from the per-subject means
/// (`per_subject[row][subject]` over `subject_count` subjects), every figure with its paired
/// bootstrap interval.
pub(super) fn summarise(
    methods: &[Method],
    per_subject: &[Vec<Option<SubjectResult>>],
    settings: &EvalSettings,
    subject_count: usize,
) -> (Vec<MethodRow>, Vec<Lead>) {
    let draws = resamples(subject_count, settings.seed);
    let column = |mi: usize, f: &dyn Fn(&SubjectResult) -> Option<f64>| -> Vec<Option<f64>> {
        per_subject[mi]
            .iter()
            .map(|r| r.as_ref().and_then(f))
            .collect()
    };
    let rows: Vec<MethodRow> = methods
        .iter()
        .enumerate()
        .map(|(mi, method)| {
            let ran: Vec<&SubjectResult> = per_subject[mi].iter().flatten().collect();
            MethodRow {
                method: *method,
                label: method.label(),
                subjects: ran.len(),
                images: ran.iter().map(|r| r.images).sum(),
                margin: bootstrap_mean(&column(mi, &|r| r.margin), &draws),
                identification: bootstrap_mean(&column(mi, &|r| r.identification), &draws),
                instance: bootstrap_mean(&column(mi, &|r| r.instance), &draws),
                similarity: bootstrap_mean(&column(mi, &|r| Some(r.similarity)), &draws),
                clip_i: bootstrap_mean(&column(mi, &|r| Some(r.clip_i)), &draws),
                clip_t: bootstrap_mean(&column(mi, &|r| r.clip_t), &draws),
                seconds_per_subject: ran.iter().map(|r| r.seconds).sum::<f64>()
                    / ran.len().max(1) as f64,
            }
        })
        .collect();
    let primary = Method::Apprentice {
        demos: settings.primary_demos(),
    };
    let expert = Method::Expert {
        steps: settings.expert.steps,
    };
    let mut pairs = vec![
        (primary, Method::Base),
        (expert, Method::Base),
        (primary, expert),
    ];
    if settings.controls {
        pairs.push((
            primary,
            Method::ShuffledDemos {
                demos: settings.primary_demos(),
            },
        ));
        pairs.push((primary, Method::NoDemos));
    }
    let index = |m: Method| methods.iter().position(|x| *x == m);
    let leads = pairs
        .into_iter()
        .filter_map(|(ahead, behind)| {
            let (a, b) = (index(ahead)?, index(behind)?);
            let lead = |f: &dyn Fn(&SubjectResult) -> Option<f64>| {
                bootstrap_difference(&column(a, f), &column(b, f), &draws)
            };
            Some(Lead {
                name: format!("{} − {}", ahead.label(), behind.label()),
                ahead,
                behind,
                subjects: (0..subject_count)
                    .filter(|&s| per_subject[a][s].is_some() && per_subject[b][s].is_some())
                    .count(),
                margin: lead(&|r| r.margin),
                identification: lead(&|r| r.identification),
                instance: lead(&|r| r.instance),
                clip_t: lead(&|r| r.clip_t),
            })
        })
        .collect();
    (rows, leads)
}
