//! The evaluation (docs/eval.md): the DreamBench-style protocol over held-out subjects, the
//! subject metrics that can tell one subject from another (the matched-context margin,
//! identification and instance accuracy), the sanity check that chose them, and paired-bootstrap
//! intervals for every figure and every lead. `suti eval` and `suti demo` drive it.
//!
//! - [`job`]: what a run reads first: stored models, the chosen encoders, the evaluation set;
//! - [`subjects`]: the evaluation subjects and their distractors (EmojiWorld or DreamBench);
//! - [`features`]: the subject encoder and the image–text scorer, and centring;
//! - [`metrics`]: one image's margin, identification and instance scores;
//! - [`sanity`]: `suti eval sanity`, the check a subject metric must pass;
//! - [`protocol`]: the methods, the protocol and its report;
//! - [`stats`]: AUC and the paired bootstrap;
//! - [`report`]: markdown, HTML, JSON and contact sheets.

pub mod features;
pub mod job;
pub mod metrics;
pub mod plots;
pub mod protocol;
pub mod report;
pub mod sanity;
pub mod stats;
pub mod subjects;

pub use protocol::{EvalModels, EvalReport, EvalSettings, Method, run_protocol};

/// Why the evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A model or tensor operation failed.
    #[error(transparent)]
    Factory(#[from] suti_factory::FactoryError),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// EmojiWorld's artwork is missing or unreadable.
    #[error(transparent)]
    Assets(#[from] suti_data::emoji::AssetError),
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(std::path::PathBuf, #[source] std::io::Error),
    /// The input cannot be evaluated.
    #[error("{0}")]
    Invalid(String),
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, EvalError>;
