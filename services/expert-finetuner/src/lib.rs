//! expert-finetuner (architecture.md §2, §7.4): consumes `cluster.mined.v1`, fine-tunes a LoRA
//! expert of the current base model on the cluster's images and personalised captions, writes the
//! adapter to `experts/{cluster_id}/{base_version}.safetensors` and publishes `expert.trained.v1`.
//!
//! The stage handler fine-tunes and writes the expert ([`handler`]), counting its work in the
//! finetuner's metrics ([`metrics`]); [`service::run`] runs it under the stage harness
//! (`suti expert-finetuner`).

pub mod handler;
pub mod metrics;
pub mod service;

pub use handler::ExpertHandler;
pub use metrics::ExpertMetrics;
pub use service::run;
pub use suti_stage::ServiceError;
