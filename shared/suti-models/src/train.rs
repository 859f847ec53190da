//! The training library: AdamW, global gradient-norm clipping, warm-up + cosine learning rate, EMA
//! of the weights, and checkpoints that hold weights, optimiser moments, EMA and the data/noise
//! generator's state, so that a resumed run continues bit for bit. candle has none of these built
//! in (architecture.md §7 pitfalls); they are written once, here.

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

/// AdamW hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Numerical floor.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// AdamW over named variables (sorted by name, so the update order is fixed).
pub struct AdamW {
    config: AdamWConfig,
    vars: Vec<(String, Var)>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    step: u64,
}

impl AdamW {
    /// An optimiser for every variable of `varmap`.
    pub fn new(varmap: &VarMap, config: AdamWConfig) -> Result<Self> {
        let mut vars: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let first = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<Result<_>>()?;
        let second = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            vars,
            first,
            second,
            step: 0,
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The variables, by name.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// One update with learning rate `lr`. Variables without a gradient are left alone. On the
    /// CPU each variable's update is one fused pass over its weights, moments and gradient;
    /// elsewhere (and as the reference it is tested against) it is composed of tensor ops.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step_with(grads, lr, AdamWKernel::Auto)
    }

    fn step_with(&mut self, grads: &GradStore, lr: f64, kernel: AdamWKernel) -> Result<()> {
        self.step += 1;
        let c = self.config.clone();
        let t = self.step as i32;
        let (bias1, bias2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let fused = kernel == AdamWKernel::Auto && var.device().is_cpu();
            let (m, v) = if fused {
                fused_adamw(
                    var,
                    g,
                    (&self.first[i], &self.second[i]),
                    &c,
                    lr,
                    (bias1, bias2),
                )?
            } else {
                let m = ((&self.first[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
                let v = ((&self.second[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                let update = ((&m / bias1)? / ((&v / bias2)?.sqrt()? + c.eps)?)?;
                let decayed = (var.as_tensor() * (1.0 - lr * c.weight_decay))?;
                var.set(&(decayed - (update * lr)?)?)?;
                (m, v)
            };
            self.first[i] = m;
            self.second[i] = v;
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.push((format!("adam_m.{name}"), self.first[i].clone()));
            out.push((format!("adam_v.{name}"), self.second[i].clone()));
        }
        out
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            let get = |prefix: &str| {
                tensors
                    .get(&format!("{prefix}.{name}"))
                    .cloned()
                    .ok_or_else(|| {
                        candle_core::Error::msg(format!("checkpoint lacks {prefix}.{name}"))
                    })
            };
            self.first[i] = get("adam_m")?;
            self.second[i] = get("adam_v")?;
        }
        self.step = step;
        Ok(())
    }
}

/// How [`AdamW::step`] computes an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdamWKernel {
    /// Fused on the CPU, composed elsewhere.
    Auto,
    /// Composed of tensor ops everywhere (the reference).
    #[cfg(test)]
    Composed,
}

/// Values per parallel task of the fused update.
const ADAMW_CHUNK: usize = 1 << 14;

/// The AdamW update of one CPU variable in one pass: new moments returned, weights set.
fn fused_adamw(
    var: &Var,
    grad: &Tensor,
    (first, second): (&Tensor, &Tensor),
    c: &AdamWConfig,
    lr: f64,
    (bias1, bias2): (f64, f64),
) -> Result<(Tensor, Tensor)> {
    use rayon::prelude::*;
    let n = var.elem_count();
    let mut weights = vec![0f32; n];
    let mut m = vec![0f32; n];
    let mut v = vec![0f32; n];
    let (grad, first, second) = (
        grad.contiguous()?,
        first.contiguous()?,
        second.contiguous()?,
    );
    {
        // Read guards on four distinct storages, dropped before the weights are written.
        let guards = [var.as_tensor(), &grad, &first, &second].map(|t| t.storage_and_layout());
        let [p, g, m0, v0] = [0, 1, 2, 3].map(|i| {
            let (storage, layout) = &guards[i];
            match (&**storage, layout.contiguous_offsets()) {
                (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(values)), Some((a, b))) => {
                    Ok(&values[a..b])
                }
                _ => Err(candle_core::Error::Msg(
                    "the fused AdamW update needs contiguous f32 CPU tensors".into(),
                )),
            }
        });
        let (p, g, m0, v0) = (p?, g?, m0?, v0?);
        // The complements in f64 first, as the composed update takes them: 1 − 0.999 in f32
        // would be off by 5e-5 relative.
        let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
        let (keep1, keep2) = ((1.0 - c.beta1) as f32, (1.0 - c.beta2) as f32);
        let (bias1, bias2) = (bias1 as f32, bias2 as f32);
        let (decay, lr) = ((1.0 - lr * c.weight_decay) as f32, lr as f32);
        weights
            .par_chunks_mut(ADAMW_CHUNK)
            .zip(m.par_chunks_mut(ADAMW_CHUNK))
            .zip(v.par_chunks_mut(ADAMW_CHUNK))
            .enumerate()
            .for_each(|(chunk, ((w_out, m_out), v_out))| {
                let at = chunk * ADAMW_CHUNK;
                for j in 0..w_out.len() {
                    let k = at + j;
                    let gk = g[k];
                    let mk = m0[k] * b1 + gk * keep1;
                    let vk = v0[k] * b2 + gk * gk * keep2;
                    let update = (mk / bias1) / ((vk / bias2).sqrt() + eps);
                    w_out[j] = p[k] * decay - update * lr;
                    m_out[j] = mk;
                    v_out[j] = vk;
                }
            });
    }
    let shape = var.shape().clone();
    var.set(&Tensor::from_vec(weights, shape.clone(), &Device::Cpu)?)?;
    Ok((
        Tensor::from_vec(m, shape.clone(), &Device::Cpu)?,
        Tensor::from_vec(v, shape, &Device::Cpu)?,
    ))
}

/// Scales every gradient so that their global L2 norm is at most `max_norm`; returns the norm
/// before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[(String, Var)], max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for (_, var) in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            total += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
    }
    let norm = total.sqrt();
    if norm > max_norm && norm.is_finite() {
        let factor = max_norm / norm;
        for (_, var) in vars {
            if let Some(g) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (g * factor)?);
            }
        }
    }
    Ok(norm)
}

