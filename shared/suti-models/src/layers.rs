//! Building blocks of the DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers", 2023):
//! linear layers with optional LoRA adapters, parameter-free layer norm with adaLN modulation,
//! multi-head attention over image, text and demonstration tokens, the MLP, and the timestep and
//! position embeddings.

use candle_core::{D, DType, Device, Result, Tensor};

use crate::ops;
use crate::params::{Init, Params, xavier};

/// LoRA (Hu et al., 2021): `W x + (alpha / rank) · B A x`, with `A` random and `B` zero at start so
/// the adapted model begins exactly as the base.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank of the update.
    pub rank: usize,
    /// Scale numerator.
    pub alpha: f32,
}

/// Weight sources for a layer: the (possibly frozen) base, and LoRA adapters if any.
#[derive(Clone)]
pub struct Builders {
    /// The base weights.
    pub base: Params,
    /// Adapter weights and their shape, when the model is being adapted.
    pub lora: Option<(Params, LoraConfig)>,
}

impl Builders {
    /// Base weights only.
    pub fn base(base: Params) -> Self {
        Self { base, lora: None }
    }

    /// Both sources under `prefix.name`.
    pub fn pp(&self, name: &str) -> Self {
        Self {
            base: self.base.pp(name),
            lora: self.lora.as_ref().map(|(p, c)| (p.pp(name), c.clone())),
        }
    }
}

#[derive(Debug, Clone)]
struct LoraPair {
    a: Tensor,
    b: Tensor,
    scale: f64,
}

/// A linear layer `y = x Wᵀ + b`, optionally with a LoRA adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    /// A frozen CPU weight's `(in, out)` copy, which the fused op reads without repacking it on
    /// every call (sampling from a loaded release, an expert's frozen base).
    weight_in_out: Option<Tensor>,
    bias: Option<Tensor>,
    lora: Option<LoraPair>,
}

/// The `(in, out)` copy of a frozen weight on the CPU; none for a trained one (it changes every
/// step), elsewhere, or when `SUTI_COMPOSED_OPS=1` asks for the composed layers (an A/B keeps
/// their original weight layout).
fn frozen_in_out(weight: &Tensor) -> Result<Option<Tensor>> {
    if weight.track_op() || !weight.device().is_cpu() || ops::composed_requested() {
        return Ok(None);
    }
    Ok(Some(weight.t()?.contiguous()?))
}

impl Linear {
    /// A layer `in_dim → out_dim` under `b`; `adapt` says whether it takes a LoRA adapter.
    pub fn new(
        b: &Builders,
        in_dim: usize,
        out_dim: usize,
        init: Init,
        bias: bool,
        adapt: bool,
    ) -> Result<Self> {
        let weight = b.base.get(&[out_dim, in_dim], "weight", init)?;
        let bias = if bias {
            Some(b.base.get(&[out_dim], "bias", Init::Zeros)?)
        } else {
            None
        };
        let lora = match (&b.lora, adapt) {
            (Some((params, cfg)), true) => Some(LoraPair {
                a: params.get(
                    &[cfg.rank, in_dim],
                    "lora_a",
                    Init::Normal(1.0 / cfg.rank as f32),
                )?,
                b: params.get(&[out_dim, cfg.rank], "lora_b", Init::Zeros)?,
                scale: f64::from(cfg.alpha) / cfg.rank as f64,
            }),
            _ => None,
        };
        Ok(Self {
            weight_in_out: frozen_in_out(&weight)?,
            weight,
            bias,
            lora,
        })
    }

    /// A layer from explicit tensors (merged weights).
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            weight_in_out: frozen_in_out(&weight)?,
            weight,
            bias,
            lora: None,
        })
    }

    /// Applies the layer to `x` of shape `(…, in_dim)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let mut y = match (&self.bias, &self.weight_in_out) {
            (Some(bias), Some(w_in_out)) => ops::linear_in_out(&x2, w_in_out, bias)?,
            (Some(bias), None) => ops::linear(&x2, &self.weight, bias)?,
            (None, _) => x2.matmul(&self.weight.t()?)?,
        };
        if let Some(lora) = &self.lora {
            let update = x2.matmul(&lora.a.t()?)?.matmul(&lora.b.t()?)?;
            y = (y + (update * lora.scale)?)?;
        }
        let mut out_dims = dims;
        *out_dims.last_mut().expect("rank ≥ 1") = self.weight.dim(0)?;
        y.reshape(out_dims)
    }

    /// The layer with its adapter folded into the weight, `W + scale · B A`, for inference: its
    /// tensors are detached, so a model merged from adapters still in training neither records
    /// a backward graph while it samples nor misses the frozen layers' `(in, out)` copies.
    pub fn merged(&self) -> Result<Self> {
        let weight = match &self.lora {
            Some(l) => (&self.weight + (l.b.matmul(&l.a)? * l.scale)?)?,
            None => self.weight.clone(),
        };
        Self::from_weights(weight.detach(), self.bias.as_ref().map(Tensor::detach))
    }

    /// The weight matrix.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

/// Shift, scale and gate of one adaLN-Zero application.
pub struct Modulation {
    /// Added after normalisation.
    pub shift: Tensor,
    /// Multiplies the normalised input (as `1 + scale`).
    pub scale: Tensor,
    /// Multiplies the branch output before the residual add.
    pub gate: Tensor,
}

/// `LN(x) · (1 + scale) + shift`, layer norm without affine parameters.
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    ops::layer_norm_modulate(x, shift, scale)
}

