//! The image type every part of suti passes around (8-bit RGBA), its PNG codec and a JPEG decoder
//! (for photographs users bring, such as the real DreamBench set), with decoding limits so that a hostile file (a decompression bomb, absurd dimensions) is refused before it
//! can allocate.

use std::io::Cursor;

/// An 8-bit RGBA image, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbaImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes.
    pub pixels: Vec<u8>,
}

/// Limits applied while decoding untrusted images.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest width or height accepted.
    pub max_side: u32,
    /// Largest width × height accepted.
    pub max_pixels: u64,
    /// Largest decoded buffer the decoder may allocate, in bytes.
    pub max_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_side: 4096,
            max_pixels: 4096 * 4096,
            max_bytes: 64 << 20,
        }
    }
}

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not a PNG, truncated, or corrupt.
    #[error("malformed image: {0}")]
    Malformed(String),
    /// Larger than the limits allow.
    #[error("image too large: {0}")]
    TooLarge(String),
    /// A PNG variant this codec does not handle.
    #[error("unsupported image: {0}")]
    Unsupported(String),
}

impl RgbaImage {
    /// A fully transparent image.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            pixels: vec![0; width as usize * height as usize * 4],
        }
    }

    /// The pixel at (x, y).
    pub fn get(&self, x: u32, y: u32) -> [u8; 4] {
        let i = (y as usize * self.width as usize + x as usize) * 4;
        [
            self.pixels[i],
            self.pixels[i + 1],
            self.pixels[i + 2],
            self.pixels[i + 3],
        ]
    }

    /// Sets the pixel at (x, y).
    pub fn put(&mut self, x: u32, y: u32, rgba: [u8; 4]) {
        let i = (y as usize * self.width as usize + x as usize) * 4;
        self.pixels[i..i + 4].copy_from_slice(&rgba);
    }

    /// The centre square of the image resampled to `size`×`size` by area averaging (each output
    /// pixel averages the source pixels it covers, alpha-weighted) — the normalisation every
    /// crawled image goes through before it reaches a model.
    pub fn centre_square(&self, size: u32) -> Self {
        let side = self.width.min(self.height) as f32;
        let (x0, y0) = (
            (self.width as f32 - side) / 2.0,
            (self.height as f32 - side) / 2.0,
        );
        let step = side / size as f32;
        let mut out = Self::new(size, size);
        for oy in 0..size {
            for ox in 0..size {
                let (fx0, fy0) = (x0 + ox as f32 * step, y0 + oy as f32 * step);
                let (sx0, sy0) = (fx0.floor() as u32, fy0.floor() as u32);
                let sx1 = ((fx0 + step).ceil() as u32).clamp(sx0 + 1, self.width);
                let sy1 = ((fy0 + step).ceil() as u32).clamp(sy0 + 1, self.height);
                let mut acc = [0f32; 4];
                let mut n = 0f32;
                for y in sy0..sy1 {
                    for x in sx0..sx1 {
                        let p = self.get(x, y);
                        let a = f32::from(p[3]) / 255.0;
                        for c in 0..3 {
                            acc[c] += f32::from(p[c]) * a;
                        }
                        acc[3] += a;
                        n += 1.0;
                    }
                }
                let alpha = acc[3] / n.max(1.0);
                let colour = |c: usize| if acc[3] > 0.0 { acc[c] / acc[3] } else { 0.0 };
                out.put(
                    ox,
                    oy,
                    [
                        colour(0).round() as u8,
                        colour(1).round() as u8,
                        colour(2).round() as u8,
                        (alpha * 255.0).round() as u8,
                    ],
                );
            }
        }
        out
    }

    /// Encodes as PNG (RGBA, 8-bit).
    pub fn to_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
            encoder.set_color(png::ColorType::Rgba);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.set_compression(png::Compression::Fast);
            let mut writer = encoder
                .write_header()
                .expect("writing a PNG header to memory cannot fail");
            writer
                .write_image_data(&self.pixels)
                .expect("the buffer matches the header");
        }
        out
    }

    /// Decodes a PNG with the default limits.
    pub fn from_png(bytes: &[u8]) -> Result<Self, ImageError> {
        Self::from_png_with_limits(bytes, DecodeLimits::default())
    }

    /// Decodes a PNG, refusing anything over `limits` before allocating for it. Any bit depth and
    /// colour type is converted to 8-bit RGBA.
    pub fn from_png_with_limits(bytes: &[u8], limits: DecodeLimits) -> Result<Self, ImageError> {
        let mut decoder = png::Decoder::new_with_limits(
            Cursor::new(bytes),
            png::Limits {
                bytes: limits.max_bytes,
            },
        );
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let header = decoder
            .read_header_info()
            .map_err(|e| ImageError::Malformed(e.to_string()))?;
        let (width, height) = (header.width, header.height);
        check_dimensions(width, height, limits)?;
        let mut reader = decoder.read_info().map_err(|e| match e {
            png::DecodingError::LimitsExceeded => {
                ImageError::TooLarge("decoded size exceeds the memory limit".into())
            }
            other => ImageError::Malformed(other.to_string()),
        })?;
        let buffer_size = reader
            .output_buffer_size()
            .ok_or_else(|| ImageError::TooLarge("decoded size overflows".into()))?;
        if buffer_size > limits.max_bytes {
            return Err(ImageError::TooLarge(
                "decoded size exceeds the memory limit".into(),
            ));
        }
        let mut buffer = vec![0; buffer_size];
        let info = reader
            .next_frame(&mut buffer)
            .map_err(|e| ImageError::Malformed(e.to_string()))?;
        buffer.truncate(info.buffer_size());
        let channels = match info.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => {
                return Err(ImageError::Unsupported(
                    "indexed colour after expansion".into(),
                ));
            }
        };
        if info.bit_depth != png::BitDepth::Eight {
            return Err(ImageError::Unsupported(format!(
                "bit depth {:?} after expansion",
                info.bit_depth
            )));
        }
        let pixels_count = width as usize * height as usize;
        let mut pixels = Vec::with_capacity(pixels_count * 4);
        for px in buffer.chunks_exact(channels).take(pixels_count) {
            let rgba = match channels {
                1 => [px[0], px[0], px[0], 255],
                2 => [px[0], px[0], px[0], px[1]],
                3 => [px[0], px[1], px[2], 255],
                _ => [px[0], px[1], px[2], px[3]],
            };
            pixels.extend_from_slice(&rgba);
        }
        if pixels.len() != pixels_count * 4 {
            return Err(ImageError::Malformed("truncated image data".into()));
        }
        Ok(Self {
            width,
            height,
            pixels,
        })
    }

    /// Decodes a JPEG (greyscale, RGB or CMYK; 8-bit), refusing anything over `limits` from its
    /// header before the pixels are decoded.
    pub fn from_jpeg_with_limits(bytes: &[u8], limits: DecodeLimits) -> Result<Self, ImageError> {
        let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
        decoder.set_max_decoding_buffer_size(limits.max_bytes);
        decoder
            .read_info()
            .map_err(|e| ImageError::Malformed(e.to_string()))?;
        let info = decoder
            .info()
            .ok_or_else(|| ImageError::Malformed("no JPEG header".into()))?;
        let (width, height) = (u32::from(info.width), u32::from(info.height));
        check_dimensions(width, height, limits)?;
        let data = decoder.decode().map_err(|e| match e {
            jpeg_decoder::Error::Format(m) if m.contains("buffer") => ImageError::TooLarge(m),
            other => ImageError::Malformed(other.to_string()),
        })?;
        let count = width as usize * height as usize;
        let mut pixels = Vec::with_capacity(count * 4);
        match info.pixel_format {
            jpeg_decoder::PixelFormat::L8 => {
                for &v in data.iter().take(count) {
                    pixels.extend_from_slice(&[v, v, v, 255]);
                }
            }
            jpeg_decoder::PixelFormat::RGB24 => {
                for px in data.chunks_exact(3).take(count) {
                    pixels.extend_from_slice(&[px[0], px[1], px[2], 255]);
                }
            }
            jpeg_decoder::PixelFormat::CMYK32 => {
                // Adobe JPEGs store inverted CMYK; the decoder hands it back as stored.
                for px in data.chunks_exact(4).take(count) {
                    let k = u16::from(px[3]);
                    let channel = |c: u8| (u16::from(c) * k / 255) as u8;
                    pixels.extend_from_slice(&[
                        channel(px[0]),
                        channel(px[1]),
                        channel(px[2]),
                        255,
                    ]);
                }
            }
            jpeg_decoder::PixelFormat::L16 => {
                return Err(ImageError::Unsupported("16-bit JPEG".into()));
            }
        }
        if pixels.len() != count * 4 {
            return Err(ImageError::Malformed("truncated image data".into()));
        }
        Ok(Self {
            width,
            height,
            pixels,
        })
    }

    /// Decodes a PNG or a JPEG, told apart by their signatures.
    pub fn decode_with_limits(bytes: &[u8], limits: DecodeLimits) -> Result<Self, ImageError> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Self::from_jpeg_with_limits(bytes, limits)
        } else {
            Self::from_png_with_limits(bytes, limits)
        }
    }
}

