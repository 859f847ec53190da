//! The one-off training jobs (`suti train base`, `suti train scorer`, `suti train apprentice`, and
//! the demo's own runs of them): each takes a plain job struct, reads what it needs from storage,
//! trains, publishes the model version, and returns what happened. How progress is shown is the
//! caller's: the command line draws bars on a terminal, tests and other callers pass
//! [`NoProgress`].

mod apprentice;
mod base;
mod scorer;

pub use apprentice::{
    ApprenticeJob, ApprenticeJobOutcome, ApprenticeTargets, HELD_OUT_TARGETS, HeldOutLosses,
    train_apprentice,
};
pub use base::{BaseJob, BaseJobOutcome, BasePairs, train_base};
pub use scorer::{ScorerJob, ScorerJobOutcome, train_scorer};

use suti_storage::SharedStore;

/// Errors of a job: storage, a model, or an input that cannot be used, each with what the job was
/// doing.
pub type JobResult<T> = anyhow::Result<T>;

/// Where a job reports how far it got.
pub trait JobProgress: Send + Sync {
    /// Starts a phase called `what` of `len` units named `unit` (`images`, `steps`).
    fn phase(&self, what: &str, unit: &str, len: u64) -> Box<dyn PhaseProgress>;
    /// A line worth keeping in the job's log: a resumed checkpoint, skipped inputs, losses so far.
    fn note(&self, line: &str);
}

/// One phase of a job.
pub trait PhaseProgress: Send + Sync {
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The phase resumes with `done` units already done.
    fn set_done(&self, done: u64);
    /// A short status beside the phase (the smoothed loss).
    fn set_status(&self, status: String);
    /// The phase is over; its display goes away.
    fn finish(&self);
}

/// Progress that goes nowhere, notes included.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl JobProgress for NoProgress {
    fn phase(&self, _what: &str, _unit: &str, _len: u64) -> Box<dyn PhaseProgress> {
        Box::new(NoProgress)
    }

    fn note(&self, _line: &str) {}
}

impl PhaseProgress for NoProgress {
    fn advance(&self, _n: u64) {}

    fn set_done(&self, _done: u64) {}

    fn set_status(&self, _status: String) {}

    fn finish(&self) {}
}

/// Every crawled image–caption pair in storage; fewer than eight cannot train anything.
async fn crawled_pairs_for_training(
    store: &SharedStore,
    progress: &dyn JobProgress,
) -> JobResult<Vec<(suti_data::RgbaImage, String)>> {
    let (pairs, skipped) = crate::artifacts::crawled_pairs(store)
        .await
        .map_err(|e| anyhow::anyhow!("reading the crawled clusters: {e}"))?;
    if skipped > 0 {
        progress.note(&format!("skipped {skipped} unreadable images or manifests"));
    }
    if pairs.len() < 8 {
        anyhow::bail!(
            "only {} crawled image–caption pairs in storage (clusters/…): crawl first",
            pairs.len()
        );
    }
    Ok(pairs)
}

/// EmojiWorld's assets, with the command that fetches them named when they are missing.
fn emojiworld_assets() -> JobResult<suti_data::Assets> {
    use anyhow::Context as _;
    suti_data::Assets::open_default()
        .context("EmojiWorld assets (scripts/fetch-assets fetches them)")
}
