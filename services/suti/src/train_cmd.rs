//! `suti train base` and `suti train scorer`: the one-off jobs that turn the crawled image–caption
//! pairs into the base text-to-image model and the scorer, publishing each as
//! `models/{base,scorer}/{version}/` with its `LATEST` pointer; and `suti train apprentice`, the
//! diagnostic apprentice trained on the renderer's true images.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use suti_data::Split;
use suti_factory::apprentice::{
    ApprenticeConfig, DemoChoice, SubjectNaming, apprentice_evaluation_loss, apprentice_step,
    apprentice_trainer,
};
use suti_factory::artifacts::{
    BASE_MODEL, SCORER_MODEL, clear_checkpoint_pointer, crawled_pairs, read_latest_checkpoint,
    write_checkpoint,
};
use suti_factory::base::{BaseTrainConfig, base_model, base_trainer};
use suti_factory::bundle::{CONFIG_FILE, WEIGHTS_FILE, version_of};
use suti_factory::pixels::to_chw;
use suti_factory::scorer::{
    Degradations, ScorerTrainConfig, tower_features, train_scorer_on_images,
};
use suti_factory::towers;
use suti_factory::training::{DenoiserTrainer, Pair};
use suti_factory::true_triplets::{
    TrueTripletSettings, true_pairs, true_triplet_subjects, true_triplets,
};
use suti_models::{DemoAttention, DitConfig, ScorerConfig};
use suti_storage::SharedStore;
use suti_storage::layout::APPRENTICE_MODEL;

/// The training jobs.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Train the base text-to-image model on every crawled image–caption pair; checkpoints as it
    /// goes and resumes from the last checkpoint unless --fresh.
    Base(BaseArgs),
    /// Train the scorer's projection heads (frozen image tower and MiniLM) on every crawled pair
    /// and degraded copies of its image; prints held-out retrieval accuracy on crisp and degraded
    /// images.
    Scorer(ScorerCommand),
    /// Train an apprentice on the renderer's true images of many training-split subjects (a
    /// diagnostic of the architecture with a perfect teacher, never the pipeline's default) from
    /// the stored base, print its evaluation loss on held-out subjects with their own, another
    /// subject's and no demonstrations, and publish it as the latest apprentice release.
    Apprentice(ApprenticeArgs),
}

/// `suti train apprentice`.
#[derive(Debug, Args)]
pub struct ApprenticeArgs {
    /// A YAML file layered over the compiled-in defaults (storage, towers).
    #[arg(long, short, env = "SUTI_CONFIG")]
    pub config: Option<PathBuf>,
    /// The data folder of an embedded run (a demo's `<out>/data`) to read the base from and
    /// publish into, instead of the configured storage.
    #[arg(long, conflicts_with = "config")]
    pub data: Option<PathBuf>,
    /// Where the targets come from: `true-renders` (the renderer's true images of training-split
    /// subjects) or `accepted` (the pipeline's accepted triplets in storage, as the
    /// apprentice-trainer reads them, to compare training recipes on the pipeline's own data).
    #[arg(long, default_value = "true-renders")]
    pub targets: TargetSource,
    /// Training-split subjects the triplets are made of.
    #[arg(long, default_value_t = 200)]
    pub subjects: usize,
    /// Targets per subject.
    #[arg(long, default_value_t = 8)]
    pub targets_per_subject: usize,
    /// Leaves out the first N subjects of the draw and every subject of their classes: with
    /// the `--subjects` and `--seed` of `suti train base --pairs true-renders`, the apprentice
    /// trains on classes its base never saw.
    #[arg(long, default_value_t = 0)]
    pub skip_subjects: usize,
    /// Share of the targets whose prompt says a generic word instead of the class noun, so that
    /// only the demonstrations tell what the subject is (0 to 1): `animal` or `object` for true
    /// renders, the configured `apprentice.generic_noun` for accepted examples.
    #[arg(long, default_value_t = 0.0)]
    pub generic_nouns: f32,
    /// How the apprentice reads its demonstrations: `shared`, `gated` or `gated-finetuned`.
    #[arg(long, default_value = "shared")]
    pub demo_attention: DemoAttentionArg,
    /// Optimiser steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Examples per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-4)]
    pub learning_rate: f64,
    /// Held-out subjects the evaluation loss is measured on.
    #[arg(long, default_value_t = 24)]
    pub held_out: usize,
    /// Seed of the triplets, the new weights, batches and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Targets per held-out subject in `suti train apprentice`'s evaluation loss.
const HELD_OUT_TARGETS: usize = 4;

/// The targets `suti train apprentice` trains on.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TargetSource {
    /// The renderer's true images of each subject in each prompted scene.
    TrueRenders,
    /// The accepted triplets under `datasets/apprentice/`.
    Accepted,
}

