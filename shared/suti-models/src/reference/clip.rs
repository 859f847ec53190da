//! CLIP (HF `CLIPModel`) through candle-transformers' `models::clip`: the HF config keys, checked
//! against what candle's CLIP runs, the tensors they imply, and the encoder with its own text
//! pooling.

use std::path::Path;

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::folder::{Init, Spec, Specs, Weights, read_config, require};
use super::{CLIP_EOT, CLIP_MEAN, CLIP_STD, ReferenceError, l2_normalize, preprocess};

const CLIP_HINT: &str = "a Hugging Face openai/clip-vit-base-patch32 folder: config.json, \
                         model.safetensors, tokenizer.json";

/// The `CLIPConfig` keys this encoder reads, with HF's defaults.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct HfClipConfig {
    #[serde(default)]
    pub(super) text_config: HfClipText,
    #[serde(default)]
    pub(super) vision_config: HfClipVision,
    /// HF's `CLIPModel` sizes both projections from the top-level value, not the sub-configs'.
    #[serde(default = "d_512")]
    pub(super) projection_dim: usize,
}

/// The `text_config` keys, with HF's defaults (OpenAI's ViT-B/32 text tower).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub(super) struct HfClipText {
    pub(super) vocab_size: usize,
    pub(super) hidden_size: usize,
    pub(super) intermediate_size: usize,
    pub(super) num_hidden_layers: usize,
    pub(super) num_attention_heads: usize,
    pub(super) max_position_embeddings: usize,
    pub(super) hidden_act: String,
    pub(super) layer_norm_eps: f64,
}

impl Default for HfClipText {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }
}

/// The `vision_config` keys, with HF's defaults (OpenAI's ViT-B/32 image tower).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub(super) struct HfClipVision {
    pub(super) hidden_size: usize,
    pub(super) intermediate_size: usize,
    pub(super) num_hidden_layers: usize,
    pub(super) num_attention_heads: usize,
    pub(super) num_channels: usize,
    pub(super) image_size: usize,
    pub(super) patch_size: usize,
    pub(super) hidden_act: String,
    pub(super) layer_norm_eps: f64,
}

impl Default for HfClipVision {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }
}

fn d_512() -> usize {
    512
}

