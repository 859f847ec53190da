//! Degradations, and which images the scorer trains on and which it only measures.

use candle_core::Device;
use suti_data::RgbaImage;
use suti_models::ScorerConfig;
use suti_rng::SplitMix64;

use super::*;

/// A 32×32 image of four coloured quadrants drawn from `seed`, with a one-pixel checker
/// over it (detail the degradations remove).
fn image(seed: u64) -> RgbaImage {
    let mut rng = SplitMix64::new(seed);
    let colours: Vec<[u8; 3]> = (0..4)
        .map(|_| [0; 3].map(|_| (rng.below(200) + 28) as u8))
        .collect();
    let mut img = RgbaImage::new(32, 32);
    for y in 0..32 {
        for x in 0..32 {
            let c = colours[(y / 16 * 2 + x / 16) as usize];
            let d = if (x + y) % 2 == 0 { 20 } else { 0 };
            img.put(x, y, [c[0] + d, c[1] + d, c[2] + d, 255]);
        }
    }
    img
}

#[test]
fn degradations_spoil_images_reproducibly_and_are_named() {
    let img = image(1);
    let names: Vec<String> = Degradation::STANDARD
        .iter()
        .map(Degradation::name)
        .collect();
    assert_eq!(
        names,
        [
            "down_up 1/2",
            "blur r1",
            "noise ±24",
            "down_up 1/2 + noise ±24"
        ]
    );
    for d in Degradation::STANDARD {
        let spoilt = d.apply(&img, 7);
        assert_eq!((spoilt.width, spoilt.height), (32, 32));
        assert_ne!(spoilt, img, "{} changed nothing", d.name());
        assert_eq!(spoilt, d.apply(&img, 7), "{} is not reproducible", d.name());
    }
    assert_eq!(Degradation::default().apply(&img, 7), img);
    assert_eq!(Degradation::default().name(), "none");
    assert_eq!(Degradations::default(), Degradations::Standard);
    assert!(Degradations::None.list().is_empty());
    assert_eq!("none".parse(), Ok(Degradations::None));
    assert_eq!("standard".parse(), Ok(Degradations::Standard));
    assert!("blurry".parse::<Degradations>().is_err());
    let custom: ScorerTrainConfig =
        serde_json::from_str(r#"{"degradations": {"custom": [{"blur": 2}]}}"#).unwrap();
    assert_eq!(
        custom.degradations.list(),
        [Degradation {
            blur: 2,
            ..Degradation::default()
        }]
    );
}

#[test]
fn copies_are_trained_for_training_pairs_and_only_measured_for_held_out_ones() {
    let device = Device::Cpu;
    let images: Vec<RgbaImage> = (0..10).map(image).collect();
    let mut rng = SplitMix64::new(3);
    let sentences: Vec<Vec<f32>> = (0..10).map(|_| rng.normals(6)).collect();
    let config = ScorerConfig {
        image_dim: 12,
        text_dim: 6,
        hidden: 16,
        embed_dim: 8,
        temperature: 0.07,
    };
    // Features: the mean colour of each quadrant.
    let featurise = |img: &RgbaImage| -> Vec<f32> {
        let mut f = vec![0f32; 12];
        for y in 0..32 {
            for x in 0..32 {
                let q = (y / 16 * 2 + x / 16) as usize;
                for c in 0..3 {
                    f[q * 3 + c] += f32::from(img.get(x, y)[c]) / (255.0 * 256.0);
                }
            }
        }
        f
    };
    for (degradations, copies) in [(Degradations::None, 0), (Degradations::Standard, 4)] {
        let train = ScorerTrainConfig {
            steps: 5,
            batch: 4,
            degradations,
            ..ScorerTrainConfig::default()
        };
        let mut seen = Vec::new();
        let (_, report) = train_scorer_on_images(
            &images,
            &sentences,
            |batch| {
                seen = batch.to_vec();
                Ok(batch.iter().map(featurise).collect())
            },
            &config,
            &train,
            &device,
            |_, _| {},
        )
        .unwrap();
        assert_eq!((report.train_pairs, report.heldout_pairs), (8, 2));
        assert_eq!(report.degraded_copies, copies);
        // The crisp images, the training pairs' copies, then four measured copies of each
        // held-out pair; a copy's pair is the crisp image nearest it (the quadrants'
        // colours survive the degradations).
        assert_eq!(seen.len(), 10 + 8 * copies + 2 * 4);
        assert_eq!(seen[..10], images[..]);
        let pair_of = |img: &RgbaImage| {
            let f = featurise(img);
            (0..10)
                .min_by(|&a, &b| {
                    let d = |i: usize| -> f32 {
                        featurise(&images[i])
                            .iter()
                            .zip(&f)
                            .map(|(x, y)| (x - y).powi(2))
                            .sum()
                    };
                    d(a).total_cmp(&d(b))
                })
                .unwrap()
        };
        let trained: std::collections::BTreeSet<usize> =
            seen[10..10 + 8 * copies].iter().map(pair_of).collect();
        let measured: std::collections::BTreeSet<usize> =
            seen[10 + 8 * copies..].iter().map(pair_of).collect();
        assert_eq!(trained.len(), if copies > 0 { 8 } else { 0 });
        assert_eq!(measured.len(), 2);
        assert!(
            trained.is_disjoint(&measured),
            "a held-out pair's copy was trained on"
        );
        assert_eq!(report.heldout_degraded.len(), 4);
        assert!(report.heldout_accuracy_degraded.is_some());
    }
    // Features without images: nothing degraded to measure.
    let features: Vec<Vec<f32>> = images.iter().map(featurise).collect();
    let (_, report) = train_scorer(
        &features,
        &sentences,
        &config,
        &ScorerTrainConfig {
            steps: 5,
            batch: 4,
            ..ScorerTrainConfig::default()
        },
        &device,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(report.degraded_copies, 0);
    assert_eq!(report.heldout_accuracy_degraded, None);
}
