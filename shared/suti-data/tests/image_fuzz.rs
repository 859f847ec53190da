//! Hostile PNGs: real encodings damaged (bytes flipped, cut, inserted, repeated) never panic the
//! decoder, and what it accepts stays within the limits it was given — the path every uploaded
//! demonstration and crawled image takes. `PROPTEST_CASES` raises the case count.

use proptest::prelude::*;
use suti_data::{DecodeLimits, RgbaImage};
use suti_testkit::fuzz::{fuzz_config, mutate, mutation};

/// A PNG of a small image with varied pixels (so that compression has work to do).
fn png() -> impl Strategy<Value = Vec<u8>> {
    (1u32..48, 1u32..48, any::<u64>()).prop_map(|(w, h, seed)| {
        let mut image = RgbaImage::new(w, h);
        let mut x = seed | 1;
        for byte in image.pixels.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        image.to_png()
    })
}

const LIMITS: DecodeLimits = DecodeLimits {
    max_side: 40,
    max_pixels: 40 * 40,
    max_bytes: 40 * 40 * 8,
};

proptest! {
    #![proptest_config(fuzz_config(2048))]

    #[test]
    fn damaged_pngs_are_decoded_within_limits_or_refused(
        bytes in png(),
        mutations in prop::collection::vec(mutation(), 0..5),
    ) {
        if let Ok(image) = RgbaImage::from_png_with_limits(&mutate(bytes, &mutations), LIMITS) {
            prop_assert!(image.width <= LIMITS.max_side && image.height <= LIMITS.max_side);
            prop_assert!(u64::from(image.width) * u64::from(image.height) <= LIMITS.max_pixels);
            prop_assert_eq!(image.pixels.len(), (image.width * image.height * 4) as usize);
        }
    }
}
