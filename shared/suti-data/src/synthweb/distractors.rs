//! The distractor images every page carries beside the subject's photos.

use crate::canvas::{Canvas, rgb};
use crate::image::RgbaImage;

/// A striped banner: a distractor image shared by many pages.
pub(super) fn banner(n: u64, size: u32) -> RgbaImage {
    let colours = [
        [rgb(230, 60, 60), rgb(250, 200, 60)],
        [rgb(40, 90, 200), rgb(240, 240, 250)],
        [rgb(40, 160, 90), rgb(20, 40, 30)],
    ];
    let [a, b] = colours[n as usize % 3];
    let mut canvas = Canvas::new(size * 3, size / 2, a);
    for i in 0..12 {
        let x = i as f32 / 12.0;
        canvas.polygon(
            &[(x, 0.0), (x + 0.04, 0.0), (x - 0.04, 1.0), (x - 0.08, 1.0)],
            b,
            1.0,
        );
    }
    canvas.to_image()
}

/// The site's logo: a distractor on every page.
pub(super) fn logo(size: u32) -> RgbaImage {
    let mut canvas = Canvas::new(size / 2, size / 2, rgb(30, 30, 60));
    canvas.ellipse(0.5, 0.5, 0.35, 0.35, rgb(250, 200, 40), 1.0);
    canvas.ellipse(0.5, 0.5, 0.2, 0.2, rgb(30, 30, 60), 1.0);
    canvas.to_image()
}
