//! The feature spaces the evaluation compares images in: the subject encoder (EmojiWorld's DINO
//! stand-in, EfficientNet-Lite0 read at a chosen block, input side and crop; or DINOv2 itself
//! when a user has its weights) and the image–text scorer (the trained CLIP-style scorer, or
//! CLIP ViT-B/32). Features are centred on a mean before cosines are taken, because pooled ReLU6
//! activations are non-negative and any two images would otherwise share a high cosine floor.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use suti_data::RgbaImage;
use suti_factory::ScorerModel;
use suti_factory::scorer::tower_features;
use suti_models::image_tower::{ImageTower, TowerTap, preprocess_to};
use suti_models::reference::{ClipEncoder, Dinov2Encoder};
use suti_models::text::TextEncoder;

use crate::{EvalError, Result};

/// Which part of an image the subject encoder sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crop {
    /// The whole image.
    Whole,
    /// The square where EmojiWorld's renderer stands its subjects (x 15–85 %, y 30–100 % of the
    /// side: centres in 35–65 %, sizes 36–62 %, bottoms on a ground line at 74–95 %), so the
    /// background's share of the features falls. Photos taken with the subject in the middle
    /// fit it as well.
    SubjectRegion,
}

impl Crop {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Whole => "whole",
            Self::SubjectRegion => "subject",
        }
    }

    /// The cropped image, a square of the source's pixels.
    pub fn apply(self, img: &RgbaImage) -> RgbaImage {
        match self {
            Self::Whole => img.clone(),
            Self::SubjectRegion => {
                let side = img.width.min(img.height) as f32;
                let (x0, y0) = ((0.15 * side) as u32, (0.30 * side) as u32);
                let s = ((0.70 * side).round() as u32)
                    .min(img.width - x0)
                    .min(img.height - y0)
                    .max(1);
                let mut out = RgbaImage::new(s, s);
                for y in 0..s {
                    for x in 0..s {
                        out.put(x, y, img.get(x0 + x, y0 + y));
                    }
                }
                out
            }
        }
    }
}

/// How the image tower serves as subject encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TowerReading {
    /// Where the features are read.
    pub tap: TowerTap,
    /// Input side the image is resampled to.
    pub input: usize,
    /// What part of the image is read.
    pub crop: Crop,
}

impl TowerReading {
    /// The reading the sanity check chose (docs/eval.md): the last block of EfficientNet-Lite0
    /// (320 channels, before the 1280-wide head: as separating as the head and cheaper), at
    /// input side 112 (a 32-pixel image holds no more detail at 224, at four times the cost),
    /// on the subject region.
    pub const CHOSEN: Self = Self {
        tap: TowerTap::Block(15),
        input: 112,
        crop: Crop::SubjectRegion,
    };

    /// `tower block15 @112 subject`.
    pub fn name(&self) -> String {
        format!(
            "tower {} @{} {}",
            self.tap.name(),
            self.input,
            self.crop.name()
        )
    }
}

