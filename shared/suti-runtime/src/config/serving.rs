//! The `serving` section: the HTTP API, its limits and dynamic batching.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// serving: the HTTP API, its limits and dynamic batching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Bytes of encoded demonstrations kept between requests (least recently used dropped
    /// first; emptied when a new release is loaded); 0 turns the cache off.
    pub demo_cache_bytes: usize,
    /// Deadline of one request, seconds.
    pub request_timeout_secs: u64,
    /// Limit on reading a request's headers, and again its body, seconds: a client that sends
    /// them slowly (slowloris) is cut off, with 408 for a body.
    pub read_timeout_secs: u64,
    /// SHA-256 (hex) of the accepted API keys; empty: no key needed.
    pub api_key_hashes: Vec<String>,
    /// Refuse to start without API keys, so that a deployment cannot serve an open API by
    /// mistake (the Helm chart sets it; the demo and compose, on loopback, do not).
    pub require_api_key: bool,
    /// Requests per second per API key, sustained (shared by every replica).
    pub key_rate_per_second: f64,
    /// Burst of requests per API key.
    pub key_burst: f64,
    /// Held-out EmojiWorld subjects the web page offers as examples, rendered at start (none
    /// when the EmojiWorld assets are missing); 0: no examples.
    pub example_subjects: usize,
    /// A folder whose `report.html` and `eval/` are served at `/report/` and linked from the
    /// web page; empty: none.
    pub report_dir: String,
}

impl ServingConfig {
    /// Adds to `problems` what in this section parses but cannot work.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "serving.listen {:?} is not an address",
                self.listen
            ));
        }
        if self.max_demos > 8 {
            problems.push("serving.max_demos cannot exceed 8 (the model's limit)".into());
        }
        if self.max_images == 0
            || self.max_steps == 0
            || self.max_batch_images == 0
            || self.max_queued == 0
        {
            problems.push(
                "serving.max_images, max_steps, max_batch_images and max_queued must be at least 1"
                    .into(),
            );
        }
        let is_guidance = |g: f32| (0.0..=50.0).contains(&g);
        if !is_guidance(self.default_guidance)
            || self.default_demo_guidance.is_some_and(|g| !is_guidance(g))
        {
            problems.push(
                "serving.default_guidance and default_demo_guidance must be between 0 and 50"
                    .into(),
            );
        }
        if self.default_steps == 0 || self.default_steps > self.max_steps {
            problems.push("serving.default_steps must be between 1 and serving.max_steps".into());
        }
        if self
            .api_key_hashes
            .iter()
            .any(|h| h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()))
        {
            problems.push(
                "serving.api_key_hashes must be SHA-256 digests in hex (64 characters)".into(),
            );
        }
    }
}