/// Learning rate with linear warm-up then cosine decay to `min_ratio · base`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub base: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// Total steps (the cosine reaches its floor here).
    pub total: u64,
    /// Floor as a fraction of `base`.
    pub min_ratio: f64,
}

impl LrSchedule {
    /// The learning rate at `step` (0-based).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.base * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.base * (self.min_ratio + (1.0 - self.min_ratio) * cosine)
    }
}

/// Exponential moving average of the weights (sampled from instead of the raw weights).
pub struct Ema {
    decay: f64,
    shadow: BTreeMap<String, Tensor>,
}

impl Ema {
    /// An average starting at the current weights.
    pub fn new(vars: &[(String, Var)], decay: f64) -> Result<Self> {
        let shadow = vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect::<Result<_>>()?;
        Ok(Self { decay, shadow })
    }

    /// Moves the average toward the current weights.
    pub fn update(&mut self, vars: &[(String, Var)]) -> Result<()> {
        for (name, var) in vars {
            if let Some(s) = self.shadow.get_mut(name) {
                *s = ((&*s * self.decay)? + (var.as_tensor() * (1.0 - self.decay))?)?;
            }
        }
        Ok(())
    }

    /// The averaged weights by name.
    pub fn weights(&self) -> &BTreeMap<String, Tensor> {
        &self.shadow
    }
}

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Optimiser steps taken.
    pub step: u64,
    /// State of the data/noise generator.
    pub rng_state: u64,
    /// Free-form notes (model config, dataset), for the humans reading it.
    pub notes: BTreeMap<String, String>,
}

/// Serialises weights, optimiser moments and EMA as safetensors bytes, and the metadata as JSON.
pub fn save_checkpoint(
    optimizer: &AdamW,
    ema: Option<&Ema>,
    meta: &CheckpointMeta,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut tensors: Vec<(String, Tensor)> = optimizer
        .vars
        .iter()
        .map(|(n, v)| (format!("param.{n}"), v.as_tensor().clone()))
        .collect();
    tensors.extend(optimizer.state());
    if let Some(ema) = ema {
        tensors.extend(
            ema.shadow
                .iter()
                .map(|(n, t)| (format!("ema.{n}"), t.clone())),
        );
    }
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    let bytes = safetensors_bytes(&map)?;
    let json = serde_json::to_vec_pretty(meta).map_err(candle_core::Error::wrap)?;
    Ok((bytes, json))
}

