//! The degradations the scorer trains and measures on: what a small diffusion model does to an
//! image, at the model side.

use serde::{Deserialize, Serialize};
use suti_data::{RgbaImage, degrade};

/// One way of spoiling an image at the model side the way a small diffusion model's output is
/// spoilt: resampled down and back up, then box-blurred, then noised; each step is skipped when
/// its setting is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Degradation {
    /// The image is reduced to its side divided by this and scaled back up (`down_up`; 1: no
    /// resampling).
    pub downsample: u32,
    /// Box-blur radius in pixels (0: no blur).
    pub blur: u32,
    /// Amplitude of the uniform noise added to each colour channel, of 255 (0: no noise).
    pub noise: u8,
}

impl Default for Degradation {
    fn default() -> Self {
        Self {
            downsample: 1,
            blur: 0,
            noise: 0,
        }
    }
}

impl Degradation {
    /// The standard set, at the model side: half the resolution, a radius-1 blur, ±24 noise,
    /// and half the resolution with the noise — blur and noise are what the small models'
    /// generations show, often together.
    pub const STANDARD: [Degradation; 4] = [
        Degradation {
            downsample: 2,
            blur: 0,
            noise: 0,
        },
        Degradation {
            downsample: 1,
            blur: 1,
            noise: 0,
        },
        Degradation {
            downsample: 1,
            blur: 0,
            noise: 24,
        },
        Degradation {
            downsample: 2,
            blur: 0,
            noise: 24,
        },
    ];

    /// `img` degraded; `seed` draws the noise.
    pub fn apply(&self, img: &RgbaImage, seed: u64) -> RgbaImage {
        let mut out = if self.downsample > 1 {
            degrade::down_up(img, (img.width.min(img.height) / self.downsample).max(1))
        } else {
            img.clone()
        };
        if self.blur > 0 {
            out = degrade::box_blur(&out, self.blur);
        }
        if self.noise > 0 {
            out = degrade::add_noise(&out, self.noise, seed);
        }
        out
    }

    /// A short name, as the reports print it (`down_up 1/2 + noise ±24`).
    pub fn name(&self) -> String {
        let mut parts = Vec::new();
        if self.downsample > 1 {
            parts.push(format!("down_up 1/{}", self.downsample));
        }
        if self.blur > 0 {
            parts.push(format!("blur r{}", self.blur));
        }
        if self.noise > 0 {
            parts.push(format!("noise ±{}", self.noise));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" + ")
        }
    }
}

/// Which degraded copies of each training image the scorer trains on. The crawled images are
/// crisp and the generations it must judge are not; trained on crisp images only, the heads
/// score generations near zero against any caption.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Degradations {
    /// Crisp images only (the recipe before degraded copies).
    None,
    /// One copy per degradation of [`Degradation::STANDARD`].
    #[default]
    Standard,
    /// One copy per listed degradation.
    Custom(Vec<Degradation>),
}

impl Degradations {
    /// The degradations, one copy each.
    pub fn list(&self) -> Vec<Degradation> {
        match self {
            Self::None => Vec::new(),
            Self::Standard => Degradation::STANDARD.to_vec(),
            Self::Custom(list) => list.clone(),
        }
    }
}

impl std::str::FromStr for Degradations {
    type Err = String;

    /// `none` or `standard` (the command line's spelling).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "standard" => Ok(Self::Standard),
            other => Err(format!("{other:?}: expected none or standard")),
        }
    }
}
