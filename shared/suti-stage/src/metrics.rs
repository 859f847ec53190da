//! The standard metrics of a stage (architecture.md §11), named `suti_<service>_…`.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Metrics every queue-consuming stage exports.
#[derive(Debug, Clone)]
pub struct StageMetrics {
    /// `suti_<service>_received_total`: deliveries taken from the queue.
    pub received: IntCounter,
    /// `suti_<service>_processed_total{outcome}`: deliveries settled, by how.
    pub processed: IntCounterVec,
    /// `suti_<service>_errors_total{kind}`: failures, by kind.
    pub errors: IntCounterVec,
    /// `suti_<service>_handle_duration_seconds{outcome}`: time from delivery to settlement.
    pub duration: HistogramVec,
    /// `suti_<service>_in_flight`: deliveries being handled now.
    pub in_flight: IntGauge,
    /// `suti_<service>_published_total`: downstream messages published (confirmed).
    pub published: IntCounter,
}

impl StageMetrics {
    /// Creates the metrics of `service` (metric form, `expert_finetuner`) in `registry`.
    pub fn register(registry: &Registry, service: &str) -> prometheus::Result<Self> {
        let name = |what: &str| format!("suti_{service}_{what}");
        let received = IntCounter::new(
            name("received_total"),
            "Deliveries taken from the stage's queue",
        )?;
        let processed = IntCounterVec::new(
            Opts::new(
                name("processed_total"),
                "Deliveries settled, by outcome (done, duplicate, retried, dead_lettered, unsettled)",
            ),
            &["outcome"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                name("errors_total"),
                "Failures while handling deliveries, by kind",
            ),
            &["kind"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                name("handle_duration_seconds"),
                "Time from delivery to settlement, by outcome",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                3600.0,
            ]),
            &["outcome"],
        )?;
        let in_flight = IntGauge::new(name("in_flight"), "Deliveries being handled now")?;
        let published = IntCounter::new(
            name("published_total"),
            "Downstream messages published and confirmed by the broker",
        )?;
        registry.register(Box::new(received.clone()))?;
        registry.register(Box::new(processed.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(published.clone()))?;
        Ok(Self {
            received,
            processed,
            errors,
            duration,
            in_flight,
            published,
        })
    }

    /// Deliveries settled with `outcome` so far.
    pub fn processed(&self, outcome: &str) -> u64 {
        self.processed.with_label_values(&[outcome]).get()
    }

    /// Errors of `kind` so far.
    pub fn errors(&self, kind: &str) -> u64 {
        self.errors.with_label_values(&[kind]).get()
    }
}