/// Restores a checkpoint into the optimiser's variables, moments and EMA; returns its metadata.
pub fn load_checkpoint(
    optimizer: &mut AdamW,
    ema: Option<&mut Ema>,
    tensors_bytes: &[u8],
    meta_json: &[u8],
    device: &Device,
) -> Result<CheckpointMeta> {
    let meta: CheckpointMeta =
        serde_json::from_slice(meta_json).map_err(candle_core::Error::wrap)?;
    let tensors = candle_core::safetensors::load_buffer(tensors_bytes, device)?;
    for (name, var) in &optimizer.vars {
        let t = tensors
            .get(&format!("param.{name}"))
            .ok_or_else(|| candle_core::Error::msg(format!("checkpoint lacks param.{name}")))?;
        var.set(t)?;
    }
    optimizer.load_state(&tensors, meta.step)?;
    if let Some(ema) = ema {
        for (name, shadow) in ema.shadow.iter_mut() {
            if let Some(t) = tensors.get(&format!("ema.{name}")) {
                *shadow = t.clone();
            }
        }
    }
    Ok(meta)
}

/// Safetensors bytes of named tensors.
pub fn safetensors_bytes(tensors: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!(
        "suti-st-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    // candle writes safetensors to a path; go through a private temporary file.
    std::fs::create_dir_all(&dir).map_err(candle_core::Error::wrap)?;
    let path = dir.join("tensors.safetensors");
    candle_core::safetensors::save(tensors, &path)?;
    let bytes = std::fs::read(&path).map_err(candle_core::Error::wrap)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fused_adamw_update_matches_the_composed_one() {
        let dev = Device::Cpu;
        let mut rng = suti_rng::SplitMix64::new(9);
        let config = AdamWConfig {
            weight_decay: 0.01,
            ..AdamWConfig::default()
        };
        let shapes = [vec![40_000], vec![7, 13], vec![3]];
        let make = |rng: &mut suti_rng::SplitMix64| {
            let varmap = VarMap::new();
            for (i, shape) in shapes.iter().enumerate() {
                let n = shape.iter().product();
                let t = Tensor::from_vec(rng.normals(n), shape.as_slice(), &dev).unwrap();
                varmap
                    .data()
                    .lock()
                    .unwrap()
                    .insert(format!("w{i}"), Var::from_tensor(&t).unwrap());
            }
            varmap
        };
        let (fused_vars, composed_vars) = (make(&mut rng.clone()), make(&mut rng));
        let mut fused = AdamW::new(&fused_vars, config.clone()).unwrap();
        let mut composed = AdamW::new(&composed_vars, config).unwrap();
        for step in 0..4 {
            // The loss Σ w² · k has gradient 2kw: a different gradient every step.
            let loss = |opt: &AdamW| {
                let mut total = Tensor::zeros((), candle_core::DType::F32, &dev).unwrap();
                for (_, var) in opt.vars() {
                    let term = (var.as_tensor().sqr().unwrap().sum_all().unwrap()
                        * f64::from(step + 1))
                    .unwrap();
                    total = (total + term).unwrap();
                }
                total.backward().unwrap()
            };
            let (gf, gc) = (loss(&fused), loss(&composed));
            fused.step(&gf, 1e-2).unwrap();
            composed
                .step_with(&gc, 1e-2, AdamWKernel::Composed)
                .unwrap();
        }
        for ((name, a), (_, b)) in fused.vars().iter().zip(composed.vars()) {
            let a = a
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let b = b
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-6, "{name}: fused and composed differ by {worst}");
        }
        for (a, b) in fused
            .first
            .iter()
            .chain(&fused.second)
            .zip(composed.first.iter().chain(&composed.second))
        {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            // Relative: the second moments of these gradients reach the hundreds.
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
                .fold(0f32, f32::max);
            assert!(worst < 1e-6, "moments differ by {worst} (relative)");
        }
    }

    #[test]
    fn the_learning_rate_warms_up_then_decays() {
        let s = LrSchedule {
            base: 1e-3,
            warmup: 10,
            total: 110,
            min_ratio: 0.1,
        };
        assert!((s.at(0) - 1e-4).abs() < 1e-12);
        assert!((s.at(9) - 1e-3).abs() < 1e-12);
        assert!((s.at(10) - 1e-3).abs() < 1e-12);
        assert!((s.at(60) - 0.55e-3).abs() < 1e-9);
        assert!((s.at(110) - 1e-4).abs() < 1e-12);
        assert!((s.at(1000) - 1e-4).abs() < 1e-12);
    }
}