impl HfClipConfig {
    /// Rejects what candle's CLIP cannot run (it hard-codes quick GELU and ε = 1e-5), then maps
    /// the HF keys onto its config.
    fn to_candle(&self, path: &Path) -> Result<(ClipTextConfig, ClipVisionConfig), ReferenceError> {
        let bad = |message: String| ReferenceError::Config {
            path: path.to_path_buf(),
            message,
        };
        let (t, v) = (&self.text_config, &self.vision_config);
        for (which, act, eps, width, heads) in [
            (
                "text_config",
                &t.hidden_act,
                t.layer_norm_eps,
                t.hidden_size,
                t.num_attention_heads,
            ),
            (
                "vision_config",
                &v.hidden_act,
                v.layer_norm_eps,
                v.hidden_size,
                v.num_attention_heads,
            ),
        ] {
            if act != "quick_gelu" {
                return Err(bad(format!(
                    "{which}.hidden_act {act:?}: only quick_gelu (OpenAI's CLIP) is supported"
                )));
            }
            if (eps - 1e-5).abs() > 1e-12 {
                return Err(bad(format!(
                    "{which}.layer_norm_eps {eps}: only 1e-5 is supported"
                )));
            }
            if heads == 0 || !width.is_multiple_of(heads) {
                return Err(bad(format!(
                    "{which}.hidden_size {width} is not a multiple of num_attention_heads {heads}"
                )));
            }
        }
        if v.num_channels != 3 {
            return Err(bad(format!(
                "vision_config.num_channels {} (only RGB is supported)",
                v.num_channels
            )));
        }
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(bad(format!(
                "vision_config.patch_size {} does not divide image_size {}",
                v.patch_size, v.image_size
            )));
        }
        if t.max_position_embeddings < 2 {
            return Err(bad(
                "text_config.max_position_embeddings must leave room for the two special tokens"
                    .into(),
            ));
        }
        let text = ClipTextConfig {
            vocab_size: t.vocab_size,
            embed_dim: t.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: t.intermediate_size,
            max_position_embeddings: t.max_position_embeddings,
            pad_with: None,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            projection_dim: self.projection_dim,
        };
        let vision = ClipVisionConfig {
            embed_dim: v.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: v.intermediate_size,
            num_hidden_layers: v.num_hidden_layers,
            num_attention_heads: v.num_attention_heads,
            projection_dim: self.projection_dim,
            num_channels: v.num_channels,
            image_size: v.image_size,
            patch_size: v.patch_size,
        };
        Ok((text, vision))
    }

    /// Every tensor this config implies, in HF naming.
    pub(super) fn specs(&self) -> Vec<Spec> {
        let (t, v) = (&self.text_config, &self.vision_config);
        let mut s = Specs(Vec::new());
        let encoder = |s: &mut Specs, prefix: &str, d: usize, inner: usize, layers: usize| {
            for i in 0..layers {
                let l = format!("{prefix}.encoder.layers.{i}");
                for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                    s.linear(&format!("{l}.self_attn.{proj}"), d, d, true);
                }
                s.layer_norm(&format!("{l}.layer_norm1"), d);
                s.linear(&format!("{l}.mlp.fc1"), d, inner, true);
                s.linear(&format!("{l}.mlp.fc2"), inner, d, true);
                s.layer_norm(&format!("{l}.layer_norm2"), d);
            }
        };
        let dt = t.hidden_size;
        s.push(
            "text_model.embeddings.token_embedding.weight".into(),
            &[t.vocab_size, dt],
            Init::Normal(0.02),
        );
        s.push(
            "text_model.embeddings.position_embedding.weight".into(),
            &[t.max_position_embeddings, dt],
            Init::Normal(0.01),
        );
        encoder(
            &mut s,
            "text_model",
            dt,
            t.intermediate_size,
            t.num_hidden_layers,
        );
        s.layer_norm("text_model.final_layer_norm", dt);
        let dv = v.hidden_size;
        let (c, p) = (v.num_channels, v.patch_size);
        // Required here although candle's CLIP would silently substitute random values for it.
        s.push(
            "vision_model.embeddings.class_embedding".into(),
            &[dv],
            Init::Normal(0.02),
        );
        s.push(
            "vision_model.embeddings.patch_embedding.weight".into(),
            &[dv, c, p, p],
            Init::Normal(1.0 / ((c * p * p) as f32).sqrt()),
        );
        let grid = v.image_size / v.patch_size;
        s.push(
            "vision_model.embeddings.position_embedding.weight".into(),
            &[grid * grid + 1, dv],
            Init::Normal(0.02),
        );
        // "pre_layrnorm" is HF's spelling.
        s.layer_norm("vision_model.pre_layrnorm", dv);
        encoder(
            &mut s,
            "vision_model",
            dv,
            v.intermediate_size,
            v.num_hidden_layers,
        );
        s.layer_norm("vision_model.post_layernorm", dv);
        s.linear("visual_projection", dv, self.projection_dim, false);
        s.linear("text_projection", dt, self.projection_dim, false);
        s.optional("logit_scale".into(), &[], Init::Const(2.6592));
        s.0
    }
}

/// CLIP (HF `CLIPModel`, e.g. `openai/clip-vit-base-patch32`): projected, unit-length image and
/// text embeddings. DreamBench's CLIP-I is the cosine between image embeddings, CLIP-T the cosine
/// between an image and its prompt.
pub struct ClipEncoder {
    text_model: ClipTextTransformer,
    vision_model: ClipVisionTransformer,
    visual_projection: Linear,
    text_projection: Linear,
    pub(super) tokenizer: Tokenizer,
    eot_id: u32,
    max_tokens: usize,
    image_size: usize,
    projection_dim: usize,
    device: Device,
}

impl ClipEncoder {
    /// Loads an HF CLIP folder (`config.json`, `model.safetensors`, `tokenizer.json`); every
    /// tensor the config implies is checked by name and shape before the model is built.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ReferenceError> {
        let hf: HfClipConfig = read_config(dir, CLIP_HINT)?;
        let (text_cfg, vision_cfg) = hf.to_candle(&dir.join("config.json"))?;
        let tok_path = require(dir, "tokenizer.json", CLIP_HINT)?;
        let w = Weights::open(dir, device, CLIP_HINT)?;
        w.check(&hf.specs())?;

