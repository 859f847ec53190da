//! `suti eval` and `suti eval sanity`: the command-line side of the evaluation library
//! (`suti-eval`). It reads the models of a run from storage, picks the subject encoder and the
//! image–text scorer (the project's own, or DINOv2 and CLIP from Hugging Face folders), renders or
//! reads the evaluation set, runs the protocol or the sanity check, and prints and writes the
//! results.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use suti_data::Assets;
use suti_eval::features::Crop;
use suti_eval::job::{
    BENCHMARK_SIDE, EvalSetSource, ScorerChoice, SubjectEncoderChoice, encoders, eval_models,
    evaluation_set, expert_settings, load_models,
};
use suti_eval::protocol::{EvalModels, EvalReport, EvalSettings, SubjectSheet, run_protocol};
use suti_eval::subjects::EvalSubject;
use suti_models::image_tower::TowerTap;

/// Which subject encoder the metrics use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum SubjectEncoderKind {
    /// EfficientNet-Lite0 read as the sanity check chose (docs/eval.md).
    #[default]
    Tower,
    /// DINOv2 ViT-S/14 from a Hugging Face folder (DreamBench's DINO).
    Dinov2,
}

/// Which image–text scorer gives CLIP-I and CLIP-T.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ScorerKind {
    /// The project's scorer from storage.
    #[default]
    Trained,
    /// CLIP ViT-B/32 from a Hugging Face folder (DreamBench's CLIP-I and CLIP-T).
    Clip,
}

/// Options of `suti eval`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalArgs {
    /// `sanity`: the check a subject metric must pass; without it, the protocol.
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// Where the models and the set come from.
    #[command(flatten)]
    pub source: EvalSource,
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
    /// Subjects the expert baseline runs on, the first ones (each costs a fine-tune; 0 leaves
    /// the expert row out).
    #[arg(long, default_value_t = 8)]
    pub expert_subjects: usize,
    /// Leave out the two control rows (shuffled demonstrations, no demonstrations).
    #[arg(long)]
    pub no_controls: bool,
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
    /// Subjects rendered together in one denoising batch per method.
    #[arg(long, default_value_t = 2)]
    pub batch_subjects: usize,
    /// Folder for eval.json, eval.md, eval.html and the contact sheets.
    #[arg(long, default_value = "eval")]
    pub out: PathBuf,
}

/// The models, the set and the encoders: what both `suti eval` and `suti eval sanity` read.
#[derive(Debug, Args)]
pub struct EvalSource {
    /// A YAML file layered over the compiled-in defaults (storage, towers, expert settings).
    #[arg(long, short, env = "SUTI_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// The data folder of an embedded run (a demo's `<out>/data`): models are read from its local
    /// storage instead of the configured one.
    #[arg(long, conflicts_with = "config", global = true)]
    pub data: Option<PathBuf>,
    /// An evaluation set written by `suti synthweb benchmark` (its folder, with manifest.json).
    /// Default: EmojiWorld's held-out subjects, rendered into `<out>/benchmark`.
    #[arg(long, conflicts_with = "dreambench", global = true)]
    pub benchmark: Option<PathBuf>,
    /// The real DreamBench folder (`dataset/` of google/dreambooth, with prompts_and_classes.txt).
    #[arg(long, global = true)]
    pub dreambench: Option<PathBuf>,
    /// Subjects to evaluate (0: all): 24 are 12 held-out classes × both drawings.
    #[arg(long, default_value_t = 24, global = true)]
    pub subjects: usize,
    /// The subject encoder: `tower` (default), or `dinov2 DIR` with DIR a Hugging Face
    /// `facebook/dinov2-small` folder (config.json, model.safetensors).
    #[arg(long, num_args = 1..=2, value_names = ["KIND", "DIR"], global = true)]
    pub subject_encoder: Vec<String>,
    /// The image–text scorer: `trained` (default, from storage), or `clip DIR` with DIR a Hugging
    /// Face `openai/clip-vit-base-patch32` folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long, num_args = 1..=2, value_names = ["KIND", "DIR"], global = true)]
    pub scorer: Vec<String>,
    /// Seed of the images (the same seeds for every method) and of the bootstrap.
    #[arg(long, default_value_t = 0, global = true)]
    pub seed: u64,
}

/// `suti eval` subcommands.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Scores true renders of each held-out subject, the other drawing of its class, another class,
    /// the background alone and a blurred copy against the subject's demonstrations, for each
    /// candidate reading of the image tower, and prints the AUC table (docs/eval.md).
    Sanity(SanityArgs),
}

