//! The denoiser (architecture.md §7.2) and the apprentice (§7.7): a DiT on pixel patches with
//! adaLN-Zero conditioning on the timestep and the pooled text, attention to the text tokens and,
//! for the apprentice, to demonstration tokens.
//!
//! Demonstrations (clean images with their captions) are encoded by the same blocks at t = 0, as
//! Re-Imagen and SuTI share the encoder, and read in one of two ways ([`DemoAttention`]):
//!
//! - `shared`: with a segment embedding and an index embedding per demonstration, the
//!   demonstration tokens attend only among themselves, and the target's tokens attend to
//!   [own tokens | text tokens | demo tokens] in one softmax;
//! - `gated`: each demonstration is encoded alone by the frozen blocks, and each block's state
//!   (with an index embedding) feeds a second attention, the block's demonstration reader, whose
//!   output projection starts at zero: the apprentice starts as exactly its base and the text
//!   keeps its own softmax;
//! - `gated_finetuned`: the same readers, with a frozen copy of the base encoding the
//!   demonstrations while the network itself fine-tunes.
//!
//! Either way each block's keys and values for the demonstrations ([`DemoCache`]) are computed
//! once per request and reused at every denoising step.

use candle_core::{D, DType, Device, Result, Tensor};

use crate::config::{DemoAttention, DitConfig};
use crate::layers::{Builders, Linear, modulate, sincos_2d, timestep_embedding};
use crate::params::{Init, xavier};

mod block;
mod inputs;

use block::{Block, DemoRead};
pub use inputs::{DemoCache, Demos, EncodedText, TextCond};

/// Frequency features of the timestep before its MLP.
const TIME_FEATURES: usize = 256;
/// Additive mask value for keys that must not be attended to.
const MASKED: f32 = -1e9;

/// The DiT denoiser / apprentice. Predicts v (the velocity of v-prediction) for a noisy image.
pub struct Dit {
    cfg: DitConfig,
    patch_embed: Linear,
    positions: Tensor,
    time_in: Linear,
    time_out: Linear,
    text_pool: Linear,
    text_proj: Linear,
    blocks: Vec<Block>,
    final_ada: Linear,
    final_out: Linear,
    demo_segment: Option<Tensor>,
    demo_index: Option<Tensor>,
    /// `gated_finetuned`: the frozen copy of the base that encodes the demonstrations.
    demo_encoder: Option<Box<Dit>>,
}

