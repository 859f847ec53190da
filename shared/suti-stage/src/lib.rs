//! The stage harness (architecture.md §4): every queue-consuming service is a [`Handler`] from one
//! input payload to an [`Outcome`] (artifacts to write, messages to publish). The harness runs
//!
//! consume → decode → idempotency check → handle → write artifacts → publish downstream
//! (confirmed) → mark done → ack
//!
//! and settles every delivery exactly once: ack on success or on a duplicate, requeue (with a
//! delay) on a retryable failure, dead-letter with a reason on a non-retryable failure, an
//! undecodable body, or a retryable failure on its last allowed attempt. A retryable failure while
//! storage or state does not answer first holds the delivery until they answer again, so that an
//! outage does not use up a message's attempts. It exports the standard
//! metrics of architecture.md §11 and shuts down gracefully: stop consuming, let in-flight work
//! finish within a grace period, and leave the rest to be redelivered.

pub mod failpoint;
mod handler;
mod host;
mod metrics;
pub mod models;
mod runner;

pub use handler::{HandleContext, Handler, HandlerError, Outcome, Settled};
pub use host::{HostError, MetricRegistrar, ServiceError, ServiceHost};
pub use metrics::StageMetrics;
pub use models::{VersionedModels, publish_model_version};
pub use runner::{StageBackends, StageSettings, run_stage};
