//! The protocol: for each evaluation subject and prompt, every method renders the same number of
//! images from the same seeds — the base from the text alone, an expert fine-tuned on the
//! subject's demonstrations, the apprentice given k demonstrations, and two controls (the
//! apprentice given another subject's demonstrations, and given none) — and every image is
//! scored against the subject and its distractors. Per-subject means feed a paired bootstrap, so
//! every row and every lead between methods carries a 95 % interval.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use suti_data::RgbaImage;
use suti_factory::BaseModel;
use suti_factory::generate::image_seed;
use suti_factory::render::LoadedModel;
use suti_models::diffusion::SamplerConfig;
use suti_models::text::TextEncoder;
use suti_runtime::config::ExpertStageConfig;

use crate::Result;
use crate::features::{Centring, ImageTextScorer, SubjectEncoder};
use crate::subjects::EvalSubject;

mod render;
mod results;
mod scoring;

pub use results::{EvalReport, Lead, MethodRow, SubjectResult, SubjectSheet};

use render::{
    SubjectImages, render_apprentice, render_expert, render_text_rows, shuffled_partner,
    split_by_subject,
};
use results::summarise;
use scoring::{Scoring, leave_one_out};

/// A row of the table: what renders the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Method {
    /// The set's true images (EmojiWorld's renders in the prompted context; DreamBench: each
    /// photo against the subject's others). The instrument's own ceiling.
    RealImages,
    /// The base model from the prompt with the class noun.
    Base,
    /// A LoRA expert fine-tuned on the subject's demonstrations, from the prompt with its
    /// identifier (the DreamBooth analogue).
    Expert {
        /// Fine-tuning steps.
        steps: u64,
    },
    /// The apprentice given the subject's first `demos` demonstrations.
    Apprentice {
        /// Demonstrations given.
        demos: usize,
    },
    /// Control: the apprentice given `demos` demonstrations of another class's subject, scored
    /// against this subject. A gain that came from reading the demonstrations disappears here.
    ShuffledDemos {
        /// Demonstrations given.
        demos: usize,
    },
    /// Control: the apprentice given no demonstrations (the text alone).
    NoDemos,
}

impl Method {
    /// The row's label (`apprentice, 3 demos`).
    pub fn label(&self) -> String {
        let plural = |k: usize| if k == 1 { "" } else { "s" };
        match self {
            Self::RealImages => "real images".into(),
            Self::Base => "base (text only)".into(),
            Self::Expert { steps } => format!("expert ({steps} steps)"),
            Self::Apprentice { demos } => format!("apprentice, {demos} demo{}", plural(*demos)),
            Self::ShuffledDemos { demos } => {
                format!(
                    "control: apprentice, {demos} shuffled demo{}",
                    plural(*demos)
                )
            }
            Self::NoDemos => "control: apprentice, no demos".into(),
        }
    }
}

/// How the protocol runs.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    /// Images per prompt.
    pub images: usize,
    /// Demonstration counts for the apprentice rows.
    pub demo_counts: Vec<usize>,
    /// The expert recipe.
    pub expert: ExpertStageConfig,
    /// The expert runs on the first this many subjects (it costs a fine-tune each; 0 leaves the
    /// expert row out).
    pub expert_subjects: usize,
    /// Denoising steps.
    pub steps: usize,
    /// Guidance weight of the base model and the experts.
    pub guidance: f32,
    /// Guidance weight of the apprentice's text.
    pub apprentice_guidance: f32,
    /// Separate guidance weight of the apprentice's demonstrations.
    pub demo_guidance: Option<f32>,
    /// Image seed (the same seeds for every method) and bootstrap seed.
    pub seed: u64,
    /// Whether to run the two control rows.
    pub controls: bool,
    /// Subjects rendered together in one denoising batch per method.
    pub batch_subjects: usize,
}

impl EvalSettings {
    /// The apprentice row the controls and leads use: 3 demonstrations when evaluated, else the
    /// largest count.
    pub fn primary_demos(&self) -> usize {
        if self.demo_counts.contains(&3) {
            3
        } else {
            self.demo_counts.iter().copied().max().unwrap_or(1)
        }
    }

    /// The rows in table order.
    pub fn methods(&self) -> Vec<Method> {
        let mut methods = vec![Method::RealImages, Method::Base];
        if self.expert_subjects > 0 {
            methods.push(Method::Expert {
                steps: self.expert.steps,
            });
        }
        methods.extend(
            self.demo_counts
                .iter()
                .map(|&demos| Method::Apprentice { demos }),
        );
        if self.controls {
            methods.push(Method::ShuffledDemos {
                demos: self.primary_demos(),
            });
            methods.push(Method::NoDemos);
        }
        methods
    }
}

/// The models the protocol uses.
pub struct EvalModels {
    /// The text-to-image base (and the experts' starting point).
    pub base: Arc<BaseModel>,
    /// The apprentice release.
    pub apprentice: LoadedModel,
    /// The subject encoder.
    pub subject: SubjectEncoder,
    /// The subject encoder's centring mean.
    pub centring: Option<Centring>,
    /// CLIP-I and CLIP-T.
    pub scorer: ImageTextScorer,
    /// The frozen text encoder the generators read.
    pub text: Arc<TextEncoder>,
}

/// What the protocol reports as it goes: (steps done, steps in all, what it is doing).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, &str);

