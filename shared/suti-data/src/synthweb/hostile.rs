//! The hostile resources a crawler must survive: their paths, and the bodies the site answers
//! them with.

use std::sync::OnceLock;

use crate::rng::fnv1a64;

/// A body far over any sane image size.
pub const HUGE: &str = "/hostile/huge.png";
/// A small PNG that decodes to 20000×20000 pixels.
pub const BOMB: &str = "/hostile/bomb.png";
/// Redirects to [`LOOP_B`], which redirects back.
pub const LOOP_A: &str = "/hostile/loop-a";
/// Redirects to [`LOOP_A`].
pub const LOOP_B: &str = "/hostile/loop-b";
/// A page that trickles out over many seconds.
pub const SLOW: &str = "/hostile/slow.html";

/// A valid PNG that decodes to 20000×20000 one-bit pixels (50 MB raw, far more as RGBA) from a
/// body of a few hundred kilobytes. Built once.
pub fn decompression_bomb() -> &'static [u8] {
    static BOMB_BODY: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB_BODY.get_or_init(|| {
        let side = 20_000u32;
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, side, side);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::One);
            encoder.set_compression(png::Compression::Fast);
            let mut writer = encoder.write_header().expect("in-memory PNG header");
            let mut stream = writer.stream_writer().expect("in-memory PNG stream");
            let row = vec![0u8; side as usize / 8];
            for _ in 0..side {
                std::io::Write::write_all(&mut stream, &row).expect("in-memory PNG row");
            }
            stream.finish().expect("in-memory PNG end");
        }
        out
    })
}

/// The first bytes of the huge body, then a deterministic pseudo-random tail.
pub fn huge_chunk(offset: usize, len: usize) -> Vec<u8> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    (offset..offset + len)
        .map(|i| {
            if i < SIGNATURE.len() {
                SIGNATURE[i]
            } else {
                (fnv1a64(&(i as u64 / 8).to_le_bytes()) >> ((i % 8) * 8)) as u8
            }
        })
        .collect()
}