/// Features of several tower readings that share input side and crop, from one forward pass:
/// `out[r][i]` is reading `taps[r]` of image `i`.
pub fn tower_readings(
    tower: &ImageTower,
    images: &[RgbaImage],
    taps: &[TowerTap],
    input: usize,
    crop: Crop,
) -> Result<Vec<Vec<Vec<f32>>>> {
    let device = tower.device().clone();
    let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(images.len()); taps.len()];
    for chunk in images.chunks(16) {
        let inputs = chunk
            .iter()
            .map(|img| {
                let c = crop.apply(img);
                preprocess_to(
                    c.width as usize,
                    c.height as usize,
                    &c.pixels,
                    input,
                    &device,
                )
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let features = tower.tap_features(&Tensor::stack(&inputs, 0)?, taps)?;
        for (slot, f) in out.iter_mut().zip(features) {
            slot.extend(f.to_vec2::<f32>()?);
        }
    }
    Ok(out)
}

/// The subject encoder: what the subject metrics compare images with.
pub enum SubjectEncoder {
    /// EfficientNet-Lite0, read as the sanity check chose.
    Tower {
        /// The tower (shared with the scorer).
        tower: Arc<ImageTower>,
        /// How it is read.
        reading: TowerReading,
    },
    /// DINOv2 ViT-S/14 (DreamBench's DINO metric), its CLS token.
    Dinov2(Box<Dinov2Encoder>),
}

impl SubjectEncoder {
    /// A name for reports (`tower block15 @112 subject`, `dinov2`).
    pub fn name(&self) -> String {
        match self {
            Self::Tower { reading, .. } => reading.name(),
            Self::Dinov2(_) => "dinov2".into(),
        }
    }

    /// Raw (uncentred, not normalised) features of each image.
    pub fn features(&self, images: &[RgbaImage]) -> Result<Vec<Vec<f32>>> {
        match self {
            Self::Tower { tower, reading } => {
                Ok(
                    tower_readings(tower, images, &[reading.tap], reading.input, reading.crop)?
                        .remove(0),
                )
            }
            Self::Dinov2(encoder) => {
                let mut out = Vec::with_capacity(images.len());
                for chunk in images.chunks(16) {
                    let batch = image_batch(chunk, 224, encoder.device())?;
                    out.extend(encoder.embed(&batch)?.to_vec2::<f32>()?);
                }
                Ok(out)
            }
        }
    }
}

/// Images as a `(b, 3, side, side)` batch in [0, 1].
fn image_batch(images: &[RgbaImage], side: usize, device: &Device) -> Result<Tensor> {
    let inputs = images
        .iter()
        .map(|img| {
            preprocess_to(
                img.width as usize,
                img.height as usize,
                &img.pixels,
                side,
                device,
            )
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::stack(&inputs, 0)?)
}

/// The image–text scorer: CLIP-I (image to image) and CLIP-T (image to prompt).
pub enum ImageTextScorer {
    /// The project's scorer: heads trained over the frozen image tower and MiniLM.
    Trained {
        /// The heads.
        scorer: Arc<ScorerModel>,
        /// The image tower under them.
        tower: Arc<ImageTower>,
        /// MiniLM.
        text: Arc<TextEncoder>,
    },
    /// CLIP ViT-B/32 (DreamBench's CLIP-I and CLIP-T).
    Clip(Box<ClipEncoder>),
}

impl ImageTextScorer {
    /// A name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Trained { .. } => "trained scorer",
            Self::Clip(_) => "clip",
        }
    }

    /// Unit-length joint-space embeddings of images.
    pub fn embed_images(&self, images: &[RgbaImage]) -> Result<Vec<Vec<f32>>> {
        match self {
            Self::Trained { scorer, tower, .. } => {
                if images.is_empty() {
                    return Ok(Vec::new());
                }
                let features = tower_features(tower, images)?;
                let device = tower.device().clone();
                let width = features[0].len();
                let flat: Vec<f32> = features.into_iter().flatten().collect();
                let m = Tensor::from_vec(flat, (images.len(), width), &device)?;
                Ok(scorer.scorer.embed_images(&m)?.to_vec2()?)
            }
            Self::Clip(clip) => {
                let mut out = Vec::with_capacity(images.len());
                for chunk in images.chunks(16) {
                    let batch = image_batch(chunk, 224, clip.device())?;
                    out.extend(clip.embed_images(&batch)?.to_vec2::<f32>()?);
                }
                Ok(out)
            }
        }
    }

    /// Unit-length joint-space embeddings of texts.
    pub fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Self::Trained {
                scorer,
                text,
                tower,
            } => {
                let vectors = texts
                    .iter()
                    .map(|t| text.sentence_vector(t))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(suti_factory::FactoryError::from)?;
                let width = vectors[0].len();
                let flat: Vec<f32> = vectors.into_iter().flatten().collect();
                let m = Tensor::from_vec(flat, (texts.len(), width), tower.device())?;
                Ok(scorer.scorer.embed_texts(&m)?.to_vec2()?)
            }
            Self::Clip(clip) => Ok(clip.embed_texts(texts)?.to_vec2()?),
        }
    }
}

/// A mean feature subtracted before cosines, with how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Centring {
    /// The encoder it belongs to (a mean of one encoder is meaningless for another).
    pub encoder: String,
    /// What it is the mean of.
    pub source: String,
    /// Images averaged.
    pub images: usize,
    /// The mean.
    pub mean: Vec<f32>,
}

impl Centring {
    /// The mean of `features`.
    pub fn of(encoder: String, source: String, features: &[Vec<f32>]) -> Result<Self> {
        let Some(first) = features.first() else {
            return Err(EvalError::Invalid(format!(
                "no images to centre {encoder} on"
            )));
        };
        let mut mean = vec![0f32; first.len()];
        for f in features {
            for (m, v) in mean.iter_mut().zip(f) {
                *m += v;
            }
        }
        let n = features.len() as f32;
        mean.iter_mut().for_each(|m| *m /= n);
        Ok(Self {
            encoder,
            source,
            images: features.len(),
            mean,
        })
    }
}

