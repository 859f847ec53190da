//! The denoiser, LoRA and apprentice learn for real: every parameter receives a gradient,
//! training resumes bit for bit from a checkpoint, adapters save, load and merge faithfully, and
//! guidance with dynamic thresholding gives sane images; the demonstrations' path is in
//! `demonstrations`.

mod demonstrations;
mod fixtures;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use fixtures::{
    demos_for, flat, max_abs_diff, mean_abs_diff, random_images, text_for, train_step, trainable,
};
use suti_models::diffusion::{Conditioning, SamplerConfig, sample, v_loss};
use suti_models::train::{AdamW, AdamWConfig, CheckpointMeta, load_checkpoint, save_checkpoint};
use suti_models::{Builders, Dit, DitConfig, LoraConfig, Params, TextCond};
use suti_rng::SplitMix64;

fn grad_is_nonzero(grads: &candle_core::backprop::GradStore, t: &Tensor) -> bool {
    grads
        .get(t)
        .map(|g| {
            g.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        })
        .unwrap_or(false)
}

/// Names of the optimiser's variables whose gradient is absent or zero.
fn missing_gradients<'a>(
    opt: &'a AdamW,
    grads: &candle_core::backprop::GradStore,
) -> Vec<&'a String> {
    opt.vars()
        .iter()
        .filter(|(_, v)| !grad_is_nonzero(grads, v.as_tensor()))
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn every_trainable_parameter_of_the_apprentice_receives_a_gradient() {
    let dev = Device::Cpu;
    let cfg = DitConfig::test();
    let (varmap, model) = trainable(&cfg, 1);
    let mut opt = AdamW::new(&varmap, AdamWConfig::default()).unwrap();
    let x0 = random_images(2, &cfg, 2, &dev);
    let text = text_for(&[1, 2], cfg.text_dim, &dev);
    let demos = demos_for(2, 3, &cfg, 3, &dev);
    let mut rng = SplitMix64::new(4);
    // adaLN-Zero and the zero final layer leave only the final layer with a gradient at step 0:
    // take one step first, then every parameter must be reached.
    for _ in 0..2 {
        let cache = model.encode_demos(&demos).unwrap();
        train_step(&model, &mut opt, (&x0, &text), Some(&cache), &mut rng, 1e-3);
    }
    let cache = model.encode_demos(&demos).unwrap();
    let grads = v_loss(&model, &x0, &text, Some(&cache), &mut rng)
        .unwrap()
        .backward()
        .unwrap();
    let missing = missing_gradients(&opt, &grads);
    assert!(missing.is_empty(), "no gradient reaches {missing:?}");
    assert!(opt.vars().len() > 40);
}

/// Trains a fresh base for a few steps so that its zero-initialised gates and final layer open.
fn briefly_trained_base(cfg: &DitConfig, seed: u64) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let (varmap, model) = trainable(cfg, seed);
    let mut opt = AdamW::new(&varmap, AdamWConfig::default()).unwrap();
    let mut rng = SplitMix64::new(seed);
    for step in 0..3 {
        let x0 = random_images(2, cfg, seed + step, &dev);
        let text = text_for(&[step, step + 1], cfg.text_dim, &dev);
        train_step(&model, &mut opt, (&x0, &text), None, &mut rng, 1e-2);
    }
    let data = varmap.data().lock().unwrap();
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect()
}

/// The adapters' shape in these tests.
fn rank_four() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 4.0,
    }
}

/// A model of `cfg` over the frozen `base` with `adapter` (weights given, or trainable ones).
fn with_adapter(cfg: &DitConfig, base: Params, adapter: Params) -> Dit {
    let builders = Builders {
        base,
        lora: Some((adapter, rank_four())),
    };
    Dit::new(cfg, &builders).unwrap()
}

/// A model of `cfg` over the frozen `base` with a fresh, trainable adapter initialised from
/// `seed`.
fn lora_model(cfg: &DitConfig, base: &HashMap<String, Tensor>, seed: u64) -> (VarMap, Dit) {
    let dev = Device::Cpu;
    let lora_map = VarMap::new();
    let model = with_adapter(
        cfg,
        Params::frozen(base.clone(), &dev),
        Params::train(&lora_map, seed, &dev),
    );
    (lora_map, model)
}

