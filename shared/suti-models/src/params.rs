//! Where a model's weights come from: fresh trainable variables initialised from a seed (so that
//! training is reproducible), or frozen tensors loaded from safetensors (memory-mapped, for
//! sampling and for the frozen base under LoRA).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarMap;
use suti_rng::SplitMix64;

/// How a fresh weight is initialised.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// All zeros (adaLN-Zero modulations, the final layer, LoRA's B).
    Zeros,
    /// All ones.
    Ones,
    /// Uniform in ±bound (Xavier: bound = sqrt(6 / (fan_in + fan_out))).
    Uniform(f32),
    /// Normal with this standard deviation.
    Normal(f32),
}

enum Source {
    /// Trainable: variables in a `VarMap`, created on first use from a seeded generator.
    Train {
        varmap: VarMap,
        rng: Mutex<SplitMix64>,
    },
    /// Frozen tensors by name.
    Frozen(HashMap<String, Tensor>),
    /// Frozen tensors where a name is given, trainable variables for every other name.
    Extend {
        frozen: HashMap<String, Tensor>,
        varmap: VarMap,
        rng: Mutex<SplitMix64>,
    },
}

/// Hands out named weights under a prefix. Cheap to clone; clones share the source.
#[derive(Clone)]
pub struct Params {
    source: Arc<Source>,
    prefix: String,
    device: Device,
}

impl Params {
    /// Trainable weights registered in `varmap`, initialised from `seed`. Weights already in the
    /// varmap (loaded from a checkpoint, say) are used as they are.
    pub fn train(varmap: &VarMap, seed: u64, device: &Device) -> Self {
        Self {
            source: Arc::new(Source::Train {
                varmap: varmap.clone(),
                rng: Mutex::new(SplitMix64::new(seed)),
            }),
            prefix: String::new(),
            device: device.clone(),
        }
    }

    /// Frozen weights from tensors (a loaded safetensors file).
    pub fn frozen(tensors: HashMap<String, Tensor>, device: &Device) -> Self {
        Self {
            source: Arc::new(Source::Frozen(tensors)),
            prefix: String::new(),
            device: device.clone(),
        }
    }

    /// A frozen network extended with new trainable weights: names in `frozen` are served from
    /// it, every other name is a variable in `varmap` (created from `seed`, or taken from the
    /// varmap when a checkpoint put it there). The gated apprentice trains its demonstration
    /// readers this way over its frozen base.
    pub fn extend(
        frozen: HashMap<String, Tensor>,
        varmap: &VarMap,
        seed: u64,
        device: &Device,
    ) -> Self {
        Self {
            source: Arc::new(Source::Extend {
                frozen,
                varmap: varmap.clone(),
                rng: Mutex::new(SplitMix64::new(seed)),
            }),
            prefix: String::new(),
            device: device.clone(),
        }
    }

    /// Frozen weights read from a safetensors file.
    pub fn frozen_file(path: &std::path::Path, device: &Device) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, device)?;
        Ok(Self::frozen(tensors, device))
    }

    /// Frozen weights from a memory-mapped safetensors file: the file is mapped rather than read,
    /// so a base shared by many expert fine-tunes is paged in by the OS once.
    pub fn frozen_mmap(path: &std::path::Path, device: &Device) -> Result<Self> {
        #[allow(unsafe_code)]
        // SAFETY: the file must not be modified while mapped. Weights are written once to a
        // versioned path (models/base/{version}/…) and never rewritten in place.
        let mapped = unsafe { candle_core::safetensors::MmapedSafetensors::new(path)? };
        let tensors = mapped
            .tensors()
            .into_iter()
            .map(|(name, _)| Ok((name.clone(), mapped.load(&name, device)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Self::frozen(tensors, device))
    }

    /// Frozen weights from safetensors bytes (an object fetched from storage).
    pub fn frozen_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
        let tensors = candle_core::safetensors::load_buffer(bytes, device)?;
        Ok(Self::frozen(tensors, device))
    }

    /// The same source under `prefix.name`.
    pub fn pp(&self, name: &str) -> Self {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Self {
            source: self.source.clone(),
            prefix,
            device: self.device.clone(),
        }
    }

    /// The device weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether weights from this source are trainable.
    pub fn is_trainable(&self) -> bool {
        matches!(*self.source, Source::Train { .. } | Source::Extend { .. })
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The weight `name` of `shape`: created with `init` if trainable and new, loaded otherwise.
    pub fn get(&self, shape: &[usize], name: &str, init: Init) -> Result<Tensor> {
        let full = self.full_name(name);
        let frozen_weight = |t: &Tensor| {
            if t.dims() != shape {
                candle_core::bail!(
                    "weight {full} has shape {:?}, the model expects {shape:?}",
                    t.dims()
                );
            }
            // Detached: a frozen weight handed over as a training variable (a base trained in
            // the same process) must neither take gradients nor differ from the same weight
            // loaded from a file (frozen linear layers keep an `(in, out)` copy).
            Ok(t.to_dtype(DType::F32)?.detach())
        };
        match &*self.source {
            Source::Frozen(tensors) => {
                let t = tensors.get(&full).ok_or_else(|| {
                    candle_core::Error::CannotFindTensor { path: full.clone() }.bt()
                })?;
                frozen_weight(t)
            }
            Source::Extend { frozen, .. } if frozen.contains_key(&full) => {
                frozen_weight(&frozen[&full])
            }
            Source::Train { varmap, rng } | Source::Extend { varmap, rng, .. } => {
                let mut data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
                if let Some(var) = data.get(&full) {
                    if var.dims() != shape {
                        candle_core::bail!(
                            "weight {full} has shape {:?}, the model expects {shape:?}",
                            var.dims()
                        );
                    }
                    return Ok(var.as_tensor().clone());
                }
                let n: usize = shape.iter().product();
                let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
                let values: Vec<f32> = match init {
                    Init::Zeros => vec![0.0; n],
                    Init::Ones => vec![1.0; n],
                    Init::Uniform(bound) => (0..n).map(|_| rng.range(-bound, bound)).collect(),
                    Init::Normal(std) => (0..n).map(|_| rng.normal() * std).collect(),
                };
                let var = Var::from_tensor(&Tensor::from_vec(values, shape, &self.device)?)?;
                data.insert(full, var.clone());
                Ok(var.as_tensor().clone())
            }
        }
    }
}

/// Xavier-uniform bound for a `fan_in` → `fan_out` layer.
pub fn xavier(fan_in: usize, fan_out: usize) -> Init {
    Init::Uniform((6.0 / (fan_in + fan_out) as f32).sqrt())
}