/// The pairs `suti train base` learns from.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PairSource {
    /// The crawled clusters' image–caption pairs in storage.
    Crawled,
    /// The renderer's true images of training-split subjects.
    TrueRenders,
}

/// [`DemoAttention`] on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DemoAttentionArg {
    /// One softmax over own, text and demonstration keys; the whole base fine-tuned.
    Shared,
    /// Per-block gated readers over the frozen base.
    Gated,
    /// The gated readers with the whole network fine-tuned, over a frozen copy of the base.
    GatedFinetuned,
}

impl From<DemoAttentionArg> for DemoAttention {
    fn from(arg: DemoAttentionArg) -> Self {
        match arg {
            DemoAttentionArg::Shared => Self::Shared,
            DemoAttentionArg::Gated => Self::Gated,
            DemoAttentionArg::GatedFinetuned => Self::GatedFinetuned,
        }
    }
}

/// `suti train base`.
#[derive(Debug, Args)]
pub struct BaseArgs {
    /// A YAML file layered over the compiled-in defaults (storage, towers).
    #[arg(long, short, env = "SUTI_CONFIG")]
    pub config: Option<PathBuf>,
    /// The data folder of an embedded run (a demo's `<out>/data`) to read from and publish
    /// into, instead of the configured storage.
    #[arg(long, conflicts_with = "config")]
    pub data: Option<PathBuf>,
    /// What the base learns from: `crawled` (every crawled image–caption pair) or
    /// `true-renders` (the renderer's true images of `--subjects` training-split subjects, the
    /// data-scale diagnostic: a base that knows many classes without crawling them).
    #[arg(long, default_value = "crawled")]
    pub pairs: PairSource,
    /// Training-split subjects of `--pairs true-renders` (5 demonstrations and 8 prompted
    /// targets each, as `suti train apprentice` makes them).
    #[arg(long, default_value_t = 200)]
    pub subjects: usize,
    /// Model preset: test, mini, tiny, small or base.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Optimiser steps.
    #[arg(long, default_value_t = 3000)]
    pub steps: u64,
    /// Pairs per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 5e-4)]
    pub learning_rate: f64,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 250)]
    pub checkpoint_every: u64,
    /// Start from scratch even when a checkpoint exists.
    #[arg(long)]
    pub fresh: bool,
    /// Stop after this many steps in this run, leaving a checkpoint to resume from (for
    /// time-boxed jobs); the model is published only when all steps are done.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Seed of initialisation, batches and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `suti train scorer`.
#[derive(Debug, Args)]
pub struct ScorerArgs {
    /// A YAML file layered over the compiled-in defaults (storage, towers).
    #[arg(long, short, env = "SUTI_CONFIG")]
    pub config: Option<PathBuf>,
    /// Optimiser steps.
    #[arg(long, default_value_t = 600)]
    pub steps: u64,
    /// Pairs per contrastive batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Seed of initialisation, the held-out split and batches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Side the images are resampled to before the image tower: the generations' side (the
    /// model preset's resolution), so the scorer judges them in the domain it learned.
    #[arg(long, default_value_t = 32)]
    pub image_size: u32,
}

/// `suti train scorer` on the command line: [`ScorerArgs`] and the degradations (kept apart
/// from them so that callers building `ScorerArgs` get the default recipe).
#[derive(Debug, Args)]
pub struct ScorerCommand {
    /// The job's settings.
    #[command(flatten)]
    pub args: ScorerArgs,
    /// Degraded copies of each training image also trained on: `standard` (half resolution, a
    /// radius-1 blur, ±24 noise, half resolution with the noise) or `none` (crisp images only,
    /// the recipe before; held-out images are measured degraded either way, for comparison).
    #[arg(long, default_value = "standard")]
    pub degradations: Degradations,
}

