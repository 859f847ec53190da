//! The apprentice-trainer's own metrics (architecture.md §11), besides the stage harness's
//! standard ones: steps, examples, loss, compute seconds, clusters and releases.

use prometheus::{Gauge, IntCounter, IntGauge, Registry};

/// Training progress, besides the harness's standard metrics.
#[derive(Debug, Clone)]
pub struct TrainerMetrics {
    pub(crate) steps: IntCounter,
    pub(crate) examples_seen: IntCounter,
    pub(crate) loss: Gauge,
    pub(crate) busy_seconds: prometheus::Counter,
    pub(crate) clusters: IntGauge,
    pub(crate) releases: IntCounter,
}

impl TrainerMetrics {
    /// Creates the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            steps: IntCounter::new(
                "suti_apprentice_trainer_steps_total",
                "Apprentice optimiser steps taken by this process",
            )?,
            examples_seen: IntCounter::new(
                "suti_apprentice_trainer_examples_seen_total",
                "Training examples seen by this process",
            )?,
            loss: Gauge::new(
                "suti_apprentice_trainer_loss",
                "Mean training loss over the recent window of steps",
            )?,
            busy_seconds: prometheus::Counter::new(
                "suti_apprentice_trainer_busy_seconds_total",
                "Seconds spent in training steps (compute cost)",
            )?,
            clusters: IntGauge::new(
                "suti_apprentice_trainer_clusters",
                "Clusters whose triplets are being trained on",
            )?,
            releases: IntCounter::new(
                "suti_apprentice_trainer_releases_total",
                "Apprentice releases published",
            )?,
        };
        registry.register(Box::new(m.steps.clone()))?;
        registry.register(Box::new(m.examples_seen.clone()))?;
        registry.register(Box::new(m.loss.clone()))?;
        registry.register(Box::new(m.busy_seconds.clone()))?;
        registry.register(Box::new(m.clusters.clone()))?;
        registry.register(Box::new(m.releases.clone()))?;
        Ok(m)
    }
}
