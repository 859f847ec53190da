//! Reference encoders for DreamBench-comparable metrics: DINOv2 ViT-S/14 (the DINO score) and CLIP
//! ViT-B/32 (CLIP-I and CLIP-T), read from Hugging Face model folders in the safetensors layout,
//! plus writers of randomly initialised folders in that same layout, so that tests exercise the
//! real loaders without downloaded weights.
//!
//! DINOv2 is written here on candle_nn layers rather than through candle-transformers'
//! `models::dinov2`: that one reads the original facebookresearch names, hard-codes a 518-pixel
//! grid, layer-norm ε = 1e-5 (HF's DINOv2 uses 1e-6), the tanh GELU (HF uses the exact one) and
//! nearest-neighbour position-embedding resizing (HF uses bicubic), and requires a classification
//! head. CLIP goes through candle-transformers' `models::clip`, which reads the HF names as they
//! are; only the text pooling is done here (see [`ClipEncoder::embed_texts`]).

use std::path::PathBuf;

use candle_core::{D, DType, Tensor};

mod bicubic;
mod clip;
mod dinov2;
mod folder;
mod random;
#[cfg(test)]
mod tests;

pub use clip::ClipEncoder;
pub use dinov2::Dinov2Encoder;
pub use random::{write_random_clip, write_random_dinov2};

/// The side DINOv2 inputs are resized to (the HF processor's crop size for `facebook/dinov2-*`).
pub const DINO_RESOLUTION: usize = 224;
/// ImageNet channel means, DINOv2's input normalisation.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations, DINOv2's input normalisation.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// CLIP's channel means (OpenAI's training statistics).
// The published digits verbatim, so they can be recognised; f32 rounds the excess away.
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's channel standard deviations.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// CLIP's end-of-text token: the pooled position, and the padding.
pub const CLIP_EOT: &str = "<|endoftext|>";
/// CLIP's start-of-text token.
pub const CLIP_SOT: &str = "<|startoftext|>";

/// Why a reference encoder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// A file the model folder must hold is not there.
    #[error("{path} is missing ({hint})")]
    MissingFile {
        /// The file looked for.
        path: PathBuf,
        /// Which model folder was expected.
        hint: &'static str,
    },
    /// A file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is malformed or asks for something these encoders do not implement.
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the architecture needs is not in the weights file.
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The HF tensor name.
        name: String,
    },
    /// A tensor has a shape other than the config implies.
    #[error("{path}: tensor `{name}` has shape {got:?}, the config implies {expected:?}")]
    TensorShape {
        /// The weights file.
        path: PathBuf,
        /// The HF tensor name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        got: Vec<usize>,
    },
    /// The weights file is not valid safetensors.
    #[error("{path}: {source}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What candle said.
        #[source]
        source: candle_core::Error,
    },
    /// `tokenizer.json` is malformed or lacks CLIP's special tokens.
    #[error("{path}: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// candle failed while building the model from checked tensors.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `(b, 3, h, w)` in [0, 1] → `(b, 3, size, size)` normalised. Bilinear without antialiasing
/// (candle has neither bicubic nor antialiasing; HF processors use bicubic with PIL's
/// antialiasing, which only differs noticeably when shrinking large images).
fn preprocess(
    images: &Tensor,
    size: usize,
    mean: [f32; 3],
    std: [f32; 3],
) -> candle_core::Result<Tensor> {
    let (_, c, h, w) = images.dims4()?;
    if c != 3 {
        candle_core::bail!("expected RGB images (b, 3, h, w), got {c} channels");
    }
    let x = images.to_dtype(DType::F32)?.contiguous()?;
    let x = if (h, w) == (size, size) {
        x
    } else {
        x.upsample_bilinear2d(size, size, false)?
    };
    let device = x.device();
    let mean = Tensor::new(&mean, device)?.reshape((1, 3, 1, 1))?;
    let std = Tensor::new(&std, device)?.reshape((1, 3, 1, 1))?;
    x.broadcast_sub(&mean)?.broadcast_div(&std)
}

/// Rows scaled to unit length (ε = 1e-12 as torch's `F.normalize`, so a zero row stays finite).
fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    x.broadcast_div(&norm)
}
