//! DINOv2 (HF `Dinov2Model`) on candle_nn layers: its config, the tensors it implies, and the
//! encoder whose CLS token gives the DINO score.

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, LayerNorm, Linear};
use serde::Deserialize;

use super::bicubic::bicubic_resize;
use super::folder::{Init, Spec, Specs, Weights, read_config};
use super::{
    DINO_RESOLUTION, IMAGENET_MEAN, IMAGENET_STD, ReferenceError, l2_normalize, preprocess,
};

const DINO_HINT: &str =
    "a Hugging Face facebook/dinov2-small folder: config.json, model.safetensors";

/// The `Dinov2Config` keys this encoder reads, with HF's defaults.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Dinov2Config {
    #[serde(default = "d_768")]
    hidden_size: usize,
    #[serde(default = "d_12")]
    num_hidden_layers: usize,
    #[serde(default = "d_12")]
    num_attention_heads: usize,
    #[serde(default = "d_4f")]
    mlp_ratio: f64,
    #[serde(default = "d_gelu")]
    hidden_act: String,
    #[serde(default = "d_1e6")]
    layer_norm_eps: f64,
    #[serde(default = "d_224")]
    image_size: usize,
    #[serde(default = "d_14")]
    patch_size: usize,
    #[serde(default = "d_3")]
    num_channels: usize,
    #[serde(default = "d_true")]
    qkv_bias: bool,
    #[serde(default = "d_1f")]
    layerscale_value: f64,
    #[serde(default)]
    use_swiglu_ffn: bool,
}

fn d_768() -> usize {
    768
}
fn d_12() -> usize {
    12
}
fn d_4f() -> f64 {
    4.0
}
fn d_gelu() -> String {
    "gelu".into()
}
fn d_1e6() -> f64 {
    1e-6
}
fn d_224() -> usize {
    224
}
fn d_14() -> usize {
    14
}
fn d_3() -> usize {
    3
}
fn d_true() -> bool {
    true
}
fn d_1f() -> f64 {
    1.0
}

impl Dinov2Config {
    fn mlp_hidden(&self) -> usize {
        // HF: int(hidden_size * mlp_ratio).
        (self.hidden_size as f64 * self.mlp_ratio) as usize
    }

    fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    fn validate(&self, path: &Path) -> Result<Act, ReferenceError> {
        let bad = |message: String| ReferenceError::Config {
            path: path.to_path_buf(),
            message,
        };
        if self.use_swiglu_ffn {
            return Err(bad(
                "use_swiglu_ffn (DINOv2 giant) is not implemented".into()
            ));
        }
        if self.num_channels != 3 {
            return Err(bad(format!(
                "num_channels {} (only RGB is supported)",
                self.num_channels
            )));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.patch_size == 0
            || !DINO_RESOLUTION.is_multiple_of(self.patch_size)
            || self.grid() == 0
        {
            return Err(bad(format!(
                "patch_size {} must divide the {DINO_RESOLUTION}-pixel input and image_size {}",
                self.patch_size, self.image_size
            )));
        }
        Act::parse(&self.hidden_act).ok_or_else(|| {
            bad(format!(
                "hidden_act {:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh, quick_gelu, relu, silu)",
                self.hidden_act
            ))
        })
    }

    /// Every tensor this config implies, in HF naming.
    pub(super) fn specs(&self) -> Vec<Spec> {
        let d = self.hidden_size;
        let (c, p) = (self.num_channels, self.patch_size);
        let mut s = Specs(Vec::new());
        s.push(
            "embeddings.cls_token".into(),
            &[1, 1, d],
            Init::Normal(0.02),
        );
        s.optional("embeddings.mask_token".into(), &[1, d], Init::Const(0.0));
        s.push(
            "embeddings.position_embeddings".into(),
            &[1, self.grid() * self.grid() + 1, d],
            Init::Normal(0.02),
        );
        s.push(
            "embeddings.patch_embeddings.projection.weight".into(),
            &[d, c, p, p],
            Init::Normal(1.0 / ((c * p * p) as f32).sqrt()),
        );
        s.push(
            "embeddings.patch_embeddings.projection.bias".into(),
            &[d],
            Init::Normal(0.02),
        );
        let ls = Init::Const(self.layerscale_value as f32);
        for i in 0..self.num_hidden_layers {
            let l = format!("encoder.layer.{i}");
            s.layer_norm(&format!("{l}.norm1"), d);
            for proj in ["query", "key", "value"] {
                s.linear(
                    &format!("{l}.attention.attention.{proj}"),
                    d,
                    d,
                    self.qkv_bias,
                );
            }
            s.linear(&format!("{l}.attention.output.dense"), d, d, true);
            s.push(format!("{l}.layer_scale1.lambda1"), &[d], ls);
            s.layer_norm(&format!("{l}.norm2"), d);
            s.linear(&format!("{l}.mlp.fc1"), d, self.mlp_hidden(), true);
            s.linear(&format!("{l}.mlp.fc2"), self.mlp_hidden(), d, true);
            s.push(format!("{l}.layer_scale2.lambda1"), &[d], ls);
        }
        s.layer_norm("layernorm", d);
        s.0
    }
}

/// The MLP activations HF configs name (`ACT2FN`).
#[derive(Debug, Clone, Copy)]
enum Act {
    GeluErf,
    GeluTanh,
    QuickGelu,
    Relu,
    Silu,
}

impl Act {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            // HF's "gelu" is the exact, erf-based GELU.
            "gelu" => Self::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Self::GeluTanh,
            "quick_gelu" => Self::QuickGelu,
            "relu" => Self::Relu,
            "silu" | "swish" => Self::Silu,
            _ => return None,
        })
    }

    fn forward(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::GeluErf => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Self::Relu => x.relu(),
            Self::Silu => x.silu(),
        }
    }
}

/// One pre-norm ViT block with DINOv2's layer scales (HF `Dinov2Layer`).
#[derive(Debug, Clone)]
struct DinoLayer {
    norm1: LayerNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    dense: Linear,
    scale1: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    scale2: Tensor,
}

impl DinoLayer {
    fn load(w: &Weights, i: usize, cfg: &Dinov2Config) -> Result<Self, ReferenceError> {
        let l = format!("encoder.layer.{i}");
        let eps = cfg.layer_norm_eps;
        Ok(Self {
            norm1: w.layer_norm(&format!("{l}.norm1"), eps)?,
            query: w.linear(&format!("{l}.attention.attention.query"), cfg.qkv_bias)?,
            key: w.linear(&format!("{l}.attention.attention.key"), cfg.qkv_bias)?,
            value: w.linear(&format!("{l}.attention.attention.value"), cfg.qkv_bias)?,
            dense: w.linear(&format!("{l}.attention.output.dense"), true)?,
            scale1: w.get(&format!("{l}.layer_scale1.lambda1"))?,
            norm2: w.layer_norm(&format!("{l}.norm2"), eps)?,
            fc1: w.linear(&format!("{l}.mlp.fc1"), true)?,
            fc2: w.linear(&format!("{l}.mlp.fc2"), true)?,
            scale2: w.get(&format!("{l}.layer_scale2.lambda1"))?,
        })
    }