/// The transformer MLP: Linear → GELU → Linear.
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    /// `width → ratio·width → width`.
    pub fn new(b: &Builders, width: usize, ratio: usize) -> Result<Self> {
        let hidden = width * ratio;
        Ok(Self {
            fc1: Linear::new(
                &b.pp("fc1"),
                width,
                hidden,
                xavier(width, hidden),
                true,
                true,
            )?,
            fc2: Linear::new(
                &b.pp("fc2"),
                hidden,
                width,
                xavier(hidden, width),
                true,
                true,
            )?,
        })
    }

    /// Applies the MLP.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&ops::gelu(&self.fc1.forward(x)?)?)
    }

    /// The MLP with adapters merged.
    pub fn merged(&self) -> Result<Self> {
        Ok(Self {
            fc1: self.fc1.merged()?,
            fc2: self.fc2.merged()?,
        })
    }
}

/// Keys and values of one attention layer, token-major: `(batch, tokens, width)`, head `h` in
/// channels `h·head_dim…`.
#[derive(Debug, Clone)]
pub struct KeyValues {
    /// Keys.
    pub k: Tensor,
    /// Values.
    pub v: Tensor,
}

/// Multi-head attention whose queries come from one token set and whose keys and values come
/// from it plus extra token sets (text, cached demonstrations).
#[derive(Debug, Clone)]
pub struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
}

impl Attention {
    /// Attention of `width` with `heads` heads.
    pub fn new(b: &Builders, width: usize, heads: usize) -> Result<Self> {
        Self::with_output_init(b, width, heads, xavier(width, width))
    }

    /// Attention whose output projection starts from `output` (zeros: a branch that adds
    /// nothing until it has learned something).
    pub fn with_output_init(
        b: &Builders,
        width: usize,
        heads: usize,
        output: Init,
    ) -> Result<Self> {
        let lin = |name: &str, init: Init| Linear::new(&b.pp(name), width, width, init, true, true);
        let inner = xavier(width, width);
        Ok(Self {
            q: lin("q", inner)?,
            k: lin("k", inner)?,
            v: lin("v", inner)?,
            o: lin("o", output)?,
            heads,
        })
    }

    /// Keys and values of `tokens` (`(b, t, w)`).
    pub fn key_values(&self, tokens: &Tensor) -> Result<KeyValues> {
        Ok(KeyValues {
            k: self.k.forward(tokens)?,
            v: self.v.forward(tokens)?,
        })
    }

    /// Attends from `x` (`(b, n, w)`) to `x` itself and every extra key/value set, in order, with
    /// an additive mask over all keys (`(b, 1, 1, keys)`), and returns the output and `x`'s own keys
    /// and values.
    pub fn forward(
        &self,
        x: &Tensor,
        extra: &[&KeyValues],
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, KeyValues)> {
        let q = self.q.forward(x)?;
        let own = self.key_values(x)?;
        let (k, v) = if extra.is_empty() {
            (own.k.clone(), own.v.clone())
        } else {
            let ks: Vec<&Tensor> = std::iter::once(&own.k)
                .chain(extra.iter().map(|e| &e.k))
                .collect();
            let vs: Vec<&Tensor> = std::iter::once(&own.v)
                .chain(extra.iter().map(|e| &e.v))
                .collect();
            (Tensor::cat(&ks, 1)?, Tensor::cat(&vs, 1)?)
        };
        let out = ops::attention(&q, &k, &v, mask, self.heads)?;
        Ok((self.o.forward(&out)?, own))
    }

    /// Attends from `x` (`(b, n, w)`) to the given keys and values alone (not to `x` itself), with
    /// an additive mask over them (`(b, 1, 1, keys)`): cross-attention.
    pub fn forward_to(&self, x: &Tensor, kv: &KeyValues, mask: Option<&Tensor>) -> Result<Tensor> {
        let q = self.q.forward(x)?;
        self.o
            .forward(&ops::attention(&q, &kv.k, &kv.v, mask, self.heads)?)
    }

    /// The attention with adapters merged.
    pub fn merged(&self) -> Result<Self> {
        Ok(Self {
            q: self.q.merged()?,
            k: self.k.merged()?,
            v: self.v.merged()?,
            o: self.o.merged()?,
            heads: self.heads,
        })
    }
}

/// Sinusoidal embedding of timesteps `t` (shape `(b,)`, in [0, 1]) into `dim` features, with
/// periods from 1 to 10,000 on the scale t·1000.
pub fn timestep_embedding(t: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let device = t.device();
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10_000f32.ln()) * i as f32 / half as f32).exp())
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), device)?;
    let args = (t.to_dtype(DType::F32)?.unsqueeze(1)? * 1000.0)?.broadcast_mul(&freqs)?;
    Tensor::cat(&[args.cos()?, args.sin()?], 1)
}

/// Fixed 2-D sin-cos position embeddings for a `grid`×`grid` patch layout: `(1, grid², width)`.
pub fn sincos_2d(grid: usize, width: usize, device: &Device) -> Result<Tensor> {
    let quarter = width / 4;
    let omega: Vec<f32> = (0..quarter)
        .map(|i| 1.0 / 10_000f32.powf(i as f32 / quarter as f32))
        .collect();
    let mut data = Vec::with_capacity(grid * grid * width);
    for row in 0..grid {
        for col in 0..grid {
            for pos in [row as f32, col as f32] {
                data.extend(omega.iter().map(|w| (pos * w).sin()));
                data.extend(omega.iter().map(|w| (pos * w).cos()));
            }
        }
    }
    Tensor::from_vec(data, (1, grid * grid, width), device)
}

/// Mean over the last dimension, keeping it.
pub fn mean_last(x: &Tensor) -> Result<Tensor> {
    x.mean_keepdim(D::Minus1)
}
