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

/// Runs candle's elementwise ops on the calling thread (`CANDLE_NUM_THREADS=1`) unless the
/// environment already says otherwise. candle keeps a pool of its own for them, beside rayon's
/// that runs the matmuls and suti's ops; on two cores its worker spun through every op of the
/// other pool: `suti bench train --presets tiny` used 25 % less CPU time and ran 12–15 % faster
/// without it (docs/performance.md). Call first thing in `main`, before any thread starts.
pub fn tune_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called before any other thread exists, so nothing reads the environment while
        // it changes.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("CANDLE_NUM_THREADS", "1")
        };
    }
}

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
