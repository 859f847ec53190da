//! generator (architecture.md §2): consumes `expert.trained.v1`, builds DreamBench-style prompts
//! its cluster never showed, renders M images per prompt with the expert (the base it was trained
//! on plus its adapter), writes them under `candidates/{cluster_id}/{base_version}/` and publishes
//! `candidates.generated.v1`.
//!
//! The stage handler renders and writes the candidates ([`handler`]), counting its work in the
//! generator's metrics ([`metrics`]); [`service::run`] runs it under the stage harness
//! (`suti generator`).

pub mod handler;
pub mod metrics;
pub mod service;

pub use handler::{GeneratorHandler, GeneratorSettings};
pub use metrics::GeneratorMetrics;
pub use service::{generator_settings, run};
pub use suti_stage::ServiceError;
