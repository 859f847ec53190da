//! suti's models in candle (architecture.md §7): the DiT denoiser and apprentice, diffusion (cosine
//! schedule, v-prediction, DDIM and multistep sampling, guidance with dynamic thresholding), LoRA,
//! the CLIP-style scorer and the training library. Model code does no I/O: weights arrive as bytes
//! or tensors.

pub mod config;
pub mod diffusion;
pub mod dit;
pub mod image_tower;
pub mod layers;
pub mod lora;
pub mod ops;
pub mod params;
pub mod pth;
pub mod reference;
pub mod scorer;
pub mod text;
pub mod train;

pub use config::{DemoAttention, DitConfig, ModelPreset};
pub use dit::{DemoCache, Demos, Dit, EncodedText, TextCond};
pub use layers::{Builders, LoraConfig};
pub use params::{Init, Params};
pub use scorer::{Scorer, ScorerConfig};

/// Tunes glibc's allocator for tensor workloads: without it every fresh tensor buffer above the
/// default mmap threshold is mapped and page-faulted anew, which on this 2-core machine cost as
/// much system time as the training itself (15 s → 2 s per run, issue 4). Call once at start-up,
/// before any threads allocate. A no-op elsewhere than Linux with glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only changes allocator thresholds; it is called before tensors are allocated
    // and takes plain integers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
