//! serving (architecture.md §1, §7.7): the apprentice over HTTP. Demonstrations (0–8 images with
//! optional captions) and a prompt in, PNGs out, in seconds, with no per-subject training.
//! Concurrent requests are denoised together (dynamic batching); a new `apprentice.published`
//! release is loaded in the background and swapped in without dropping requests; readiness says
//! whether a release is loaded. API keys, per-key rate limits and request limits are configuration.
//!
//! The HTTP API is [`api`] (served by [`http`]), rendering is [`engine`], the request metrics
//! [`metrics`]; [`service::run`] runs it all as a service (`suti serving`).

pub mod api;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod service;

pub use api::api_keys;
pub use service::{batch_limits, run};
pub use suti_stage::ServiceError;
