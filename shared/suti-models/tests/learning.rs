//! The denoiser, LoRA and apprentice learn for real: every parameter receives a gradient, the loss
//! falls on rendered EmojiWorld images, training resumes bit for bit from a checkpoint, cached
//! demonstrations give exactly what encoding them at every step gives, and adapters save, load and
//! merge faithfully.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use suti_models::diffusion::{Conditioning, SamplerConfig, SamplerKind, sample, v_loss};
use suti_models::train::{AdamW, AdamWConfig, CheckpointMeta, load_checkpoint, save_checkpoint};
use suti_models::{Builders, DemoAttention, Demos, Dit, DitConfig, LoraConfig, Params, TextCond};
use suti_rng::SplitMix64;

const TEXT_LEN: usize = 6;

/// A stand-in text condition: a fixed pseudo-random embedding per caption id (the MiniLM encoder
/// replaces it in the pipeline; the network does not care where the vectors come from).
fn text_for(ids: &[u64], dim: usize, device: &Device) -> TextCond {
    let b = ids.len();
    let mut tokens = Vec::new();
    let mut pooled = Vec::new();
    for id in ids {
        let mut rng = SplitMix64::new(*id);
        tokens.extend(rng.normals(TEXT_LEN * dim));
        pooled.extend(rng.normals(dim).iter().map(|v| v / (dim as f32).sqrt()));
    }
    TextCond {
        tokens: Tensor::from_vec(tokens, (b, TEXT_LEN, dim), device).unwrap(),
        mask: Tensor::ones((b, TEXT_LEN), DType::F32, device).unwrap(),
        pooled: Tensor::from_vec(pooled, (b, dim), device).unwrap(),
    }
}

fn random_images(b: usize, cfg: &DitConfig, seed: u64, device: &Device) -> Tensor {
    let n = b * cfg.channels * cfg.image_size * cfg.image_size;
    let values: Vec<f32> = SplitMix64::new(seed)
        .normals(n)
        .iter()
        .map(|v| v.tanh())
        .collect();
    Tensor::from_vec(
        values,
        (b, cfg.channels, cfg.image_size, cfg.image_size),
        device,
    )
    .unwrap()
}

fn demos_for(b: usize, d: usize, cfg: &DitConfig, seed: u64, device: &Device) -> Demos {
    let images = random_images(b * d, cfg, seed, device)
        .reshape((b, d, cfg.channels, cfg.image_size, cfg.image_size))
        .unwrap();
    let pooled = text_for(
        &(0..(b * d) as u64).map(|i| seed + i).collect::<Vec<_>>(),
        cfg.text_dim,
        device,
    )
    .pooled
    .reshape((b, d, cfg.text_dim))
    .unwrap();
    Demos {
        images,
        pooled,
        mask: Tensor::ones((b, d), DType::F32, device).unwrap(),
    }
}

fn trainable(cfg: &DitConfig, seed: u64) -> (VarMap, Dit) {
    let varmap = VarMap::new();
    let params = Params::train(&varmap, seed, &Device::Cpu);
    let model = Dit::new(cfg, &Builders::base(params)).unwrap();
    (varmap, model)
}

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
        let loss = v_loss(&model, &x0, &text, Some(&cache), &mut rng).unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads, 1e-3).unwrap();
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
        let grads = v_loss(&model, &x0, &text, None, &mut rng)
            .unwrap()
            .backward()
            .unwrap();
        opt.step(&grads, 1e-2).unwrap();
    }
    let data = varmap.data().lock().unwrap();
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect()
}

fn lora_model(cfg: &DitConfig, base: &HashMap<String, Tensor>, seed: u64) -> (VarMap, Dit) {
    let dev = Device::Cpu;
    let lora_map = VarMap::new();
    let builders = Builders {
        base: Params::frozen(base.clone(), &dev),
        lora: Some((
            Params::train(&lora_map, seed, &dev),
            LoraConfig {
                rank: 4,
                alpha: 4.0,
            },
        )),
    };
    let model = Dit::new(cfg, &builders).unwrap();
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
    let grads = v_loss(&model, &x0, &text, None, &mut rng)
        .unwrap()
        .backward()
        .unwrap();
    opt.step(&grads, 1e-2).unwrap();
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
        let grads = v_loss(&model, &x0, &text, None, &mut rng)
            .unwrap()
            .backward()
            .unwrap();
        opt.step(&grads, 1e-2).unwrap();
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
    let reloaded = Dit::new(
        &cfg,
        &Builders {
            base: Params::frozen(base.clone(), &dev),
            lora: Some((
                Params::frozen_bytes(&adapter, &dev).unwrap(),
                LoraConfig {
                    rank: 4,
                    alpha: 4.0,
                },
            )),
        },
    )
    .unwrap();
    let again = reloaded.forward(&x, &t, &text, None).unwrap();
    assert_eq!(
        adapted.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        again.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );

    // The base can also be memory-mapped from a file, as an expert worker loads it.
    let base_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        base_file.path(),
        suti_models::train::safetensors_bytes(&base).unwrap(),
    )
    .unwrap();
    let mapped = Dit::new(
        &cfg,
        &Builders {
            base: Params::frozen_mmap(base_file.path(), &dev).unwrap(),
            lora: Some((
                Params::frozen_bytes(&adapter, &dev).unwrap(),
                LoraConfig {
                    rank: 4,
                    alpha: 4.0,
                },
            )),
        },
    )
    .unwrap();
    assert_eq!(
        mapped
            .forward(&x, &t, &text, None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        adapted.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );

    // Merged into the base weights, it predicts the same (up to float rounding).
    let merged = reloaded.merged().unwrap();
    let diff = (merged.forward(&x, &t, &text, None).unwrap() - &adapted)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-4, "merged differs by {diff}");
    // And the adapter changed the model.
    let plain = Dit::new(&cfg, &Builders::base(Params::frozen(base, &dev))).unwrap();
    let before = plain.forward(&x, &t, &text, None).unwrap();
    let moved = (before - adapted)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
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
            let grads = v_loss(model, &x0, &text, None, rng)
                .unwrap()
                .backward()
                .unwrap();
            opt.step(&grads, 1e-3).unwrap();
        }
    };
    let snapshot = |opt: &AdamW| -> Vec<Vec<f32>> {
        opt.vars()
            .iter()
            .map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect()
    };

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

