//! The generator's own metrics (architecture.md §11), besides the stage harness's standard ones:
//! images generated and compute seconds.

use prometheus::{IntCounter, Registry};

/// Generation throughput and cost, besides the harness's standard metrics.
#[derive(Debug, Clone)]
pub struct GeneratorMetrics {
    pub(crate) images: IntCounter,
    pub(crate) busy_seconds: prometheus::Counter,
}

impl GeneratorMetrics {
    /// Creates the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let images = IntCounter::new("suti_generator_images_total", "Candidate images generated")?;
        let busy_seconds = prometheus::Counter::new(
            "suti_generator_busy_seconds_total",
            "Seconds spent generating (compute cost)",
        )?;
        registry.register(Box::new(images.clone()))?;
        registry.register(Box::new(busy_seconds.clone()))?;
        Ok(Self {
            images,
            busy_seconds,
        })
    }
}
