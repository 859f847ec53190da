//! `suti eval`: the DreamBench protocol (DESIGN §9). For each evaluation subject and prompt it
//! renders images with the base model from the text alone, with an expert fine-tuned on the
//! subject's demonstrations (the DreamBooth analogue), and with the apprentice given 1, 3 and 5
//! demonstrations; it scores every image against the demonstrations (subject similarity with the
//! image tower, CLIP-I and CLIP-T with the scorer) next to the real images, and times each method
//! per subject. Output: `eval.json`, `eval.md`, one contact sheet per subject and `eval.html`.
//!
//! The subjects come from EmojiWorld's held-out split (rendered into the output folder, or a set
//! written by `suti synthweb benchmark`) or from the real DreamBench folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::Device;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serving::engine::{Demonstration, Generation, LoadedModel, render_batch};
use suti_data::benchmark::{BenchmarkManifest, write_benchmark};
use suti_data::dreambench::{fill_template, load_dreambench, read_photo};
use suti_data::{Assets, DecodeLimits, RgbaImage};
use suti_factory::expert::{ExpertConfig, finetune_expert, personalise};
use suti_factory::filter::{CandidateScores, FilterModels};
use suti_factory::generate::{generate, image_seed};
use suti_factory::pixels::to_chw;
use suti_factory::training::Pair;
use suti_factory::{BaseModel, ScorerModel};
use suti_models::diffusion::SamplerConfig;
use suti_models::image_tower::ImageTower;
use suti_models::text::TextEncoder;
use suti_storage::SharedStore;

/// Options of `suti eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A YAML file layered over the compiled-in defaults (storage, towers, expert settings).
    #[arg(long, short, env = "SUTI_CONFIG")]
    pub config: Option<PathBuf>,
    /// The data folder of an embedded run (a demo's `<out>/data`): models are read from its local
    /// storage instead of the configured one.
    #[arg(long, conflicts_with = "config")]
    pub data: Option<PathBuf>,
    /// An evaluation set written by `suti synthweb benchmark` (its folder, with manifest.json).
    /// Default: EmojiWorld's held-out subjects, rendered into `<out>/benchmark`.
    #[arg(long, conflicts_with = "dreambench")]
    pub benchmark: Option<PathBuf>,
    /// The real DreamBench folder (`dataset/` of google/dreambooth, with prompts_and_classes.txt).
    #[arg(long)]
    pub dreambench: Option<PathBuf>,
    /// Subjects to evaluate (0: all).
    #[arg(long, default_value_t = 4)]
    pub subjects: usize,
    /// Prompts per subject (DreamBench: 25).
    #[arg(long, default_value_t = 4)]
    pub prompts: usize,
    /// Images per prompt (DreamBench: 4).
    #[arg(long, default_value_t = 2)]
    pub images: usize,
    /// Demonstration counts the apprentice is evaluated with.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5")]
    pub demos: Vec<usize>,
    /// Fine-tuning steps of each expert (default: the configuration's `expert.steps`).
    #[arg(long)]
    pub expert_steps: Option<u64>,
    /// Denoising steps of every method.
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
    /// Guidance weight of the base model and the experts (default: the configuration's
    /// `generator.guidance`).
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Guidance weight of the apprentice's text (default: `--guidance`).
    #[arg(long)]
    pub apprentice_guidance: Option<f32>,
    /// Separate guidance weight of the apprentice's demonstrations, from the text alone towards
    /// text and demonstrations (default: none, the apprentice's guidance weighs both).
    #[arg(long)]
    pub demo_guidance: Option<f32>,
    /// Seed of the images (the same seeds for every method).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for eval.json, eval.md, eval.html and the contact sheets.
    #[arg(long, default_value = "eval")]
    pub out: PathBuf,
}

/// Side of the EmojiWorld evaluation set's photos: demonstrations as large as crawled ones, reduced
/// to the model's side when used.
pub const BENCHMARK_SIDE: u32 = 64;

