//! The frozen pretrained towers every factory stage shares: MiniLM for text and EfficientNet-Lite0
//! for images, from the files `scripts/fetch-assets` puts in the assets folder unless configured.

use std::path::{Path, PathBuf};

use candle_core::Device;
use suti_models::image_tower::ImageTower;
use suti_models::text::TextEncoder;

use crate::{FactoryError, Result};

/// Where MiniLM lives: `configured`, or `minilm/` in the assets folder when that is empty.
pub fn text_encoder_dir(configured: &str) -> PathBuf {
    if configured.is_empty() {
        suti_data::Assets::default_dir().join("minilm")
    } else {
        PathBuf::from(configured)
    }
}

/// Where the image tower's weights live: `configured`, or the fetched copy when that is empty.
pub fn image_tower_path(configured: &str) -> PathBuf {
    if configured.is_empty() {
        suti_data::Assets::default_dir().join("efficientnet/efficientnet-lite0.pth")
    } else {
        PathBuf::from(configured)
    }
}

/// Loads MiniLM from `dir`.
pub fn load_text_encoder(dir: &Path, device: &Device) -> Result<TextEncoder> {
    TextEncoder::from_dir(dir, device).map_err(|e| {
        FactoryError::Invalid(format!(
            "text encoder {}: {e} (run scripts/fetch-assets)",
            dir.display()
        ))
    })
}

/// Loads MiniLM from its configured folder (`models.text_encoder`; empty for the fetched copy).
pub fn configured_text_encoder(configured: &str, device: &Device) -> Result<TextEncoder> {
    load_text_encoder(&text_encoder_dir(configured), device)
}

/// Loads the image tower from its `.pth` file.
pub fn load_image_tower(path: &Path, device: &Device) -> Result<ImageTower> {
    let bytes = std::fs::read(path).map_err(|e| {
        FactoryError::Invalid(format!(
            "image tower {}: {e} (run scripts/fetch-assets)",
            path.display()
        ))
    })?;
    ImageTower::from_pth_bytes(&bytes, device)
        .map_err(|e| FactoryError::Invalid(format!("image tower {}: {e}", path.display())))
}
