//! The cache of encoded demonstrations: a repeated reference set is served from it with the images
//! it gets encoded afresh, a different one (other pixels, another caption, another release) misses,
//! and the least recently used entries go first so that it never holds more than its capacity.

mod common;

use candle_core::Device;
use suti_data::RgbaImage;
use suti_factory::base::untrained_base_model;
use suti_factory::render::{
    DemoEncodingCache, Demonstration, Generation, LoadedModel, render_batch, render_batch_cached,
};
use suti_models::DitConfig;

fn release(version: &str) -> LoadedModel {
    let bundle = untrained_base_model(&DitConfig::test(), 3, &Device::Cpu).unwrap();
    LoadedModel::from_bundle(version.into(), &bundle).unwrap()
}

fn photo(seed: u8) -> RgbaImage {
    let mut image = RgbaImage::new(16, 16);
    for (i, p) in image.pixels.iter_mut().enumerate() {
        *p = (i as u8).wrapping_mul(seed).wrapping_add(seed);
    }
    image
}

fn request(seeds: &[u8], caption: &str) -> Generation {
    Generation {
        prompt: "a photo on the beach".into(),
        demonstrations: seeds
            .iter()
            .map(|&s| Demonstration {
                image: photo(s),
                caption: caption.into(),
            })
            .collect(),
        seeds: vec![1, 2],
        steps: 3,
        guidance: 5.0,
        demo_guidance: None,
    }
}

#[test]
fn a_repeated_reference_set_is_served_from_the_cache_with_the_same_images() {
    let (model, text) = (release("r1"), common::text_encoder());
    let cache = DemoEncodingCache::new(64 << 20);
    let first = request(&[3, 5, 7], "a photo");
    let fresh = render_batch_cached(&model, &text, &[&first], Some(&cache)).unwrap();
    assert_eq!((fresh.cache_hits, fresh.cache_misses), (0, 1));
    assert_eq!(cache.len(), 1);
    assert!(cache.bytes() > 0);

    let again = render_batch_cached(&model, &text, &[&first], Some(&cache)).unwrap();
    assert_eq!((again.cache_hits, again.cache_misses), (1, 0));
    let uncached = render_batch(&model, &text, &[&first]).unwrap();
    for images in [&again.images, &uncached] {
        for (a, b) in images[0].iter().zip(&fresh.images[0]) {
            assert_eq!(
                a.pixels, b.pixels,
                "a cached encoding renders what a fresh one does"
            );
        }
    }

    // Other pixels, another caption, another release: each a different reference set.
    let other_pixels = request(&[3, 5, 8], "a photo");
    let other_caption = request(&[3, 5, 7], "a photo of a cat");
    let batch = render_batch_cached(
        &model,
        &text,
        &[&other_pixels, &other_caption, &first],
        Some(&cache),
    )
    .unwrap();
    assert_eq!((batch.cache_hits, batch.cache_misses), (1, 2));
    let next = release("r2");
    let after_reload = render_batch_cached(&next, &text, &[&first], Some(&cache)).unwrap();
    assert_eq!((after_reload.cache_hits, after_reload.cache_misses), (0, 1));
}

#[test]
fn the_least_recently_used_reference_sets_go_first_and_the_cap_holds() {
    let (model, text) = (release("r1"), common::text_encoder());
    let probe = DemoEncodingCache::new(usize::MAX);
    render_batch_cached(&model, &text, &[&request(&[1, 2], "a photo")], Some(&probe)).unwrap();
    let one = probe.bytes();
    // Room for two reference sets of two demonstrations, not three.
    let cache = DemoEncodingCache::new(2 * one + one / 2);
    let sets: Vec<Generation> = (0..3u8)
        .map(|i| request(&[10 + i, 20 + i], "a photo"))
        .collect();
    for set in &sets[..2] {
        render_batch_cached(&model, &text, &[set], Some(&cache)).unwrap();
    }
    // Set 0 is used again, so set 1 is the least recently used when set 2 arrives.
    let hit = render_batch_cached(&model, &text, &[&sets[0]], Some(&cache)).unwrap();
    assert_eq!(hit.cache_hits, 1);
    render_batch_cached(&model, &text, &[&sets[2]], Some(&cache)).unwrap();
    assert_eq!(cache.len(), 2);
    assert!(cache.bytes() <= cache.capacity_bytes());
    let kept = DemoEncodingCache::key("r1", &sets[0]);
    let dropped = DemoEncodingCache::key("r1", &sets[1]);
    assert!(cache.get(&kept).is_some(), "the recently used set stays");
    assert!(
        cache.get(&dropped).is_none(),
        "the least recently used set went"
    );

    // An encoding bigger than the whole cache is not kept; clear empties it.
    let tiny = DemoEncodingCache::new(one / 2);
    render_batch_cached(&model, &text, &[&sets[0]], Some(&tiny)).unwrap();
    assert!(tiny.is_empty());
    cache.clear();
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
}
