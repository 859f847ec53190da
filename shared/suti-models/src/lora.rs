//! LoRA adapters as artifacts (architecture.md §7.4): an expert is the adapter alone — a few
//! hundred kilobytes — applied on top of the frozen base it was trained against.

use std::collections::HashMap;

use candle_core::{Result, Tensor};
use candle_nn::VarMap;

use crate::train::safetensors_bytes;

/// The adapter weights of `varmap` (every `…lora_a` / `…lora_b`) as safetensors bytes.
pub fn adapter_bytes(varmap: &VarMap) -> Result<Vec<u8>> {
    let tensors: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(name, _)| name.ends_with("lora_a") || name.ends_with("lora_b"))
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect();
    if tensors.is_empty() {
        candle_core::bail!("no adapter weights in this varmap");
    }
    safetensors_bytes(&tensors)
}
