//! The `clip_filter` section: the ΔCLIP thresholds.

use serde::{Deserialize, Serialize};

use super::choice::named_choice;

/// What ΔCLIP-T subtracts from the target's CLIP-T.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaReference {
    /// The demonstrations' mean CLIP-T for the same prompt (the paper).
    Demonstrations,
    /// The target's own mean similarity to the demonstrations' captions, so that image quality
    /// cancels out.
    Captions,
}

named_choice!(DeltaReference {
    Demonstrations = "demonstrations",
    Captions = "captions",
});

/// clip-filter: the ΔCLIP thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipFilterConfig {
    /// Least ΔCLIP-T accepted (the paper: 0.02).
    pub delta_clip_min: f32,
    /// Least mean image-tower similarity to the demonstrations accepted.
    pub subject_similarity_min: f32,
    /// What ΔCLIP-T subtracts from the target's CLIP-T.
    pub delta_reference: DeltaReference,
}