/// At most `limit` items (0: all).
fn at_most(limit: usize) -> usize {
    if limit == 0 { usize::MAX } else { limit }
}

/// One prompt of an evaluation subject.
#[derive(Debug, Clone)]
pub struct EvalPrompt {
    /// With the class noun alone (`a teapot in the snow`): what base and apprentice are given.
    pub plain: String,
    /// With the expert's identifier (`a sks teapot in the snow`).
    pub personalised: String,
    /// The true image, where the set has one (EmojiWorld does, DreamBench does not).
    pub truth: Option<RgbaImage>,
}

/// One evaluation subject.
#[derive(Debug, Clone)]
pub struct EvalSubject {
    /// Its id.
    pub id: String,
    /// Class noun.
    pub noun: String,
    /// Its photos with captions.
    pub demos: Vec<Demonstration>,
    /// What to render.
    pub prompts: Vec<EvalPrompt>,
}

/// How the protocol runs.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    /// Images per prompt.
    pub images: usize,
    /// Demonstration counts for the apprentice rows.
    pub demo_counts: Vec<usize>,
    /// The expert recipe.
    pub expert: ExpertConfig,
    /// Denoising steps.
    pub steps: usize,
    /// Guidance weight of the base model and the experts.
    pub guidance: f32,
    /// Guidance weight of the apprentice's text.
    pub apprentice_guidance: f32,
    /// Separate guidance weight of the apprentice's demonstrations.
    pub demo_guidance: Option<f32>,
    /// Image seed.
    pub seed: u64,
}

/// The models the protocol uses.
pub struct EvalModels {
    /// The text-to-image base (and the experts' starting point).
    pub base: Arc<BaseModel>,
    /// The apprentice release.
    pub apprentice: LoadedModel,
    /// The scorer (CLIP-I, CLIP-T).
    pub scorer: Arc<ScorerModel>,
    /// The image tower (subject similarity).
    pub tower: ImageTower,
    /// The frozen text encoder.
    pub text: TextEncoder,
}

/// One row of the table: a method's mean scores over every image of every subject.
#[derive(Debug, Clone, Serialize)]
pub struct MethodRow {
    /// `real images`, `base (text only)`, `expert`, `apprentice, 3 demos`.
    pub method: String,
    /// Mean image-tower cosine to the demonstrations (the DINO stand-in).
    pub subject_similarity: f32,
    /// Mean scorer-space cosine to the demonstrations.
    pub clip_i: f32,
    /// Mean scorer-space cosine to the prompt (absent where real images have no prompt).
    pub clip_t: Option<f32>,
    /// Mean wall time per subject, seconds (fine-tune + generate for the expert).
    pub seconds_per_subject: f64,
    /// Images scored.
    pub images: usize,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
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
    /// The table.
    pub rows: Vec<MethodRow>,
}

/// A subject's images per method, for contact sheets: `(method, images)`.
pub struct SubjectSheet {
    /// The subject.
    pub subject: String,
    /// Demonstrations at the model's side.
    pub demos: Vec<RgbaImage>,
    /// Each method's images, prompt by prompt.
    pub methods: Vec<(String, Vec<RgbaImage>)>,
}

/// Running sums for one method.
#[derive(Default)]
struct Tally {
    similarity: f64,
    clip_i: f64,
    clip_t: f64,
    clip_t_count: usize,
    count: usize,
    seconds: f64,
    subjects: usize,
}

impl Tally {
    fn add(&mut self, scores: &[CandidateScores], with_text: bool, seconds: f64) {
        for s in scores {
            self.similarity += f64::from(s.subject_similarity);
            self.clip_i += f64::from(s.clip_i);
            if with_text {
                self.clip_t += f64::from(s.clip_t);
                self.clip_t_count += 1;
            }
        }
        self.count += scores.len();
        self.seconds += seconds;
        self.subjects += 1;
    }