#[test]
fn every_lora_parameter_receives_a_gradient_and_the_base_stays_frozen() {
    let dev = Device::Cpu;
    let cfg = DitConfig {
        max_demos: 0,
        ..DitConfig::test()
    };
    let base = briefly_trained_base(&cfg, 5);
    let (lora_map, model) = lora_model(&cfg, &base, 6);
    let names: Vec<String> = lora_map.data().lock().unwrap().keys().cloned().collect();
    assert_eq!(
        names.len(),
        2 * 6 * cfg.depth,
        "A and B on q, k, v, o, fc1, fc2 of every block"
    );
    let mut opt = AdamW::new(&lora_map, AdamWConfig::default()).unwrap();
    let x0 = random_images(2, &cfg, 7, &dev);
    let text = text_for(&[7, 8], cfg.text_dim, &dev);
    let mut rng = SplitMix64::new(9);
    // B starts at zero, so A has no gradient before the first step.
    train_step(&model, &mut opt, (&x0, &text), None, &mut rng, 1e-2);
    let grads = v_loss(&model, &x0, &text, None, &mut rng)
        .unwrap()
        .backward()
        .unwrap();
    let missing = missing_gradients(&opt, &grads);
    assert!(missing.is_empty(), "no gradient reaches {missing:?}");
    // The base weights are plain tensors: nothing can train them.
    assert!(
        base.keys()
            .all(|k| !lora_map.data().lock().unwrap().contains_key(k))
    );
}

#[test]
fn adapters_save_load_and_merge_faithfully() {
    let dev = Device::Cpu;
    let cfg = DitConfig {
        max_demos: 0,
        ..DitConfig::test()
    };
    let base = briefly_trained_base(&cfg, 10);
    let (lora_map, model) = lora_model(&cfg, &base, 11);
    let mut opt = AdamW::new(&lora_map, AdamWConfig::default()).unwrap();
    let mut rng = SplitMix64::new(12);
    for step in 0..3 {
        let x0 = random_images(2, &cfg, 20 + step, &dev);
        let text = text_for(&[step, 9], cfg.text_dim, &dev);
        train_step(&model, &mut opt, (&x0, &text), None, &mut rng, 1e-2);
    }
    let x = random_images(2, &cfg, 30, &dev);
    let t = Tensor::new(&[0.3f32, 0.8], &dev).unwrap();
    let text = text_for(&[3, 4], cfg.text_dim, &dev);
    let adapted = model.forward(&x, &t, &text, None).unwrap();

    // Save the adapter alone, load it into a fresh model on the same base.
    let adapter = suti_models::lora::adapter_bytes(&lora_map).unwrap();
    assert!(
        adapter.len() < 200_000,
        "the adapter is small ({} bytes)",
        adapter.len()
    );
    let reloaded = with_adapter(
        &cfg,
        Params::frozen(base.clone(), &dev),
        Params::frozen_bytes(&adapter, &dev).unwrap(),
    );
    let again = reloaded.forward(&x, &t, &text, None).unwrap();
    assert_eq!(flat(&adapted), flat(&again));

    // The base can also be memory-mapped from a file, as an expert worker loads it.
    let base_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        base_file.path(),
        suti_models::train::safetensors_bytes(&base).unwrap(),
    )
    .unwrap();
    let mapped = with_adapter(
        &cfg,
        Params::frozen_mmap(base_file.path(), &dev).unwrap(),
        Params::frozen_bytes(&adapter, &dev).unwrap(),
    );
    assert_eq!(
        flat(&mapped.forward(&x, &t, &text, None).unwrap()),
        flat(&adapted)
    );

    // Merged into the base weights, it predicts the same (up to float rounding).
    let merged = reloaded.merged().unwrap();
    let diff = max_abs_diff(&merged.forward(&x, &t, &text, None).unwrap(), &adapted);
    assert!(diff < 1e-4, "merged differs by {diff}");
    // And the adapter changed the model.
    let plain = Dit::new(&cfg, &Builders::base(Params::frozen(base, &dev))).unwrap();
    let before = plain.forward(&x, &t, &text, None).unwrap();
    let moved = mean_abs_diff(&before, &adapted);
    assert!(moved > 1e-4, "the adapter did nothing ({moved})");
}

