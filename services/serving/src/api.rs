//! The HTTP API (`/v1/generations`, `/v1/models`, `/openapi.json`) and the web page at `/`.
//! Every failure is a JSON error `{"error": {"code", "message"}}` with a 4xx status for bad input
//! and 5xx only for the server's own trouble (no model yet, a timeout).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use suti_data::{DecodeLimits, ImageError, RgbaImage};
use suti_state::{SharedState, TokenBucket};

use crate::engine::{Demonstration, Engine, EngineError, Generation};
use crate::metrics::ServingMetrics;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");
/// The web page.
const PAGE: &str = include_str!("page.html");
/// Caption of a demonstration sent without one.
pub const DEFAULT_CAPTION: &str = "a photo";

/// Request limits.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest body, bytes.
    pub max_body_bytes: usize,
    /// Limit on reading the body.
    pub read_timeout: Duration,
    /// Largest demonstration image, pixels.
    pub max_image_pixels: u64,
    /// Most demonstrations.
    pub max_demos: usize,
    /// Longest prompt or caption, characters.
    pub max_prompt_chars: usize,
    /// Most images per request.
    pub max_images: usize,
    /// Most denoising steps.
    pub max_steps: usize,
    /// Steps when none are given.
    pub default_steps: usize,
    /// Guidance when none is given.
    pub default_guidance: f32,
    /// Separate guidance of the demonstrations when none is given (none: one weight for both).
    pub default_demo_guidance: Option<f32>,
    /// Deadline of one request.
    pub request_timeout: Duration,
}

/// API keys (by SHA-256) and their per-key rate.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    /// SHA-256 digests of the accepted keys.
    pub hashes: Vec<[u8; 32]>,
    /// Per-key token bucket, shared by replicas through the state backend.
    pub rate: TokenBucket,
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The generation engine.
    pub engine: Engine,
    /// Request limits.
    pub limits: Arc<ApiLimits>,
    /// API keys, when required.
    pub keys: Option<Arc<ApiKeys>>,
    /// Shared state (per-key rate limits).
    pub state: SharedState,
    /// Request metrics.
    pub metrics: ServingMetrics,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A demonstration in a JSON request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonDemonstration {
    /// A PNG, base64.
    pub image: String,
    /// Its caption.
    #[serde(default)]
    pub caption: Option<String>,
}

/// A JSON generation request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonGeneration {
    /// What to render.
    pub prompt: String,
    /// 0–8 demonstrations of the subject.
    #[serde(default)]
    pub demonstrations: Vec<JsonDemonstration>,
    /// Images wanted.
    #[serde(default)]
    pub num_images: Option<usize>,
    /// Denoising steps.
    #[serde(default)]
    pub steps: Option<usize>,
    /// Guidance weight.
    #[serde(default)]
    pub guidance: Option<f32>,
    /// Separate guidance weight of the demonstrations (absent: `guidance` for both).
    #[serde(default)]
    pub demo_guidance: Option<f32>,
    /// Seed of the first image (the others follow it).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// One image of an answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ImageOut {
    /// The seed that regenerates it.
    pub seed: u64,
    /// The PNG, base64.
    pub png_base64: String,
}

/// A generation answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct GenerationOut {
    /// The release that rendered it.
    pub model: String,
    /// The images.
    pub images: Vec<ImageOut>,
    /// Requests denoised in the same batch (1 when alone).
    pub batched_with: usize,
    /// Time in the server, milliseconds.
    pub elapsed_ms: u64,
}

/// The API's routes over `state`.
pub fn router(state: ApiState) -> Router {
    let limit = state.limits.max_body_bytes;
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/v1/models", get(models))
        .route("/v1/generations", post(generations))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn models(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let model = state.engine.slot().current().ok_or_else(no_model)?;
    Ok(Json(serde_json::json!({
        "data": [{
            "id": model.version,
            "object": "model",
            "image_size": model.image_size(),
            "max_demonstrations": model.dit.config().max_demos,
        }]
    })))
}

fn no_model() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_model",
        "no apprentice release is loaded yet",
    )
}

/// Checks the API key and its rate, when keys are configured.
async fn authorise(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(keys) = &state.keys else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "an API key is required (Authorization: Bearer <key>)",
            )
        })?;
    let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    // Compare against every stored digest without an early exit, so timing says nothing about
    // which (or how much of a) key matched.
    let matched = keys.hashes.iter().fold(0u8, |found, stored| {
        found | constant_time_eq(stored, &digest) as u8
    });
    if matched == 0 {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "the API key is not valid",
        ));
    }
    let bucket = format!("serving:key:{}", hex::encode(&digest[..8]));
    match state.state.take_tokens(&bucket, keys.rate, 1.0).await {
        Ok(decision) if decision.is_allowed() => Ok(()),
        Ok(suti_state::RateDecision::Limited { retry_after }) => Err(ApiError {
            retry_after: Some(retry_after.as_secs().max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for this API key",
            )
        }),
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "state_unavailable",
            format!("cannot check the rate limit: {e}"),
        )),
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The parts of a request before validation.
struct Parsed {
    prompt: String,
    demonstrations: Vec<(Vec<u8>, Option<String>)>,
    num_images: Option<usize>,
    steps: Option<usize>,
    guidance: Option<f32>,
    demo_guidance: Option<f32>,
    seed: Option<u64>,
}

