//! The CLIP-style scorer (architecture.md §7.5) used by the ΔCLIP filter and evaluation: the frozen
//! image tower's pooled features and MiniLM's sentence vectors, each mapped by a small trained head
//! into one joint space where cosine similarity says how well a caption describes an image. Only
//! the heads are trained, contrastively (CLIP's symmetric InfoNCE) on crawled image–caption pairs.

use candle_core::{D, DType, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::layers::{Builders, Linear};
use crate::params::{Params, xavier};

/// Shape of the scorer's heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScorerConfig {
    /// Width of the image tower's features (1280 for EfficientNet-Lite0).
    pub image_dim: usize,
    /// Width of the text encoder's sentence vectors (384 for MiniLM).
    pub text_dim: usize,
    /// Hidden width of the image head.
    pub hidden: usize,
    /// Width of the joint embedding.
    pub embed_dim: usize,
    /// Softmax temperature of the contrastive loss (CLIP starts at 0.07).
    pub temperature: f32,
}

impl Default for ScorerConfig {
    fn default() -> Self {
        Self {
            image_dim: crate::image_tower::FEATURE_DIM,
            text_dim: 384,
            hidden: 512,
            embed_dim: 128,
            temperature: 0.07,
        }
    }
}

/// The projection heads: a two-layer MLP for image features (ImageNet features must be bent
/// towards scene and subject words), a linear map for sentence vectors (already semantic).
pub struct Scorer {
    cfg: ScorerConfig,
    image_in: Linear,
    image_out: Linear,
    text_out: Linear,
}

impl Scorer {
    /// Builds the heads; weights come from `params` (trainable or frozen).
    pub fn new(cfg: &ScorerConfig, params: &Params) -> Result<Self> {
        let b = Builders::base(params.clone());
        Ok(Self {
            cfg: cfg.clone(),
            image_in: Linear::new(
                &b.pp("image_in"),
                cfg.image_dim,
                cfg.hidden,
                xavier(cfg.image_dim, cfg.hidden),
                true,
                false,
            )?,
            image_out: Linear::new(
                &b.pp("image_out"),
                cfg.hidden,
                cfg.embed_dim,
                xavier(cfg.hidden, cfg.embed_dim),
                true,
                false,
            )?,
            text_out: Linear::new(
                &b.pp("text_out"),
                cfg.text_dim,
                cfg.embed_dim,
                xavier(cfg.text_dim, cfg.embed_dim),
                true,
                false,
            )?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ScorerConfig {
        &self.cfg
    }

    /// Unit-length joint embeddings `(b, embed_dim)` of image-tower features `(b, image_dim)`.
    pub fn embed_images(&self, features: &Tensor) -> Result<Tensor> {
        // Pooled ReLU6 features are large and all positive; a fixed rescale keeps the first layer
        // in a sensible range without a learned norm.
        let x = (features * 0.25)?;
        let h = self.image_in.forward(&x)?.gelu_erf()?;
        unit(&self.image_out.forward(&h)?)
    }

    /// Unit-length joint embeddings `(b, embed_dim)` of sentence vectors `(b, text_dim)`.
    pub fn embed_texts(&self, sentences: &Tensor) -> Result<Tensor> {
        unit(&self.text_out.forward(sentences)?)
    }

    /// CLIP's symmetric contrastive loss over a batch of matching pairs: image `i` should pick
    /// caption `i` among the batch's captions and vice versa.
    pub fn contrastive_loss(&self, features: &Tensor, sentences: &Tensor) -> Result<Tensor> {
        let images = self.embed_images(features)?;
        let texts = self.embed_texts(sentences)?;
        let logits = (images.matmul(&texts.t()?)? / f64::from(self.cfg.temperature))?;
        let b = logits.dim(0)?;
        let labels = Tensor::arange(0u32, b as u32, logits.device())?;
        let image_to_text = candle_nn::loss::cross_entropy(&logits, &labels)?;
        let text_to_image = candle_nn::loss::cross_entropy(&logits.t()?.contiguous()?, &labels)?;
        ((image_to_text + text_to_image)? * 0.5)?.to_dtype(DType::F32)
    }
}

/// Rows scaled to unit length.
fn unit(x: &Tensor) -> Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    x.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use candle_nn::VarMap;
    use suti_rng::SplitMix64;

    use super::*;
    use crate::train::{AdamW, AdamWConfig};

    #[test]
    fn the_heads_learn_to_pair_features_with_sentences() {
        let dev = Device::Cpu;
        let cfg = ScorerConfig {
            image_dim: 32,
            text_dim: 16,
            hidden: 32,
            embed_dim: 8,
            temperature: 0.1,
        };
        // Eight "concepts": each image feature and sentence vector is a fixed random vector of
        // its concept plus noise, so pairing must be learned through the heads.
        let mut rng = SplitMix64::new(3);
        let image_protos: Vec<Vec<f32>> = (0..8).map(|_| rng.normals(32)).collect();
        let text_protos: Vec<Vec<f32>> = (0..8).map(|_| rng.normals(16)).collect();
        let batch = |rng: &mut SplitMix64| -> (Tensor, Tensor) {
            let mut f = Vec::new();
            let mut s = Vec::new();
            for c in 0..8 {
                f.extend(
                    image_protos[c]
                        .iter()
                        .map(|v| v.abs() * 4.0 + 0.3 * rng.normal()),
                );
                s.extend(text_protos[c].iter().map(|v| v + 0.1 * rng.normal()));
            }
            (
                Tensor::from_vec(f, (8, 32), &dev).unwrap(),
                Tensor::from_vec(s, (8, 16), &dev).unwrap(),
            )
        };
        let varmap = VarMap::new();
        let scorer = Scorer::new(&cfg, &Params::train(&varmap, 1, &dev)).unwrap();
        let mut opt = AdamW::new(&varmap, AdamWConfig::default()).unwrap();
        let (f, s) = batch(&mut rng);
        let before = scorer
            .contrastive_loss(&f, &s)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        for _ in 0..150 {
            let (f, s) = batch(&mut rng);
            let loss = scorer.contrastive_loss(&f, &s).unwrap();
            opt.step(&loss.backward().unwrap(), 3e-3).unwrap();
        }
        let (f, s) = batch(&mut rng);
        let after = scorer
            .contrastive_loss(&f, &s)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(after < 0.3 * before, "loss {before} → {after}");
        let sims = scorer
            .embed_images(&f)
            .unwrap()
            .matmul(&scorer.embed_texts(&s).unwrap().t().unwrap())
            .unwrap();
        let best: Vec<u32> = sims.argmax(1).unwrap().to_vec1().unwrap();
        assert_eq!(best, (0..8).collect::<Vec<u32>>());
    }
}
