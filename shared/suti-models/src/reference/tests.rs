//! Tests of the reference encoders on randomly written folders.

use std::path::Path;

use candle_core::{Device, Tensor};
use suti_rng::SplitMix64;

use super::random::{TEST_WORDS, write_json};
use super::*;
use crate::ops::tests::max_abs_diff;

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

/// Rewrites `model.safetensors` without one tensor.
fn drop_tensor(dir: &Path, name: &str) {
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    assert!(tensors.remove(name).is_some(), "{name} was not written");
    candle_core::safetensors::save(&tensors, &path).unwrap();
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