impl Dit {
    /// Builds the network; its weights come from `b`.
    pub fn new(cfg: &DitConfig, b: &Builders) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let device = b.base.device().clone();
        let (w, pd) = (cfg.width, cfg.patch_dim());
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(&b.pp(&format!("blocks.{i}")), cfg))
            .collect::<Result<_>>()?;
        let (demo_segment, demo_index) = if cfg.max_demos > 0 {
            // A gated reader has its own projections, so the demonstration tokens need no
            // segment embedding to be told from the image's.
            let segment = match cfg.demo_attention {
                DemoAttention::Shared => {
                    Some(b.base.get(&[1, 1, w], "demo_segment", Init::Normal(0.02))?)
                }
                DemoAttention::Gated | DemoAttention::GatedFinetuned => None,
            };
            (
                segment,
                Some(
                    b.base
                        .get(&[cfg.max_demos, w], "demo_index", Init::Normal(0.02))?,
                ),
            )
        } else {
            (None, None)
        };
        let demo_encoder =
            if cfg.max_demos > 0 && cfg.demo_attention == DemoAttention::GatedFinetuned {
                let base = DitConfig {
                    max_demos: 0,
                    demo_attention: DemoAttention::Shared,
                    ..cfg.clone()
                };
                Some(Box::new(Dit::new(&base, &b.pp("demo_encoder"))?))
            } else {
                None
            };
        Ok(Self {
            cfg: cfg.clone(),
            patch_embed: Linear::new(&b.pp("patch_embed"), pd, w, xavier(pd, w), true, false)?,
            positions: sincos_2d(cfg.grid(), w, &device)?,
            time_in: Linear::new(
                &b.pp("time_in"),
                TIME_FEATURES,
                w,
                Init::Normal(0.02),
                true,
                false,
            )?,
            time_out: Linear::new(&b.pp("time_out"), w, w, Init::Normal(0.02), true, false)?,
            text_pool: Linear::new(
                &b.pp("text_pool"),
                cfg.text_dim,
                w,
                xavier(cfg.text_dim, w),
                true,
                false,
            )?,
            text_proj: Linear::new(
                &b.pp("text_proj"),
                cfg.text_dim,
                w,
                xavier(cfg.text_dim, w),
                true,
                false,
            )?,
            blocks,
            final_ada: Linear::new(&b.pp("final_ada"), w, 2 * w, Init::Zeros, true, false)?,
            final_out: Linear::new(&b.pp("final_out"), w, pd, Init::Zeros, true, false)?,
            demo_segment,
            demo_index,
            demo_encoder,
        })
    }

    /// The same network with every LoRA adapter folded into its base weight (for inference).
    pub fn merged(&self) -> Result<Self> {
        Ok(Self {
            cfg: self.cfg.clone(),
            patch_embed: self.patch_embed.clone(),
            positions: self.positions.clone(),
            time_in: self.time_in.clone(),
            time_out: self.time_out.clone(),
            text_pool: self.text_pool.clone(),
            text_proj: self.text_proj.clone(),
            blocks: self
                .blocks
                .iter()
                .map(Block::merged)
                .collect::<Result<_>>()?,
            final_ada: self.final_ada.clone(),
            final_out: self.final_out.clone(),
            demo_segment: self.demo_segment.clone(),
            demo_index: self.demo_index.clone(),
            demo_encoder: self
                .demo_encoder
                .as_ref()
                .map(|e| e.merged().map(Box::new))
                .transpose()?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DitConfig {
        &self.cfg
    }

    /// The device its weights live on.
    pub fn device(&self) -> &Device {
        self.positions.device()
    }

    /// `(b, c, h, w)` → `(b, tokens, patch_dim)`.
    fn patchify(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, _, _) = x.dims4()?;
        let (g, p) = (self.cfg.grid(), self.cfg.patch);
        x.reshape((b, c, g, p, g, p))?
            .permute((0, 2, 4, 3, 5, 1))?
            .contiguous()?
            .reshape((b, g * g, p * p * c))
    }

    /// `(b, tokens, patch_dim)` → `(b, c, h, w)`.
    fn unpatchify(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, _) = x.dims3()?;
        let (g, p, c) = (self.cfg.grid(), self.cfg.patch, self.cfg.channels);
        x.reshape((b, g, g, p, p, c))?
            .permute((0, 5, 1, 3, 2, 4))?
            .contiguous()?
            .reshape((b, c, g * p, g * p))
    }

    /// The conditioning vector: timestep embedding plus projected pooled text.
    fn conditioning(&self, t: &Tensor, pooled: &Tensor) -> Result<Tensor> {
        let time = self.time_out.forward(
            &self
                .time_in
                .forward(&timestep_embedding(t, TIME_FEATURES)?)?
                .silu()?,
        )?;
        time + self.text_pool.forward(pooled)?
    }

    /// Encodes demonstrations once per request: every block's keys and values for them.
    pub fn encode_demos(&self, demos: &Demos) -> Result<DemoCache> {
        let Some(index) = &self.demo_index else {
            candle_core::bail!("this model takes no demonstrations (max_demos = 0)");
        };
        let (b, d, c, h, w) = demos.images.dims5()?;
        if d > self.cfg.max_demos {
            candle_core::bail!(
                "{d} demonstrations given, the model takes at most {}",
                self.cfg.max_demos
            );
        }
        let n = self.cfg.tokens();
        let width = self.cfg.width;
        let images = demos.images.reshape((b * d, c, h, w))?;
        let pooled = demos.pooled.reshape((b * d, self.cfg.text_dim))?;
        let Some(segment) = &self.demo_segment else {
            let states = self.demo_states(&images, &pooled)?;
            let depth = self.blocks.len();
            return self.encode_demo_states(&states.reshape((b, d, depth, n, width))?, &demos.mask);
        };
        let key_mask = demo_key_mask(&demos.mask, n)?;
        // Demonstrations are clean images: the conditioning of t = 0 and their own captions.
        let t0 = Tensor::zeros(b * d, DType::F32, images.device())?;
        let cond = self.conditioning(&t0, &pooled)?;
        let index = index.narrow(0, 0, d)?.reshape((1, d, 1, width))?;
        let tokens = self
            .patch_embed
            .forward(&self.patchify(&images)?)?
            .broadcast_add(&self.positions)?
            .broadcast_add(segment)?
            .reshape((b, d, n, width))?
            .broadcast_add(&index)?
            .reshape((b, d * n, width))?;
        let cond = cond
            .reshape((b, d, 1, width))?
            .broadcast_as((b, d, n, width))?
            .contiguous()?
            .reshape((b, d * n, width))?;
        let mut x = tokens;
        let mut per_block = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let mods = block.modulations(&cond)?;
            let (next, own) = block.forward(&x, &mods, &[], Some(&key_mask), None)?;
            per_block.push(own);
            x = next;
        }
        Ok(DemoCache {
            per_block,
            key_mask,
        })
    }

    /// What a gated apprentice's readers take from demonstrations `images` (`(k, c, h, w)`) with
    /// their captions' pooled vectors (`(k, text_dim)`): each image alone through the frozen
    /// blocks at t = 0, as the base sees a clean image, and the normalised state entering each
    /// block, `(k, depth, tokens, width)`. They depend only on the frozen base and the image, so
    /// a trainer can compute them once per demonstration and pass them to
    /// [`Self::encode_demo_states`] at every step.
    pub fn demo_states(&self, images: &Tensor, pooled: &Tensor) -> Result<Tensor> {
        if !self.cfg.demo_attention.is_gated() || self.cfg.max_demos == 0 {
            candle_core::bail!("only a gated apprentice reads demonstration states");
        }
        // A fine-tuned gated apprentice's own blocks train, so its frozen copy encodes.
        self.demo_encoder
            .as_deref()
            .unwrap_or(self)
            .clean_states(images, pooled)
    }

    /// The normalised state entering each block for clean images at t = 0 (see
    /// [`Self::demo_states`]).
    fn clean_states(&self, images: &Tensor, pooled: &Tensor) -> Result<Tensor> {
        let k = images.dim(0)?;
        let t0 = Tensor::zeros(k, DType::F32, images.device())?;
        let cond = self.conditioning(&t0, pooled)?.unsqueeze(1)?;
        let mut x = self
            .patch_embed
            .forward(&self.patchify(images)?)?
            .broadcast_add(&self.positions)?;
        let mut states = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            // Normalised, as an encoder's output is before cross-attention: the residual stream
            // grows from block to block.
            states.push(crate::ops::layer_norm(&x)?);
            if i + 1 < self.blocks.len() {
                let mods = block.modulations(&cond)?;
                x = block.forward(&x, &mods, &[], None, None)?.0;
            }
        }
        Tensor::stack(&states, 1)
    }

    /// A gated apprentice's demonstration cache from states (`(b, d, depth, tokens, width)`, from
    /// [`Self::demo_states`]) and their mask (`(b, d)`): each block's reader projects the states
    /// entering it, with the index embedding of each demonstration's slot.
    pub fn encode_demo_states(&self, states: &Tensor, mask: &Tensor) -> Result<DemoCache> {
        let Some(index) = &self.demo_index else {
            candle_core::bail!("this model takes no demonstrations (max_demos = 0)");
        };
        let (b, d, depth, n, width) = states.dims5()?;
        if depth != self.blocks.len() || n != self.cfg.tokens() || width != self.cfg.width {
            candle_core::bail!(
                "demonstration states of shape {:?} do not fit this model",
                states.dims()
            );
        }
        if d > self.cfg.max_demos {
            candle_core::bail!(
                "{d} demonstrations given, the model takes at most {}",
                self.cfg.max_demos
            );
        }
        let index = index.narrow(0, 0, d)?.reshape((1, d, 1, width))?;
        let mut per_block = Vec::with_capacity(depth);
        for (i, block) in self.blocks.iter().enumerate() {
            let Some(reader) = &block.reader else {
                candle_core::bail!("a gated apprentice block has no demonstration reader");
            };
            let state = states
                .narrow(2, i, 1)?
                .squeeze(2)?
                .broadcast_add(&index)?
                .reshape((b, d * n, width))?;
            per_block.push(reader.key_values(&state)?);
        }
        Ok(DemoCache {
            per_block,
            key_mask: demo_key_mask(mask, n)?,
        })
    }

    /// Predicts v for noisy images `x_t` (`(b, c, h, w)`) at times `t` (`(b,)`, in [0, 1]).
    pub fn forward(
        &self,
        x_t: &Tensor,
        t: &Tensor,
        text: &TextCond,
        demos: Option<&DemoCache>,
    ) -> Result<Tensor> {
        self.forward_encoded(x_t, t, &self.encode_text(text)?, demos)
    }

    /// The text's keys and values in every block and its key mask: they do not depend on the
    /// noisy image or the time, so a sampler computes them once per request rather than at every
    /// denoising step.
    pub fn encode_text(&self, text: &TextCond) -> Result<EncodedText> {
        let text_tokens = self.text_proj.forward(&text.tokens)?;
        let per_block = self
            .blocks
            .iter()
            .map(|block| block.attn.key_values(&text_tokens))
            .collect::<Result<_>>()?;
        let (b, l) = text.mask.dims2()?;
        let key_mask =
            ((text.mask.ones_like()? - &text.mask)? * f64::from(MASKED))?.reshape((b, 1, 1, l))?;
        Ok(EncodedText {
            per_block,
            key_mask,
            pooled: text.pooled.clone(),
        })
    }

    /// [`Self::forward`] with the text already encoded ([`Self::encode_text`]).
    pub fn forward_encoded(
        &self,
        x_t: &Tensor,
        t: &Tensor,
        text: &EncodedText,
        demos: Option<&DemoCache>,
    ) -> Result<Tensor> {
        if text.per_block.len() != self.blocks.len() {
            candle_core::bail!(
                "text encoded for {} blocks given to a model of {}",
                text.per_block.len(),
                self.blocks.len()
            );
        }
        let (b, _, _, _) = x_t.dims4()?;
        let n = self.cfg.tokens();
        let x = self
            .patch_embed
            .forward(&self.patchify(x_t)?)?
            .broadcast_add(&self.positions)?;
        let cond = self.conditioning(t, &text.pooled)?.unsqueeze(1)?;
        let device = x.device();
        let own_mask = Tensor::zeros((b, 1, 1, n), DType::F32, device)?;
        let text_mask = text.key_mask.clone();
        let gated = self.cfg.demo_attention.is_gated();
        let mut masks = vec![own_mask, text_mask];
        if let Some(cache) = demos.filter(|_| !gated) {
            masks.push(cache.key_mask.clone());
        }
        let mask = Tensor::cat(&masks, 3)?;
        let present = match demos.filter(|_| gated) {
            Some(cache) => Some(
                cache
                    .key_mask
                    .max(3)?
                    .ge(f64::from(MASKED) / 2.0)?
                    .to_dtype(DType::F32)?,
            ),
            None => None,
        };
        let mut x = x;
        for (i, block) in self.blocks.iter().enumerate() {
            let mods = block.modulations(&cond)?;
            let mut extra = vec![&text.per_block[i]];
            let mut read = None;
            if let Some(cache) = demos {
                match &present {
                    None => extra.push(&cache.per_block[i]),
                    Some(present) => {
                        read = Some(DemoRead {
                            kv: &cache.per_block[i],
                            mask: &cache.key_mask,
                            present,
                        })
                    }
                }
            }
            x = block.forward(&x, &mods, &extra, Some(&mask), read)?.0;
        }
        let m = self.final_ada.forward(&cond.silu()?)?.chunk(2, D::Minus1)?;
        let x = modulate(&x, &m[0], &m[1])?;
        self.unpatchify(&self.final_out.forward(&x)?)
    }

    /// Predicts v with demonstrations encoded on the fly (no cache); the reference that cached
    /// sampling must match.
    pub fn forward_uncached(
        &self,
        x_t: &Tensor,
        t: &Tensor,
        text: &TextCond,
        demos: &Demos,
    ) -> Result<Tensor> {
        let cache = self.encode_demos(demos)?;
        self.forward(x_t, t, text, Some(&cache))
    }
}

/// The additive key mask `(b, 1, 1, d·tokens)` of demonstrations masked by `mask` (`(b, d)`, 1 for
/// a visible one), `tokens` keys each.
fn demo_key_mask(mask: &Tensor, tokens: usize) -> Result<Tensor> {
    let (b, d) = mask.dims2()?;
    ((mask.ones_like()? - mask)? * f64::from(MASKED))?
        .reshape((b, d, 1))?
        .broadcast_as((b, d, tokens))?
        .contiguous()?
        .reshape((b, 1, 1, d * tokens))
}
