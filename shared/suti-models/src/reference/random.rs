//! Writers of randomly initialised model folders in the Hugging Face layout, so that tests
//! exercise the real loaders without downloaded weights.

use std::collections::HashMap;
use std::path::Path;

use suti_rng::SplitMix64;

use super::clip::{HfClipConfig, HfClipText, HfClipVision};
use super::dinov2::Dinov2Config;
use super::folder::{Init, Spec};
use super::{CLIP_EOT, CLIP_SOT};

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

/// Writes `value` as pretty JSON (the writers' `config.json` and `tokenizer.json`).
pub(super) fn write_json(path: &Path, value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
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

/// The words of the test tokenizer's vocabulary (DreamBench-like prompts).
pub(super) const TEST_WORDS: &[&str] = &[
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