        let tok_err = |message: String| ReferenceError::Tokenizer {
            path: tok_path.clone(),
            message,
        };
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| tok_err(e.to_string()))?;
        let eot_id = tokenizer
            .token_to_id(CLIP_EOT)
            .ok_or_else(|| tok_err(format!("no {CLIP_EOT} token")))?;
        let max_tokens = text_cfg.max_position_embeddings;
        // As HF's CLIPProcessor with padding="max_length": the EOT token pads. Truncation keeps
        // room for the special tokens the post-processor adds, so every row ends in EOT.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_tokens),
            pad_id: eot_id,
            pad_token: CLIP_EOT.into(),
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| tok_err(e.to_string()))?;

        let visual_projection = w.linear("visual_projection", false)?;
        let text_projection = w.linear("text_projection", false)?;
        let vb = VarBuilder::from_tensors(w.tensors, DType::F32, device);
        let text_model = ClipTextTransformer::new(vb.pp("text_model"), &text_cfg)?;
        let vision_model = ClipVisionTransformer::new(vb.pp("vision_model"), &vision_cfg)?;
        Ok(Self {
            text_model,
            vision_model,
            visual_projection,
            text_projection,
            tokenizer,
            eot_id,
            max_tokens,
            image_size: vision_cfg.image_size,
            projection_dim: hf.projection_dim,
            device: device.clone(),
        })
    }

    /// Width of the joint embedding space (512 for ViT-B/32).
    pub fn projection_dim(&self) -> usize {
        self.projection_dim
    }

    /// The side images are resized to (the config's `vision_config.image_size`).
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// The device its weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `(b, 3, h, w)` RGB in [0, 1], any size → `(b, projection_dim)` unit rows: resized to the
    /// config's image size (bilinear), CLIP-normalised, pooled CLS state, visual projection.
    pub fn embed_images(&self, images: &Tensor) -> candle_core::Result<Tensor> {
        if images.dim(0)? == 0 {
            return Tensor::zeros((0, self.projection_dim), DType::F32, images.device());
        }
        let x = preprocess(images, self.image_size, CLIP_MEAN, CLIP_STD)?;
        let pooled = self.vision_model.forward(&x)?;
        l2_normalize(&self.visual_projection.forward(&pooled)?)
    }

    /// Texts → `(b, projection_dim)` unit rows: tokenized with `tokenizer.json`, padded or
    /// truncated to `max_position_embeddings`, the final state at the first EOT token (as HF:
    /// under the causal mask it is the same whatever the padding), text projection.
    pub fn embed_texts(&self, texts: &[String]) -> candle_core::Result<Tensor> {
        let b = texts.len();
        if b == 0 {
            return Tensor::zeros((0, self.projection_dim), DType::F32, &self.device);
        }
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(candle_core::Error::msg)?;
        let len = self.max_tokens;
        let mut ids = Vec::with_capacity(b * len);
        let mut pooled_at = Vec::with_capacity(b);
        for (row, encoding) in encodings.iter().enumerate() {
            let row_ids = encoding.get_ids();
            if row_ids.len() != len {
                candle_core::bail!("tokenizer gave {} tokens, expected {len}", row_ids.len());
            }
            // Without an EOT (a tokenizer whose post-processor adds none) the last position is
            // the one that has seen the whole text.
            let pos = row_ids
                .iter()
                .position(|&t| t == self.eot_id)
                .unwrap_or(len - 1);
            ids.extend_from_slice(row_ids);
            pooled_at.push((row * len + pos) as u32);
        }
        let ids = Tensor::from_vec(ids, (b, len), &self.device)?;
        let states = self.text_model.forward_with_mask(&ids, usize::MAX)?;
        let width = states.dim(D::Minus1)?;
        let pooled_at = Tensor::from_vec(pooled_at, b, &self.device)?;
        let pooled = states
            .reshape((b * len, width))?
            .index_select(&pooled_at, 0)?;
        l2_normalize(&self.text_projection.forward(&pooled)?)
    }
}