/// Runs a training job.
pub async fn run(command: TrainCommand) -> anyhow::Result<()> {
    match command {
        TrainCommand::Base(args) => {
            let config = match &args.data {
                Some(data) => suti_runtime::SutiConfig::embedded(data),
                None => suti_runtime::SutiConfig::load_file(args.config.as_deref())?,
            };
            let store = suti_runtime::connect_storage(&config).await?;
            if let Some((version, _)) = train_base(&store, &config, &args, true).await? {
                println!("published models/base/{version}");
            }
        }
        TrainCommand::Scorer(ScorerCommand { args, degradations }) => {
            let config = suti_runtime::SutiConfig::load_file(args.config.as_deref())?;
            let store = suti_runtime::connect_storage(&config).await?;
            let version =
                train_scorer_job_with(&store, &config, &args, &degradations, true).await?;
            println!("published models/scorer/{version}");
        }
        TrainCommand::Apprentice(args) => {
            let config = match &args.data {
                Some(data) => suti_runtime::SutiConfig::embedded(data),
                None => suti_runtime::SutiConfig::load_file(args.config.as_deref())?,
            };
            let store = suti_runtime::connect_storage(&config).await?;
            let version = train_true_apprentice(&store, &config, &args).await?;
            println!("published models/{APPRENTICE_MODEL}/{version}");
        }
    }
    Ok(())
}

