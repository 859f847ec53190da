//! Storage metrics: a wrapper that times every request of any backend, by operation and outcome.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::{ObjectKey, ObjectMeta, ObjectStore, SharedStore, StorageResult};

/// The storage metrics, declared once.
#[derive(Debug, Clone)]
pub struct StorageMetrics {
    request_duration: HistogramVec,
    bytes: IntCounterVec,
}

impl StorageMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "suti_storage_request_duration_seconds",
                "Duration of object storage requests, by backend, operation and outcome",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["backend", "op", "outcome"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "suti_storage_transferred_bytes_total",
                "Bytes written to and read from object storage, by backend and direction",
            ),
            &["backend", "direction"],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        Ok(Self {
            request_duration,
            bytes,
        })
    }
}

/// Any store, with every request timed into [`StorageMetrics`].
#[derive(Debug, Clone)]
pub struct InstrumentedStore {
    inner: SharedStore,
    metrics: StorageMetrics,
}

impl InstrumentedStore {
    /// Wraps `inner`.
    pub fn new(inner: SharedStore, metrics: StorageMetrics) -> Arc<Self> {
        Arc::new(Self { inner, metrics })
    }

    fn observe<T>(&self, op: &str, started: Instant, result: &StorageResult<T>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.kind.label(),
        };
        self.metrics
            .request_duration
            .with_label_values(&[self.inner.backend(), op, outcome])
            .observe(started.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl ObjectStore for InstrumentedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn put(&self, key: &ObjectKey, body: Bytes) -> StorageResult<()> {
        let started = Instant::now();
        let len = body.len() as u64;
        let result = self.inner.put(key, body).await;
        self.observe("put", started, &result);
        if result.is_ok() {
            self.metrics
                .bytes
                .with_label_values(&[self.inner.backend(), "write"])
                .inc_by(len);
        }
        result
    }

    async fn get(&self, key: &ObjectKey) -> StorageResult<Bytes> {
        let started = Instant::now();
        let result = self.inner.get(key).await;
        self.observe("get", started, &result);
        if let Ok(body) = &result {
            self.metrics
                .bytes
                .with_label_values(&[self.inner.backend(), "read"])
                .inc_by(body.len() as u64);
        }
        result
    }

    async fn head(&self, key: &ObjectKey) -> StorageResult<Option<ObjectMeta>> {
        let started = Instant::now();
        let result = self.inner.head(key).await;
        self.observe("head", started, &result);
        result
    }

    async fn delete(&self, key: &ObjectKey) -> StorageResult<()> {
        let started = Instant::now();
        let result = self.inner.delete(key).await;
        self.observe("delete", started, &result);
        result
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        let started = Instant::now();
        let result = self.inner.list(prefix).await;
        self.observe("list", started, &result);
        result
    }

    async fn ping(&self) -> StorageResult<()> {
        let started = Instant::now();
        let result = self.inner.ping().await;
        self.observe("ping", started, &result);
        result
    }
}
