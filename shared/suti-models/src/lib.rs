//! suti's models in candle (DESIGN §7): the DiT denoiser and apprentice, diffusion (cosine
//! schedule, v-prediction, DDIM and multistep sampling, guidance with dynamic thresholding), LoRA,
//! and the training library. Model code does no I/O: weights arrive as bytes or tensors.

pub mod config;
pub mod diffusion;
pub mod dit;
pub mod layers;
pub mod lora;
pub mod ops;
pub mod params;
pub mod train;

pub use config::DitConfig;
pub use dit::{DemoCache, Demos, Dit, TextCond};
pub use layers::{Builders, LoraConfig};
pub use params::{Init, Params};
