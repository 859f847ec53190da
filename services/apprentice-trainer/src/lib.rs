//! apprentice-trainer (architecture.md §2, §7.7): consumes `examples.accepted.v1` into a training
//! index (the shard's key in a state set, the example count in a state counter), and trains the
//! apprentice continuously on every indexed shard in storage: initialised from the base, a
//! checkpoint (weights, optimiser moments, generator state) every `apprentice.checkpoint_every`
//! steps and at shutdown, resumed from after a crash, and a release every
//! `apprentice.release_every` steps — `models/apprentice/{version}/` plus `apprentice.published.v1`
//! to every serving replica.
//!
//! The stage handler indexes shards ([`handler`]); the training loop trains on them
//! ([`training`]), counting its progress in the trainer's metrics ([`metrics`]);
//! [`service::run`] runs both (`suti apprentice-trainer`).

pub mod handler;
pub mod metrics;
pub mod service;
pub mod training;

pub use handler::{INDEX_SET, INDEXED_EXAMPLES, IndexHandler};
pub use metrics::TrainerMetrics;
pub use service::run;
pub use suti_stage::ServiceError;
pub use suti_storage::layout::APPRENTICE_MODEL;
pub use training::{TrainerBackends, TrainingLoop};