/// Options of `suti eval sanity`.
#[derive(Debug, Args)]
pub struct SanityArgs {
    /// Contexts (prompts) per subject.
    #[arg(long, default_value_t = 6)]
    pub contexts: usize,
    /// Side the images are scored at (the models' side).
    #[arg(long, default_value_t = 32)]
    pub side: u32,
    /// Tower blocks to read (0–15), besides the head.
    #[arg(long, value_delimiter = ',', default_value = "4,7,10,14,15")]
    pub blocks: Vec<usize>,
    /// Tower input sides to try.
    #[arg(long, value_delimiter = ',', default_value = "224,112")]
    pub inputs: Vec<usize>,
    /// Crops to try (`whole`, `subject`).
    #[arg(long, value_delimiter = ',', default_value = "whole,subject", value_parser = parse_crop)]
    pub crops: Vec<Crop>,
    /// Only the metric the protocol reports (fast).
    #[arg(long)]
    pub reported_only: bool,
    /// Folder for sanity.md and sanity.json.
    #[arg(long, default_value = "eval")]
    pub out: PathBuf,
}

/// `--crops`: `whole` or `subject`.
fn parse_crop(name: &str) -> Result<Crop, String> {
    match name {
        "whole" => Ok(Crop::Whole),
        "subject" => Ok(Crop::SubjectRegion),
        other => Err(format!("--crops are whole or subject, got {other:?}")),
    }
}

/// A kind and an optional folder from `--subject-encoder` / `--scorer`.
fn kind_and_dir<K: ValueEnum + Default>(
    values: &[String],
    flag: &str,
) -> anyhow::Result<(K, Option<PathBuf>)> {
    match values {
        [] => Ok((K::default(), None)),
        [kind, rest @ ..] => {
            let kind = K::from_str(kind, true).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))?;
            Ok((kind, rest.first().map(PathBuf::from)))
        }
    }
}

impl EvalSource {
    /// Where the subjects come from.
    pub fn set_source(&self) -> EvalSetSource {
        match (&self.dreambench, &self.benchmark) {
            (Some(dir), _) => EvalSetSource::DreamBench(dir.clone()),
            (None, Some(dir)) => EvalSetSource::Benchmark(dir.clone()),
            (None, None) => EvalSetSource::EmojiWorld { seed: self.seed },
        }
    }

    /// The subject encoder and scorer that `--subject-encoder` and `--scorer` choose.
    pub fn choices(&self) -> anyhow::Result<(SubjectEncoderChoice, ScorerChoice)> {
        let (subject_kind, subject_dir) =
            kind_and_dir::<SubjectEncoderKind>(&self.subject_encoder, "subject-encoder")?;
        let subject = match (subject_kind, subject_dir) {
            (SubjectEncoderKind::Tower, None) => SubjectEncoderChoice::Tower,
            (SubjectEncoderKind::Dinov2, Some(dir)) => SubjectEncoderChoice::Dinov2(dir),
            (SubjectEncoderKind::Tower, Some(_)) => {
                bail!("--subject-encoder tower takes no folder")
            }
            (SubjectEncoderKind::Dinov2, None) => bail!(
                "--subject-encoder dinov2 needs the weights' folder: --subject-encoder dinov2 DIR"
            ),
        };
        let (scorer_kind, scorer_dir) = kind_and_dir::<ScorerKind>(&self.scorer, "scorer")?;
        let scorer = match (scorer_kind, scorer_dir) {
            (ScorerKind::Trained, None) => ScorerChoice::Trained,
            (ScorerKind::Clip, Some(dir)) => ScorerChoice::Clip(dir),
            (ScorerKind::Trained, Some(_)) => bail!("--scorer trained takes no folder"),
            (ScorerKind::Clip, None) => {
                bail!("--scorer clip needs the weights' folder: --scorer clip DIR")
            }
        };
        Ok((subject, scorer))
    }
}

/// Runs the protocol, its progress as a phase of subjects' work items (bars on a terminal,
/// lines off one).
pub fn run_with_progress(
    subjects: &[EvalSubject],
    models: &EvalModels,
    settings: &EvalSettings,
    set_name: &str,
) -> anyhow::Result<(EvalReport, Vec<SubjectSheet>)> {
    let phase = crate::progress::Phase::start("eval", 0, "items");
    let mut progress = |done: usize, total: usize, what: &str| {
        phase.set_total(total as u64);
        phase.set_status(what.to_string());
        phase.set_done(done as u64);
    };
    let result = run_protocol(subjects, models, settings, set_name, &mut progress);
    phase.finish();
    Ok(result?)
}