/// Trains an apprentice on true-image triplets from the stored base, prints its held-out
/// evaluation losses, and publishes it; returns its version.
pub async fn train_true_apprentice(
    store: &SharedStore,
    config: &suti_runtime::SutiConfig,
    args: &ApprenticeArgs,
) -> anyhow::Result<String> {
    if !(0.0..=1.0).contains(&args.generic_nouns) {
        bail!(
            "--generic-nouns is a share, from 0 to 1 (got {})",
            args.generic_nouns
        );
    }
    let device = suti_factory::device::model_device(config.models.device)?;
    let text = towers::configured_text_encoder(&config.models.text_encoder, &device)?;
    let assets = suti_data::Assets::open_default()
        .context("EmojiWorld assets (scripts/fetch-assets fetches them)")?;
    let (_, base) = suti_stage::VersionedModels::new(
        BASE_MODEL,
        store.clone(),
        suti_factory::artifacts::base_loader(device.clone()),
    )
    .latest()
    .await
    .map_err(|e| anyhow::anyhow!("loading the base model (train one first): {e}"))?;
    let size = base.config.image_size;
    let naming = SubjectNaming {
        generic_share: args.generic_nouns,
        generic_word: config.apprentice.generic_noun.clone(),
        seed: args.seed,
    };
    let settings = TrueTripletSettings {
        subjects: args.subjects,
        targets_per_subject: args.targets_per_subject,
        skip_subjects: args.skip_subjects,
        seed: args.seed,
        generic_noun_share: args.generic_nouns,
        ..TrueTripletSettings::default()
    };
    let train_subjects = true_triplet_subjects(&assets, Split::Train, &settings);
    let held_subjects = true_triplet_subjects(
        &assets,
        Split::HeldOut,
        &TrueTripletSettings {
            subjects: args.held_out,
            skip_subjects: 0,
            targets_per_subject: HELD_OUT_TARGETS,
            seed: args.seed ^ 0x5eed,
            ..settings.clone()
        },
    );
    let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let rendered = match args.targets {
        TargetSource::TrueRenders => train_subjects.len() + held_subjects.len(),
        TargetSource::Accepted => held_subjects.len(),
    };
    let bar = progress_bar(rendered as u64, "true triplets", show);
    let (triplets, described) = match args.targets {
        TargetSource::TrueRenders => (
            true_triplets(
                &assets,
                &train_subjects,
                &settings,
                &text,
                size,
                &mut || bar.inc(1),
            )?,
            format!("true images of {} training subjects", train_subjects.len()),
        ),
        TargetSource::Accepted => {
            let mut all = Vec::new();
            let mut shards = 0;
            for object in store
                .list(suti_storage::layout::APPRENTICE_SHARDS_PREFIX)
                .await?
            {
                let read = ::apprentice_trainer::read_shard(
                    store,
                    object.key.as_str(),
                    size,
                    &text,
                    &naming,
                )
                .await
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", object.key))?;
                shards += usize::from(!read.is_empty());
                all.extend(read);
            }
            if all.is_empty() {
                bail!(
                    "no accepted triplets in storage (datasets/apprentice/): run the pipeline first"
                );
            }
            (all, format!("accepted examples of {shards} clusters"))
        }
    };
    let held = true_triplets(
        &assets,
        &held_subjects,
        &TrueTripletSettings {
            targets_per_subject: HELD_OUT_TARGETS,
            // Held-out prompts name their class, as the evaluation's do.
            generic_noun_share: 0.0,
            ..settings.clone()
        },
        &text,
        size,
        &mut || bar.inc(1),
    )?;
    bar.finish_and_clear();
    eprintln!(
        "{} training triplets ({described}), {} held-out triplets of {} subjects",
        triplets.len(),
        held.len(),
        held_subjects.len()
    );
    let train = ApprenticeConfig {
        steps: args.steps,
        batch: args.batch,
        learning_rate: args.learning_rate,
        seed: args.seed,
        demo_attention: args.demo_attention.into(),
        ..ApprenticeConfig::default()
    };
    let mut trainer = apprentice_trainer(&base, &train)?;
    let losses = |trainer: &DenoiserTrainer| -> anyhow::Result<[f32; 3]> {
        let loss = |choice| apprentice_evaluation_loss(trainer.model(), &held, 3, choice, &text, 7);
        Ok([
            loss(DemoChoice::Own)?,
            loss(DemoChoice::Other)?,
            loss(DemoChoice::Without)?,
        ])
    };
    let report = |when: &str, [own, other, without]: [f32; 3]| {
        eprintln!(
            "held-out evaluation loss {when}: own demonstrations {own:.4}, another subject's \
             {other:.4} (gap {:.4}), none {without:.4}",
            other - own
        );
    };
    report("before", losses(&trainer)?);
    let bar = progress_bar(args.steps, "apprentice", show);
    let started = Instant::now();
    let mut smoothed = None::<f32>;
    let every = (args.steps / 10).max(1);
    while !trainer.finished() {
        let loss = tokio::task::block_in_place(|| {
            apprentice_step(&mut trainer, &triplets, &train, &text)
        })?;
        let s = smoothed.map_or(loss, |s| 0.98 * s + 0.02 * loss);
        smoothed = Some(s);
        bar.set_message(format!("loss {s:.4}"));
        bar.inc(1);
        let step = trainer.steps_done();
        if step % every == 0 && !trainer.finished() {
            // The held-out gap as it grows: the curve to pick a step count from.
            let [own, other, _] = losses(&trainer)?;
            let line = format!(
                "step {step}/{} at {:.0} s: loss {s:.4}; held-out own {own:.4}, other {other:.4}, \
                 gap {:.4}",
                args.steps,
                started.elapsed().as_secs_f64(),
                other - own
            );
            if show {
                bar.println(line);
            } else {
                eprintln!("apprentice: {line}");
            }
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    report("after", losses(&trainer)?);
    let version = ::apprentice_trainer::publish_release(store, &trainer)
        .await
        .map_err(|e| anyhow::anyhow!("publishing the apprentice: {e}"))?;
    eprintln!(
        "apprentice ({:?} demonstration attention): {} steps of {} in {seconds:.0} s ({:.2} s per step)",
        train.demo_attention,
        args.steps,
        args.batch,
        seconds / args.steps.max(1) as f64
    );
    Ok(version)
}

fn progress_bar(len: u64, what: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what:>14} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

async fn load_pairs(store: &SharedStore) -> anyhow::Result<Vec<(suti_data::RgbaImage, String)>> {
    let (pairs, skipped) = crawled_pairs(store)
        .await
        .map_err(|e| anyhow::anyhow!("reading the crawled clusters: {e}"))?;
    if skipped > 0 {
        eprintln!("skipped {skipped} unreadable images or manifests");
    }
    if pairs.len() < 8 {
        bail!(
            "only {} crawled image–caption pairs in storage (clusters/…): crawl first",
            pairs.len()
        );
    }
    Ok(pairs)
}

/// Trains and publishes the base model; returns its version and final evaluation loss, or `None`
/// when `--stop-after` ended the run early.
pub async fn train_base(
    store: &SharedStore,
    config: &suti_runtime::SutiConfig,
    args: &BaseArgs,
    show_progress: bool,
) -> anyhow::Result<Option<(String, f32)>> {
    let model_config = DitConfig::preset(&args.preset)
        .with_context(|| format!("unknown preset {:?}", args.preset))?;
    let device = suti_factory::device::model_device(config.models.device)?;
    let text = towers::configured_text_encoder(&config.models.text_encoder, &device)?;
    let size = model_config.image_size;
    let pairs: Vec<Pair> = match args.pairs {
        PairSource::Crawled => load_pairs(store)
            .await?
            .iter()
            .map(|(image, caption)| Pair {
                image: to_chw(image, size),
                caption: caption.clone(),
            })
            .collect(),
        PairSource::TrueRenders => {
            let assets = suti_data::Assets::open_default()
                .context("EmojiWorld assets (scripts/fetch-assets fetches them)")?;
            let settings = TrueTripletSettings {
                subjects: args.subjects,
                seed: args.seed,
                ..TrueTripletSettings::default()
            };
            let subjects = true_triplet_subjects(&assets, Split::Train, &settings);
            let bar = progress_bar(subjects.len() as u64, "true renders", show_progress);
            let pairs = true_pairs(&assets, &subjects, &settings, size, &mut || bar.inc(1))?;
            bar.finish_and_clear();
            let classes: std::collections::HashSet<_> =
                subjects.iter().map(|s| &s.class.noun).collect();
            eprintln!(
                "{} true-image pairs of {} training subjects ({} classes)",
                pairs.len(),
                subjects.len(),
                classes.len()
            );
            pairs
        }
    };
    let train = BaseTrainConfig {
        steps: args.steps,
        batch: args.batch,
        learning_rate: args.learning_rate,
        seed: args.seed,
        ..BaseTrainConfig::default()
    };
    let mut trainer = base_trainer(&model_config, &train, &device)?;
    let notes: BTreeMap<String, String> = [
        (
            "model".to_string(),
            serde_json::to_string(trainer.config())?,
        ),
        ("train".to_string(), serde_json::to_string(&train)?),
        (
            "pairs".to_string(),
            match args.pairs {
                PairSource::Crawled => "crawled".to_string(),
                PairSource::TrueRenders => format!("true-renders of {} subjects", args.subjects),
            },
        ),
    ]
    .into();
    if !args.fresh
        && let Some(saved) = read_latest_checkpoint(store, BASE_MODEL)
            .await
            .map_err(|e| anyhow::anyhow!("reading the base checkpoint: {e}"))?
    {
        let meta: suti_models::train::CheckpointMeta = serde_json::from_slice(&saved.meta)?;
        if meta.notes != notes {
            bail!(
                "the checkpoint at step {} was made with other settings; pass --fresh to start over",
                saved.step
            );
        }
        trainer.resume(&saved.tensors, &saved.meta)?;
        eprintln!("resumed from the checkpoint at step {}", saved.step);
    }
    let eval: Vec<Pair> = pairs
        .iter()
        .step_by((pairs.len() / 64).max(1))
        .cloned()
        .collect();
    let before = trainer.evaluation_loss(&eval, &text, 7)?;
    let bar = progress_bar(args.steps, "base model", show_progress);
    bar.set_position(trainer.steps_done());
    let started = Instant::now();
    let mut smoothed = None::<f32>;
    let stop_at = args.stop_after.map(|n| trainer.steps_done() + n);
    while !trainer.finished() {
        let loss = tokio::task::block_in_place(|| trainer.step(&pairs, &text))?;
        let s = smoothed.map_or(loss, |s| 0.98 * s + 0.02 * loss);
        smoothed = Some(s);
        bar.set_message(format!("loss {s:.4}"));
        bar.inc(1);
        let step = trainer.steps_done();
        let stopping = stop_at == Some(step);
        if (step % args.checkpoint_every.max(1) == 0 || stopping) && !trainer.finished() {
            let (tensors, meta) = trainer.checkpoint(notes.clone())?;
            write_checkpoint(store, BASE_MODEL, step, tensors, meta)
                .await
                .map_err(|e| anyhow::anyhow!("writing a checkpoint: {e}"))?;
        }
        if stopping && !trainer.finished() {
            bar.finish_and_clear();
            eprintln!("stopped at step {step} of {}; rerun to resume", args.steps);
            return Ok(None);
        }
    }
    bar.finish_and_clear();
    let after = trainer.evaluation_loss(&eval, &text, 7)?;
    let (config_json, weights) = base_model(&trainer)?.to_bytes()?;
    let version = version_of(&weights);
    suti_stage::publish_model_version(
        store,
        BASE_MODEL,
        &version,
        vec![(CONFIG_FILE, config_json), (WEIGHTS_FILE, weights)],
    )
    .await?;
    clear_checkpoint_pointer(store, BASE_MODEL)
        .await
        .map_err(|e| anyhow::anyhow!("clearing the checkpoint: {e}"))?;
    eprintln!(
        "base model: {} pairs, {} steps in {:.0} s; evaluation loss {before:.4} → {after:.4}",
        pairs.len(),
        args.steps,
        started.elapsed().as_secs_f64()
    );
    Ok(Some((version, after)))
}

/// Trains and publishes the scorer with the standard degraded copies; returns its version.
pub async fn train_scorer_job(
    store: &SharedStore,
    config: &suti_runtime::SutiConfig,
    args: &ScorerArgs,
    show_progress: bool,
) -> anyhow::Result<String> {
    train_scorer_job_with(store, config, args, &Degradations::default(), show_progress).await
}

/// Trains and publishes the scorer on every crawled pair (the members of every manifest under
/// `clusters/`, a fifth held out by pair) and the given degraded copies of the training images;
/// returns its version.
pub async fn train_scorer_job_with(
    store: &SharedStore,
    config: &suti_runtime::SutiConfig,
    args: &ScorerArgs,
    degradations: &Degradations,
    show_progress: bool,
) -> anyhow::Result<String> {
    let device = suti_factory::device::model_device(config.models.device)?;
    let text = towers::configured_text_encoder(&config.models.text_encoder, &device)?;
    let tower = towers::load_image_tower(
        &towers::image_tower_path(&config.models.image_tower),
        &device,
    )?;
    let pairs = load_pairs(store).await?;
    let images: Vec<_> = pairs
        .iter()
        .map(|(i, _)| i.centre_square(args.image_size))
        .collect();
    let sentences = pairs
        .iter()
        .map(|(_, c)| text.sentence_vector(c))
        .collect::<Result<Vec<_>, _>>()?;
    let train = ScorerTrainConfig {
        steps: args.steps,
        batch: args.batch,
        seed: args.seed,
        degradations: degradations.clone(),
        ..ScorerTrainConfig::default()
    };
    let mut steps_bar = None;
    let (scorer, report) = tokio::task::block_in_place(|| {
        train_scorer_on_images(
            &images,
            &sentences,
            |batch| {
                // The crisp images and every copy, through the frozen tower once.
                let bar = progress_bar(batch.len() as u64, "image features", show_progress);
                let mut features = Vec::with_capacity(batch.len());
                for chunk in batch.chunks(16) {
                    features.extend(tower_features(&tower, chunk)?);
                    bar.inc(chunk.len() as u64);
                }
                bar.finish_and_clear();
                Ok(features)
            },
            &ScorerConfig::default(),
            &train,
            &device,
            |_, loss| {
                let bar = steps_bar
                    .get_or_insert_with(|| progress_bar(args.steps, "scorer", show_progress));
                bar.set_message(format!("loss {loss:.3}"));
                bar.inc(1);
            },
        )
    })?;
    if let Some(bar) = steps_bar {
        bar.finish_and_clear();
    }
    let percent = |x: Option<f32>| x.map_or("-".to_string(), |x| format!("{:.1}%", x * 100.0));
    eprintln!(
        "scorer: {} training pairs with {} degraded copies each, loss {:.3} → {:.3}; held-out retrieval accuracy over {} pairs: crisp {:.1}% (untrained heads {:.1}%), degraded {} (untrained heads {}):",
        report.train_pairs,
        report.degraded_copies,
        report.loss_first,
        report.loss_last,
        report.heldout_pairs,
        report.heldout_accuracy * 100.0,
        report.heldout_accuracy_untrained * 100.0,
        percent(report.heldout_accuracy_degraded),
        percent(report.heldout_accuracy_degraded_untrained),
    );
    for d in &report.heldout_degraded {
        eprintln!(
            "  {}: {:.1}% (untrained heads {:.1}%)",
            d.degradation,
            d.accuracy * 100.0,
            d.untrained * 100.0
        );
    }
    let (config_json, weights) = scorer.to_bytes()?;
    let version = version_of(&weights);
    suti_stage::publish_model_version(
        store,
        SCORER_MODEL,
        &version,
        vec![(CONFIG_FILE, config_json), (WEIGHTS_FILE, weights)],
    )
    .await?;
    Ok(version)
}
