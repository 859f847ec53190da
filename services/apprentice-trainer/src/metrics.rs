//! The apprentice-trainer's own metrics (architecture.md §11), besides the stage harness's
//! standard ones: steps, examples, loss, compute seconds, clusters and releases.

use prometheus::{Counter, Gauge, IntCounter, IntGauge, Registry};
use suti_stage::MetricRegistrar;

/// Training progress, besides the harness's standard metrics.
#[derive(Debug, Clone)]
pub struct TrainerMetrics {
    pub(crate) steps: IntCounter,
    pub(crate) examples_seen: IntCounter,
    pub(crate) loss: Gauge,
    pub(crate) busy_seconds: Counter,
    pub(crate) clusters: IntGauge,
    pub(crate) releases: IntCounter,
}

impl TrainerMetrics {
    /// Creates the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = MetricRegistrar::new(registry);
        Ok(Self {
            steps: metrics.int_counter(
                "suti_apprentice_trainer_steps_total",
                "Apprentice optimiser steps taken by this process",
            )?,
            examples_seen: metrics.int_counter(
                "suti_apprentice_trainer_examples_seen_total",
                "Training examples seen by this process",
            )?,
            loss: metrics.gauge(
                "suti_apprentice_trainer_loss",
                "Mean training loss over the recent window of steps",
            )?,
            busy_seconds: metrics.counter(
                "suti_apprentice_trainer_busy_seconds_total",
                "Seconds spent in training steps (compute cost)",
            )?,
            clusters: metrics.int_gauge(
                "suti_apprentice_trainer_clusters",
                "Clusters whose triplets are being trained on",
            )?,
            releases: metrics.int_counter(
                "suti_apprentice_trainer_releases_total",
                "Apprentice releases published",
            )?,
        })
    }
}
