//! The backend sections: the broker (`queue`), artifact storage (`storage`), shared state
//! (`state`), the admin port (`admin`) and logging (`telemetry`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;
use super::choice::named_choice;

/// Which broker backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBackend {
    /// RabbitMQ.
    Amqp,
    /// In-process broker (embedded mode).
    InProcess,
}

named_choice!(QueueBackend {
    Amqp = "amqp",
    InProcess = "in_process",
});

/// The message broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Backend.
    pub backend: QueueBackend,
    /// AMQP URL (may hold a password).
    pub url: Secret,
    /// Prefix for exchange and queue names; empty in production.
    pub namespace: String,
    /// Failed deliveries before a message is dead-lettered.
    pub delivery_limit: u32,
    /// How long a stage holds a failed delivery while its storage or state backend does not
    /// answer, seconds, before requeueing it: an outage then costs one attempt, not all of them.
    pub outage_patience_secs: u64,
    /// Limit on opening a connection, seconds.
    pub connect_timeout_secs: u64,
    /// Attempts a publish makes, reconnecting in between.
    pub publish_attempts: u32,
}

impl QueueConfig {
    /// Adds to `problems` what in this section parses but cannot work.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.backend == QueueBackend::Amqp {
            let url = self.url.expose();
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                problems.push("queue.url must start with amqp:// or amqps://".to_string());
            }
        }
        if self.delivery_limit == 0 {
            problems.push("queue.delivery_limit must be at least 1".into());
        }
        if !self
            .namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            problems.push("queue.namespace may only hold letters, digits and -_.".into());
        }
    }
}

/// Which storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageBackend {
    /// S3 or an S3-compatible server.
    S3,
    /// Files under `local_root` (embedded mode).
    Local,
}

named_choice!(StorageBackend {
    S3 = "s3",
    Local = "local",
});

/// Artifact storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Backend.
    pub backend: StorageBackend,
    /// Bucket.
    pub bucket: String,
    /// Endpoint URL; empty for AWS.
    pub endpoint: String,
    /// Region.
    pub region: String,
    /// Path-style addressing (MinIO, s3s-fs).
    pub path_style: bool,
    /// Create the bucket at start-up if it is missing.
    pub create_bucket: bool,
    /// Root folder of the local backend.
    pub local_root: PathBuf,
    /// Limit on one S3 operation, seconds.
    pub operation_timeout_secs: u64,
    /// Attempts the S3 client makes for a transient failure.
    pub max_attempts: u32,
}

impl StorageConfig {
    /// Adds to `problems` what in this section parses but cannot work.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.backend != StorageBackend::S3 {
            return;
        }
        if self.bucket.is_empty() {
            problems.push("storage.bucket must not be empty".into());
        }
        let endpoint = &self.endpoint;
        let is_url = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !(endpoint.is_empty() || is_url) {
            problems.push("storage.endpoint must be empty or an http(s) URL".into());
        }
    }
}

/// Which state backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateBackend {
    /// Redis.
    Redis,
    /// In-process (embedded mode).
    InProcess,
}

named_choice!(StateBackend {
    Redis = "redis",
    InProcess = "in_process",
});

/// Shared state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Backend.
    pub backend: StateBackend,
    /// Redis URL (may hold a password).
    pub url: Secret,
    /// Prefix of every key.
    pub namespace: String,
    /// Connect and response timeout, seconds.
    pub timeout_secs: u64,
}

impl StateConfig {
    /// Adds to `problems` what in this section parses but cannot work.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.backend == StateBackend::Redis {
            let url = self.url.expose();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                problems.push("state.url must start with redis:// or rediss://".into());
            }
        }
    }
}

/// The admin HTTP port: metrics and health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address.
    pub listen: String,
}

impl AdminConfig {
    /// Adds to `problems` what in this section parses but cannot work.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "admin.listen {:?} is not an address like 0.0.0.0:9090",
                self.listen
            ));
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

named_choice!(LogFormat {
    Text = "text",
    Json = "json",
});

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Output format.
    pub log_format: LogFormat,
    /// tracing-subscriber filter directives (`RUST_LOG` overrides).
    pub log_filter: String,
    /// Base address of an OTLP/HTTP collector (`http://collector:4318`; traces go to
    /// `/v1/traces`); empty: no traces are exported.
    pub otlp_endpoint: String,
    /// Share of the traces started here that are recorded, 0 to 1 (a trace started upstream
    /// follows its parent's decision).
    pub trace_sample_ratio: f64,
}

impl TelemetryConfig {
    /// Adds to `problems` what in this section parses but cannot work.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if tracing_subscriber::EnvFilter::try_new(&self.log_filter).is_err() {
            problems.push(format!(
                "telemetry.log_filter {:?} is not a valid filter",
                self.log_filter
            ));
        }
        let endpoint = &self.otlp_endpoint;
        if !(endpoint.is_empty()
            || endpoint.starts_with("http://")
            || endpoint.starts_with("https://"))
        {
            problems.push(format!(
                "telemetry.otlp_endpoint {:?} must be an http:// or https:// address",
                self.otlp_endpoint
            ));
        }
        if !(0.0..=1.0).contains(&self.trace_sample_ratio) {
            problems.push("telemetry.trace_sample_ratio must be between 0 and 1".into());
        }
    }
}
