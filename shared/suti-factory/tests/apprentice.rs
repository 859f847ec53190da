//! The apprentice learns from triplets: initialised from a base, its loss on (demonstrations,
//! prompt, target) triplets falls, and after training its predictions depend on which subject's
//! demonstrations it is shown.

mod common;

use std::sync::Arc;

use candle_core::{Device, Tensor};
use common::*;
use suti_data::Scene;
use suti_factory::apprentice::{
    DemoSet, Triplet, apprentice_batch, apprentice_step, apprentice_trainer, demo_attention,
};
use suti_factory::base::{BaseTrainConfig, base_model, base_trainer};
use suti_factory::pixels::to_chw;
use suti_models::{DemoAttention, Demos, DitConfig};
use suti_rng::SplitMix64;
use suti_runtime::config::{ApprenticeDemoAttention, ApprenticeStageConfig};

#[test]
fn the_apprentice_learns_from_triplets_and_uses_its_demonstrations() {
    learns_and_uses_demonstrations(ApprenticeDemoAttention::Shared);
}

#[test]
fn the_gated_apprentice_starts_as_its_base_learns_and_uses_its_demonstrations() {
    learns_and_uses_demonstrations(ApprenticeDemoAttention::Gated);
}

#[test]
fn the_fine_tuned_gated_apprentice_starts_as_its_base_and_keeps_its_encoder_frozen() {
    learns_and_uses_demonstrations(ApprenticeDemoAttention::GatedFinetuned);
}

