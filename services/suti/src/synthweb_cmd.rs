//! `suti synthweb …`: EmojiWorld from the command line — list subjects, draw the contact sheet of
//! every context, serve the synthetic web, write it as a WARC file, write the benchmark set.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use suti_data::benchmark::write_benchmark;
use suti_data::contact::contact_sheet;
use suti_data::synthweb::{Site, SiteParams, serve};
use suti_data::warc::write_site_warc;
use suti_data::{Assets, Split, prompts_for, render};

/// EmojiWorld subcommands.
#[derive(Debug, Subcommand)]
pub enum SynthwebCommand {
    /// List the subjects of a split.
    Subjects(SubjectsArgs),
    /// Draw every prompt's true image for a few subjects into one PNG.
    ContactSheet(ContactSheetArgs),
    /// Serve the synthetic web over HTTP until interrupted.
    Serve(ServeArgs),
    /// Write the synthetic web as a WARC file.
    Warc(WarcArgs),
    /// Write the held-out evaluation set (demonstrations, prompts, true images, manifest.json).
    Benchmark(BenchmarkArgs),
}

/// The shape of the generated site.
#[derive(Debug, Args)]
pub struct SiteArgs {
    /// Subject pages (0: every training subject).
    #[arg(long, default_value_t = 0)]
    subjects: usize,
    /// Seed of the site's layout, wording and photos.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Side of the subject photos in pixels.
    #[arg(long, default_value_t = 96)]
    image_size: u32,
}

impl SiteArgs {
    fn params(&self) -> SiteParams {
        SiteParams {
            subjects: self.subjects,
            seed: self.seed,
            image_size: self.image_size,
            ..SiteParams::default()
        }
    }
}

/// Options of `suti synthweb serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default: the site holds hostile resources).
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: String,
    #[command(flatten)]
    site: SiteArgs,
}

/// Options of `suti synthweb warc`.
#[derive(Debug, Args)]
pub struct WarcArgs {
    /// Output file (`.warc.gz`).
    #[arg(long, default_value = "synthweb.warc.gz")]
    out: PathBuf,
    /// Origin the archived URLs carry.
    #[arg(long, default_value = "http://synthweb.emojiworld.test")]
    base: String,
    #[command(flatten)]
    site: SiteArgs,
}

/// Options of `suti synthweb benchmark`.
#[derive(Debug, Args)]
pub struct BenchmarkArgs {
    /// Output folder.
    #[arg(long, default_value = "out/benchmark")]
    out: PathBuf,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Held-out subjects to include (0: all).
    #[arg(long, default_value_t = 0)]
    subjects: usize,
    /// Render seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Which split.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SplitArg {
    /// Crawled and trained on.
    Train,
    /// For tuning.
    Validation,
    /// Evaluation only.
    HeldOut,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Self {
        match s {
            SplitArg::Train => Split::Train,
            SplitArg::Validation => Split::Validation,
            SplitArg::HeldOut => Split::HeldOut,
        }
    }
}

/// Options of `suti synthweb subjects`.
#[derive(Debug, Args)]
pub struct SubjectsArgs {
    /// The split to list.
    #[arg(long, value_enum, default_value_t = SplitArg::Train)]
    split: SplitArg,
}

/// Options of `suti synthweb contact-sheet`.
#[derive(Debug, Args)]
pub struct ContactSheetArgs {
    /// Output PNG.
    #[arg(long, default_value = "docs/emojiworld-contexts.png")]
    out: PathBuf,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Subject ids, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "dog-noto,cat2-twemoji,teapot-twemoji,car-noto,guitar-twemoji,apple-noto"
    )]
    subjects: Vec<String>,
    /// Render seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs a synthweb subcommand.
pub async fn run(command: SynthwebCommand) -> anyhow::Result<()> {
    let assets = Assets::open_default()?;
    match command {
        SynthwebCommand::Subjects(args) => {
            let split: Split = args.split.into();
            let subjects = assets.catalog().subjects(split);
            for subject in &subjects {
                println!(
                    "{:<32} {:<18} {:?}/{:?}",
                    subject.id(),
                    subject.class.noun,
                    subject.class.category,
                    subject.class.kind
                );
            }
            eprintln!("{} subjects in the {split:?} split", subjects.len());
            Ok(())
        }
        SynthwebCommand::ContactSheet(args) => {
            let mut rows = Vec::new();
            for id in &args.subjects {
                let subject = assets
                    .catalog()
                    .subject(id)
                    .with_context(|| format!("no subject {id:?} (see `suti synthweb subjects`)"))?;
                let sprite = assets.sprite(&subject)?;
                let row = prompts_for(subject.class.kind)
                    .iter()
                    .map(|p| render(&sprite, p, args.seed, args.size))
                    .collect();
                rows.push(row);
            }
            let sheet = contact_sheet(&rows, 2);
            if let Some(parent) = args.out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&args.out, sheet.to_png())
                .with_context(|| format!("writing {}", args.out.display()))?;
            println!(
                "wrote {} ({}×{}: {} subjects × 25 prompts)",
                args.out.display(),
                sheet.width,
                sheet.height,
                rows.len()
            );
            Ok(())
        }
        SynthwebCommand::Serve(args) => {
            let site = Site::new(assets, args.site.params());
            let pages = site.pages().len();
            let served = serve(site, &args.listen).await?;
            println!(
                "serving the synthetic web ({pages} subject pages) at {} — Ctrl-C to stop",
                served.base_url()
            );
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        SynthwebCommand::Warc(args) => {
            let site = Site::new(assets, args.site.params());
            let out = args.out.clone();
            let base = args.base.clone();
            let stats = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let file = std::fs::File::create(&out)
                    .with_context(|| format!("creating {}", out.display()))?;
                Ok(write_site_warc(
                    &site,
                    &base,
                    std::io::BufWriter::new(file),
                )?)
            })
            .await??;
            println!(
                "wrote {}: {} records ({} ok, {} redirects, {} not found), {:.1} MiB",
                args.out.display(),
                stats.records,
                stats.statuses.0,
                stats.statuses.1,
                stats.statuses.2,
                stats.bytes as f64 / (1024.0 * 1024.0)
            );
            Ok(())
        }
        SynthwebCommand::Benchmark(args) => {
            let out = args.out.clone();
            let manifest = tokio::task::spawn_blocking(move || {
                write_benchmark(&assets, &out, args.size, args.seed, args.subjects)
            })
            .await??;
            println!(
                "wrote {}/manifest.json: {} held-out subjects × ({} demonstrations + 25 prompts)",
                args.out.display(),
                manifest.subjects.len(),
                suti_data::benchmark::DEMOS_PER_SUBJECT
            );
            Ok(())
        }
    }
}
