//! `suti eval sanity`: can a subject metric tell the demonstrated subject from another at all?
//! For each held-out subject A and context c, rendered with the same scene and seed, it scores
//! against A's demonstrations the true image of A, the other drawing of A's class (A′), a subject
//! of another class (B), the background alone and A blurred (down to half side and back). A
//! metric is fit for use when AUC(A vs B) ≥ 0.9, AUC(A vs A′) ≥ 0.75 and blur moves the score
//! less than the gap between A and B.

use serde::{Deserialize, Serialize};
use suti_data::render::render;
use suti_data::rng::SplitMix64;
use suti_data::{Assets, RgbaImage, Scene, Split, prompts};
use suti_models::image_tower::{ImageTower, TowerTap};

use crate::features::{Centring, Crop, TowerReading, mean_cosine, prepare, tower_readings};
use crate::stats::auc;
use crate::subjects::EvalSubject;
use crate::{EvalError, Result};

/// AUC(A vs B) a metric needs.
pub const MIN_AUC_OTHER_CLASS: f64 = 0.9;
/// AUC(A vs A′) a metric needs.
pub const MIN_AUC_OTHER_DRAWING: f64 = 0.75;

/// What a metric scores: the similarity to A's demonstrations, or the matched-context margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    /// S(x, A).
    Similarity,
    /// S(x, A) − mean over distractors of S(x, B).
    Margin,
}

/// One candidate metric of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MetricVariant {
    /// How the tower is read.
    pub reading: TowerReading,
    /// Whether features are centred on the training renders' mean.
    pub centred: bool,
    /// Similarity or margin.
    pub score: ScoreKind,
}

impl MetricVariant {
    /// The metric the protocol reports: the chosen reading, centred, as a margin.
    pub const REPORTED: Self = Self {
        reading: TowerReading::CHOSEN,
        centred: true,
        score: ScoreKind::Margin,
    };

    /// `margin, tower block15 @112 subject, centred`.
    pub fn name(&self) -> String {
        format!(
            "{}, {}, {}",
            match self.score {
                ScoreKind::Similarity => "similarity",
                ScoreKind::Margin => "margin",
            },
            self.reading.name(),
            if self.centred { "centred" } else { "raw" }
        )
    }
}

/// The images of one (subject, context) case, at the evaluation side.
pub struct SanityCase {
    /// Index of the subject in the list given.
    pub subject: usize,
    /// The context's prompt id.
    pub context: String,
    /// The true image of A.
    pub a: RgbaImage,
    /// The other drawing of A's class, same scene and seed.
    pub other_drawing: RgbaImage,
    /// A subject of another class, same scene and seed.
    pub other_class: RgbaImage,
    /// The scene with no subject.
    pub background: RgbaImage,
    /// A reduced to half side and back.
    pub blurred: RgbaImage,
}

/// Renders the cases: each subject's prompts (their true images' scenes and seeds) with A, A′,
/// B (the first distractor of another class), no subject, and A blurred, reduced to `side`.
pub fn sanity_cases(
    assets: &Assets,
    subjects: &[EvalSubject],
    render_side: u32,
    side: u32,
) -> Result<Vec<SanityCase>> {
    let catalog = assets.catalog();
    let sprite = |id: &str| -> Result<std::sync::Arc<RgbaImage>> {
        let subject = catalog
            .subject(id)
            .ok_or_else(|| EvalError::Invalid(format!("no EmojiWorld subject {id}")))?;
        Ok(assets.sprite(&subject)?)
    };
    let empty = RgbaImage::new(64, 64);
    let mut cases = Vec::new();
    for (si, subject) in subjects.iter().enumerate() {
        let (Some(a_prime), Some(b)) = (
            subject.distractors.iter().find(|d| d.same_class),
            subject.distractors.iter().find(|d| !d.same_class),
        ) else {
            return Err(EvalError::Invalid(format!(
                "{} has no distractors of its own and another class (a set written before \
                 distractors were recorded?)",
                subject.id
            )));
        };
        let (sa, sa_prime, sb) = (sprite(&subject.id)?, sprite(&a_prime.id)?, sprite(&b.id)?);
        for p in &subject.prompts {
            let prompt = prompts::prompt(&p.id)
                .ok_or_else(|| EvalError::Invalid(format!("no EmojiWorld prompt {}", p.id)))?;
            let draw = |s: &RgbaImage| render(s, &prompt, p.seed, render_side).centre_square(side);
            let a = draw(&sa);
            cases.push(SanityCase {
                subject: si,
                context: p.id.clone(),
                blurred: suti_data::degrade::down_up(&a, side / 2),
                a,
                other_drawing: draw(&sa_prime),
                other_class: draw(&sb),
                background: draw(&empty),
            });
        }
    }
    Ok(cases)
}