    fn row(&self, method: String) -> MethodRow {
        let n = self.count.max(1) as f64;
        MethodRow {
            method,
            subject_similarity: (self.similarity / n) as f32,
            clip_i: (self.clip_i / n) as f32,
            clip_t: (self.clip_t_count > 0)
                .then(|| (self.clip_t / self.clip_t_count as f64) as f32),
            seconds_per_subject: self.seconds / self.subjects.max(1) as f64,
            images: self.count,
        }
    }
}

/// The subjects of a set written by `suti synthweb benchmark`, `prompts` of each (the first ones
/// whose place no demonstration shows).
pub fn subjects_from_benchmark(
    dir: &Path,
    limit: usize,
    prompts: usize,
    identifier: &str,
) -> anyhow::Result<Vec<EvalSubject>> {
    let manifest = BenchmarkManifest::load(dir)
        .with_context(|| format!("reading {}/manifest.json", dir.display()))?;
    let read = |rel: &str| -> anyhow::Result<RgbaImage> {
        let path = dir.join(rel);
        Ok(RgbaImage::from_png(
            &std::fs::read(&path).with_context(|| path.display().to_string())?,
        )?)
    };
    let mut subjects = Vec::new();
    for entry in manifest.subjects.iter().take(at_most(limit)) {
        let demos = entry
            .demos
            .iter()
            .map(|d| {
                Ok(Demonstration {
                    image: read(&d.image)?,
                    caption: d.caption.clone(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let captions: Vec<String> = demos.iter().map(|d| d.caption.to_lowercase()).collect();
        let mut chosen = Vec::new();
        for p in &entry.prompts {
            if chosen.len() == prompts {
                break;
            }
            if shown_by(&p.text, &entry.noun, &captions) {
                continue;
            }
            chosen.push(EvalPrompt {
                plain: p.text.clone(),
                personalised: p
                    .template
                    .replace("{}", &format!("{identifier} {}", entry.noun)),
                truth: Some(read(&p.true_image)?),
            });
        }
        subjects.push(EvalSubject {
            id: entry.id.clone(),
            noun: entry.noun.clone(),
            demos,
            prompts: chosen,
        });
    }
    Ok(subjects)
}

/// Whether a prompt's context (what follows the noun) is already what a demonstration shows.
fn shown_by(prompt: &str, noun: &str, captions: &[String]) -> bool {
    let lower = prompt.to_lowercase();
    let tail = lower
        .split_once(&noun.to_lowercase())
        .map(|(_, t)| t.trim().to_string())
        .unwrap_or_default();
    !tail.is_empty() && captions.iter().any(|c| c.contains(&tail))
}

/// The subjects of the real DreamBench folder, photos decoded and `prompts` of each.
pub fn subjects_from_dreambench(
    dir: &Path,
    limit: usize,
    prompts: usize,
    identifier: &str,
) -> anyhow::Result<Vec<EvalSubject>> {
    let set = load_dreambench(dir)?;
    let limits = DecodeLimits {
        max_side: 8192,
        max_pixels: 8192 * 8192,
        max_bytes: 256 << 20,
    };
    let mut subjects = Vec::new();
    for subject in set.subjects.iter().take(at_most(limit)) {
        let demos = subject
            .photos
            .iter()
            .map(|p| {
                // Photos are reduced at once: the models work at a few dozen pixels.
                Ok(Demonstration {
                    image: read_photo(p, limits)?.centre_square(128),
                    caption: format!("a photo of my {}", subject.class_noun),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let templates = if subject.live {
            &set.live_prompts
        } else {
            &set.object_prompts
        };
        subjects.push(EvalSubject {
            id: subject.id.clone(),
            noun: subject.class_noun.clone(),
            demos,
            prompts: templates
                .iter()
                .take(prompts)
                .map(|t| EvalPrompt {
                    plain: fill_template(t, None, &subject.class_noun),
                    personalised: fill_template(t, Some(identifier), &subject.class_noun),
                    truth: None,
                })
                .collect(),
        });
    }
    Ok(subjects)
}

/// Renders every prompt `settings.images` times with a text-to-image network, prompt by prompt.
fn render_text_only(
    dit: &suti_models::Dit,
    text: &TextEncoder,
    prompts: &[String],
    settings: &EvalSettings,
) -> anyhow::Result<Vec<RgbaImage>> {
    Ok(
        generate(dit, text, prompts, settings.images, &sampler(settings), 16)?
            .into_iter()
            .map(|g| g.image)
            .collect(),
    )
}

fn sampler(settings: &EvalSettings) -> SamplerConfig {
    SamplerConfig {
        steps: settings.steps,
        guidance: settings.guidance,
        seed: settings.seed,
        ..SamplerConfig::default()
    }
}

/// Runs the protocol over `subjects`; `bar` advances once per (subject, method).
pub fn run_protocol(
    subjects: &[EvalSubject],
    models: &EvalModels,
    settings: &EvalSettings,
    set_name: &str,
    bar: &ProgressBar,
) -> anyhow::Result<(EvalReport, Vec<SubjectSheet>)> {
    let side = models.base.config.image_size;
    let scorers = FilterModels {
        tower: &models.tower,
        scorer: &models.scorer,
        text: &models.text,
    };
    let base_dit = models.base.dit()?;
    let methods = 3 + settings.demo_counts.len();
    bar.set_length((subjects.len() * methods) as u64);
    let mut real = Tally::default();
    let mut base = Tally::default();
    let mut expert = Tally::default();
    let mut apprentice: Vec<Tally> = settings
        .demo_counts
        .iter()
        .map(|_| Tally::default())
        .collect();
    let mut sheets = Vec::new();
    for (si, subject) in subjects.iter().enumerate() {
        let demo_images: Vec<RgbaImage> = subject.demos.iter().map(|d| d.image.clone()).collect();
        let plain: Vec<String> = subject.prompts.iter().map(|p| p.plain.clone()).collect();
        // Each image is scored against the prompt it was rendered for, with the noun alone.
        let labelled = |images: &[RgbaImage]| -> Vec<(RgbaImage, String)> {
            images
                .iter()
                .enumerate()
                .map(|(k, img)| (img.clone(), plain[k / settings.images].clone()))
                .collect()
        };
        let mut sheet = SubjectSheet {
            subject: subject.id.clone(),
            demos: demo_images
                .iter()
                .map(|d| d.centre_square(side as u32))
                .collect(),
            methods: Vec::new(),
        };

        // Real images: the true renders, or (without them) each photo against the others.
        bar.set_message(format!("{}: real images", subject.id));
        if subject.prompts.iter().all(|p| p.truth.is_some()) && !subject.prompts.is_empty() {
            let truths: Vec<RgbaImage> = subject
                .prompts
                .iter()
                .filter_map(|p| p.truth.as_ref().map(|t| t.centre_square(side as u32)))
                .collect();
            let labelled_truths: Vec<(RgbaImage, String)> =
                truths.iter().cloned().zip(plain.iter().cloned()).collect();
            real.add(&scorers.score(&demo_images, &labelled_truths)?, true, 0.0);
            sheet.methods.push(("real images".into(), truths));
        } else if demo_images.len() > 1 {
            let mut scores = Vec::new();
            for i in 0..demo_images.len() {
                let others: Vec<RgbaImage> = demo_images
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, d)| d.clone())
                    .collect();
                scores.extend(scorers.score(
                    &others,
                    &[(demo_images[i].centre_square(side as u32), plain[0].clone())],
                )?);
            }
            real.add(&scores, false, 0.0);
        }
        bar.inc(1);

        // Base: the text alone.
        bar.set_message(format!("{}: base", subject.id));
        let started = Instant::now();
        let images = render_text_only(&base_dit, &models.text, &plain, settings)?;
        let seconds = started.elapsed().as_secs_f64();
        base.add(
            &scorers.score(&demo_images, &labelled(&images))?,
            true,
            seconds,
        );
        sheet.methods.push(("base (text only)".into(), images));
        bar.inc(1);

        // Expert: fine-tune on the demonstrations, then render with the identifier.
        bar.set_message(format!(
            "{}: expert ({} steps)",
            subject.id, settings.expert.steps
        ));
        let started = Instant::now();
        let pairs: Vec<Pair> = subject
            .demos
            .iter()
            .map(|d| Pair {
                image: to_chw(&d.image, side),
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
        let expert_dit = models.base.with_adapter(
            &trained.adapter,
            suti_factory::artifacts::stored_adapter_lora(settings.expert.rank),
        )?;
        let personalised: Vec<String> = subject
            .prompts
            .iter()
            .map(|p| p.personalised.clone())
            .collect();
        let images = render_text_only(&expert_dit, &models.text, &personalised, settings)?;
        let seconds = started.elapsed().as_secs_f64();
        expert.add(
            &scorers.score(&demo_images, &labelled(&images))?,
            true,
            seconds,
        );
        sheet.methods.push(("expert".into(), images));
        bar.inc(1);

        // Apprentice: in-context, with the first k demonstrations.
        for (tally, &k) in apprentice.iter_mut().zip(&settings.demo_counts) {
            bar.set_message(format!("{}: apprentice, {k} demos", subject.id));
            let started = Instant::now();
            let requests: Vec<Generation> = plain
                .iter()
                .enumerate()
                .map(|(i, prompt)| Generation {
                    prompt: prompt.clone(),
                    demonstrations: subject.demos.iter().take(k).cloned().collect(),
                    seeds: (0..settings.images)
                        .map(|j| image_seed(settings.seed, i, j))
                        .collect(),
                    steps: settings.steps,
                    guidance: settings.apprentice_guidance,
                    demo_guidance: settings.demo_guidance,
                })
                .collect();
            let refs: Vec<&Generation> = requests.iter().collect();
            let images: Vec<RgbaImage> = render_batch(&models.apprentice, &models.text, &refs)?
                .into_iter()
                .flatten()
                .collect();
            let seconds = started.elapsed().as_secs_f64();
            tally.add(
                &scorers.score(&demo_images, &labelled(&images))?,
                true,
                seconds,
            );
            sheet
                .methods
                .push((format!("apprentice, {k} demos"), images));
            bar.inc(1);
        }
        sheets.push(sheet);
    }
    let mut rows = vec![real.row("real images".into())];
    rows.push(base.row("base (text only)".into()));
    rows.push(expert.row(format!("expert ({} steps)", settings.expert.steps)));
    for (tally, k) in apprentice.iter().zip(&settings.demo_counts) {
        rows.push(tally.row(format!(
            "apprentice, {k} demo{}",
            if *k == 1 { "" } else { "s" }
        )));
    }
    Ok((
        EvalReport {
            set: set_name.to_string(),
            subjects: subjects.iter().map(|s| s.id.clone()).collect(),
            prompts_per_subject: subjects.first().map(|s| s.prompts.len()).unwrap_or(0),
            images_per_prompt: settings.images,
            expert_steps: settings.expert.steps,
            steps: settings.steps,
            guidance: settings.guidance,
            apprentice_guidance: settings.apprentice_guidance,
            demo_guidance: settings.demo_guidance,
            apprentice_version: models.apprentice.version.clone(),
            rows,
        },
        sheets,
    ))
}

/// The table as markdown.
pub fn markdown_table(report: &EvalReport) -> String {
    let mut md = String::from(
        "| method | subject similarity | CLIP-I | CLIP-T | time per subject |\n|---|---|---|---|---|\n",
    );
    for row in &report.rows {
        md.push_str(&format!(
            "| {} | {:.3} | {:.3} | {} | {} |\n",
            row.method,
            row.subject_similarity,
            row.clip_i,
            row.clip_t.map_or("—".into(), |t| format!("{t:.3}")),
            if row.method == "real images" {
                "—".to_string()
            } else {
                format!("{:.1} s", row.seconds_per_subject)
            }
        ));
    }
    md
}

/// The row whose method starts with `prefix`.
pub fn row<'a>(report: &'a EvalReport, prefix: &str) -> Option<&'a MethodRow> {
    report.rows.iter().find(|r| r.method.starts_with(prefix))
}

/// `s` with the characters HTML gives meaning to escaped.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The start of a report page: doctype, title, the shared style and the heading.
pub fn html_head(title: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto}}\
         td,th{{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}}\
         img{{image-rendering:pixelated;width:100%}}</style></head><body><h1>{0}</h1>",
        html_escape(title)
    )
}

/// The table as HTML.
pub fn html_table(report: &EvalReport) -> String {
    let mut html = String::from(
        "<table><tr><th>method</th><th>subject similarity</th><th>CLIP-I</th><th>CLIP-T</th>\
         <th>time per subject</th></tr>",
    );
    for row in &report.rows {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{:.1} s</td></tr>",
            html_escape(&row.method),
            row.subject_similarity,
            row.clip_i,
            row.clip_t.map_or("—".into(), |t| format!("{t:.3}")),
            row.seconds_per_subject
        ));
    }
    html.push_str("</table>");
    html
}

/// Writes eval.json, eval.md, `sheets/<subject>.png` and eval.html into `out`.
pub fn write_outputs(
    out: &Path,
    report: &EvalReport,
    sheets: &[SubjectSheet],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.join("sheets"))?;
    std::fs::write(out.join("eval.json"), serde_json::to_vec_pretty(report)?)?;
    std::fs::write(out.join("eval.md"), markdown_table(report))?;
    let escape = html_escape;
    let mut html = html_head("suti eval");
    html.push_str(&format!(
        "<p>{} — {} subjects × {} prompts × {} images; experts fine-tuned for {} steps; apprentice \
         release {}.</p>",
        escape(&report.set),
        report.subjects.len(),
        report.prompts_per_subject,
        report.images_per_prompt,
        report.expert_steps,
        escape(&report.apprentice_version)
    ));
    html.push_str(&html_table(report));
    html.push_str("<p>Each sheet: the demonstrations, then one row per method (real images, base, expert, apprentice with 1/3/5 demonstrations), prompt by prompt.</p>");
    for sheet in sheets {
        let mut rows = vec![sheet.demos.clone()];
        rows.extend(sheet.methods.iter().map(|(_, images)| images.clone()));
        let file = format!("sheets/{}.png", sheet.subject);
        std::fs::write(
            out.join(&file),
            suti_data::contact::contact_sheet(&rows, 2).to_png(),
        )?;
        html.push_str(&format!(
            "<h2>{}</h2><p>{}</p><img src=\"{file}\" alt=\"{}\">",
            escape(&sheet.subject),
            sheet
                .methods
                .iter()
                .map(|(m, _)| escape(m))
                .collect::<Vec<_>>()
                .join(" · "),
            escape(&sheet.subject)
        ));
    }
    html.push_str("</body></html>\n");
    std::fs::write(out.join("eval.html"), html)?;
    Ok(())
}

/// Loads the base, scorer and apprentice named by their `LATEST` pointers, and the towers.
pub async fn load_models(
    store: &SharedStore,
    config: &suti_runtime::SutiConfig,
) -> anyhow::Result<EvalModels> {
    let device = Device::Cpu;
    let latest = |name: &'static str, what: &'static str| async move {
        let key = suti_stage::models::latest_key(name)?;
        suti_storage::read_pointer(store.as_ref(), &key)
            .await?
            .with_context(|| format!("no {what} in storage (models/{name}/LATEST)"))
    };
    let base_version = latest("base", "base model").await?;
    let apprentice_version = latest("apprentice", "apprentice release").await?;
    let base = suti_stage::VersionedModels::new(
        "base",
        store.clone(),
        suti_factory::artifacts::base_loader(device.clone()),
    )
    .version(&base_version)
    .await
    .map_err(|e| anyhow::anyhow!("loading the base model: {e}"))?;
    let apprentice = suti_stage::VersionedModels::new(
        "apprentice",
        store.clone(),
        suti_factory::artifacts::dit_loader("apprentice", device.clone()),
    )
    .version(&apprentice_version)
    .await
    .map_err(|e| anyhow::anyhow!("loading the apprentice: {e}"))?;
    let scorer = suti_stage::VersionedModels::new(
        "scorer",
        store.clone(),
        suti_factory::artifacts::scorer_loader(device.clone()),
    );
    let (_, scorer) = scorer
        .latest()
        .await
        .map_err(|e| anyhow::anyhow!("loading the scorer: {e}"))?;
    Ok(EvalModels {
        base,
        apprentice: LoadedModel::from_bundle(apprentice_version, &apprentice)?,
        scorer,
        tower: suti_factory::towers::load_image_tower(
            &suti_factory::towers::image_tower_path(&config.models.image_tower),
            &device,
        )?,
        text: suti_factory::towers::configured_text_encoder(&config.models.text_encoder, &device)?,
    })
}

/// The expert recipe of the configuration, with `steps` when given.
pub fn expert_settings(config: &suti_runtime::SutiConfig, steps: Option<u64>) -> ExpertConfig {
    let mut expert = expert_finetuner::expert_config(config);
    if let Some(steps) = steps {
        expert.steps = steps;
    }
    expert
}

/// A progress bar for the protocol.
pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} eta {eta} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix("eval");
    bar
}

