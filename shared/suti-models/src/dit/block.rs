//! One DiT block: attention to its own tokens and the text (and, with `shared` demonstrations,
//! theirs), the gated demonstration reader where there is one, and the MLP, each modulated by
//! adaLN-Zero.

use candle_core::{D, Result, Tensor};

use crate::config::DitConfig;
use crate::layers::{Attention, Builders, KeyValues, Linear, Mlp, Modulation, modulate};
use crate::params::Init;

/// A block's layers.
pub(super) struct Block {
    /// Attention to the block's own tokens and whatever keys it is given beside them.
    pub(super) attn: Attention,
    mlp: Mlp,
    ada: Linear,
    /// The gated demonstration reader (`gated` apprentices only).
    pub(super) reader: Option<Attention>,
}

/// What a gated block reads: the demonstrations' keys and values for this block, their key mask,
/// and per example 1 where any demonstration is visible (0 zeroes the reader, whose softmax over
/// keys that are all masked would otherwise average them).
pub(super) struct DemoRead<'a> {
    pub(super) kv: &'a KeyValues,
    pub(super) mask: &'a Tensor,
    pub(super) present: &'a Tensor,
}

impl Block {
    /// A block whose weights come from `b`.
    pub(super) fn new(b: &Builders, cfg: &DitConfig) -> Result<Self> {
        Ok(Self {
            attn: Attention::new(&b.pp("attn"), cfg.width, cfg.heads)?,
            mlp: Mlp::new(&b.pp("mlp"), cfg.width, cfg.mlp_ratio)?,
            // adaLN-Zero: the modulation starts at zero, so every block starts as the identity.
            ada: Linear::new(
                &b.pp("ada"),
                cfg.width,
                6 * cfg.width,
                Init::Zeros,
                true,
                false,
            )?,
            reader: if cfg.max_demos > 0 && cfg.demo_attention.is_gated() {
                Some(Attention::with_output_init(
                    &b.pp("demo_attn"),
                    cfg.width,
                    cfg.heads,
                    Init::Zeros,
                )?)
            } else {
                None
            },
        })
    }

    /// The two modulations (attention, MLP) for conditioning vectors `c` (`(b, g, w)`).
    pub(super) fn modulations(&self, c: &Tensor) -> Result<(Modulation, Modulation)> {
        let m = self.ada.forward(&c.silu()?)?.chunk(6, D::Minus1)?;
        Ok((
            Modulation {
                shift: m[0].clone(),
                scale: m[1].clone(),
                gate: m[2].clone(),
            },
            Modulation {
                shift: m[3].clone(),
                scale: m[4].clone(),
                gate: m[5].clone(),
            },
        ))
    }

    /// The same block with its LoRA adapters folded in.
    pub(super) fn merged(&self) -> Result<Self> {
        Ok(Self {
            attn: self.attn.merged()?,
            mlp: self.mlp.merged()?,
            ada: self.ada.clone(),
            reader: self.reader.as_ref().map(Attention::merged).transpose()?,
        })
    }

    /// The block on tokens `x` under modulations `mods`, attending also to `extra` keys and
    /// values (masked by `mask`); returns the new tokens and the block's own keys and values.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        mods: &(Modulation, Modulation),
        extra: &[&KeyValues],
        mask: Option<&Tensor>,
        demos: Option<DemoRead<'_>>,
    ) -> Result<(Tensor, KeyValues)> {
        let (a, m) = mods;
        let h = modulate(x, &a.shift, &a.scale)?;
        let (attn, own) = self.attn.forward(&h, extra, mask)?;
        let mut x = crate::ops::gated_residual(x, &attn, &a.gate)?;
        if let (Some(reader), Some(read)) = (&self.reader, demos) {
            let h = modulate(&x, &a.shift, &a.scale)?;
            let r = reader.forward_to(&h, read.kv, Some(read.mask))?;
            x = (x + r.broadcast_mul(read.present)?)?;
        }
        let h = modulate(&x, &m.shift, &m.scale)?;
        let x = crate::ops::gated_residual(&x, &self.mlp.forward(&h)?, &m.gate)?;
        Ok((x, own))
    }
}