fn body_error(status: StatusCode, message: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "body_too_large", message)
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_body", message)
    }
}

async fn parse_json(request: Request, state: &ApiState) -> Result<Parsed, ApiError> {
    let body = Bytes::from_request(request, state)
        .await
        .map_err(|e| body_error(e.status(), e.body_text()))?;
    let json: JsonGeneration = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))?;
    let demonstrations = json
        .demonstrations
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            BASE64
                .decode(d.image.trim())
                .map(|bytes| (bytes, d.caption))
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_base64",
                        format!("demonstration {i}: {e}"),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(Parsed {
        prompt: json.prompt,
        demonstrations,
        num_images: json.num_images,
        steps: json.steps,
        guidance: json.guidance,
        demo_guidance: json.demo_guidance,
        seed: json.seed,
    })
}

fn field_number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, ApiError> {
    text.trim().parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_field",
            format!("{name} is not a number: {text:?}"),
        )
    })
}

async fn parse_multipart(request: Request, state: &ApiState) -> Result<Parsed, ApiError> {
    let mut form = Multipart::from_request(request, state)
        .await
        .map_err(|e| body_error(e.status(), e.body_text()))?;
    let mut parsed = Parsed {
        prompt: String::new(),
        demonstrations: Vec::new(),
        num_images: None,
        steps: None,
        guidance: None,
        demo_guidance: None,
        seed: None,
    };
    let mut captions = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(body_error(e.status(), e.body_text())),
        };
        let name = field.name().unwrap_or_default().to_string();
        let content_type = field.content_type().map(str::to_string);
        let data = field
            .bytes()
            .await
            .map_err(|e| body_error(e.status(), e.body_text()))?;
        let text = || String::from_utf8_lossy(&data).into_owned();
        match name.as_str() {
            "prompt" => parsed.prompt = text(),
            "num_images" => parsed.num_images = Some(field_number(&name, &text())?),
            "steps" => parsed.steps = Some(field_number(&name, &text())?),
            "guidance" => parsed.guidance = Some(field_number(&name, &text())?),
            "demo_guidance" => parsed.demo_guidance = Some(field_number(&name, &text())?),
            "seed" => parsed.seed = Some(field_number(&name, &text())?),
            "caption" => captions.push(text()),
            "demonstration" => {
                if content_type.as_deref() != Some("image/png") {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported_image_type",
                        format!(
                            "demonstrations must be image/png, not {}",
                            content_type.as_deref().unwrap_or("untyped")
                        ),
                    ));
                }
                parsed.demonstrations.push((data.to_vec(), None));
            }
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_field",
                    format!("unknown form field {other:?}"),
                ));
            }
        }
    }
    // A caption belongs to the demonstration at its position; one without a demonstration would be
    // silently dropped (and escape the caption limits), so it is refused.
    if captions.len() > parsed.demonstrations.len() {
        return Err(ApiError::unprocessable(
            "caption_without_demonstration",
            format!(
                "{} captions for {} demonstrations: each caption describes the demonstration at \
                 its position",
                captions.len(),
                parsed.demonstrations.len()
            ),
        ));
    }
    for (demo, caption) in parsed.demonstrations.iter_mut().zip(captions) {
        demo.1 = Some(caption);
    }
    Ok(parsed)
}

static SEED_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The largest seed (2⁶³ − 1): seeds are the OpenAPI document's int64, which every JSON client can
/// send back exactly.
pub const MAX_SEED: u64 = i64::MAX as u64;

fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    suti_rng::SplitMix64::new(nanos ^ SEED_COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(32))
        .next_u64()
        & MAX_SEED
}