/// Runs `suti eval`.
pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    let config = match &args.data {
        Some(data) => suti_runtime::SutiConfig::embedded(data),
        None => suti_runtime::SutiConfig::load_file(args.config.as_deref())?,
    };
    if args.demos.is_empty() || args.demos.contains(&0) {
        bail!("--demos takes counts of at least 1, such as 1,3,5");
    }
    if args.images == 0 || args.prompts == 0 {
        bail!("--images and --prompts must be at least 1");
    }
    let store = suti_runtime::connect_storage(&config).await?;
    let models = load_models(&store, &config).await?;
    let guidance = args.guidance.unwrap_or(config.generator.guidance);
    let settings = EvalSettings {
        images: args.images,
        demo_counts: args.demos.clone(),
        expert: expert_settings(&config, args.expert_steps),
        steps: args.steps,
        guidance,
        apprentice_guidance: args.apprentice_guidance.unwrap_or(guidance),
        demo_guidance: args.demo_guidance,
        seed: args.seed,
    };
    let identifier = settings.expert.identifier_token.clone();
    let (set_name, subjects) = if let Some(dir) = &args.dreambench {
        (
            format!("DreamBench ({})", dir.display()),
            subjects_from_dreambench(dir, args.subjects, args.prompts, &identifier)?,
        )
    } else {
        let dir = match &args.benchmark {
            Some(dir) => dir.clone(),
            None => {
                let dir = args.out.join("benchmark");
                let assets = Assets::open_default()
                    .context("EmojiWorld assets (run scripts/fetch-assets)")?;
                write_benchmark(&assets, &dir, BENCHMARK_SIDE, args.seed, args.subjects)?;
                dir
            }
        };
        (
            "EmojiWorld held-out subjects".to_string(),
            subjects_from_benchmark(&dir, args.subjects, args.prompts, &identifier)?,
        )
    };
    if subjects.is_empty() {
        bail!("the evaluation set has no subjects");
    }
    let bar = progress_bar();
    let (report, sheets) = tokio::task::block_in_place(|| {
        run_protocol(&subjects, &models, &settings, &set_name, &bar)
    })?;
    bar.finish_and_clear();
    write_outputs(&args.out, &report, &sheets)?;
    println!("{}", markdown_table(&report));
    println!(
        "wrote {0}/eval.json, {0}/eval.md, {0}/eval.html and {0}/sheets/",
        args.out.display()
    );
    Ok(())
}
