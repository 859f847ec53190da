//! The JPEG decoder on a real photograph (scikit-image's `rocket.jpg`, fetched by
//! `scripts/fetch-assets`): it decodes to the right size with real content, and the limits refuse
//! it before the pixels are decoded.

use suti_data::{DecodeLimits, ImageError, RgbaImage};

fn rocket() -> Vec<u8> {
    let dir = std::env::var_os("SUTI_ASSETS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/suti/assets")
        });
    std::fs::read(dir.join("testimages/rocket.jpg")).expect("run scripts/fetch-assets")
}

#[test]
fn a_photograph_decodes_to_its_size_with_varied_content() {
    let img = RgbaImage::decode_with_limits(&rocket(), DecodeLimits::default()).unwrap();
    assert_eq!((img.width, img.height), (640, 427));
    assert!(img.pixels.chunks_exact(4).all(|p| p[3] == 255));
    let greys: Vec<f32> = img
        .pixels
        .chunks_exact(4)
        .map(|p| (f32::from(p[0]) + f32::from(p[1]) + f32::from(p[2])) / 3.0)
        .collect();
    let mean = greys.iter().sum::<f32>() / greys.len() as f32;
    let spread =
        (greys.iter().map(|g| (g - mean).powi(2)).sum::<f32>() / greys.len() as f32).sqrt();
    assert!(
        spread > 20.0,
        "a photograph, not a flat field: σ = {spread}"
    );
    // The same picture survives the model-side normalisation.
    let small = img.centre_square(32);
    assert_eq!((small.width, small.height), (32, 32));
}

#[test]
fn limits_refuse_a_large_photograph_from_its_header() {
    let limits = DecodeLimits {
        max_side: 512,
        ..DecodeLimits::default()
    };
    let err = RgbaImage::decode_with_limits(&rocket(), limits).unwrap_err();
    assert!(matches!(err, ImageError::TooLarge(_)), "{err}");
    let truncated = &rocket()[..200];
    assert!(RgbaImage::decode_with_limits(truncated, DecodeLimits::default()).is_err());
}
