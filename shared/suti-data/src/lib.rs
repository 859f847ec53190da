//! suti's data layer (architecture.md §8): the image codec, and EmojiWorld — real emoji artwork as
//! subjects, the DreamBench prompt set rendered procedurally, the true image of any (subject,
//! prompt) pair, and a synthetic web for the crawler to mine.

pub mod benchmark;
pub mod canvas;
pub mod contact;
pub mod degrade;
pub mod dreambench;
pub mod emoji;
pub mod image;
pub mod prompts;
pub mod render;
pub mod scenes;
pub mod synthweb;
pub mod warc;

/// Deterministic randomness (re-exported from `suti-rng`).
pub use suti_rng as rng;

pub use emoji::{Assets, Catalog, Category, Split, Subject, SubjectClass, SubjectKind, Vendor};
pub use image::{DecodeLimits, ImageError, RgbaImage};
pub use prompts::{Prompt, PromptKind, Scene, all_prompts, prompts_for};
pub use render::render;