    fn forward(&self, x: &Tensor, heads: usize, act: Act) -> candle_core::Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let head_dim = d / heads;
        let h = self.norm1.forward(x)?;
        let split = |t: Tensor| {
            t.reshape((b, n, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.query.forward(&h)?)?;
        let k = split(self.key.forward(&h)?)?;
        let v = split(self.value.forward(&h)?)?;
        let scores = (q.matmul(&k.t()?)? * (head_dim as f64).powf(-0.5))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        let x = (x + self.dense.forward(&ctx)?.broadcast_mul(&self.scale1)?)?;
        let h = act.forward(&self.fc1.forward(&self.norm2.forward(&x)?)?)?;
        x + self.fc2.forward(&h)?.broadcast_mul(&self.scale2)?
    }
}

/// DINOv2 (HF `Dinov2Model`, e.g. `facebook/dinov2-small`, ViT-S/14): the CLS token after the
/// final layer norm, whose cosine between a generated and a real image is the DINO score
/// (DreamBooth defined it with DINO v1 ViT-S/16; this is its DINOv2 form).
#[derive(Debug, Clone)]
pub struct Dinov2Encoder {
    patch_embed: Conv2d,
    cls_token: Tensor,
    /// Position embeddings already resized to the 224-pixel input's patch grid, `(1, 1 + g², d)`.
    pub(super) position: Tensor,
    layers: Vec<DinoLayer>,
    norm: LayerNorm,
    heads: usize,
    hidden: usize,
    act: Act,
}

impl Dinov2Encoder {
    /// Loads an HF DINOv2 folder (`config.json`, `model.safetensors`); every tensor the config
    /// implies is checked by name and shape before the model is built.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ReferenceError> {
        let cfg: Dinov2Config = read_config(dir, DINO_HINT)?;
        let act = cfg.validate(&dir.join("config.json"))?;
        let w = Weights::open(dir, device, DINO_HINT)?;
        w.check(&cfg.specs())?;
        let d = cfg.hidden_size;
        let patch_embed = Conv2d::new(
            w.get("embeddings.patch_embeddings.projection.weight")?,
            Some(w.get("embeddings.patch_embeddings.projection.bias")?),
            Conv2dConfig {
                stride: cfg.patch_size,
                ..Default::default()
            },
        );
        // HF interpolates the position embeddings on every forward; inputs here are always
        // resized to 224, so resizing once at load gives the same numbers.
        let stored = w.get("embeddings.position_embeddings")?;
        let (grid, target) = (cfg.grid(), DINO_RESOLUTION / cfg.patch_size);
        let position = if grid == target {
            stored
        } else {
            let cls = stored.i((.., ..1, ..))?;
            let patches: Vec<f32> = stored.i((0, 1.., ..))?.flatten_all()?.to_vec1()?;
            let resized = bicubic_resize(&patches, (grid, grid), d, (target, target));
            let resized = Tensor::from_vec(resized, (1, target * target, d), device)?;
            Tensor::cat(&[&cls, &resized], 1)?
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DinoLayer::load(&w, i, &cfg))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            patch_embed,
            cls_token: w.get("embeddings.cls_token")?,
            position,
            layers,
            norm: w.layer_norm("layernorm", cfg.layer_norm_eps)?,
            heads: cfg.num_attention_heads,
            hidden: d,
            act,
        })
    }

    /// Width of the embeddings (384 for ViT-S/14).
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// The device its weights live on.
    pub fn device(&self) -> &Device {
        self.cls_token.device()
    }

    /// `(b, 3, h, w)` RGB in [0, 1], any size → `(b, hidden)` unit rows: resized to 224×224
    /// (bilinear), ImageNet-normalised, CLS token after the final layer norm.
    pub fn embed(&self, images: &Tensor) -> candle_core::Result<Tensor> {
        let b = images.dim(0)?;
        if b == 0 {
            return Tensor::zeros((0, self.hidden), DType::F32, images.device());
        }
        let x = preprocess(images, DINO_RESOLUTION, IMAGENET_MEAN, IMAGENET_STD)?;
        let patches = self
            .patch_embed
            .forward(&x)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let cls = self.cls_token.broadcast_as((b, 1, self.hidden))?;
        let mut x = Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.position)?;
        for layer in &self.layers {
            x = layer.forward(&x, self.heads, self.act)?;
        }
        // The layer norm is per token, so normalising only the CLS token gives the same row.
        let cls = self.norm.forward(&x.i((.., 0..1, ..))?.contiguous()?)?;
        l2_normalize(&cls.squeeze(1)?)
    }
}
