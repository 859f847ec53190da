//! Reading a Hugging Face model folder: its files, `config.json`, and the tensors of
//! `model.safetensors` checked against the list of tensors an architecture implies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{LayerNorm, Linear};
use serde::de::DeserializeOwned;

use super::ReferenceError;

/// `dir/name`, or which file is missing from which kind of folder.
pub(super) fn require(
    dir: &Path,
    name: &str,
    hint: &'static str,
) -> Result<PathBuf, ReferenceError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ReferenceError::MissingFile { path, hint })
    }
}

/// `config.json` of `dir`, parsed into the keys an encoder reads.
pub(super) fn read_config<T: DeserializeOwned>(
    dir: &Path,
    hint: &'static str,
) -> Result<T, ReferenceError> {
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
pub(super) enum Init {
    Normal(f32),
    Const(f32),
}

/// One tensor of an architecture in HF naming: the single list both the loader's checks and the
/// writer's output come from, so the two cannot drift apart.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    pub(super) name: String,
    pub(super) shape: Vec<usize>,
    pub(super) init: Init,
    /// Written by the writer but not needed for inference (DINOv2's `mask_token`, CLIP's
    /// `logit_scale`), so a checkpoint without it still loads.
    optional: bool,
}

/// A spec list under construction, with helpers for the layer kinds both architectures share.
pub(super) struct Specs(pub(super) Vec<Spec>);

impl Specs {
    /// A required tensor.
    pub(super) fn push(&mut self, name: String, shape: &[usize], init: Init) {
        self.0.push(Spec {
            name,
            shape: shape.to_vec(),
            init,
            optional: false,
        });
    }

    /// A tensor the loaders accept the absence of.
    pub(super) fn optional(&mut self, name: String, shape: &[usize], init: Init) {
        self.push(name, shape, init);
        if let Some(last) = self.0.last_mut() {
            last.optional = true;
        }
    }

    /// A linear layer `(out, in)` with its bias: weights at 1/√fan-in so random activations stay
    /// O(1) through depth, biases small but nonzero so that a bias lost in loading shows.
    pub(super) fn linear(&mut self, prefix: &str, inp: usize, out: usize, bias: bool) {
        self.push(
            format!("{prefix}.weight"),
            &[out, inp],
            Init::Normal(1.0 / (inp as f32).sqrt()),
        );
        if bias {
            self.push(format!("{prefix}.bias"), &[out], Init::Normal(0.02));
        }
    }

    /// A layer norm's weight (ones) and bias (zeros).
    pub(super) fn layer_norm(&mut self, prefix: &str, dim: usize) {
        self.push(format!("{prefix}.weight"), &[dim], Init::Const(1.0));
        self.push(format!("{prefix}.bias"), &[dim], Init::Const(0.0));
    }
}

/// The tensors of one safetensors file, checked against specs before any model is built, so a
/// missing or misshapen tensor is reported by its HF name and the file it was looked for in.
pub(super) struct Weights {
    path: PathBuf,
    pub(super) tensors: HashMap<String, Tensor>,
}

impl Weights {
    /// Loads `model.safetensors` of `dir` onto `device`.
    pub(super) fn open(
        dir: &Path,
        device: &Device,
        hint: &'static str,
    ) -> Result<Self, ReferenceError> {
        let path = require(dir, "model.safetensors", hint)?;
        let tensors = candle_core::safetensors::load(&path, device).map_err(|source| {
            ReferenceError::Weights {
                path: path.clone(),
                source,
            }
        })?;
        Ok(Self { path, tensors })
    }

    /// Every required tensor of `specs` present with its shape.
    pub(super) fn check(&self, specs: &[Spec]) -> Result<(), ReferenceError> {
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
    pub(super) fn get(&self, name: &str) -> Result<Tensor, ReferenceError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| ReferenceError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        Ok(t.to_dtype(DType::F32)?)
    }

    /// The linear layer stored under `prefix`.
    pub(super) fn linear(&self, prefix: &str, bias: bool) -> Result<Linear, ReferenceError> {
        let b = if bias {
            Some(self.get(&format!("{prefix}.bias"))?)
        } else {
            None
        };
        Ok(Linear::new(self.get(&format!("{prefix}.weight"))?, b))
    }

    /// The layer norm stored under `prefix`.
    pub(super) fn layer_norm(&self, prefix: &str, eps: f64) -> Result<LayerNorm, ReferenceError> {
        Ok(LayerNorm::new(
            self.get(&format!("{prefix}.weight"))?,
            self.get(&format!("{prefix}.bias"))?,
            eps,
        ))
    }
}
