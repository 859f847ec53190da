//! The demonstrations' path through the apprentice: a cache encoded once predicts exactly what
//! encoding the demonstrations at every step predicts, a gated apprentice's stored demonstration
//! states encode exactly as its images do, and dropped conditions are exactly the unconditional
//! branch — for every kind of demonstration reader.

use candle_core::{Device, Tensor};
use suti_models::diffusion::{
    ConditionDropout, Conditioning, SamplerConfig, SamplerKind, drop_conditions, sample,
};
use suti_models::{DemoAttention, Demos, DitConfig, TextCond};

use crate::fixtures::{
    Warmup, demos_for, flat, max_abs_diff, mean_abs_diff, random_images, text_for, trainable,
    warm_up_with_demos,
};

/// Every kind of demonstration reader.
const READERS: [DemoAttention; 3] = [
    DemoAttention::Shared,
    DemoAttention::Gated,
    DemoAttention::GatedFinetuned,
];

/// The test configuration with `attention` as its demonstration reader.
fn reading_with(attention: DemoAttention) -> DitConfig {
    DitConfig {
        demo_attention: attention,
        ..DitConfig::test()
    }
}

#[test]
fn cached_demonstrations_give_exactly_the_uncached_predictions() {
    for attention in READERS {
        cached_demonstrations_give_exactly_the_uncached_predictions_with(attention);
    }
}

fn cached_demonstrations_give_exactly_the_uncached_predictions_with(attention: DemoAttention) {
    let dev = Device::Cpu;
    let cfg = reading_with(attention);
    let (varmap, model) = trainable(&cfg, 50);
    let demos = demos_for(2, 3, &cfg, 52, &dev);
    let warmup = Warmup {
        steps: 3,
        noise: 51,
        images: 60,
        caption: 1,
    };
    warm_up_with_demos(&model, &varmap, &cfg, &demos, warmup);
    let text = text_for(&[5, 6], cfg.text_dim, &dev);
    let cache = model.encode_demos(&demos).unwrap();
    for (i, t) in [0.9f32, 0.5, 0.1].iter().enumerate() {
        let x = random_images(2, &cfg, 70 + i as u64, &dev);
        let t = Tensor::new(&[*t, *t], &dev).unwrap();
        let cached = model.forward(&x, &t, &text, Some(&cache)).unwrap();
        let uncached = model.forward_uncached(&x, &t, &text, &demos).unwrap();
        assert_eq!(flat(&cached), flat(&uncached));
        let without = model.forward(&x, &t, &text, None).unwrap();
        let effect = mean_abs_diff(&without, &cached);
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
    assert_eq!(flat(&a), flat(&b));
}

/// A gated apprentice's demonstration states, computed once and encoded later (as its trainer
/// does), give exactly the cache that encoding the images does.
#[test]
fn gated_demonstration_states_encode_exactly_as_the_images_do() {
    let dev = Device::Cpu;
    let cfg = reading_with(DemoAttention::Gated);
    let (varmap, model) = trainable(&cfg, 40);
    let (b, d) = (2, 3);
    let mut demos = demos_for(b, d, &cfg, 41, &dev);
    demos.mask = Tensor::new(&[[1f32, 1.0, 0.0], [1.0, 1.0, 1.0]], &dev).unwrap();
    // Two steps first: the readers' output projections start at zero, and a reader that adds
    // nothing would make any two caches predict alike.
    let warmup = Warmup {
        steps: 2,
        noise: 44,
        images: 45,
        caption: 4,
    };
    warm_up_with_demos(&model, &varmap, &cfg, &demos, warmup);
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
    for attention in READERS {
        dropped_conditions_behave_exactly_like_the_unconditional_branch_with(attention);
    }
}

fn dropped_conditions_behave_exactly_like_the_unconditional_branch_with(attention: DemoAttention) {
    let dev = Device::Cpu;
    let cfg = reading_with(attention);
    let (varmap, model) = trainable(&cfg, 80);
    let demos = demos_for(2, 2, &cfg, 82, &dev);
    let warmup = Warmup {
        steps: 2,
        noise: 81,
        images: 0,
        caption: 3,
    };
    let mut rng = warm_up_with_demos(&model, &varmap, &cfg, &demos, warmup);
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
    let diff = max_abs_diff(&dropped, &null);
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
