//! `suti train base`, `suti train scorer` and `suti train apprentice` on the command line: the
//! flags of the training jobs in `suti_factory::jobs`, which train and publish
//! `models/{base,scorer,apprentice}/{version}/` with their `LATEST` pointers; this module only
//! turns flags into jobs and prints what they return.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use suti_factory::jobs::{
    ApprenticeJob, ApprenticeTargets, BaseJob, BaseJobOutcome, BasePairs, ScorerJob,
    ScorerJobOutcome, train_apprentice, train_base, train_scorer,
};
use suti_factory::scorer::Degradations;
use suti_models::ModelPreset;
use suti_runtime::SutiConfig;
use suti_runtime::config::ApprenticeDemoAttention;
use suti_storage::layout::{APPRENTICE_MODEL, BASE_MODEL, SCORER_MODEL};

use crate::progress::CliProgress;

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
    #[arg(long, default_value = "shared", value_parser = parse_demo_attention)]
    pub demo_attention: ApprenticeDemoAttention,
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

/// The targets `suti train apprentice` trains on.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TargetSource {
    /// The renderer's true images of each subject in each prompted scene.
    TrueRenders,
    /// The accepted triplets under `datasets/apprentice/`.
    Accepted,
}

impl From<TargetSource> for ApprenticeTargets {
    fn from(source: TargetSource) -> Self {
        match source {
            TargetSource::TrueRenders => Self::TrueRenders,
            TargetSource::Accepted => Self::Accepted,
        }
    }
}

/// The pairs `suti train base` learns from.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PairSource {
    /// The crawled clusters' image–caption pairs in storage.
    Crawled,
    /// The renderer's true images of training-split subjects.
    TrueRenders,
}

/// `--demo-attention`: the configuration's names, also written with hyphens (`gated-finetuned`).
fn parse_demo_attention(name: &str) -> Result<ApprenticeDemoAttention, String> {
    name.replace('-', "_").parse()
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
    /// Model preset: test, tiny, small or base.
    #[arg(long, default_value = "tiny")]
    pub preset: ModelPreset,
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
    let progress = CliProgress;
    match command {
        TrainCommand::Base(args) => {
            let config = config_for(args.data.as_ref(), args.config.as_ref())?;
            let store = suti_runtime::connect_storage(&config).await?;
            let outcome = train_base(&store, &config, &args.job(), &progress).await?;
            report_base(&outcome);
            if let BaseJobOutcome::Published { version, .. } = outcome {
                println!("published models/{BASE_MODEL}/{version}");
            }
        }
        TrainCommand::Scorer(ScorerCommand { args, degradations }) => {
            let config = SutiConfig::load_file(args.config.as_deref())?;
            let store = suti_runtime::connect_storage(&config).await?;
            let outcome = train_scorer(&store, &config, &args.job(degradations), &progress).await?;
            report_scorer(&outcome);
            println!("published models/{SCORER_MODEL}/{}", outcome.version);
        }
        TrainCommand::Apprentice(args) => {
            let config = config_for(args.data.as_ref(), args.config.as_ref())?;
            let store = suti_runtime::connect_storage(&config).await?;
            let outcome = train_apprentice(&store, &config, &args.job(), &progress).await?;
            println!("published models/{APPRENTICE_MODEL}/{}", outcome.version);
        }
    }
    Ok(())
}

/// The configuration of an embedded run's data folder, or the configured one.
fn config_for(data: Option<&PathBuf>, file: Option<&PathBuf>) -> anyhow::Result<SutiConfig> {
    Ok(match data {
        Some(data) => SutiConfig::embedded(data),
        None => SutiConfig::load_file(file.map(PathBuf::as_path))?,
    })
}

impl BaseArgs {
    /// The job these flags ask for.
    fn job(&self) -> BaseJob {
        BaseJob {
            pairs: match self.pairs {
                PairSource::Crawled => BasePairs::Crawled,
                PairSource::TrueRenders => BasePairs::TrueRenders {
                    subjects: self.subjects,
                },
            },
            preset: self.preset,
            steps: self.steps,
            batch: self.batch,
            learning_rate: self.learning_rate,
            checkpoint_every: self.checkpoint_every,
            fresh: self.fresh,
            stop_after: self.stop_after,
            seed: self.seed,
        }
    }
}

impl ScorerArgs {
    /// The job these flags ask for.
    fn job(&self, degradations: Degradations) -> ScorerJob {
        ScorerJob {
            steps: self.steps,
            batch: self.batch,
            seed: self.seed,
            image_size: self.image_size,
            degradations,
        }
    }
}

impl ApprenticeArgs {
    /// The job these flags ask for.
    fn job(&self) -> ApprenticeJob {
        ApprenticeJob {
            targets: self.targets.into(),
            subjects: self.subjects,
            targets_per_subject: self.targets_per_subject,
            skip_subjects: self.skip_subjects,
            generic_nouns: self.generic_nouns,
            demo_attention: self.demo_attention,
            steps: self.steps,
            batch: self.batch,
            learning_rate: self.learning_rate,
            held_out: self.held_out,
            seed: self.seed,
        }
    }
}

/// Prints how a base-model run ended.
pub fn report_base(outcome: &BaseJobOutcome) {
    match outcome {
        BaseJobOutcome::Published {
            pairs,
            steps,
            loss_before,
            loss_after,
            seconds,
            ..
        } => eprintln!(
            "base model: {pairs} pairs, {steps} steps in {seconds:.0} s; evaluation loss \
             {loss_before:.4} → {loss_after:.4}"
        ),
        BaseJobOutcome::Stopped { step, steps } => {
            eprintln!("stopped at step {step} of {steps}; rerun to resume")
        }
    }
}

/// Prints a scorer run's held-out retrieval.
pub fn report_scorer(outcome: &ScorerJobOutcome) {
    let report = &outcome.report;
    let percent = |x: Option<f32>| x.map_or("-".to_string(), |x| format!("{:.1}%", x * 100.0));
    eprintln!(
        "scorer: {} training pairs with {} degraded copies each, loss {:.3} → {:.3}; held-out \
         retrieval accuracy over {} pairs: crisp {:.1}% (untrained heads {:.1}%), degraded {} \
         (untrained heads {}):",
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
}
