//! The frozen text encoder (architecture.md §7.1): all-MiniLM-L6-v2, a 6-layer BERT with 384-wide
//! token states, through candle-transformers. It plays Imagen's frozen T5: token states (with their
//! mask) feed the denoiser's attention, and the mean-pooled, L2-normalised sentence vector feeds
//! its global conditioning. Encodings are cached per caption: captions repeat across a training
//! run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::Tokenizer;

use crate::dit::TextCond;

/// Width of MiniLM's token states.
pub const TEXT_DIM: usize = 384;
/// Longest caption kept, in tokens (special tokens included).
pub const MAX_TOKENS: usize = 64;

/// Why the encoder could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// A model file is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The tokenizer or config is malformed.
    #[error("malformed text encoder: {0}")]
    Malformed(String),
    /// candle failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

#[derive(Debug, Clone)]
struct Encoded {
    /// `(tokens, 384)`.
    tokens: Tensor,
    /// `(384,)`, unit length.
    pooled: Tensor,
}

/// The frozen MiniLM encoder with a per-caption cache.
pub struct TextEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    cache: Mutex<HashMap<String, Encoded>>,
}

impl TextEncoder {
    /// Loads the model folder laid out by `scripts/fetch-assets` (`model.safetensors`,
    /// `tokenizer.json`, `config.json`).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, TextError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| TextError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        Self::from_bytes(
            &read("model.safetensors")?,
            &read("tokenizer.json")?,
            &read("config.json")?,
            device,
        )
    }

    /// Loads the model from bytes (objects fetched from storage).
    pub fn from_bytes(
        weights: &[u8],
        tokenizer_json: &[u8],
        config_json: &[u8],
        device: &Device,
    ) -> Result<Self, TextError> {
        let config: Config = serde_json::from_slice(config_json)
            .map_err(|e| TextError::Malformed(format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_bytes(tokenizer_json)
            .map_err(|e| TextError::Malformed(format!("tokenizer.json: {e}")))?;
        // The packaged tokenizer pads every caption to 128 tokens; the encoder pads per batch.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| TextError::Malformed(format!("truncation: {e}")))?;
        let vb = VarBuilder::from_buffered_safetensors(weights.to_vec(), DType::F32, device)?;
        let model = BertModel::load(vb, &config)?;
        Ok(Self {
            model,
            tokenizer,
            device: device.clone(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn encode_one(&self, caption: &str) -> Result<Encoded, TextError> {
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(caption)
        {
            return Ok(hit.clone());
        }
        let encoding = self
            .tokenizer
            .encode(caption, true)
            .map_err(|e| TextError::Malformed(format!("tokenizing {caption:?}: {e}")))?;
        let ids: Vec<u32> = encoding.get_ids().to_vec();
        let n = ids.len();
        let input = Tensor::from_vec(ids, (1, n), &self.device)?;
        let types = input.zeros_like()?;
        let mask = input.ones_like()?;
        let states = self
            .model
            .forward(&input, &types, Some(&mask))?
            .squeeze(0)?;
        let mean = states.mean(0)?;
        let norm = mean.sqr()?.sum_all()?.sqrt()?;
        let pooled = mean.broadcast_div(&norm)?;
        let encoded = Encoded {
            tokens: states,
            pooled,
        };
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(caption.to_string(), encoded.clone());
        Ok(encoded)
    }

    /// The sentence vector of one caption (mean-pooled, unit length), as sentence-transformers'
    /// all-MiniLM-L6-v2 computes it.
    pub fn sentence_vector(&self, caption: &str) -> Result<Vec<f32>, TextError> {
        Ok(self.encode_one(caption)?.pooled.to_vec1::<f32>()?)
    }

    /// Encodes a batch of captions into denoiser conditioning, padding to the longest.
    pub fn encode(&self, captions: &[&str]) -> Result<TextCond, TextError> {
        let encoded: Vec<Encoded> = captions
            .iter()
            .map(|c| self.encode_one(c))
            .collect::<Result<_, _>>()?;
        let len = encoded
            .iter()
            .map(|e| e.tokens.dim(0))
            .collect::<Result<Vec<_>, _>>()?;
        let longest = len.iter().copied().max().unwrap_or(1);
        let mut tokens = Vec::with_capacity(encoded.len());
        let mut masks = Vec::with_capacity(encoded.len());
        for (e, &l) in encoded.iter().zip(&len) {
            let padded = if l < longest {
                Tensor::cat(
                    &[
                        &e.tokens,
                        &Tensor::zeros((longest - l, TEXT_DIM), DType::F32, &self.device)?,
                    ],
                    0,
                )?
            } else {
                e.tokens.clone()
            };
            tokens.push(padded);
            let mut mask = vec![1f32; l];
            mask.resize(longest, 0.0);
            masks.push(Tensor::from_vec(mask, longest, &self.device)?);
        }
        let pooled: Vec<Tensor> = encoded.iter().map(|e| e.pooled.clone()).collect();
        Ok(TextCond {
            tokens: Tensor::stack(&tokens, 0)?,
            mask: Tensor::stack(&masks, 0)?,
            pooled: Tensor::stack(&pooled, 0)?,
        })
    }

    /// Captions encoded so far (the cache's size).
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A shared encoder.
pub type SharedTextEncoder = Arc<TextEncoder>;
