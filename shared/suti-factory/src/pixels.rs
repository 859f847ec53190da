//! Images as model inputs: RGB in [-1, 1], channel-first, at the model's side — and back.

use candle_core::{Device, Tensor};
use suti_data::RgbaImage;

/// The RGB channels of `img` as a `(3, size, size)` vector in [-1, 1]: centre-cropped and
/// area-resampled when its side is not `size`, composited on black where transparent.
pub fn to_chw(img: &RgbaImage, size: usize) -> Vec<f32> {
    let resized;
    let img = if img.width as usize == size && img.height as usize == size {
        img
    } else {
        resized = img.centre_square(size as u32);
        &resized
    };
    let plane = size * size;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.pixels.chunks_exact(4).enumerate() {
        let alpha = f32::from(px[3]) / 255.0;
        for c in 0..3 {
            out[c * plane + i] = f32::from(px[c]) * alpha / 127.5 - 1.0;
        }
    }
    out
}

/// The mirror image (left ↔ right) of a `(3, size, size)` vector.
pub fn flip_chw(chw: &[f32], size: usize) -> Vec<f32> {
    let mut out = vec![0f32; chw.len()];
    for (row_in, row_out) in chw.chunks_exact(size).zip(out.chunks_exact_mut(size)) {
        for (x, v) in row_in.iter().enumerate() {
            row_out[size - 1 - x] = *v;
        }
    }
    out
}

/// An opaque RGBA image from a `(3, size, size)` vector in [-1, 1].
pub fn from_chw(chw: &[f32], size: usize) -> RgbaImage {
    let plane = size * size;
    let mut img = RgbaImage::new(size as u32, size as u32);
    for i in 0..plane {
        let px = &mut img.pixels[i * 4..i * 4 + 4];
        for c in 0..3 {
            px[c] = ((chw[c * plane + i] + 1.0) * 127.5)
                .round()
                .clamp(0.0, 255.0) as u8;
        }
        px[3] = 255;
    }
    img
}

/// The images of a `(b, 3, size, size)` tensor in [-1, 1].
pub fn images_from_tensor(batch: &Tensor) -> candle_core::Result<Vec<RgbaImage>> {
    let (b, _, size, _) = batch.dims4()?;
    let flat: Vec<f32> = batch.flatten_all()?.to_vec1()?;
    let each = flat.len() / b.max(1);
    Ok(flat.chunks_exact(each).map(|c| from_chw(c, size)).collect())
}

/// A `(b, 3, size, size)` tensor from `(3, size, size)` vectors.
pub fn batch_tensor(
    images: &[&[f32]],
    size: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let flat: Vec<f32> = images.iter().flat_map(|i| i.iter().copied()).collect();
    Tensor::from_vec(flat, (images.len(), 3, size, size), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_survive_the_round_trip_and_flip_twice_is_identity() {
        let mut img = RgbaImage::new(4, 4);
        for (i, p) in img.pixels.chunks_exact_mut(4).enumerate() {
            p.copy_from_slice(&[(i * 16) as u8, 255 - (i * 16) as u8, 7, 255]);
        }
        let chw = to_chw(&img, 4);
        assert_eq!(from_chw(&chw, 4).pixels, img.pixels);
        let flipped = flip_chw(&chw, 4);
        assert_eq!(
            flipped[0], chw[3],
            "the first pixel of a row comes from its last"
        );
        assert_eq!(flip_chw(&flipped, 4), chw);
        assert_eq!(to_chw(&img, 2).len(), 3 * 2 * 2);
    }
}