/// The largest absolute elementwise difference of two tensors of one shape.
fn largest_difference(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn learns_and_uses_demonstrations(choice: ApprenticeDemoAttention) {
    let attention = demo_attention(choice);
    suti_models::tune_allocator();
    let assets = assets();
    let text = text_encoder();
    let config = DitConfig::test();
    let size = config.image_size;
    let subjects = subjects(&assets, 4, 71);
    let shown = [Scene::Beach, Scene::City, Scene::WoodenFloor];
    let asked = [Scene::Snow, Scene::Jungle, Scene::PinkFabric];

    // A briefly trained base to start from (as the pipeline does).
    let base_pairs = pairs(&assets, &subjects, &shown, 1, size);
    let mut base = base_trainer(
        &config,
        &BaseTrainConfig {
            steps: 60,
            batch: 8,
            learning_rate: 1e-3,
            warmup: 5,
            ..BaseTrainConfig::default()
        },
        &Device::Cpu,
    )
    .unwrap();
    while !base.finished() {
        base.step(&base_pairs, &text).unwrap();
    }
    let base = base_model(&base).unwrap();

    let mut triplets = Vec::new();
    let mut demo_sets = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        let images = shown
            .iter()
            .map(|&s| to_chw(&render(&assets, subject, s, i as u64, 64), size))
            .collect();
        let captions: Vec<String> = shown.iter().map(|&s| caption(subject, s)).collect();
        let demos = Arc::new(DemoSet::new(images, &captions, &text).unwrap());
        demo_sets.push(demos.clone());
        for &scene in &asked {
            triplets.push(Triplet {
                demos: demos.clone(),
                prompt: caption(subject, scene),
                target: to_chw(&render(&assets, subject, scene, 50 + i as u64, 64), size),
            });
        }
    }
    let train = ApprenticeStageConfig {
        schedule_steps: 120,
        batch: 8,
        learning_rate: 1e-3,
        warmup: 10,
        demo_attention: choice,
        ..ApprenticeStageConfig::default()
    };
    let mut trainer = apprentice_trainer(&base, &train).unwrap();
    // One noisy target (from `noise_seed`) at time `t`, with the first triplet's prompt.
    let forward_at = |model: &suti_models::Dit,
                      cache: Option<&suti_models::DemoCache>,
                      noise_seed: u64,
                      t: f32| {
        let x = Tensor::from_vec(
            SplitMix64::new(noise_seed).normals(3 * size * size),
            (1, 3, size, size),
            &Device::Cpu,
        )
        .unwrap();
        let t = Tensor::new(&[t], &Device::Cpu).unwrap();
        let prompt = text.encode(&[triplets[0].prompt.as_str()]).unwrap();
        model.forward(&x, &t, &prompt, cache).unwrap()
    };
    let same_noise = |model: &suti_models::Dit, cache: Option<&suti_models::DemoCache>| {
        forward_at(model, cache, 9, 0.5)
    };
    if attention.is_gated() {
        // Its readers' output projections start at zero: with demonstrations it predicts what
        // the base predicts without them.
        let mut rng = SplitMix64::new(3);
        let batch = apprentice_batch(
            &triplets[..1],
            1,
            (3, 3),
            size,
            &text,
            &mut rng,
            &Device::Cpu,
            false,
        )
        .unwrap();
        let cache = trainer
            .model()
            .encode_demos(batch.demos.as_ref().unwrap())
            .unwrap();
        let gap = largest_difference(
            &same_noise(trainer.model(), Some(&cache)),
            &same_noise(&base.dit().unwrap(), None),
        );
        assert!(
            gap < 1e-5,
            "the gated apprentice starts {gap} away from its base"
        );
    }
    let eval_loss = |trainer: &suti_factory::training::DenoiserTrainer| {
        let mut rng = SplitMix64::new(77);
        let batch = apprentice_batch(
            &triplets,
            12,
            (3, 3),
            size,
            &text,
            &mut rng,
            &Device::Cpu,
            false,
        )
        .unwrap();
        let cache = trainer
            .model()
            .encode_demos(batch.demos.as_ref().unwrap())
            .unwrap();
        suti_models::diffusion::v_loss(
            trainer.model(),
            &batch.x0,
            &batch.text,
            Some(&cache),
            &mut rng,
        )
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
    };
    let before = eval_loss(&trainer);
    while !trainer.finished() {
        apprentice_step(&mut trainer, &triplets, &train, &text).unwrap();
    }
    let after = eval_loss(&trainer);
    println!("apprentice ({attention:?}) evaluation loss {before:.4} → {after:.4}");
    let weights = trainer.weights().unwrap();
    let moved = |name: &str, tensor: &Tensor| largest_difference(&weights[name], tensor);
    match attention {
        DemoAttention::Shared => {}
        DemoAttention::Gated => {
            // Only the readers trained: the base's weights are published unchanged.
            for (name, tensor) in &base.tensors {
                assert_eq!(
                    moved(name, tensor),
                    0.0,
                    "the frozen base weight {name} changed"
                );
            }
            assert!(weights.keys().any(|k| k.contains("demo_attn")));
        }
        DemoAttention::GatedFinetuned => {
            // The network trained; the copy that encodes the demonstrations did not.
            for (name, tensor) in &base.tensors {
                let copy = format!("demo_encoder.{name}");
                assert_eq!(moved(&copy, tensor), 0.0, "the encoder's {copy} changed");
            }
            let trained = base
                .tensors
                .iter()
                .filter(|(name, tensor)| moved(name, tensor) > 0.0)
                .count();
            assert!(
                trained * 2 > base.tensors.len(),
                "only {trained} of the network's {} weights trained",
                base.tensors.len()
            );
        }
    }
    assert!(
        after < 0.8 * before,
        "the apprentice's loss did not fall: {before} → {after}"
    );

    // The same noisy target and prompt, shown subject 0's or subject 1's demonstrations.
    let model = trainer.model();
    let predict = |demos: &DemoSet| {
        let d = demos.images.len();
        let images: Vec<f32> = demos.images.iter().flatten().copied().collect();
        let pooled: Vec<f32> = demos.pooled.iter().flatten().copied().collect();
        let cache = model
            .encode_demos(&Demos {
                images: Tensor::from_vec(images, (1, d, 3, size, size), &Device::Cpu).unwrap(),
                pooled: Tensor::from_vec(pooled, (1, d, 384), &Device::Cpu).unwrap(),
                mask: Tensor::ones((1, d), candle_core::DType::F32, &Device::Cpu).unwrap(),
            })
            .unwrap();
        forward_at(model, Some(&cache), 5, 0.6)
    };
    let difference = (predict(&demo_sets[0]) - predict(&demo_sets[1]))
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    println!("mean |Δ prediction| between two subjects' demonstrations: {difference:.5}");
    assert!(
        difference > 1e-3,
        "the demonstrations do not change the prediction"
    );
}
