//! Denoiser configuration and presets (architecture.md §7): `test` for unit tests, `tiny` for the
//! CPU (CI, the pipeline tests, the demo), `small` for a CPU with hours or any GPU, and `base`
//! (64×64, the Imagen base resolution) for a GPU.

use serde::{Deserialize, Serialize};

/// A named denoiser shape: what `--preset` chooses on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelPreset {
    /// Unit tests: the smallest network that still learns.
    Test,
    /// The CPU: CI, the pipeline tests and the demo.
    Tiny,
    /// A CPU with hours, or any GPU.
    Small,
    /// A GPU: 64×64, the Imagen base resolution.
    Base,
}

impl ModelPreset {
    /// Every preset with its name, smallest first.
    pub const ALL: [(Self, &'static str); 4] = [
        (Self::Test, "test"),
        (Self::Tiny, "tiny"),
        (Self::Small, "small"),
        (Self::Base, "base"),
    ];

    /// The preset's name, as it is written on the command line.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(preset, _)| *preset == self)
            .map_or("", |(_, name)| name)
    }
}

impl std::fmt::Display for ModelPreset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that tables can align presets by width.
        f.pad(self.name())
    }
}

impl std::str::FromStr for ModelPreset {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(preset, _)| *preset)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                format!(
                    "unknown preset {name:?}, expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Shape of the DiT denoiser (and of the apprentice, which is the same network with demonstrations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DitConfig {
    /// Image side in pixels.
    pub image_size: usize,
    /// Image channels.
    pub channels: usize,
    /// Patch side in pixels.
    pub patch: usize,
    /// Token width.
    pub width: usize,
    /// Transformer blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width as a multiple of `width`.
    pub mlp_ratio: usize,
    /// Width of the text encoder's token states (384 for MiniLM).
    pub text_dim: usize,
    /// Demonstrations the apprentice accepts at most (0: a plain text-to-image denoiser).
    pub max_demos: usize,
    /// How the apprentice's image tokens read the demonstrations (releases written before the
    /// choice existed are `shared`).
    #[serde(default)]
    pub demo_attention: DemoAttention,
}

/// How the apprentice's image tokens read its demonstrations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemoAttention {
    /// One softmax over [own | text | demonstration] keys, the demonstrations encoded by the
    /// same trainable blocks (Re-Imagen's shared encoder). With 3 demonstrations the text keeps
    /// about a quarter of its share of the keys.
    #[default]
    Shared,
    /// A second attention per block over the demonstration keys alone, its output added through
    /// a per-channel gate that starts at zero, so the apprentice starts as exactly the base and the
    /// text keeps its softmax. The base's blocks stay frozen and encode the demonstrations (their
    /// states at t = 0); only the readers (projections, gates, index embeddings) train.
    Gated,
    /// The `gated` readers, but the whole network fine-tunes with them, so it can learn to draw
    /// what it reads. The demonstrations' states come from a frozen copy of the base
    /// (`demo_encoder.*`, published with the release), so they stay computable once per
    /// demonstration while the network trains.
    GatedFinetuned,
}

impl DemoAttention {
    /// Whether the demonstrations are read by per-block gated readers from frozen states.
    pub fn is_gated(self) -> bool {
        matches!(self, Self::Gated | Self::GatedFinetuned)
    }
}

impl DitConfig {
    /// Unit tests: seconds on a CPU (16×16, patch 2, width 128, depth 4).
    pub fn test() -> Self {
        Self {
            image_size: 16,
            channels: 3,
            patch: 2,
            width: 128,
            depth: 4,
            heads: 4,
            mlp_ratio: 4,
            text_dim: 384,
            max_demos: 8,
            demo_attention: DemoAttention::Shared,
        }
    }

    /// CPU, CI and the demo: 32×32, patch 4, width 128, depth 4 (1.4M parameters). Sized so the
    /// whole pipeline, base model included, trains in under 30 minutes on two cores.
    pub fn tiny() -> Self {
        Self {
            image_size: 32,
            patch: 4,
            ..Self::test()
        }
    }

    /// A CPU with hours to spare, or any GPU: 32×32, patch 4, width 256, depth 6 (7.6M
    /// parameters, about 4× the cost of `tiny` per step).
    pub fn small() -> Self {
        Self {
            image_size: 32,
            patch: 4,
            width: 256,
            depth: 6,
            ..Self::test()
        }
    }

    /// GPU: 64×64, patch 4, width 512, depth 12.
    pub fn base() -> Self {
        Self {
            image_size: 64,
            patch: 4,
            width: 512,
            depth: 12,
            heads: 8,
            ..Self::test()
        }
    }

    /// A preset by name (`test`, `tiny`, `small`, `base`).
    pub fn preset(name: &str) -> Option<Self> {
        name.parse::<ModelPreset>().ok().map(Self::of)
    }

    /// The shape of `preset`.
    pub fn of(preset: ModelPreset) -> Self {
        match preset {
            ModelPreset::Test => Self::test(),
            ModelPreset::Tiny => Self::tiny(),
            ModelPreset::Small => Self::small(),
            ModelPreset::Base => Self::base(),
        }
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch
    }

    /// Image tokens.
    pub fn tokens(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Values per patch.
    pub fn patch_dim(&self) -> usize {
        self.patch * self.patch * self.channels
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }

    /// Checks that the shape is consistent.
    pub fn validate(&self) -> Result<(), String> {
        if self.patch == 0 || !self.image_size.is_multiple_of(self.patch) {
            return Err(format!(
                "image_size {} is not a multiple of patch {}",
                self.image_size, self.patch
            ));
        }
        if self.heads == 0 || !self.width.is_multiple_of(self.heads) {
            return Err(format!(
                "width {} is not a multiple of heads {}",
                self.width, self.heads
            ));
        }
        if !self.width.is_multiple_of(4) {
            return Err("width must be a multiple of 4 (2-D sin-cos positions)".into());
        }
        Ok(())
    }
}
