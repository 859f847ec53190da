//! The HTTP API (`/v1/generations`, `/v1/models`, `/openapi.json`) and the web page at `/`.
//! Every failure is a JSON error `{"error": {"code", "message"}}` with a 4xx status for bad input
//! and 5xx only for the server's own trouble (no model yet, a timeout).
//!
//! `auth` checks API keys and their rates, `examples` renders the web page's example subjects, `request` reads and validates a request against the
//! `serving` settings, `types` holds the JSON the API speaks, and `handlers` the routes.

mod auth;
pub mod examples;
mod handlers;
mod request;
mod types;

use std::sync::Arc;

use suti_runtime::config::ServingConfig;
use suti_state::SharedState;

use crate::engine::Engine;
use crate::metrics::ServingMetrics;

pub use auth::{ApiKeys, api_keys};
pub use handlers::{OPENAPI, router};
pub use request::{MAX_GUIDANCE, MAX_SEED};
pub use suti_factory::render::DEFAULT_CAPTION;
pub use types::{ApiError, GenerationOut, ImageOut, JsonDemonstration, JsonGeneration};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The generation engine.
    pub engine: Engine,
    /// The `serving` settings: request limits, defaults and deadlines.
    pub config: Arc<ServingConfig>,
    /// API keys, when required.
    pub keys: Option<Arc<ApiKeys>>,
    /// Shared state (per-key rate limits).
    pub state: SharedState,
    /// Request metrics.
    pub metrics: ServingMetrics,
    /// The web page's example subjects and prompt suggestions.
    pub examples: Arc<examples::Examples>,
}
