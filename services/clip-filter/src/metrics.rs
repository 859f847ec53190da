//! The clip-filter's own metrics (architecture.md §11), besides the stage harness's standard
//! ones: acceptances, rejections by reason, and the score distributions.

use prometheus::{Histogram, IntCounter, IntCounterVec, Registry};
use suti_stage::MetricRegistrar;

/// Acceptance and score distributions, besides the harness's standard metrics.
#[derive(Debug, Clone)]
pub struct FilterMetrics {
    pub(crate) accepted: IntCounter,
    pub(crate) rejected: IntCounterVec,
    pub(crate) delta_clip: Histogram,
    pub(crate) subject_similarity: Histogram,
}

impl FilterMetrics {
    /// Creates the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = MetricRegistrar::new(registry);
        Ok(Self {
            accepted: metrics.int_counter(
                "suti_clip_filter_accepted_total",
                "Candidates accepted as training targets",
            )?,
            rejected: metrics.int_counter_vec(
                "suti_clip_filter_rejected_total",
                "Candidates rejected, by reason (prompt_not_followed, subject_lost)",
                &["reason"],
            )?,
            delta_clip: metrics.histogram(
                "suti_clip_filter_delta_clip_t",
                "ΔCLIP-T of every scored candidate",
                vec![-0.2, -0.1, -0.05, 0.0, 0.02, 0.05, 0.1, 0.2, 0.4],
            )?,
            subject_similarity: metrics.histogram(
                "suti_clip_filter_subject_similarity",
                "Subject similarity of every scored candidate to its demonstrations",
                vec![0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
            )?,
        })
    }
}