/// `count` renders of training-split subjects in random recontextualisation scenes at `side`:
/// the population subject features are centred on.
pub fn training_renders(
    assets: &Assets,
    count: usize,
    render_side: u32,
    side: u32,
    seed: u64,
) -> Result<Vec<RgbaImage>> {
    let subjects = assets.catalog().subjects(Split::Train);
    if subjects.is_empty() {
        return Err(EvalError::Invalid(
            "no training subjects in the catalog".into(),
        ));
    }
    let mut rng = SplitMix64::derive(seed, "eval/centring");
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let subject = &subjects[rng.below(subjects.len())];
        let scene = Scene::RECONTEXTUALISATION[rng.below(Scene::RECONTEXTUALISATION.len())];
        let (img, _) = suti_data::render::render_with_box(
            &*assets.sprite(subject)?,
            scene,
            None,
            None,
            rng.next_u64(),
            render_side,
        );
        out.push(img.centre_square(side));
    }
    Ok(out)
}

/// One metric's row of the sanity table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SanityRow {
    /// The metric.
    pub metric: MetricVariant,
    /// Its name.
    pub name: String,
    /// AUC of A against another class, mean over subjects.
    pub auc_other_class: f64,
    /// AUC of A against the other drawing of its class.
    pub auc_other_drawing: f64,
    /// AUC of A against the background alone.
    pub auc_background: f64,
    /// Mean score of A minus mean score of A blurred.
    pub blur_shift: f64,
    /// Mean score of A minus mean score of B.
    pub gap_other_class: f64,
    /// Whether it meets the thresholds.
    pub fit: bool,
}

impl SanityRow {
    fn new(metric: MetricVariant, scores: &CaseScores, subjects: usize) -> Self {
        let per_subject = |neg: &dyn Fn(&CaseScore) -> f32| -> f64 {
            let mut total = 0.0;
            let mut counted = 0;
            for s in 0..subjects {
                let mine: Vec<&CaseScore> = scores.iter().filter(|c| c.subject == s).collect();
                let pos: Vec<f32> = mine.iter().map(|c| c.a).collect();
                let negs: Vec<f32> = mine.iter().map(|c| neg(c)).collect();
                if let Some(v) = auc(&pos, &negs) {
                    total += v;
                    counted += 1;
                }
            }
            total / f64::from(counted.max(1))
        };
        let mean = |f: &dyn Fn(&CaseScore) -> f32| -> f64 {
            scores.iter().map(|c| f64::from(f(c))).sum::<f64>() / scores.len().max(1) as f64
        };
        let auc_other_class = per_subject(&|c| c.other_class);
        let auc_other_drawing = per_subject(&|c| c.other_drawing);
        let blur_shift = mean(&|c| c.a - c.blurred);
        let gap_other_class = mean(&|c| c.a - c.other_class);
        Self {
            metric,
            name: metric.name(),
            auc_other_class,
            auc_other_drawing,
            auc_background: per_subject(&|c| c.background),
            blur_shift,
            gap_other_class,
            fit: auc_other_class >= MIN_AUC_OTHER_CLASS
                && auc_other_drawing >= MIN_AUC_OTHER_DRAWING
                && blur_shift.abs() < gap_other_class,
        }
    }
}

/// One case's scores under one metric.
struct CaseScore {
    subject: usize,
    a: f32,
    other_drawing: f32,
    other_class: f32,
    background: f32,
    blurred: f32,
}

type CaseScores = Vec<CaseScore>;

/// What the check runs over.
pub struct SanityInputs<'a> {
    /// The subjects (with distractors).
    pub subjects: &'a [EvalSubject],
    /// Their cases.
    pub cases: &'a [SanityCase],
    /// The centring population.
    pub centring_images: &'a [RgbaImage],
    /// The evaluation side.
    pub side: u32,
}

