//! The runtime every suti service shares (architecture.md §2, §11): layered configuration, logging,
//! the Prometheus registry with `suti_build_info`, the admin HTTP port (`/metrics`,
//! `/health/livez`, `/health/readyz`), SIGTERM handling, and connecting the broker, storage and
//! state backends the configuration names — so that a service is only its handler.

mod admin;
mod backends;
pub mod config;
mod health;
pub mod process;
mod telemetry;

pub use admin::{AdminServer, serve_admin};
pub use backends::{Backends, RuntimeError, connect_broker, connect_storage};
pub use config::{
    ApprenticeDemoAttention, ClusterGrouping, ConfigError, ConfigSources, CrawlerConfig,
    DeltaReference, ModelDevice, SamplerChoice, Secret, ServiceName, StageConfig, SutiConfig,
    TemplateFamily,
};
pub use health::{Health, ReadinessReport};
pub use telemetry::{
    build_info_registry, continue_trace, flush_traces, init_logging, init_telemetry,
    shutdown_on_signal, traceparent_of,
};

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit of this build, when the builder set `SUTI_GIT_SHA`.
pub const GIT_SHA: &str = match option_env!("SUTI_GIT_SHA") {
    Some(sha) => sha,
    None => "unknown",
};
