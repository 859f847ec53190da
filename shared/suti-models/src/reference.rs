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

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use suti_rng::SplitMix64;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

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

// ---------------------------------------------------------------------------------------------
// Folder reading shared by both encoders.

fn require(dir: &Path, name: &str, hint: &'static str) -> Result<PathBuf, ReferenceError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ReferenceError::MissingFile { path, hint })
    }
}

fn read_config<T: DeserializeOwned>(dir: &Path, hint: &'static str) -> Result<T, ReferenceError> {
    let path = require(dir, "config.json", hint)?;
    let bytes = std::fs::read(&path).map_err(|source| ReferenceError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ReferenceError::Config {
        path,
        message: e.to_string(),
    })
}

/// How a writer initialises a tensor; the loaders only use the name and shape.
#[derive(Debug, Clone, Copy)]
enum Init {
    Normal(f32),
    Const(f32),
}

/// One tensor of an architecture in HF naming: the single list both the loader's checks and the
/// writer's output come from, so the two cannot drift apart.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    shape: Vec<usize>,
    init: Init,
    /// Written by the writer but not needed for inference (DINOv2's `mask_token`, CLIP's
    /// `logit_scale`), so a checkpoint without it still loads.
    optional: bool,
}

/// A spec list under construction, with helpers for the layer kinds both architectures share.
struct Specs(Vec<Spec>);

impl Specs {
    fn push(&mut self, name: String, shape: &[usize], init: Init) {
        self.0.push(Spec {
            name,
            shape: shape.to_vec(),
            init,
            optional: false,
        });
    }

    fn optional(&mut self, name: String, shape: &[usize], init: Init) {
        self.push(name, shape, init);
        if let Some(last) = self.0.last_mut() {
            last.optional = true;
        }
    }

    /// A linear layer `(out, in)` with its bias: weights at 1/√fan-in so random activations stay
    /// O(1) through depth, biases small but nonzero so that a bias lost in loading shows.
    fn linear(&mut self, prefix: &str, inp: usize, out: usize, bias: bool) {
        self.push(
            format!("{prefix}.weight"),
            &[out, inp],
            Init::Normal(1.0 / (inp as f32).sqrt()),
        );
        if bias {
            self.push(format!("{prefix}.bias"), &[out], Init::Normal(0.02));
        }
    }

    fn layer_norm(&mut self, prefix: &str, dim: usize) {
        self.push(format!("{prefix}.weight"), &[dim], Init::Const(1.0));
        self.push(format!("{prefix}.bias"), &[dim], Init::Const(0.0));
    }
}

/// The tensors of one safetensors file, checked against specs before any model is built, so a
/// missing or misshapen tensor is reported by its HF name and the file it was looked for in.
struct Weights {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    fn open(dir: &Path, device: &Device, hint: &'static str) -> Result<Self, ReferenceError> {
        let path = require(dir, "model.safetensors", hint)?;
        let tensors = candle_core::safetensors::load(&path, device).map_err(|source| {
            ReferenceError::Weights {
                path: path.clone(),
                source,
            }
        })?;
        Ok(Self { path, tensors })
    }