/// Checks a parsed request against the limits and decodes its images.
fn validate(parsed: Parsed, limits: &ApiLimits) -> Result<Generation, ApiError> {
    // The length limit counts the prompt as sent (as the OpenAPI document's maxLength does); the
    // white space around it is then dropped.
    if parsed.prompt.chars().count() > limits.max_prompt_chars {
        return Err(ApiError::unprocessable(
            "prompt_too_long",
            format!(
                "prompts are limited to {} characters",
                limits.max_prompt_chars
            ),
        ));
    }
    let prompt = parsed.prompt.trim().to_string();
    if prompt.is_empty() {
        return Err(ApiError::unprocessable(
            "prompt_empty",
            "the prompt is empty",
        ));
    }
    if parsed.demonstrations.len() > limits.max_demos {
        return Err(ApiError::unprocessable(
            "too_many_demonstrations",
            format!(
                "{} demonstrations given; at most {}",
                parsed.demonstrations.len(),
                limits.max_demos
            ),
        ));
    }
    let num_images = parsed.num_images.unwrap_or(1);
    if num_images == 0 || num_images > limits.max_images {
        return Err(ApiError::unprocessable(
            "bad_num_images",
            format!("num_images must be between 1 and {}", limits.max_images),
        ));
    }
    let steps = parsed.steps.unwrap_or(limits.default_steps);
    if steps == 0 || steps > limits.max_steps {
        return Err(ApiError::unprocessable(
            "bad_steps",
            format!("steps must be between 1 and {}", limits.max_steps),
        ));
    }
    let guidance = parsed.guidance.unwrap_or(limits.default_guidance);
    if !guidance.is_finite() || !(0.0..=50.0).contains(&guidance) {
        return Err(ApiError::unprocessable(
            "bad_guidance",
            "guidance must be between 0 and 50",
        ));
    }
    let demo_guidance = parsed.demo_guidance.or(limits.default_demo_guidance);
    if let Some(demo_guidance) = demo_guidance
        && (!demo_guidance.is_finite() || !(0.0..=50.0).contains(&demo_guidance))
    {
        return Err(ApiError::unprocessable(
            "bad_demo_guidance",
            "demo_guidance must be between 0 and 50",
        ));
    }
    if parsed.seed.is_some_and(|seed| seed > MAX_SEED) {
        return Err(ApiError::unprocessable(
            "bad_seed",
            format!("seed must be between 0 and {MAX_SEED}"),
        ));
    }
    let side = (limits.max_image_pixels as f64).sqrt().ceil() as u32;
    let decode_limits = DecodeLimits {
        max_side: side.max(1),
        max_pixels: limits.max_image_pixels,
        max_bytes: (limits.max_image_pixels as usize).saturating_mul(8),
    };
    let mut demonstrations = Vec::with_capacity(parsed.demonstrations.len());
    for (i, (bytes, caption)) in parsed.demonstrations.into_iter().enumerate() {
        let image =
            RgbaImage::from_png_with_limits(&bytes, decode_limits).map_err(|e| match e {
                ImageError::TooLarge(m) => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "image_too_large",
                    format!("demonstration {i}: {m}"),
                ),
                ImageError::Unsupported(m) => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_image",
                    format!("demonstration {i}: {m}"),
                ),
                ImageError::Malformed(m) => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_image",
                    format!("demonstration {i} is not a readable PNG: {m}"),
                ),
            })?;
        let caption = caption
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| DEFAULT_CAPTION.to_string());
        if caption.chars().count() > limits.max_prompt_chars {
            return Err(ApiError::unprocessable(
                "caption_too_long",
                format!(
                    "captions are limited to {} characters",
                    limits.max_prompt_chars
                ),
            ));
        }
        demonstrations.push(Demonstration { image, caption });
    }
    let first = parsed.seed.unwrap_or_else(fresh_seed);
    Ok(Generation {
        prompt,
        demonstrations,
        seeds: (0..num_images as u64)
            .map(|k| first.wrapping_add(k) & MAX_SEED)
            .collect(),
        steps,
        guidance,
        demo_guidance,
    })
}

async fn generations(State(state): State<ApiState>, request: Request) -> Response {
    let started = Instant::now();
    let result = generate(&state, request).await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status,
    };
    state.metrics.observe(status.as_u16(), started.elapsed());
    match result {
        Ok(out) => Json(out).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn generate(state: &ApiState, request: Request) -> Result<GenerationOut, ApiError> {
    let started = Instant::now();
    authorise(state, request.headers()).await?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let parse = async {
        if content_type.starts_with("application/json") {
            parse_json(request, state).await
        } else if content_type.starts_with("multipart/form-data") {
            parse_multipart(request, state).await
        } else {
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json or multipart/form-data",
            ))
        }
    };
    // A body sent slowly would hold a connection and its buffers for as long as the client likes.
    let parsed = tokio::time::timeout(state.limits.read_timeout, parse)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {:?}",
                    state.limits.read_timeout
                ),
            )
        })??;
    let generation = validate(parsed, &state.limits)?;
    let seeds = generation.seeds.clone();
    let rendered = tokio::time::timeout(
        state.limits.request_timeout,
        state.engine.render(generation),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the generation did not finish in time",
        )
    })?
    .map_err(|e| match e {
        EngineError::NoModel => no_model(),
        EngineError::Busy => ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", e.to_string())
        },
        EngineError::Failed(m) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "generation_failed", m)
        }
    })?;
    Ok(GenerationOut {
        model: rendered.version,
        images: rendered
            .images
            .iter()
            .zip(seeds)
            .map(|(image, seed)| ImageOut {
                seed,
                png_base64: BASE64.encode(image.to_png()),
            })
            .collect(),
        batched_with: rendered.batched_with,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}
