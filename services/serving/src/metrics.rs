//! Serving's metrics: requests (count and latency by status class) and the cache of encoded
//! demonstrations (hits, misses, what it holds).

use std::time::Duration;

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};
use suti_factory::render::{DemoEncodingCache, RenderedBatch};
use suti_stage::MetricRegistrar;

/// Requests and their latency; the demonstration cache's use.
#[derive(Clone)]
pub struct ServingMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    demo_cache_hits: IntCounter,
    demo_cache_misses: IntCounter,
    demo_cache_bytes: IntGauge,
    demo_cache_entries: IntGauge,
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
            demo_cache_hits: metrics.int_counter(
                "suti_serving_demo_cache_hits_total",
                "Requests whose encoded demonstrations came from the cache",
            )?,
            demo_cache_misses: metrics.int_counter(
                "suti_serving_demo_cache_misses_total",
                "Requests whose demonstrations were encoded (not in the cache, or no cache)",
            )?,
            demo_cache_bytes: metrics.int_gauge(
                "suti_serving_demo_cache_bytes",
                "Bytes of encoded demonstrations the cache holds (at most serving.demo_cache_bytes)",
            )?,
            demo_cache_entries: metrics.int_gauge(
                "suti_serving_demo_cache_entries",
                "Reference sets the demonstration cache holds",
            )?,
        })
    }

    /// Records a rendered batch's cache use (none if it failed) and what the cache holds now.
    pub fn observe_demo_cache(&self, cache: &DemoEncodingCache, batch: Option<&RenderedBatch>) {
        if let Some(batch) = batch {
            self.demo_cache_hits.inc_by(batch.cache_hits as u64);
            self.demo_cache_misses.inc_by(batch.cache_misses as u64);
        }
        self.demo_cache_bytes.set(cache.bytes() as i64);
        self.demo_cache_entries.set(cache.len() as i64);
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
