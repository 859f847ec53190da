//! The expert-finetuner's own metrics (architecture.md §11), besides the stage harness's
//! standard ones: optimiser steps, compute seconds and each expert's final loss.

use prometheus::{Counter, Histogram, IntCounter, Registry};
use suti_stage::MetricRegistrar;

/// Fine-tuning throughput and cost, besides the harness's standard metrics.
#[derive(Debug, Clone)]
pub struct ExpertMetrics {
    pub(crate) steps: IntCounter,
    pub(crate) busy_seconds: Counter,
    pub(crate) final_loss: Histogram,
}

impl ExpertMetrics {
    /// Creates the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = MetricRegistrar::new(registry);
        Ok(Self {
            steps: metrics.int_counter(
                "suti_expert_finetuner_steps_total",
                "Fine-tuning optimiser steps taken",
            )?,
            busy_seconds: metrics.counter(
                "suti_expert_finetuner_busy_seconds_total",
                "Seconds spent fine-tuning (compute cost)",
            )?,
            final_loss: metrics.histogram(
                "suti_expert_finetuner_final_loss",
                "Mean loss over the last tenth of each expert's fine-tune",
                vec![0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0],
            )?,
        })
    }
}
