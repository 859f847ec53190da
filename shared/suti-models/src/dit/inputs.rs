//! What the network reads besides the noisy image: the text conditioning, the demonstrations,
//! and the demonstrations' keys and values once encoded.

use candle_core::{DType, Device, Result, Tensor};

use super::MASKED;
use crate::layers::KeyValues;

/// Text conditioning for a batch: token states, their mask, and the pooled sentence vector.
#[derive(Debug, Clone)]
pub struct TextCond {
    /// Token states `(b, l, text_dim)`.
    pub tokens: Tensor,
    /// 1 for real tokens, 0 for padding or dropped text: `(b, l)`.
    pub mask: Tensor,
    /// Mean-pooled, normalised sentence vector `(b, text_dim)` (zeros when the text is dropped).
    pub pooled: Tensor,
}

impl TextCond {
    /// "No text" for a batch of `b`: one masked token and a zero pooled vector (the unconditional
    /// branch of classifier-free guidance).
    pub fn null(b: usize, text_dim: usize, device: &Device) -> Result<Self> {
        Ok(Self {
            tokens: Tensor::zeros((b, 1, text_dim), DType::F32, device)?,
            mask: Tensor::zeros((b, 1), DType::F32, device)?,
            pooled: Tensor::zeros((b, text_dim), DType::F32, device)?,
        })
    }
}

impl TextCond {
    /// Several conditionings of one batch size stacked along the batch, padded to one token
    /// length, so that all branches of guidance run as one batch.
    pub fn stack(parts: &[&TextCond]) -> Result<Self> {
        let len = parts
            .iter()
            .map(|t| t.tokens.dim(1))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .max()
            .unwrap_or(1);
        let mut tokens = Vec::with_capacity(parts.len());
        let mut masks = Vec::with_capacity(parts.len());
        for t in parts {
            let (b, l, d) = t.tokens.dims3()?;
            if l == len {
                tokens.push(t.tokens.clone());
                masks.push(t.mask.clone());
                continue;
            }
            let device = t.tokens.device();
            tokens.push(Tensor::cat(
                &[
                    &t.tokens,
                    &Tensor::zeros((b, len - l, d), DType::F32, device)?,
                ],
                1,
            )?);
            masks.push(Tensor::cat(
                &[&t.mask, &Tensor::zeros((b, len - l), DType::F32, device)?],
                1,
            )?);
        }
        let pooled: Vec<&Tensor> = parts.iter().map(|t| &t.pooled).collect();
        Ok(Self {
            tokens: Tensor::cat(&tokens, 0)?,
            mask: Tensor::cat(&masks, 0)?,
            pooled: Tensor::cat(&pooled, 0)?,
        })
    }
}

/// Demonstrations for a batch: up to `max_demos` per example, padded, with a mask.
#[derive(Debug, Clone)]
pub struct Demos {
    /// Clean images `(b, d, c, h, w)` in [-1, 1].
    pub images: Tensor,
    /// Pooled caption vectors `(b, d, text_dim)`.
    pub pooled: Tensor,
    /// 1 for a real demonstration, 0 for padding or a dropped one: `(b, d)`.
    pub mask: Tensor,
}

/// A batch's text as every block reads it: the tokens' keys and values, their additive key mask
/// `(b, 1, 1, l)` and the pooled sentence vector (from [`super::Dit::encode_text`]).
#[derive(Debug, Clone)]
pub struct EncodedText {
    /// Each block's keys and values for the text tokens.
    pub(super) per_block: Vec<KeyValues>,
    /// Additive mask over the text keys.
    pub(super) key_mask: Tensor,
    /// Pooled sentence vectors `(b, text_dim)`.
    pub(super) pooled: Tensor,
}

/// Each block's keys and values for the demonstration tokens, and their key mask.
#[derive(Debug, Clone)]
pub struct DemoCache {
    /// Each block's keys and values for the demonstration tokens.
    pub(super) per_block: Vec<KeyValues>,
    /// Additive mask over the demonstration keys `(b, 1, 1, d·tokens)`.
    pub(super) key_mask: Tensor,
}