#[test]
fn cached_demonstrations_give_exactly_the_uncached_predictions() {
    for attention in [
        DemoAttention::Shared,
        DemoAttention::Gated,
        DemoAttention::GatedFinetuned,
    ] {
        cached_demonstrations_give_exactly_the_uncached_predictions_with(attention);
    }
}

fn cached_demonstrations_give_exactly_the_uncached_predictions_with(attention: DemoAttention) {
    let dev = Device::Cpu;
    let cfg = DitConfig {
        demo_attention: attention,
        ..DitConfig::test()
    };
    let (varmap, model) = trainable(&cfg, 50);
    let mut opt = AdamW::new(&varmap, AdamWConfig::default()).unwrap();
    let mut rng = SplitMix64::new(51);
    let demos = demos_for(2, 3, &cfg, 52, &dev);
    for step in 0..3 {
        let cache = model.encode_demos(&demos).unwrap();
        let x0 = random_images(2, &cfg, 60 + step, &dev);
        let text = text_for(&[step, 1], cfg.text_dim, &dev);
        let grads = v_loss(&model, &x0, &text, Some(&cache), &mut rng)
            .unwrap()
            .backward()
            .unwrap();
        opt.step(&grads, 5e-3).unwrap();
    }
    let text = text_for(&[5, 6], cfg.text_dim, &dev);
    let cache = model.encode_demos(&demos).unwrap();
    for (i, t) in [0.9f32, 0.5, 0.1].iter().enumerate() {
        let x = random_images(2, &cfg, 70 + i as u64, &dev);
        let t = Tensor::new(&[*t, *t], &dev).unwrap();
        let cached = model.forward(&x, &t, &text, Some(&cache)).unwrap();
        let uncached = model.forward_uncached(&x, &t, &text, &demos).unwrap();
        assert_eq!(
            cached.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            uncached.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        let without = model.forward(&x, &t, &text, None).unwrap();
        let effect = (without - cached)
            .unwrap()
            .abs()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            effect > 1e-5,
            "the demonstrations have no effect ({effect})"
        );
    }
    // The whole sampler with a cache reused across steps is reproducible from its seed.
    let null = TextCond::null(2, cfg.text_dim, &dev).unwrap();
    let cond = Conditioning {
        text: &text,
        demos: Some(&cache),
        null_text: &null,
    };
    let config = SamplerConfig {
        steps: 4,
        guidance: 3.0,
        kind: SamplerKind::Ddim,
        seed: 3,
        ..Default::default()
    };
    let a = sample(&model, &cond, &config).unwrap();
    let b = sample(&model, &cond, &config).unwrap();
    assert_eq!(
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

/// A gated apprentice's demonstration states, computed once and encoded later (as its trainer
/// does), give exactly the cache that encoding the images does.
#[test]
fn gated_demonstration_states_encode_exactly_as_the_images_do() {
    let dev = Device::Cpu;
    let cfg = DitConfig {
        demo_attention: DemoAttention::Gated,
        ..DitConfig::test()
    };
    let (varmap, model) = trainable(&cfg, 40);
    let (b, d) = (2, 3);
    let mut demos = demos_for(b, d, &cfg, 41, &dev);
    demos.mask = Tensor::new(&[[1f32, 1.0, 0.0], [1.0, 1.0, 1.0]], &dev).unwrap();
    // Two steps first: the readers' output projections start at zero, and a reader that adds
    // nothing would make any two caches predict alike.
    let mut opt = AdamW::new(&varmap, AdamWConfig::default()).unwrap();
    let mut rng = SplitMix64::new(44);
    for step in 0..2 {
        let cache = model.encode_demos(&demos).unwrap();
        let grads = v_loss(
            &model,
            &random_images(b, &cfg, 45 + step, &dev),
            &text_for(&[step, 4], cfg.text_dim, &dev),
            Some(&cache),
            &mut rng,
        )
        .unwrap()
        .backward()
        .unwrap();
        opt.step(&grads, 5e-3).unwrap();
    }
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let states = model
        .demo_states(
            &demos
                .images
                .reshape((b * d, cfg.channels, cfg.image_size, cfg.image_size))
                .unwrap(),
            &demos.pooled.reshape((b * d, cfg.text_dim)).unwrap(),
        )
        .unwrap();
    let n = cfg.tokens();
    let from_states = model
        .encode_demo_states(
            &states.reshape((b, d, cfg.depth, n, cfg.width)).unwrap(),
            &demos.mask,
        )
        .unwrap();
    let from_images = model.encode_demos(&demos).unwrap();
    let x = random_images(b, &cfg, 42, &dev);
    let t = Tensor::new(&[0.3f32, 0.8], &dev).unwrap();
    let text = text_for(&[1, 2], cfg.text_dim, &dev);
    let with_states = flat(&model.forward(&x, &t, &text, Some(&from_states)).unwrap());
    assert_eq!(
        with_states,
        flat(&model.forward(&x, &t, &text, Some(&from_images)).unwrap())
    );
    let without = flat(&model.forward(&x, &t, &text, None).unwrap());
    assert_ne!(with_states, without, "the trained readers add nothing");
    // A shared apprentice has no such states.
    let (_, shared) = trainable(&DitConfig::test(), 40);
    assert!(
        shared
            .demo_states(
                &random_images(1, &cfg, 43, &dev),
                &text_for(&[1], cfg.text_dim, &dev).pooled
            )
            .is_err()
    );
}

#[test]
fn dropped_conditions_behave_exactly_like_the_unconditional_branch() {
    for attention in [
        DemoAttention::Shared,
        DemoAttention::Gated,
        DemoAttention::GatedFinetuned,
    ] {
        dropped_conditions_behave_exactly_like_the_unconditional_branch_with(attention);
    }
}

fn dropped_conditions_behave_exactly_like_the_unconditional_branch_with(attention: DemoAttention) {
    use suti_models::diffusion::{ConditionDropout, drop_conditions};
    let dev = Device::Cpu;
    let cfg = DitConfig {
        demo_attention: attention,
        ..DitConfig::test()
    };
    let (varmap, model) = trainable(&cfg, 80);
    let mut opt = AdamW::new(&varmap, AdamWConfig::default()).unwrap();
    let mut rng = SplitMix64::new(81);
    let demos = demos_for(2, 2, &cfg, 82, &dev);
    for step in 0..2 {
        let cache = model.encode_demos(&demos).unwrap();
        let grads = v_loss(
            &model,
            &random_images(2, &cfg, step, &dev),
            &text_for(&[step, 3], cfg.text_dim, &dev),
            Some(&cache),
            &mut rng,
        )
        .unwrap()
        .backward()
        .unwrap();
        opt.step(&grads, 5e-3).unwrap();
    }
    let text = text_for(&[1, 2], cfg.text_dim, &dev);
    let always = ConditionDropout {
        text: 0.0,
        demos: 0.0,
        both: 1.0,
    };
    let (dropped_text, dropped_mask) =
        drop_conditions(&text, Some(&demos.mask), always, &mut rng).unwrap();
    let dropped_demos = Demos {
        mask: dropped_mask.unwrap(),
        ..demos.clone()
    };
    let x = random_images(2, &cfg, 90, &dev);
    let t = Tensor::new(&[0.4f32, 0.7], &dev).unwrap();
    let cache = model.encode_demos(&dropped_demos).unwrap();
    let dropped = model.forward(&x, &t, &dropped_text, Some(&cache)).unwrap();
    let null = model
        .forward(
            &x,
            &t,
            &TextCond::null(2, cfg.text_dim, &dev).unwrap(),
            None,
        )
        .unwrap();
    let diff = (dropped - null)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        diff < 1e-5,
        "dropping text and demonstrations differs from no conditioning by {diff}"
    );
    let never = ConditionDropout {
        text: 0.0,
        demos: 0.0,
        both: 0.0,
    };
    let (kept, kept_mask) = drop_conditions(&text, Some(&demos.mask), never, &mut rng).unwrap();
    assert_eq!(
        kept.mask.to_vec2::<f32>().unwrap(),
        text.mask.to_vec2::<f32>().unwrap()
    );
    assert_eq!(
        kept_mask.unwrap().to_vec2::<f32>().unwrap(),
        demos.mask.to_vec2::<f32>().unwrap()
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
        let grads = v_loss(&model, &x0, &text, None, &mut rng)
            .unwrap()
            .backward()
            .unwrap();
        opt.step(&grads, 2e-3).unwrap();
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
        let img = sample(&model, &cond, &config)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
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
