//! The `serving` section: the HTTP API, its limits and dynamic batching.

use serde::{Deserialize, Serialize};

/// serving: the HTTP API, its limits and dynamic batching.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingConfig {
    /// Address of the API and web page.
    pub listen: String,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Largest demonstration image, pixels (width × height).
    pub max_image_pixels: u64,
    /// Most demonstrations per request (the model takes up to 8).
    pub max_demos: usize,
    /// Longest prompt or caption, characters.
    pub max_prompt_chars: usize,
    /// Most images per request.
    pub max_images: usize,
    /// Most denoising steps per request.
    pub max_steps: usize,
    /// Denoising steps when a request gives none.
    pub default_steps: usize,
    /// Guidance weight when a request gives none (the paper serves with 15).
    pub default_guidance: f32,
    /// Separate guidance weight of the demonstrations when a request gives none: the text is
    /// guided by `default_guidance`, the demonstrations by this (null: one weight for both).
    pub default_demo_guidance: Option<f32>,
    /// Images denoised together at most.
    pub max_batch_images: usize,
    /// How long a batch waits for more requests before it starts, milliseconds.
    pub batch_wait_ms: u64,
    /// Requests waiting for the model at most; more get 429.
    pub max_queued: usize,
    /// Deadline of one request, seconds.
    pub request_timeout_secs: u64,
    /// Limit on reading a request's headers, and again its body, seconds: a client that sends
    /// them slowly (slowloris) is cut off, with 408 for a body.
    pub read_timeout_secs: u64,
    /// SHA-256 (hex) of the accepted API keys; empty: no key needed.
    pub api_key_hashes: Vec<String>,
    /// Requests per second per API key, sustained (shared by every replica).
    pub key_rate_per_second: f64,
    /// Burst of requests per API key.
    pub key_burst: f64,
}
