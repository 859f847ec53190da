//! The data factory (architecture.md §2, §7.4–7.6): the recipes, as compute on in-memory data, and
//! the artifacts they read and write:
//!
//! - [`base`]: training the base text-to-image model on crawled image–caption pairs;
//! - [`scorer`]: training the CLIP-style scorer's heads and measuring its retrieval accuracy;
//! - [`expert`]: LoRA fine-tuning of the frozen base on one cluster (one expert per subject);
//! - [`prompts`] and [`generate`]: new prompts for a cluster and the expert's images for them;
//! - [`filter`]: the ΔCLIP filter that decides which generations become training targets;
//! - [`apprentice`]: the apprentice, trained on the accepted triplets with 1–5 demonstrations;
//! - [`true_triplets`]: triplets with the renderer's true images as targets (a diagnostic);
//! - [`render`]: rendering from an apprentice release, batched (serving, `suti generate`, evaluation);
//! - [`bundle`]: model artifacts (configuration + safetensors) as bytes;
//! - [`towers`]: loading the frozen pretrained text and image towers;
//! - [`jobs`]: the one-off training jobs (base, scorer, diagnostic apprentice) end to end;
//! - [`artifacts`]: clusters, images and model versions in storage.

pub mod apprentice;
pub mod artifacts;
pub mod base;
pub mod bundle;
pub mod device;
pub mod expert;
pub mod filter;
pub mod generate;
pub mod jobs;
pub mod pixels;
pub mod prompts;
pub mod render;
pub mod scorer;
pub mod towers;
pub mod training;
pub mod true_triplets;

pub use bundle::{BaseModel, ScorerModel};

/// An error of a recipe: candle's, or an input that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// The text encoder failed.
    #[error(transparent)]
    Text(#[from] suti_models::text::TextError),
    /// The input cannot be used (too few images, a malformed artifact).
    #[error("{0}")]
    Invalid(String),
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, FactoryError>;
