//! `suti synthweb …`: EmojiWorld from the command line — list subjects, draw the contact sheet of
//! every context, serve the synthetic web, write it as a WARC file, write the benchmark set.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use suti_data::contact::contact_sheet;
use suti_data::{Assets, Split, prompts_for, render};

/// EmojiWorld subcommands.
#[derive(Debug, Subcommand)]
pub enum SynthwebCommand {
    /// List the subjects of a split.
    Subjects(SubjectsArgs),
    /// Draw every prompt's true image for a few subjects into one PNG.
    ContactSheet(ContactSheetArgs),
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
    #[arg(long, value_delimiter = ',', default_value = "dog-noto,cat2-twemoji,teapot-twemoji,car-noto,guitar-twemoji,apple-noto")]
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
    }
}