/// Runs the protocol over `subjects`.
pub fn run_protocol(
    subjects: &[EvalSubject],
    models: &EvalModels,
    settings: &EvalSettings,
    set_name: &str,
    progress: Progress<'_>,
) -> Result<(EvalReport, Vec<SubjectSheet>)> {
    let started = Instant::now();
    let side = models.base.config.image_size as u32;
    let methods = settings.methods();
    let expert_subjects = settings.expert_subjects.min(subjects.len());
    let total = subjects.len() * methods.len();
    let mut done = 0usize;
    let base_dit = models.base.dit()?;
    let sampler = SamplerConfig {
        steps: settings.steps,
        guidance: settings.guidance,
        seed: settings.seed,
        ..SamplerConfig::default()
    };
    let seeds = |prompts: usize| -> Vec<(usize, u64)> {
        (0..prompts)
            .flat_map(|i| (0..settings.images).map(move |k| (i, image_seed(settings.seed, i, k))))
            .collect()
    };
    let mut per_subject: Vec<Vec<Option<SubjectResult>>> =
        vec![vec![None; subjects.len()]; methods.len()];
    let mut sheets: Vec<SubjectSheet> = subjects
        .iter()
        .map(|s| SubjectSheet {
            subject: s.id.clone(),
            demos: s
                .demo_images()
                .iter()
                .map(|d| d.centre_square(side))
                .collect(),
            methods: Vec::new(),
        })
        .collect();
    let batch = settings.batch_subjects.max(1);
    for group_start in (0..subjects.len()).step_by(batch) {
        let group: Vec<usize> = (group_start..(group_start + batch).min(subjects.len())).collect();
        let mut scoring = Vec::with_capacity(group.len());
        for &si in &group {
            scoring.push(Scoring::new(models, &subjects[si], side)?);
        }
        for (mi, method) in methods.iter().enumerate() {
            let label = method.label();
            let names: Vec<&str> = group.iter().map(|&si| subjects[si].id.as_str()).collect();
            progress(done, total, &format!("{}: {label}", names.join(", ")));
            // Each subject's images (prompt by prompt) and the seconds spent on it.
            let rendered: Vec<SubjectImages> = match method {
                Method::RealImages => group
                    .iter()
                    .map(|&si| {
                        let truths: Option<Vec<RgbaImage>> = subjects[si]
                            .prompts
                            .iter()
                            .map(|p| p.truth.as_ref().map(|t| t.centre_square(side)))
                            .collect();
                        truths.filter(|t| !t.is_empty()).map(|t| (t, 0.0))
                    })
                    .collect(),
                Method::Base => {
                    let start = Instant::now();
                    let rows: Vec<(String, u64)> = group
                        .iter()
                        .flat_map(|&si| {
                            seeds(subjects[si].prompts.len())
                                .into_iter()
                                .map(move |(i, s)| (subjects[si].prompts[i].plain.clone(), s))
                        })
                        .collect();
                    let images = render_text_rows(&base_dit, &models.text, &rows, &sampler, 16)?;
                    split_by_subject(subjects, &group, images, settings.images, start)
                }
                Method::Expert { .. } => {
                    let mut out = Vec::new();
                    for &si in &group {
                        if si >= expert_subjects {
                            out.push(None);
                            continue;
                        }
                        let start = Instant::now();
                        out.push(Some((
                            render_expert(models, &subjects[si], settings, &sampler, si, side)?,
                            start.elapsed().as_secs_f64(),
                        )));
                    }
                    out
                }
                Method::Apprentice { demos } => {
                    let given: Vec<usize> = group.clone();
                    render_apprentice(models, subjects, &group, &given, *demos, settings, &seeds)?
                }
                Method::ShuffledDemos { demos } => {
                    let given: Vec<usize> = group
                        .iter()
                        .map(|&si| shuffled_partner(subjects, si).unwrap_or(si))
                        .collect();
                    render_apprentice(models, subjects, &group, &given, *demos, settings, &seeds)?
                }
                Method::NoDemos => {
                    render_apprentice(models, subjects, &group, &group, 0, settings, &seeds)?
                }
            };
            for ((k, &si), images) in group.iter().enumerate().zip(rendered) {
                let Some((images, seconds)) = images else {
                    if *method == Method::RealImages && subjects[si].demos.len() > 1 {
                        // No true images (real photos): each photo against the others.
                        per_subject[mi][si] =
                            Some(leave_one_out(models, &scoring[k], &subjects[si], side)?);
                        sheets[si].methods.push((*method, Vec::new()));
                    }
                    continue;
                };
                let per_prompt = if *method == Method::RealImages {
                    1
                } else {
                    settings.images
                };
                let result =
                    scoring[k].score(models, &images, &|i| Some(i / per_prompt), None, seconds)?;
                per_subject[mi][si] = Some(result);
                sheets[si].methods.push((*method, images));
            }
            done += group.len();
        }
    }
    progress(total, total, "intervals");
    let (rows, leads) = summarise(&methods, &per_subject, settings, subjects.len());
    let report = EvalReport {
        set: set_name.to_string(),
        subjects: subjects.iter().map(|s| s.id.clone()).collect(),
        prompts_per_subject: subjects.first().map(|s| s.prompts.len()).unwrap_or(0),
        images_per_prompt: settings.images,
        expert_steps: settings.expert.steps,
        expert_subjects,
        steps: settings.steps,
        guidance: settings.guidance,
        apprentice_guidance: settings.apprentice_guidance,
        demo_guidance: settings.demo_guidance,
        apprentice_version: models.apprentice.version.clone(),
        subject_encoder: models.subject.name(),
        centring: models.centring.as_ref().map_or("none".into(), |c| {
            format!("{} ({} images)", c.source, c.images)
        }),
        scorer: models.scorer.name().into(),
        candidates: subjects
            .first()
            .map(|s| 1 + s.distractors.len())
            .unwrap_or(1),
        matched_contexts: subjects.iter().all(|s| s.matched_contexts),
        seconds: started.elapsed().as_secs_f64(),
        rows,
        leads,
        per_subject,
        pipeline: None,
    };
    Ok((report, sheets))
}