/// Training-split renders the centring mean is taken over.
pub const CENTRING_RENDERS: usize = 128;

/// The centring mean of `encoder` for an evaluation set in `set_dir`: read from
/// `set_dir/centring/<encoder>.json` when an earlier run stored it, otherwise computed (over
/// [`CENTRING_RENDERS`] EmojiWorld training-split renders at `side` when `assets` are given, or
/// else over `fallback`, such as every subject's photos) and stored there. The file is written
/// whole (a temporary file renamed), so a reader never sees half of one.
pub fn stored_centring(
    encoder: &SubjectEncoder,
    set_dir: &std::path::Path,
    assets: Option<&suti_data::Assets>,
    side: u32,
    fallback: &[RgbaImage],
) -> Result<Centring> {
    let name = encoder.name();
    let file_name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = set_dir.join("centring");
    let path = dir.join(format!("{file_name}-{side}px.json"));
    if let Ok(bytes) = std::fs::read(&path) {
        let stored: Centring = serde_json::from_slice(&bytes)
            .map_err(|e| EvalError::Invalid(format!("{}: {e}", path.display())))?;
        if stored.encoder == name {
            return Ok(stored);
        }
    }
    let (images, source) = match assets {
        Some(assets) => (
            crate::sanity::training_renders(assets, CENTRING_RENDERS, 64, side, 0)?,
            format!("{CENTRING_RENDERS} EmojiWorld training-split renders"),
        ),
        None => (
            fallback.iter().map(|i| i.centre_square(side)).collect(),
            format!("the set's {} photos", fallback.len()),
        ),
    };
    let centring = Centring::of(name, source, &encoder.features(&images)?)?;
    std::fs::create_dir_all(&dir).map_err(|e| EvalError::Io(dir.clone(), e))?;
    let partial = path.with_extension("json.partial");
    let json = serde_json::to_vec(&centring).map_err(|e| EvalError::Invalid(e.to_string()))?;
    std::fs::write(&partial, json).map_err(|e| EvalError::Io(partial.clone(), e))?;
    std::fs::rename(&partial, &path).map_err(|e| EvalError::Io(path.clone(), e))?;
    Ok(centring)
}

/// `features` minus the centring mean (when given), scaled to unit length.
pub fn prepare(features: &[Vec<f32>], centring: Option<&Centring>) -> Vec<Vec<f32>> {
    features
        .iter()
        .map(|f| {
            let centred: Vec<f32> = match centring {
                Some(c) => f.iter().zip(&c.mean).map(|(v, m)| v - m).collect(),
                None => f.clone(),
            };
            unit(&centred)
        })
        .collect()
}

/// `v` scaled to unit length (zero stays zero).
pub fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm < 1e-12 {
        return v.to_vec();
    }
    v.iter().map(|x| x / norm).collect()
}

/// The dot product (a cosine, for unit vectors).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Mean cosine of `x` to each row of `set` (all unit length).
pub fn mean_cosine(x: &[f32], set: &[Vec<f32>]) -> f32 {
    if set.is_empty() {
        return 0.0;
    }
    set.iter().map(|d| dot(x, d)).sum::<f32>() / set.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_region_is_a_square_inside_the_image() {
        let mut img = RgbaImage::new(32, 32);
        img.put(16, 20, [255, 0, 0, 255]);
        let c = Crop::SubjectRegion.apply(&img);
        assert_eq!((c.width, c.height), (22, 22));
        assert_eq!(c.get(16 - 4, 20 - 9), [255, 0, 0, 255]);
        assert_eq!(Crop::Whole.apply(&img), img);
    }

    #[test]
    fn centring_removes_the_shared_floor() {
        // Two non-negative vectors that share a large common part: raw cosine is high, centred
        // on the mean of a population they belong to it is not.
        let a = vec![5.0, 5.0, 1.0, 0.0];
        let b = vec![5.0, 5.0, 0.0, 1.0];
        let raw = prepare(&[a.clone(), b.clone()], None);
        assert!(dot(&raw[0], &raw[1]) > 0.9);
        let c = Centring::of("t".into(), "test".into(), &[a.clone(), b.clone()]).unwrap();
        let centred = prepare(&[a, b], Some(&c));
        assert!(dot(&centred[0], &centred[1]) < -0.9);
        assert!((mean_cosine(&centred[0], &centred[..1]) - 1.0).abs() < 1e-6);
    }
}
