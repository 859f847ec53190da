//! Layered configuration (compiled-in defaults → optional file → `SUTI__SECTION__KEY` environment),
//! with unknown keys rejected, validation, and secrets redacted whenever it is printed.
//!
//! [`SutiConfig`] and its loading live in `load`; each section's struct lives in a module of its
//! own, beside the choices it offers.

mod apprentice;
mod backends;
mod choice;
mod clip_filter;
mod crawler;
mod expert;
mod generator;
mod load;
mod models;
mod secret;
mod serving;
mod stages;

pub use apprentice::{ApprenticeDemoAttention, ApprenticeStageConfig};
pub use backends::{
    AdminConfig, LogFormat, QueueBackend, QueueConfig, StateBackend, StateConfig, StorageBackend,
    StorageConfig, TelemetryConfig,
};
pub use clip_filter::{ClipFilterConfig, DeltaReference};
pub use crawler::{ClusterGrouping, CrawlerConfig};
pub use expert::ExpertStageConfig;
pub use generator::{GeneratorConfig, SamplerChoice, TemplateFamily};
pub use load::{ConfigError, ConfigSources, DEFAULT_CONFIG_YAML, ENV_PREFIX, SutiConfig};
pub use models::{ModelDevice, ModelsConfig};
pub use secret::{Secret, redact_url};
pub use serving::ServingConfig;
pub use stages::{ServiceName, StageConfig, StagesConfig};
