//! clip-filter (architecture.md §7.6): consumes `candidates.generated.v1`, scores every candidate
//! against the cluster's demonstrations (ΔCLIP-T and subject similarity), writes the accepted
//! (demonstrations, prompt, target) triplets as `datasets/apprentice/{cluster_id}.msgpack` and
//! publishes `examples.accepted.v1`.
//!
//! The stage handler scores, judges and writes the shard ([`handler`]), counting verdicts and
//! scores in the filter's metrics ([`metrics`]); [`service::run`] runs it under the stage harness
//! (`suti clip-filter`).

pub mod handler;
pub mod metrics;
pub mod service;

pub use handler::{FilterHandler, plain_prompt};
pub use metrics::FilterMetrics;
pub use service::run;
pub use suti_stage::ServiceError;
