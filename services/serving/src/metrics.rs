//! Serving's request metrics: count and latency by status class.

use std::time::Duration;

use prometheus::{HistogramVec, IntCounterVec, Registry};
use suti_stage::MetricRegistrar;

/// Requests and their latency.
#[derive(Clone)]
pub struct ServingMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl ServingMetrics {
    /// Creates the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = MetricRegistrar::new(registry);
        Ok(Self {
            requests: metrics.int_counter_vec(
                "suti_serving_requests_total",
                "Generation requests, by HTTP status",
                &["status"],
            )?,
            latency: metrics.histogram_vec(
                "suti_serving_request_duration_seconds",
                "Generation request latency, by status class",
                vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0],
                &["class"],
            )?,
        })
    }

    /// Metrics that go nowhere (tests).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("fresh registry")
    }

    /// Records one request.
    pub fn observe(&self, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[&status.to_string()])
            .inc();
        let class = format!("{}xx", status / 100);
        self.latency
            .with_label_values(&[&class])
            .observe(elapsed.as_secs_f64());
    }
}
