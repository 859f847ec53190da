//! Turning fetched image bytes into a crawled image (architecture.md §5): decoded under limits (a
//! decompression bomb or absurd dimensions is refused before it can allocate), content-hashed
//! (exact duplicates are stored once, under `raw/{sha256}` and `images/{sha256}.png`), normalised to
//! the model resolution (centre square, area-averaged), and perceptually hashed for near
//! duplicates.

use sha2::{Digest, Sha256};
use suti_data::{DecodeLimits, ImageError, RgbaImage};

use crate::phash::phash;

/// Why an image was skipped; the label is the `reason` of the skip metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageSkip {
    /// Not a decodable image (wrong type, truncated, corrupt).
    #[error("undecodable image: {0}")]
    Undecodable(String),
    /// Over the dimension or memory limits (decompression bombs land here).
    #[error("image too large: {0}")]
    TooLarge(String),
    /// Smaller than the smallest useful photo (icons, tracking pixels).
    #[error("image too small: {width}×{height}")]
    TooSmall {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
}

impl ImageSkip {
    /// Low-cardinality label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Undecodable(_) => "undecodable_image",
            Self::TooLarge(_) => "image_too_large",
            Self::TooSmall { .. } => "image_too_small",
        }
    }
}

/// A crawled image, ready to store.
#[derive(Debug, Clone)]
pub struct IngestedImage {
    /// Hex SHA-256 of the bytes as crawled: the identity of the image.
    pub sha256: String,
    /// Width as crawled.
    pub width: u32,
    /// Height as crawled.
    pub height: u32,
    /// The image at the model resolution.
    pub normalised: RgbaImage,
    /// PNG bytes of `normalised`.
    pub normalised_png: Vec<u8>,
    /// The image at the image tower's input size (224), for embedding.
    pub tower_input: RgbaImage,
    /// Perceptual hash of the normalised image.
    pub phash: u64,
}

impl IngestedImage {
    /// Storage key of the bytes as crawled.
    pub fn raw_key(&self) -> String {
        suti_storage::layout::raw_image(&self.sha256)
    }

    /// Storage key of the normalised PNG.
    pub fn image_key(&self) -> String {
        suti_storage::layout::image(&self.sha256)
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decodes, checks and normalises one fetched image.
pub fn ingest(
    bytes: &[u8],
    limits: DecodeLimits,
    model_size: u32,
    min_side: u32,
) -> Result<IngestedImage, ImageSkip> {
    let image = RgbaImage::from_png_with_limits(bytes, limits).map_err(|e| match e {
        ImageError::TooLarge(m) => ImageSkip::TooLarge(m),
        ImageError::Malformed(m) | ImageError::Unsupported(m) => ImageSkip::Undecodable(m),
    })?;
    if image.width.min(image.height) < min_side {
        return Err(ImageSkip::TooSmall {
            width: image.width,
            height: image.height,
        });
    }
    let normalised = image.centre_square(model_size);
    Ok(IngestedImage {
        sha256: sha256_hex(bytes),
        width: image.width,
        height: image.height,
        normalised_png: normalised.to_png(),
        tower_input: image.centre_square(224),
        phash: phash(&normalised),
        normalised,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(w: u32, h: u32) -> Vec<u8> {
        let mut img = RgbaImage::new(w, h);
        for y in 0..h {
            for x in 0..w {
                img.put(x, y, [(x * 3) as u8, (y * 5) as u8, 90, 255]);
            }
        }
        img.to_png()
    }

    #[test]
    fn photos_are_hashed_and_normalised() {
        let bytes = photo(96, 80);
        let a = ingest(&bytes, DecodeLimits::default(), 32, 24).unwrap();
        assert_eq!((a.width, a.height), (96, 80));
        assert_eq!((a.normalised.width, a.normalised.height), (32, 32));
        assert_eq!(a.sha256.len(), 64);
        assert_eq!(a.image_key(), format!("images/{}.png", a.sha256));
        let again = ingest(&bytes, DecodeLimits::default(), 32, 24).unwrap();
        assert_eq!(
            (again.sha256, again.phash),
            (a.sha256, a.phash),
            "the same bytes, the same identity"
        );
        assert_eq!(
            RgbaImage::from_png(&a.normalised_png).unwrap(),
            a.normalised
        );
    }

    #[test]
    fn hostile_and_useless_images_are_skipped_with_a_reason() {
        let limits = DecodeLimits::default();
        let skip = |bytes: &[u8]| ingest(bytes, limits, 32, 24).unwrap_err().reason();
        assert_eq!(skip(b"<html>not an image</html>"), "undecodable_image");
        let png = photo(64, 64);
        assert_eq!(skip(&png[..png.len() / 3]), "undecodable_image");
        assert_eq!(skip(&photo(16, 16)), "image_too_small");
        assert_eq!(
            skip(suti_data::synthweb::decompression_bomb()),
            "image_too_large"
        );
    }
}
