//! The `models` section: the frozen pretrained towers, the device every model runs on, and how
//! stages follow published models.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::choice::unknown_choice;

/// Where the models run: written `cpu`, `cuda` (the first GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelDevice {
    /// The CPU.
    #[default]
    Cpu,
    /// The CUDA GPU of this ordinal (needs a binary built with the `cuda` feature).
    Cuda(usize),
}

impl fmt::Display for ModelDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for ModelDevice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ordinal = s.strip_prefix("cuda:").map(str::parse::<usize>);
        match (s, ordinal) {
            ("cpu", _) => Ok(Self::Cpu),
            ("cuda", _) => Ok(Self::Cuda(0)),
            (_, Some(Ok(n))) => Ok(Self::Cuda(n)),
            _ => Err(unknown_choice(s, &["cpu", "cuda", "cuda:N"])),
        }
    }
}

impl Serialize for ModelDevice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModelDevice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The frozen pretrained towers, where the models run, and how stages follow published models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Where every stage, serving and the jobs run their models.
    #[serde(default)]
    pub device: ModelDevice,
    /// Folder of MiniLM (`model.safetensors`, `tokenizer.json`, `config.json`); empty for the
    /// copy `scripts/fetch-assets` fetched.
    pub text_encoder: String,
    /// Path of the image tower's weights (`.pth`); empty for the fetched copy.
    pub image_tower: String,
    /// How often a stage checks whether a model's `LATEST` pointer moved, seconds.
    pub poll_secs: u64,
}

impl ModelsConfig {
    /// Adds to `problems` what in this section parses but cannot work.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.poll_secs == 0 {
            problems.push("models.poll_secs must be at least 1".into());
        }
    }
}