    fn check(&self, specs: &[Spec]) -> Result<(), ReferenceError> {
        for spec in specs {
            match self.tensors.get(&spec.name) {
                None if spec.optional => {}
                None => {
                    return Err(ReferenceError::MissingTensor {
                        path: self.path.clone(),
                        name: spec.name.clone(),
                    });
                }
                Some(t) if t.dims() != spec.shape.as_slice() => {
                    return Err(ReferenceError::TensorShape {
                        path: self.path.clone(),
                        name: spec.name.clone(),
                        expected: spec.shape.clone(),
                        got: t.dims().to_vec(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// A checked tensor as f32 (checkpoints may store f16 or bf16).
    fn get(&self, name: &str) -> Result<Tensor, ReferenceError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| ReferenceError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        Ok(t.to_dtype(DType::F32)?)
    }

    fn linear(&self, prefix: &str, bias: bool) -> Result<Linear, ReferenceError> {
        let b = if bias {
            Some(self.get(&format!("{prefix}.bias"))?)
        } else {
            None
        };
        Ok(Linear::new(self.get(&format!("{prefix}.weight"))?, b))
    }

    fn layer_norm(&self, prefix: &str, eps: f64) -> Result<LayerNorm, ReferenceError> {
        Ok(LayerNorm::new(
            self.get(&format!("{prefix}.weight"))?,
            self.get(&format!("{prefix}.bias"))?,
            eps,
        ))
    }
}

/// Writes specs as an HF-style safetensors file (f32, `{"format": "pt"}` metadata, which
/// transformers checks), each tensor drawn from its own stream so the values do not depend on
/// the order of the list.
fn write_specs(path: &Path, specs: &[Spec], seed: u64) {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = specs
        .iter()
        .map(|spec| {
            let n: usize = spec.shape.iter().product();
            let values: Vec<f32> = match spec.init {
                Init::Normal(std) => {
                    let mut rng = SplitMix64::derive(seed, &spec.name);
                    rng.normals(n).into_iter().map(|v| v * std).collect()
                }
                Init::Const(c) => vec![c; n],
            };
            let bytes = values.iter().flat_map(|v: &f32| v.to_le_bytes()).collect();
            (spec.name.clone(), spec.shape.clone(), bytes)
        })
        .collect();
    let views = data.iter().map(|(name, shape, bytes)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .expect("tensor bytes match their shape");
        (name.as_str(), view)
    });
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn write_json(path: &Path, value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// Image preprocessing and shared maths.

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

/// PyTorch's bicubic kernel weights (A = −0.75) for the four taps around a fractional offset `t`.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// Source taps and weights of each output index, as ATen's `upsample_bicubic2d` with
/// `align_corners=False` and an explicit output size: source = (dst + ½)·in/out − ½, unclamped,
/// with out-of-range taps clamped to the edge.
fn cubic_taps(inp: usize, out: usize) -> Vec<([usize; 4], [f64; 4])> {
    let scale = inp as f64 / out as f64;
    (0..out)
        .map(|o| {
            let real = scale * (o as f64 + 0.5) - 0.5;
            let base = real.floor();
            let taps = std::array::from_fn(|i| {
                (base as i64 - 1 + i as i64).clamp(0, inp as i64 - 1) as usize
            });
            (taps, cubic_weights(real - base))
        })
        .collect()
}

/// Bicubic resize of a channels-last grid `(in_h, in_w, c)` to `(out_h, out_w, c)`, as
/// `F.interpolate(mode="bicubic", align_corners=False)` on the channels-first view (the kernel is
/// separable, so rows then columns is the same sum).
fn bicubic_resize(
    src: &[f32],
    (in_h, in_w): (usize, usize),
    c: usize,
    (out_h, out_w): (usize, usize),
) -> Vec<f32> {
    let xs = cubic_taps(in_w, out_w);
    let ys = cubic_taps(in_h, out_h);
    // Along x first: (in_h, out_w, c).
    let mut mid = vec![0f64; in_h * out_w * c];
    for y in 0..in_h {
        for (ox, (taps, w)) in xs.iter().enumerate() {
            let dst = &mut mid[(y * out_w + ox) * c..][..c];
            for (&tx, &wx) in taps.iter().zip(w) {
                let row = &src[(y * in_w + tx) * c..][..c];
                for (d, &s) in dst.iter_mut().zip(row) {
                    *d += wx * s as f64;
                }
            }
        }
    }
    let mut out = vec![0f32; out_h * out_w * c];
    for (oy, (taps, w)) in ys.iter().enumerate() {
        for ox in 0..out_w {
            let dst = &mut out[(oy * out_w + ox) * c..][..c];
            let mut acc = vec![0f64; c];
            for (&ty, &wy) in taps.iter().zip(w) {
                let row = &mid[(ty * out_w + ox) * c..][..c];
                for (a, &m) in acc.iter_mut().zip(row) {
                    *a += wy * m;
                }
            }
            for (d, a) in dst.iter_mut().zip(acc) {
                *d = a as f32;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// DINOv2.

const DINO_HINT: &str =
    "a Hugging Face facebook/dinov2-small folder: config.json, model.safetensors";

/// The `Dinov2Config` keys this encoder reads, with HF's defaults.
#[derive(Debug, Clone, Deserialize)]
struct Dinov2Config {
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

    fn specs(&self) -> Vec<Spec> {
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
    position: Tensor,
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

/// Writes a DINOv2 folder in the HF layout (`config.json`, `model.safetensors`) with random
/// weights from `seed`: `tiny` is hidden 32, 2 layers, 4 heads on a 4×4 stored grid (so the
/// position embeddings are resized as for the real model); otherwise the real ViT-S/14 shapes
/// of `facebook/dinov2-small` (22 M parameters, 88 MB). For tests: these weights mean nothing.
///
/// # Panics
/// If the folder cannot be created or written.
pub fn write_random_dinov2(dir: &Path, seed: u64, tiny: bool) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let (hidden, layers, heads, image_size) = if tiny {
        (32, 2, 4, 56)
    } else {
        (384, 12, 6, 518)
    };
    let config = serde_json::json!({
        "architectures": ["Dinov2Model"],
        "model_type": "dinov2",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "mlp_ratio": 4,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
        "image_size": image_size,
        "patch_size": 14,
        "num_channels": 3,
        "qkv_bias": true,
        "layerscale_value": 1.0,
        "use_swiglu_ffn": false,
        "drop_path_rate": 0.0,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    });
    let cfg: Dinov2Config = serde_json::from_value(config.clone()).expect("config round-trips");
    write_json(&dir.join("config.json"), &config);
    write_specs(&dir.join("model.safetensors"), &cfg.specs(), seed);
}

// ---------------------------------------------------------------------------------------------
// CLIP.

const CLIP_HINT: &str = "a Hugging Face openai/clip-vit-base-patch32 folder: config.json, \
                         model.safetensors, tokenizer.json";

/// The `CLIPConfig` keys this encoder reads, with HF's defaults.
#[derive(Debug, Clone, Deserialize)]
struct HfClipConfig {
    #[serde(default)]
    text_config: HfClipText,
    #[serde(default)]
    vision_config: HfClipVision,
    /// HF's `CLIPModel` sizes both projections from the top-level value, not the sub-configs'.
    #[serde(default = "d_512")]
    projection_dim: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct HfClipText {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: String,
    layer_norm_eps: f64,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct HfClipVision {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_channels: usize,
    image_size: usize,
    patch_size: usize,
    hidden_act: String,
    layer_norm_eps: f64,
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

    fn specs(&self) -> Vec<Spec> {
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
    tokenizer: Tokenizer,
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

/// The words of the test tokenizer's vocabulary (DreamBench-like prompts).
const TEST_WORDS: &[&str] = &[
    "a",
    "an",
    "photo",
    "of",
    "the",
    "dog",
    "cat",
    "backpack",
    "red",
    "blue",
    "on",
    "in",
    "beach",
    "snow",
    "with",
    "city",
    "background",
    "toy",
    "sks",
    "wearing",
    "hat",
    ",",
    ".",
];

/// A small but real HF `tokenizer.json`: a WordLevel model over [`TEST_WORDS`], lower-casing,
/// whitespace pre-tokenization, and CLIP's specials added by a `RobertaProcessing` post-processor
/// as in OpenAI's file. The specials take the two highest ids, as in CLIP's vocabulary.
fn test_tokenizer_json(vocab_size: usize) -> serde_json::Value {
    let (sot, eot) = (vocab_size - 2, vocab_size - 1);
    let mut vocab = serde_json::Map::new();
    for (i, word) in TEST_WORDS.iter().enumerate() {
        vocab.insert((*word).into(), i.into());
    }
    vocab.insert(CLIP_SOT.into(), sot.into());
    vocab.insert(CLIP_EOT.into(), eot.into());
    let special = |id: usize, content: &str| {
        serde_json::json!({
            "id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        })
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(sot, CLIP_SOT), special(eot, CLIP_EOT)],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "RobertaProcessing",
            "sep": [CLIP_EOT, eot],
            "cls": [CLIP_SOT, sot],
            "trim_offsets": false,
            "add_prefix_space": false
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": CLIP_EOT}
    })
}

/// Writes a CLIP folder in the HF layout (`config.json`, `model.safetensors`, `tokenizer.json`)
/// with random weights from `seed`: `tiny` is width 32, 2 layers per tower, 64-pixel images in
/// 32-pixel patches, 16 tokens, a 16-d joint space; otherwise the real ViT-B/32 shapes of
/// `openai/clip-vit-base-patch32` (151 M parameters, 605 MB). The tokenizer is a small WordLevel
/// one (not CLIP's BPE) with CLIP's special tokens. For tests: these weights mean nothing.
///
/// # Panics
/// If the folder cannot be created or written.
pub fn write_random_clip(dir: &Path, seed: u64, tiny: bool) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let vocab_size = if tiny { TEST_WORDS.len() + 2 } else { 49408 };
    let (text, vision, projection_dim) = if tiny {
        (
            HfClipText {
                vocab_size,
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                max_position_embeddings: 16,
                ..Default::default()
            },
            HfClipVision {
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                image_size: 64,
                patch_size: 32,
                ..Default::default()
            },
            16,
        )
    } else {
        (HfClipText::default(), HfClipVision::default(), 512)
    };
    let config = serde_json::json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": projection_dim,
        "logit_scale_init_value": 2.6592,
        "initializer_factor": 1.0,
        "torch_dtype": "float32",
        "text_config": {
            "model_type": "clip_text_model",
            "vocab_size": text.vocab_size,
            "hidden_size": text.hidden_size,
            "intermediate_size": text.intermediate_size,
            "num_hidden_layers": text.num_hidden_layers,
            "num_attention_heads": text.num_attention_heads,
            "max_position_embeddings": text.max_position_embeddings,
            "hidden_act": text.hidden_act,
            "layer_norm_eps": text.layer_norm_eps,
            "projection_dim": projection_dim,
            "bos_token_id": vocab_size - 2,
            "eos_token_id": vocab_size - 1,
            "pad_token_id": vocab_size - 1,
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size,
            "num_hidden_layers": vision.num_hidden_layers,
            "num_attention_heads": vision.num_attention_heads,
            "num_channels": vision.num_channels,
            "image_size": vision.image_size,
            "patch_size": vision.patch_size,
            "hidden_act": vision.hidden_act,
            "layer_norm_eps": vision.layer_norm_eps,
            "projection_dim": projection_dim,
        },
    });
    let cfg = HfClipConfig {
        text_config: text,
        vision_config: vision,
        projection_dim,
    };
    write_json(&dir.join("config.json"), &config);
    write_json(
        &dir.join("tokenizer.json"),
        &test_tokenizer_json(vocab_size),
    );
    write_specs(&dir.join("model.safetensors"), &cfg.specs(), seed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(seed: u64, b: usize, h: usize, w: usize) -> Tensor {
        let mut rng = SplitMix64::new(seed);
        let data: Vec<f32> = (0..b * 3 * h * w).map(|_| rng.unit()).collect();
        Tensor::from_vec(data, (b, 3, h, w), &Device::Cpu).unwrap()
    }

    /// Every row unit length, every value finite, and rows 0 and 1 clearly apart.
    fn check_rows(e: &Tensor, b: usize, width: usize) {
        assert_eq!(e.dims(), &[b, width]);
        let rows: Vec<Vec<f32>> = e.to_vec2().unwrap();
        for row in &rows {
            assert!(row.iter().all(|v| v.is_finite()), "{row:?}");
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        }
        let cos: f32 = rows[0].iter().zip(&rows[1]).map(|(a, b)| a * b).sum();
        assert!(
            cos < 0.9999,
            "different inputs gave the same embedding (cos {cos})"
        );
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// Rewrites `model.safetensors` without one tensor.
    fn drop_tensor(dir: &Path, name: &str) {
        let path = dir.join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert!(tensors.remove(name).is_some(), "{name} was not written");
        candle_core::safetensors::save(&tensors, &path).unwrap();
    }

    #[test]
    fn bicubic_matches_aten() {
        // Hand-evaluated from ATen's formula: [0, 1, 2, 3] → 2 samples at sources 0.5 and 2.5,
        // t = ½ (weights −0.09375, 0.59375, 0.59375, −0.09375), edge taps clamped.
        let out = bicubic_resize(&[0.0, 1.0, 2.0, 3.0], (1, 4), 1, (1, 2));
        assert!(
            (out[0] - 0.40625).abs() < 1e-6 && (out[1] - 2.59375).abs() < 1e-6,
            "{out:?}"
        );
        // A constant field stays constant (weights sum to one), up and down.
        for (inp, out) in [(4, 16), (37, 16)] {
            let src = vec![0.7f32; inp * inp * 2];
            let r = bicubic_resize(&src, (inp, inp), 2, (out, out));
            assert!(r.iter().all(|v| (v - 0.7).abs() < 1e-6));
        }
        // The same size is the identity.
        let src: Vec<f32> = (0..9).map(|i| i as f32 * 0.37).collect();
        let r = bicubic_resize(&src, (3, 3), 1, (3, 3));
        assert!(src.iter().zip(&r).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn dinov2_tiny_loads_and_embeds() {
        let dir = tempfile::tempdir().unwrap();
        write_random_dinov2(dir.path(), 7, true);
        let enc = Dinov2Encoder::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(enc.hidden_size(), 32);
        // Two different images of a size other than 224: resized, then embedded.
        let x = images(1, 2, 40, 56);
        let e = enc.embed(&x).unwrap();
        check_rows(&e, 2, 32);
        // Batching does not change a row.
        let alone = enc.embed(&x.narrow(0, 1, 1).unwrap()).unwrap();
        assert!(max_abs_diff(&alone, &e.narrow(0, 1, 1).unwrap()) < 1e-5);
        // The same seed writes the same weights.
        let again = tempfile::tempdir().unwrap();
        write_random_dinov2(again.path(), 7, true);
        let e2 = Dinov2Encoder::load(again.path(), &Device::Cpu)
            .unwrap()
            .embed(&x)
            .unwrap();
        assert!(max_abs_diff(&e, &e2) == 0.0);
        assert_eq!(enc.embed(&images(2, 0, 8, 8)).unwrap().dims(), &[0, 32]);
    }

    #[test]
    fn dinov2_errors_name_the_missing_piece() {
        let dir = tempfile::tempdir().unwrap();
        write_random_dinov2(dir.path(), 3, true);
        drop_tensor(dir.path(), "encoder.layer.1.layer_scale2.lambda1");
        let err = Dinov2Encoder::load(dir.path(), &Device::Cpu).unwrap_err();
        assert!(
            matches!(&err, ReferenceError::MissingTensor { name, .. } if name == "encoder.layer.1.layer_scale2.lambda1"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("encoder.layer.1.layer_scale2.lambda1")
        );

        // The optional mask token may be absent.
        write_random_dinov2(dir.path(), 3, true);
        drop_tensor(dir.path(), "embeddings.mask_token");
        Dinov2Encoder::load(dir.path(), &Device::Cpu).unwrap();

        // A config that disagrees with the weights names the tensor and both shapes.
        let cfg_path = dir.path().join("config.json");
        let text = std::fs::read_to_string(&cfg_path).unwrap();
        let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
        cfg["mlp_ratio"] = 2.into();
        write_json(&cfg_path, &cfg);
        let err = Dinov2Encoder::load(dir.path(), &Device::Cpu).unwrap_err();
        assert!(
            matches!(&err, ReferenceError::TensorShape { name, .. } if name == "encoder.layer.0.mlp.fc1.weight"),
            "{err}"
        );

        std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
        let err = Dinov2Encoder::load(dir.path(), &Device::Cpu).unwrap_err();
        assert!(
            matches!(&err, ReferenceError::MissingFile { path, .. } if path.ends_with("model.safetensors"))
        );
        assert!(err.to_string().contains("model.safetensors"), "{err}");
        std::fs::remove_file(cfg_path).unwrap();
        let err = Dinov2Encoder::load(dir.path(), &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }

    /// The real ViT-S/14 layout (518-pixel grid of 37×37 positions resized to 16×16) loads and
    /// runs.
    #[test]
    fn dinov2_full_size_layout_loads() {
        let dir = tempfile::tempdir().unwrap();
        let t = std::time::Instant::now();
        write_random_dinov2(dir.path(), 11, false);
        let written = t.elapsed();
        let enc = Dinov2Encoder::load(dir.path(), &Device::Cpu).unwrap();
        let loaded = t.elapsed();
        assert_eq!(enc.hidden_size(), 384);
        assert_eq!(enc.position.dims(), &[1, 257, 384]);
        let e = enc.embed(&images(5, 2, 64, 64)).unwrap();
        check_rows(&e, 2, 384);
        eprintln!(
            "dinov2 full: write {written:.2?}, load {:.2?}, embed 2 {:.2?}",
            loaded - written,
            t.elapsed() - loaded
        );
    }

    #[test]
    fn clip_tiny_loads_and_embeds() {
        let dir = tempfile::tempdir().unwrap();
        write_random_clip(dir.path(), 9, true);
        let enc = ClipEncoder::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!((enc.projection_dim(), enc.image_size()), (16, 64));
        let x = images(4, 2, 48, 48);
        let ei = enc.embed_images(&x).unwrap();
        check_rows(&ei, 2, 16);
        let texts = vec![
            "a photo of sks dog on the beach".to_string(),
            "A red backpack in the snow".to_string(),
        ];
        let et = enc.embed_texts(&texts).unwrap();
        check_rows(&et, 2, 16);
        // Pooling at the first EOT: a text's embedding does not depend on its batch, and a text
        // longer than the context is truncated rather than rejected.
        let alone = enc.embed_texts(&texts[1..]).unwrap();
        assert!(max_abs_diff(&alone, &et.narrow(0, 1, 1).unwrap()) < 1e-5);
        let long = vec!["a photo of the dog ".repeat(10)];
        check_rows(
            &Tensor::cat(
                &[enc.embed_texts(&long).unwrap(), et.narrow(0, 0, 1).unwrap()],
                0,
            )
            .unwrap(),
            2,
            16,
        );
        // CLIP-T is then a plain dot product of unit rows.
        let cos = (ei * et).unwrap().sum(1).unwrap().to_vec1::<f32>().unwrap();
        assert!(cos.iter().all(|c| c.abs() <= 1.0 + 1e-5));
        assert_eq!(enc.embed_texts(&[]).unwrap().dims(), &[0, 16]);
    }

    #[test]
    fn clip_tokenizer_is_clip_shaped() {
        let dir = tempfile::tempdir().unwrap();
        write_random_clip(dir.path(), 1, true);
        let enc = ClipEncoder::load(dir.path(), &Device::Cpu).unwrap();
        let e = enc.tokenizer.encode("A photo of a dog", true).unwrap();
        let ids = e.get_ids();
        let n = TEST_WORDS.len() as u32;
        assert_eq!(ids.len(), 16);
        assert_eq!(&ids[..7], &[n, 0, 2, 3, 0, 5, n + 1]);
        assert!(ids[7..].iter().all(|&t| t == n + 1), "EOT pads: {ids:?}");
        let long = enc
            .tokenizer
            .encode("dog ".repeat(40).as_str(), true)
            .unwrap();
        assert_eq!(long.get_ids().len(), 16);
        assert_eq!(long.get_ids()[15], n + 1, "truncation keeps the EOT");
    }

    #[test]
    fn clip_errors_name_the_missing_piece() {
        let dir = tempfile::tempdir().unwrap();
        write_random_clip(dir.path(), 2, true);
        // candle's CLIP would replace a missing class embedding with random values; the check
        // refuses instead.
        drop_tensor(dir.path(), "vision_model.embeddings.class_embedding");
        let err = ClipEncoder::load(dir.path(), &Device::Cpu).err().unwrap();
        assert!(
            err.to_string()
                .contains("tensor `vision_model.embeddings.class_embedding` is missing"),
            "{err}"
        );
        write_random_clip(dir.path(), 2, true);
        drop_tensor(dir.path(), "text_model.encoder.layers.1.mlp.fc2.bias");
        let err = ClipEncoder::load(dir.path(), &Device::Cpu).err().unwrap();
        assert!(
            matches!(&err, ReferenceError::MissingTensor { name, .. } if name == "text_model.encoder.layers.1.mlp.fc2.bias"),
            "{err}"
        );
        write_random_clip(dir.path(), 2, true);
        drop_tensor(dir.path(), "logit_scale");
        ClipEncoder::load(dir.path(), &Device::Cpu).unwrap();

        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        let err = ClipEncoder::load(dir.path(), &Device::Cpu).err().unwrap();
        assert!(
            matches!(&err, ReferenceError::MissingFile { path, .. } if path.ends_with("tokenizer.json")),
            "{err}"
        );
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        let err = ClipEncoder::load(dir.path(), &Device::Cpu).err().unwrap();
        assert!(matches!(&err, ReferenceError::Tokenizer { .. }), "{err}");

        // An activation candle's CLIP does not implement is refused, not silently replaced.
        write_random_clip(dir.path(), 2, true);
        let cfg_path = dir.path().join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg["vision_config"]["hidden_act"] = "gelu".into();
        write_json(&cfg_path, &cfg);
        let err = ClipEncoder::load(dir.path(), &Device::Cpu).err().unwrap();
        assert!(
            err.to_string().contains("vision_config.hidden_act"),
            "{err}"
        );
        std::fs::remove_file(cfg_path).unwrap();
        let err = ClipEncoder::load(dir.path(), &Device::Cpu).err().unwrap();
        assert!(err.to_string().contains("config.json is missing"), "{err}");
    }

    /// The real ViT-B/32 layout loads and runs (605 MB of random weights: slow on two cores).
    #[test]
    #[ignore = "writes and loads 605 MB"]
    fn clip_full_size_layout_loads() {
        let dir = tempfile::tempdir().unwrap();
        let t = std::time::Instant::now();
        write_random_clip(dir.path(), 13, false);
        let written = t.elapsed();
        let enc = ClipEncoder::load(dir.path(), &Device::Cpu).unwrap();
        let loaded = t.elapsed();
        assert_eq!((enc.projection_dim(), enc.image_size()), (512, 224));
        check_rows(&enc.embed_images(&images(6, 2, 64, 64)).unwrap(), 2, 512);
        let texts = ["a photo of a dog".to_string(), "a red cat".to_string()];
        check_rows(&enc.embed_texts(&texts).unwrap(), 2, 512);
        eprintln!(
            "clip full: write {written:.2?}, load {:.2?}, embed {:.2?}",
            loaded - written,
            t.elapsed() - loaded
        );
    }
}