/// Runs `suti eval`.
pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    let config = match &args.source.data {
        Some(data) => suti_runtime::SutiConfig::embedded(data),
        None => suti_runtime::SutiConfig::load_file(args.source.config.as_deref())?,
    };
    if let Some(EvalCommand::Sanity(sanity)) = &args.command {
        return run_sanity(&args.source, sanity, &config);
    }
    if args.demos.is_empty() || args.demos.contains(&0) {
        bail!(
            "--demos takes counts of at least 1, such as 1,3,5 (the no-demonstrations control row is always there)"
        );
    }
    if args.images == 0 || args.prompts == 0 {
        bail!("--images and --prompts must be at least 1");
    }
    let (subject_choice, scorer_choice) = args.source.choices()?;
    let store = suti_runtime::connect_storage(&config).await?;
    let stored = load_models(&store, &config).await?;
    let guidance = args.guidance.unwrap_or(config.generator.guidance);
    let settings = EvalSettings {
        images: args.images,
        demo_counts: args.demos.clone(),
        expert: expert_settings(&config, args.expert_steps),
        expert_subjects: args.expert_subjects,
        steps: args.steps,
        guidance,
        apprentice_guidance: args.apprentice_guidance.unwrap_or(guidance),
        demo_guidance: args.demo_guidance,
        seed: args.source.seed,
        controls: !args.no_controls,
        batch_subjects: args.batch_subjects,
    };
    let set = evaluation_set(
        &args.source.set_source(),
        args.source.subjects,
        &args.out,
        args.prompts,
        &settings.expert.identifier_token,
    )?;
    if set.subjects.is_empty() {
        bail!("the evaluation set has no subjects");
    }
    let (subject, scorer) = encoders(&subject_choice, &scorer_choice, &stored)?;
    let models = tokio::task::block_in_place(|| eval_models(stored, subject, scorer, &set))?;
    let (report, sheets) = tokio::task::block_in_place(|| {
        run_with_progress(&set.subjects, &models, &settings, &set.name)
    })?;
    suti_eval::report::write_outputs(&args.out, &report, &sheets)?;
    println!("{}", suti_eval::report::markdown(&report));
    println!(
        "{:.0} s in all; wrote {1}/eval.json, {1}/eval.md, {1}/eval.html and {1}/sheets/",
        report.seconds,
        args.out.display()
    );
    Ok(())
}

/// Runs `suti eval sanity`.
fn run_sanity(
    source: &EvalSource,
    args: &SanityArgs,
    config: &suti_runtime::SutiConfig,
) -> anyhow::Result<()> {
    use suti_eval::sanity::{
        MetricVariant, SanityInputs, run_sanity as check, sanity_cases, sanity_markdown,
        training_renders,
    };
    if source.dreambench.is_some() {
        bail!("the sanity check renders EmojiWorld scenes; it cannot run on DreamBench photos");
    }
    if !source.subject_encoder.is_empty() || !source.scorer.is_empty() {
        bail!(
            "the sanity check compares readings of the image tower; it takes no --subject-encoder or --scorer"
        );
    }
    let assets = Assets::open_default().context("EmojiWorld assets (run scripts/fetch-assets)")?;
    let subjects = evaluation_set(
        &source.set_source(),
        source.subjects,
        &args.out,
        args.contexts,
        "sks",
    )?
    .subjects;
    let device = suti_factory::device::model_device(config.models.device)?;
    let tower = suti_factory::towers::load_image_tower(
        &suti_factory::towers::image_tower_path(&config.models.image_tower),
        &device,
    )?;
    let cases = sanity_cases(&assets, &subjects, BENCHMARK_SIDE, args.side)?;
    let centring_images = training_renders(
        &assets,
        suti_eval::features::CENTRING_RENDERS,
        BENCHMARK_SIDE,
        args.side,
        0,
    )?;
    let inputs = SanityInputs {
        subjects: &subjects,
        cases: &cases,
        centring_images: &centring_images,
        side: args.side,
    };
    let reported = MetricVariant::REPORTED;
    let (taps, sides, crops) = if args.reported_only {
        (
            vec![reported.reading.tap],
            vec![reported.reading.input],
            vec![reported.reading.crop],
        )
    } else {
        let mut taps: Vec<TowerTap> = args
            .blocks
            .iter()
            .map(|&b| {
                if b > 15 {
                    bail!("--blocks are 0–15, got {b}");
                }
                Ok(TowerTap::Block(b))
            })
            .collect::<anyhow::Result<_>>()?;
        taps.push(TowerTap::Head);
        (taps, args.inputs.clone(), args.crops.clone())
    };
    eprintln!(
        "eval sanity: {} subjects × {} contexts, {} tower readings",
        subjects.len(),
        args.contexts,
        taps.len() * sides.len() * crops.len()
    );
    let started = std::time::Instant::now();
    let rows = check(&tower, &inputs, &taps, &sides, &crops, |what| {
        eprintln!(
            "eval sanity: {what} ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    })?;
    let mut md = sanity_markdown(&rows);
    let chosen = rows
        .iter()
        .find(|r| r.metric == reported)
        .map(|r| {
            format!(
                "\nThe protocol reports {}: {}.\n",
                r.name,
                if r.fit {
                    "fit for use"
                } else {
                    "NOT fit for use on this set"
                }
            )
        })
        .unwrap_or_default();
    md.push_str(&chosen);
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("sanity.md"), &md)?;
    std::fs::write(
        args.out.join("sanity.json"),
        serde_json::to_vec_pretty(&rows)?,
    )?;
    println!("{md}");
    println!(
        "{} subjects × {} contexts in {:.0} s; wrote {out}/sanity.md and {out}/sanity.json",
        subjects.len(),
        args.contexts,
        started.elapsed().as_secs_f64(),
        out = args.out.display()
    );
    Ok(())
}
