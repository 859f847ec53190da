//! The generator's own metrics (architecture.md §11), besides the stage harness's standard ones:
//! images generated and compute seconds.

use prometheus::{Counter, IntCounter, Registry};
use suti_stage::MetricRegistrar;

/// Generation throughput and cost, besides the harness's standard metrics.
#[derive(Debug, Clone)]
pub struct GeneratorMetrics {
    pub(crate) images: IntCounter,
    pub(crate) busy_seconds: Counter,
}

impl GeneratorMetrics {
    /// Creates the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = MetricRegistrar::new(registry);
        Ok(Self {
            images: metrics
                .int_counter("suti_generator_images_total", "Candidate images generated")?,
            busy_seconds: metrics.counter(
                "suti_generator_busy_seconds_total",
                "Seconds spent generating (compute cost)",
            )?,
        })
    }
}