#[test]
fn training_resumes_bit_for_bit_from_a_checkpoint() {
    let dev = Device::Cpu;
    let cfg = DitConfig {
        max_demos: 0,
        ..DitConfig::test()
    };
    let batch = |step: u64| {
        (
            random_images(2, &cfg, 100 + step, &dev),
            text_for(&[step, step + 7], cfg.text_dim, &dev),
        )
    };
    let run = |model: &Dit, opt: &mut AdamW, rng: &mut SplitMix64, from: u64, to: u64| {
        for step in from..to {
            let (x0, text) = batch(step);
            train_step(model, opt, (&x0, &text), None, rng, 1e-3);
        }
    };
    let snapshot =
        |opt: &AdamW| -> Vec<Vec<f32>> { opt.vars().iter().map(|(_, v)| flat(v)).collect() };

    // Straight through: 6 steps.
    let (map_a, model_a) = trainable(&cfg, 42);
    let mut opt_a = AdamW::new(&map_a, AdamWConfig::default()).unwrap();
    let mut rng_a = SplitMix64::new(7);
    run(&model_a, &mut opt_a, &mut rng_a, 0, 6);

    // 3 steps, checkpoint, a fresh process-like start from the checkpoint, 3 more.
    let (map_b, model_b) = trainable(&cfg, 42);
    let mut opt_b = AdamW::new(&map_b, AdamWConfig::default()).unwrap();
    let mut rng_b = SplitMix64::new(7);
    run(&model_b, &mut opt_b, &mut rng_b, 0, 3);
    let meta = CheckpointMeta {
        step: 3,
        rng_state: rng_b.state(),
        notes: Default::default(),
    };
    let (tensors, json) = save_checkpoint(&opt_b, None, &meta).unwrap();
    drop((model_b, opt_b, map_b));

    let (map_c, model_c) = trainable(&cfg, 999); // different init: the checkpoint must overwrite it
    let mut opt_c = AdamW::new(&map_c, AdamWConfig::default()).unwrap();
    let meta = load_checkpoint(&mut opt_c, None, &tensors, &json, &dev).unwrap();
    assert_eq!(meta.step, 3);
    let mut rng_c = SplitMix64::new(meta.rng_state);
    run(&model_c, &mut opt_c, &mut rng_c, 3, 6);

    assert_eq!(opt_c.steps(), 6);
    assert!(
        snapshot(&opt_a) == snapshot(&opt_c),
        "resumed training diverged from the straight run"
    );
}

/// Guidance weight 15 (the paper's serving default) with dynamic thresholding gives images inside
/// the pixel range that are not saturated; the same weight with plain clipping saturates.
#[test]
fn guidance_fifteen_with_dynamic_thresholding_gives_sane_images() {
    let dev = Device::Cpu;
    let cfg = DitConfig {
        max_demos: 0,
        ..DitConfig::test()
    };
    let (varmap, model) = trainable(&cfg, 200);
    let mut opt = AdamW::new(&varmap, AdamWConfig::default()).unwrap();
    let mut rng = SplitMix64::new(201);
    // Two "captions", each with its own smooth image: enough for guidance to have a direction.
    let smooth = |phase: f32| {
        let s = cfg.image_size;
        let v: Vec<f32> = (0..3 * s * s)
            .map(|i| ((i % s) as f32 / s as f32 * 6.0 + phase).sin() * 0.8)
            .collect();
        Tensor::from_vec(v, (1, 3, s, s), &dev).unwrap()
    };
    let x0 = Tensor::cat(&[smooth(0.0), smooth(2.0), smooth(0.0), smooth(2.0)], 0).unwrap();
    let text = text_for(&[1, 2, 1, 2], cfg.text_dim, &dev);
    for _ in 0..60 {
        train_step(&model, &mut opt, (&x0, &text), None, &mut rng, 2e-3);
    }
    let prompt = text_for(&[1, 2], cfg.text_dim, &dev);
    let null = TextCond::null(2, cfg.text_dim, &dev).unwrap();
    let cond = Conditioning {
        text: &prompt,
        demos: None,
        null_text: &null,
    };
    let saturated = |threshold: f32| {
        let config = SamplerConfig {
            steps: 12,
            guidance: 15.0,
            threshold_quantile: threshold,
            seed: 5,
            ..Default::default()
        };
        let img = flat(&sample(&model, &cond, &config).unwrap());
        assert!(img.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
        img.iter().filter(|v| v.abs() > 0.98).count() as f32 / img.len() as f32
    };
    let dynamic = saturated(0.995);
    let clipped = saturated(0.0);
    println!(
        "saturated pixels at guidance 15: dynamic thresholding {dynamic:.3}, plain clipping {clipped:.3}"
    );
    assert!(
        dynamic < 0.1,
        "{:.0}% of pixels saturated with dynamic thresholding",
        dynamic * 100.0
    );
    assert!(
        clipped > 3.0 * dynamic,
        "plain clipping should saturate more ({clipped} vs {dynamic})"
    );
}