/// Scores every case under every combination of `taps` × `inputs` × `crops` × centred or raw ×
/// similarity or margin, and returns one row per metric. `progress` sees each forward pass done.
pub fn run_sanity(
    tower: &ImageTower,
    inputs: &SanityInputs<'_>,
    taps: &[TowerTap],
    input_sides: &[usize],
    crops: &[Crop],
    mut progress: impl FnMut(&str),
) -> Result<Vec<SanityRow>> {
    let side = inputs.side;
    // Every image of the check in one list: per subject its demonstrations and distractors', then
    // the cases' five images, then the centring population.
    let mut images: Vec<RgbaImage> = Vec::new();
    let mut demo_ranges = Vec::new();
    for subject in inputs.subjects {
        let own_start = images.len();
        images.extend(subject.demo_images().iter().map(|d| d.centre_square(side)));
        let own = own_start..images.len();
        let mut distractors = Vec::new();
        for d in &subject.distractors {
            let start = images.len();
            images.extend(d.demos.iter().map(|i| i.centre_square(side)));
            distractors.push(start..images.len());
        }
        demo_ranges.push((own, distractors));
    }
    let cases_start = images.len();
    for case in inputs.cases {
        images.extend([
            case.a.clone(),
            case.other_drawing.clone(),
            case.other_class.clone(),
            case.background.clone(),
            case.blurred.clone(),
        ]);
    }
    let centring_start = images.len();
    images.extend(inputs.centring_images.iter().cloned());

    let mut rows = Vec::new();
    for &input in input_sides {
        for &crop in crops {
            progress(&format!(
                "{} images at input {input}, {} crop",
                images.len(),
                crop.name()
            ));
            let features = tower_readings(tower, &images, taps, input, crop)?;
            for (tap, feats) in taps.iter().zip(&features) {
                let reading = TowerReading {
                    tap: *tap,
                    input,
                    crop,
                };
                let centring = Centring::of(
                    reading.name(),
                    "training renders".into(),
                    &feats[centring_start..],
                )?;
                for centred in [false, true] {
                    let prepared = prepare(&feats[..centring_start], centred.then_some(&centring));
                    for score in [ScoreKind::Similarity, ScoreKind::Margin] {
                        let metric = MetricVariant {
                            reading,
                            centred,
                            score,
                        };
                        let value = |subject: usize, x: &[f32]| -> f32 {
                            let (own, distractors) = &demo_ranges[subject];
                            let s = mean_cosine(x, &prepared[own.clone()]);
                            match score {
                                ScoreKind::Similarity => s,
                                ScoreKind::Margin => {
                                    let others: f32 = distractors
                                        .iter()
                                        .map(|r| mean_cosine(x, &prepared[r.clone()]))
                                        .sum::<f32>()
                                        / distractors.len().max(1) as f32;
                                    s - others
                                }
                            }
                        };
                        let scores: CaseScores = inputs
                            .cases
                            .iter()
                            .enumerate()
                            .map(|(k, case)| {
                                let at = |j: usize| &prepared[cases_start + 5 * k + j][..];
                                CaseScore {
                                    subject: case.subject,
                                    a: value(case.subject, at(0)),
                                    other_drawing: value(case.subject, at(1)),
                                    other_class: value(case.subject, at(2)),
                                    background: value(case.subject, at(3)),
                                    blurred: value(case.subject, at(4)),
                                }
                            })
                            .collect();
                        rows.push(SanityRow::new(metric, &scores, inputs.subjects.len()));
                    }
                }
            }
        }
    }
    Ok(rows)
}

/// The table as markdown, fit metrics marked.
pub fn sanity_markdown(rows: &[SanityRow]) -> String {
    let mut md = String::from(
        "| metric | AUC A vs B | AUC A vs A′ | AUC A vs background | blur shift | A − B gap | fit |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:+.3} | {:+.3} | {} |\n",
            r.name,
            r.auc_other_class,
            r.auc_other_drawing,
            r.auc_background,
            r.blur_shift,
            r.gap_other_class,
            if r.fit { "yes" } else { "no" }
        ));
    }
    md
}
