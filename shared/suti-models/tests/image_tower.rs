//! The pretrained image tower recognises known photographs (scikit-image's sample data, fetched by
//! `scripts/fetch-assets`): ImageNet classes from the ImageNet-1k index.

use candle_core::{Device, Tensor};
use suti_data::RgbaImage;
use suti_models::image_tower::{ImageTower, preprocess};

fn assets() -> std::path::PathBuf {
    std::env::var_os("SUTI_ASSETS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/suti/assets")
        })
}

fn photo(name: &str) -> Tensor {
    let bytes =
        std::fs::read(assets().join("testimages").join(name)).expect("scripts/fetch-assets");
    let img = RgbaImage::from_png_with_limits(&bytes, suti_data::DecodeLimits::default()).unwrap();
    preprocess(
        img.width as usize,
        img.height as usize,
        &img.pixels,
        &Device::Cpu,
    )
    .unwrap()
}

fn top5(logits: &Tensor) -> Vec<usize> {
    let v = logits.to_vec1::<f32>().unwrap();
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|a, b| v[*b].total_cmp(&v[*a]));
    idx.truncate(5);
    idx
}

#[test]
fn efficientnet_lite0_classifies_known_photographs() {
    let bytes = std::fs::read(assets().join("efficientnet/efficientnet-lite0.pth"))
        .expect("scripts/fetch-assets");
    let tower = ImageTower::from_pth_bytes(&bytes, &Device::Cpu).unwrap();
    let batch = Tensor::stack(&[photo("chelsea.png"), photo("coffee.png")], 0).unwrap();
    let logits = tower.logits(&batch).unwrap();
    let cat = top5(&logits.get(0).unwrap());
    let coffee = top5(&logits.get(1).unwrap());
    println!("chelsea top-5 {cat:?}, coffee top-5 {coffee:?}");
    // ImageNet-1k: 281 tabby, 282 tiger cat, 285 Egyptian cat; 967 espresso, 968 cup, 504 coffee mug.
    assert!([281, 282, 285].contains(&cat[0]), "chelsea: {cat:?}");
    assert!(
        coffee.iter().take(2).any(|c| [967, 968, 504].contains(c)),
        "coffee: {coffee:?}"
    );

    // Features: an image is closer to its mirror than to a different photograph.
    let mirrored = batch.get(0).unwrap().flip(&[2]).unwrap();
    let embed = tower
        .embed(
            &Tensor::stack(&[batch.get(0).unwrap(), mirrored, batch.get(1).unwrap()], 0).unwrap(),
        )
        .unwrap();
    let e = embed.to_vec2::<f32>().unwrap();
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(
        cos(&e[0], &e[1]) > cos(&e[0], &e[2]) + 0.2,
        "{} vs {}",
        cos(&e[0], &e[1]),
        cos(&e[0], &e[2])
    );
}

/// The channels-last CPU kernels give the features candle's own convolutions gave, at every tap,
/// at the side the crawler uses and at the smaller side evaluation uses.
#[test]
fn channels_last_kernels_match_candle_convolutions() {
    use suti_models::image_tower::TowerTap;
    let bytes = std::fs::read(assets().join("efficientnet/efficientnet-lite0.pth"))
        .expect("scripts/fetch-assets");
    let tower = ImageTower::from_pth_bytes(&bytes, &Device::Cpu).unwrap();
    let photos = Tensor::stack(&[photo("chelsea.png"), photo("coffee.png")], 0).unwrap();
    let taps: Vec<TowerTap> = (0..16)
        .map(TowerTap::Block)
        .chain([TowerTap::Head])
        .collect();
    for side in [224, 96] {
        let images = photos.interpolate2d(side, side).unwrap();
        let fast = tower.tap_features(&images, &taps).unwrap();
        let reference = tower.tap_features_composed(&images, &taps).unwrap();
        for ((tap, f), r) in taps.iter().zip(&fast).zip(&reference) {
            assert_eq!(f.dims(), r.dims(), "{tap:?}");
            let (f, r) = (
                f.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                r.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            let worst = f
                .iter()
                .zip(&r)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "side {side}, {tap:?}: differs by {worst}");
        }
    }
}
