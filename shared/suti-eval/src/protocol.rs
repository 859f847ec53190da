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
use suti_factory::expert::{finetune_expert, personalise};
use suti_factory::generate::{image_seed, render_rows};
use suti_factory::pixels::to_chw;
use suti_factory::render::{Generation, LoadedModel, render_batch};
use suti_factory::training::Pair;
use suti_models::Dit;
use suti_models::diffusion::SamplerConfig;
use suti_models::text::TextEncoder;
use suti_runtime::config::ExpertStageConfig;

use crate::Result;
use crate::features::{Centring, ImageTextScorer, SubjectEncoder, dot, mean_cosine, prepare};
use crate::metrics::ReferenceSets;
use crate::stats::{Estimate, bootstrap_difference, bootstrap_mean, resamples};
use crate::subjects::EvalSubject;

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

/// What the protocol reports as it goes: (steps done, steps in all, what it is doing).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, &str);

/// One subject's scoring context: its reference sets and its demonstrations and prompts in the
/// scorer's space.
struct Scoring {
    refs: ReferenceSets,
    demo_joint: Vec<Vec<f32>>,
    prompt_joint: Vec<Vec<f32>>,
}

impl Scoring {
    fn new(models: &EvalModels, subject: &EvalSubject, side: u32) -> Result<Self> {
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
    fn score(
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
        let avg = |xs: &[f64]| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
        Ok(SubjectResult {
            margin: avg(&margin),
            identification: avg(&identified),
            instance: avg(&instance),
            similarity: similarity / n,
            clip_i: clip_i / n,
            clip_t: (with_text > 0).then(|| clip_t / with_text as f64),
            seconds,
            images: images.len(),
        })
    }
}

/// One subject's images from one method (prompt by prompt) and the seconds spent on them; absent
/// where the method did not run on the subject.
type SubjectImages = Option<(Vec<RgbaImage>, f64)>;

/// Renders `(prompt, seed)` rows with a text-to-image network, `max_batch` rows per batch.
fn render_text_rows(
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
fn shuffled_partner(subjects: &[EvalSubject], si: usize) -> Option<usize> {
    let n = subjects.len();
    (1..n)
        .map(|k| (si + k) % n)
        .find(|&j| subjects[j].noun != subjects[si].noun)
        .or_else(|| (n > 1).then(|| (si + 1) % n))
}

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
    let draws = resamples(subjects.len(), settings.seed);
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
                subjects: (0..subjects.len())
                    .filter(|&s| per_subject[a][s].is_some() && per_subject[b][s].is_some())
                    .count(),
                margin: lead(&|r| r.margin),
                identification: lead(&|r| r.identification),
                instance: lead(&|r| r.instance),
                clip_t: lead(&|r| r.clip_t),
            })
        })
        .collect();
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
    };
    Ok((report, sheets))
}

/// Splits a group's images (subject by subject, `per_prompt` per prompt) back per subject, the
/// wall time shared out by images.
fn split_by_subject(
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
fn render_expert(
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
fn render_apprentice(
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

/// The real-images row of a set without true images: each photo scored against the subject's
/// other photos.
fn leave_one_out(
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
        let xs: Vec<f64> = results.iter().filter_map(f).collect();
        (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
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
