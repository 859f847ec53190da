//! Model artifacts as bytes: a JSON configuration beside safetensors weights, the layout of
//! `models/{base,scorer}/{version}/` (architecture.md §5). Versions are content hashes of the
//! weights, so publishing the same weights twice names the same version.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use suti_models::{Builders, Dit, DitConfig, LoraConfig, Params, Scorer, ScorerConfig};
use suti_rng::fnv1a64;

use crate::{FactoryError, Result};

/// File name of the weights inside a model version's folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the configuration inside a model version's folder.
pub const CONFIG_FILE: &str = "config.json";

/// The version name of a set of weights: a hash of their bytes.
pub fn version_of(weights: &[u8]) -> String {
    format!("{:016x}", fnv1a64(weights))
}

fn load_weights(bytes: &[u8], device: &Device) -> Result<HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load_buffer(bytes, device)?)
}

fn parse_config<T: serde::de::DeserializeOwned>(json: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(json).map_err(|e| FactoryError::Invalid(format!("{what} config: {e}")))
}

/// A trained DiT: the base text-to-image model, or an apprentice release (the same bundle with
/// `max_demos > 0`).
#[derive(Clone)]
pub struct BaseModel {
    /// Its shape.
    pub config: DitConfig,
    /// Its weights by name.
    pub tensors: HashMap<String, Tensor>,
}

impl BaseModel {
    /// Loads a base model from its configuration JSON and safetensors bytes.
    pub fn from_bytes(config_json: &[u8], weights: &[u8], device: &Device) -> Result<Self> {
        let config: DitConfig = parse_config(config_json, "base model")?;
        config.validate().map_err(FactoryError::Invalid)?;
        let model = Self {
            config,
            tensors: load_weights(weights, device)?,
        };
        // Fail at load, not at the first request, when the weights do not fit the shape.
        model.dit()?;
        Ok(model)
    }

    /// The configuration JSON and safetensors bytes.
    pub fn to_bytes(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let config = serde_json::to_vec_pretty(&self.config)
            .map_err(|e| FactoryError::Invalid(e.to_string()))?;
        Ok((
            config,
            suti_models::train::safetensors_bytes(&self.tensors)?,
        ))
    }

    /// The device its weights live on (a model without weights has none).
    pub fn device(&self) -> Result<Device> {
        self.tensors
            .values()
            .next()
            .map(|t| t.device().clone())
            .ok_or_else(|| FactoryError::Invalid("the model holds no weights".into()))
    }

    /// The network with these weights, frozen.
    pub fn dit(&self) -> Result<Dit> {
        let params = Params::frozen(self.tensors.clone(), &self.device()?);
        Ok(Dit::new(&self.config, &Builders::base(params))?)
    }

    /// The network with an expert's adapter folded in (for generation).
    pub fn with_adapter(&self, adapter: &[u8], lora: LoraConfig) -> Result<Dit> {
        let device = self.device()?;
        let builders = Builders {
            base: Params::frozen(self.tensors.clone(), &device),
            lora: Some((Params::frozen_bytes(adapter, &device)?, lora)),
        };
        Ok(Dit::new(&self.config, &builders)?.merged()?)
    }
}

/// A trained scorer: the projection heads over the frozen towers.
pub struct ScorerModel {
    /// Its shape.
    pub config: ScorerConfig,
    /// The heads.
    pub scorer: Scorer,
    tensors: HashMap<String, Tensor>,
}

impl ScorerModel {
    /// Loads a scorer from its configuration JSON and safetensors bytes.
    pub fn from_bytes(config_json: &[u8], weights: &[u8], device: &Device) -> Result<Self> {
        let config: ScorerConfig = parse_config(config_json, "scorer")?;
        let tensors = load_weights(weights, device)?;
        Self::from_tensors(config, tensors, device)
    }

    /// A scorer from named tensors.
    pub fn from_tensors(
        config: ScorerConfig,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let scorer = Scorer::new(&config, &Params::frozen(tensors.clone(), device))?;
        Ok(Self {
            config,
            scorer,
            tensors,
        })
    }

    /// The configuration JSON and safetensors bytes.
    pub fn to_bytes(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let config = serde_json::to_vec_pretty(&self.config)
            .map_err(|e| FactoryError::Invalid(e.to_string()))?;
        Ok((
            config,
            suti_models::train::safetensors_bytes(&self.tensors)?,
        ))
    }
}