/// Refuses zero-sized images and those over the side or pixel-count limits.
fn check_dimensions(width: u32, height: u32, limits: DecodeLimits) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Malformed("zero-sized image".into()));
    }
    if width > limits.max_side || height > limits.max_side {
        return Err(ImageError::TooLarge(format!(
            "{width}×{height} exceeds the {} pixel side limit",
            limits.max_side
        )));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageError::TooLarge(format!(
            "{width}×{height} exceeds {} pixels",
            limits.max_pixels
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips() {
        let mut img = RgbaImage::new(5, 3);
        img.put(1, 2, [10, 20, 30, 40]);
        img.put(4, 0, [255, 0, 128, 255]);
        let back = RgbaImage::from_png(&img.to_png()).unwrap();
        assert_eq!(back, img);
    }

    #[test]
    fn centre_square_crops_and_averages() {
        let mut img = RgbaImage::new(6, 4);
        for y in 0..4 {
            for x in 0..6 {
                let v = if x < 3 { 0 } else { 200 };
                img.put(x, y, [v, v, v, 255]);
            }
        }
        let sq = img.centre_square(2);
        assert_eq!((sq.width, sq.height), (2, 2));
        assert_eq!(
            sq.get(0, 0),
            [0, 0, 0, 255],
            "left half of the centre square is dark"
        );
        assert_eq!(sq.get(1, 1), [200, 200, 200, 255]);
        let same = img.centre_square(4);
        assert_eq!(
            same.get(0, 0),
            img.get(1, 0),
            "a 4×4 centre square starts at column 1"
        );
    }

    #[test]
    fn hostile_inputs_are_refused() {
        assert!(matches!(
            RgbaImage::from_png(b"not a png"),
            Err(ImageError::Malformed(_))
        ));
        let png = RgbaImage::new(64, 64).to_png();
        assert!(
            RgbaImage::from_png(&png[..png.len() / 2]).is_err(),
            "truncated"
        );
        let limits = DecodeLimits {
            max_side: 32,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            RgbaImage::from_png_with_limits(&png, limits),
            Err(ImageError::TooLarge(_))
        ));
    }
}