impl DemoCache {
    /// Every block's keys and values through `f`, beside a new key mask.
    fn map_blocks(&self, f: impl Fn(&Tensor) -> Result<Tensor>, key_mask: Tensor) -> Result<Self> {
        Ok(Self {
            per_block: self
                .per_block
                .iter()
                .map(|kv| {
                    Ok(KeyValues {
                        k: f(&kv.k)?,
                        v: f(&kv.v)?,
                    })
                })
                .collect::<Result<_>>()?,
            key_mask,
        })
    }

    /// One copy of this cache per guidance branch, stacked along the batch; the copies whose
    /// flag is false have every demonstration masked (the branches without demonstrations).
    pub fn stack_branches(&self, visible: &[bool]) -> Result<Self> {
        let copies = |t: &Tensor| Tensor::cat(&vec![t; visible.len()], 0);
        let hidden = (self.key_mask.ones_like()? * f64::from(MASKED))?;
        let masks: Vec<&Tensor> = visible
            .iter()
            .map(|&v| if v { &self.key_mask } else { &hidden })
            .collect();
        self.map_blocks(copies, Tensor::cat(&masks, 0)?)
    }

    /// Examples' caches stacked along the batch, each repeated for its rows and padded with
    /// masked keys to the longest; a part of `None` is a row group without demonstrations (every
    /// key masked). `None` if no part has demonstrations. Masked keys get no attention weight, so
    /// each row reads only its own demonstrations, as if encoded in the batch.
    pub fn assemble(parts: &[(Option<&DemoCache>, usize)]) -> Result<Option<Self>> {
        let Some(template) = parts.iter().find_map(|(c, _)| *c) else {
            return Ok(None);
        };
        let longest = parts
            .iter()
            .filter_map(|(c, _)| c.map(|c| c.key_mask.dim(3)))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .max()
            .unwrap_or(0);
        let device = template.key_mask.device();
        let mut per_block = Vec::with_capacity(template.per_block.len());
        for (i, kv) in template.per_block.iter().enumerate() {
            let (_, _, width) = kv.k.dims3()?;
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            for (part, rows) in parts {
                let (k, v) = match part {
                    Some(c) => {
                        let own = c.key_mask.dim(3)?;
                        let kv = c.per_block.get(i).ok_or_else(|| {
                            candle_core::Error::Msg(
                                "demonstration caches of different depths".into(),
                            )
                        })?;
                        let pad = |t: &Tensor| t.pad_with_zeros(1, 0, longest - own);
                        (
                            pad(&kv.k)?.repeat((*rows, 1, 1))?,
                            pad(&kv.v)?.repeat((*rows, 1, 1))?,
                        )
                    }
                    None => {
                        let zeros = Tensor::zeros((*rows, longest, width), kv.k.dtype(), device)?;
                        (zeros.clone(), zeros)
                    }
                };
                keys.push(k);
                values.push(v);
            }
            per_block.push(KeyValues {
                k: Tensor::cat(&keys, 0)?,
                v: Tensor::cat(&values, 0)?,
            });
        }
        let mut masks = Vec::with_capacity(parts.len());
        for (part, rows) in parts {
            let mask = match part {
                Some(c) => {
                    let own = c.key_mask.dim(3)?;
                    let padding = Tensor::full(MASKED, (1, 1, 1, longest - own), device)?;
                    Tensor::cat(&[&c.key_mask, &padding], 3)?.repeat((*rows, 1, 1, 1))?
                }
                None => Tensor::full(MASKED, (*rows, 1, 1, longest), device)?,
            };
            masks.push(mask);
        }
        Ok(Some(Self {
            per_block,
            key_mask: Tensor::cat(&masks, 0)?,
        }))
    }

    /// Bytes the keys, values and mask take.
    pub fn byte_size(&self) -> usize {
        let bytes = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        self.per_block
            .iter()
            .map(|kv| bytes(&kv.k) + bytes(&kv.v))
            .sum::<usize>()
            + bytes(&self.key_mask)
    }

    /// Repeats every example's cache `n` times along the batch (for several images per request).
    pub fn repeat(&self, n: usize) -> Result<Self> {
        let rep = |t: &Tensor| -> Result<Tensor> {
            let dims = t.dims().to_vec();
            let b = dims[0];
            let mut expanded = dims.clone();
            expanded.insert(1, n);
            let mut flat = dims;
            flat[0] = b * n;
            t.unsqueeze(1)?
                .broadcast_as(expanded)?
                .contiguous()?
                .reshape(flat)
        };
        self.map_blocks(rep, rep(&self.key_mask)?)
    }
}
