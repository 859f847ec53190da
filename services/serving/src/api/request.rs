//! Reading a generation request (JSON with base64 images, or a multipart form with PNG files)
//! within the body's deadline, then checking it against the configured limits and decoding its
//! images into the engine's [`Generation`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use suti_data::{DecodeLimits, ImageError, RgbaImage};
use suti_runtime::config::ServingConfig;

use super::{ApiError, ApiState, DEFAULT_CAPTION, JsonGeneration};
use crate::engine::{Demonstration, Generation};

/// The largest seed (2⁶³ − 1): seeds are the OpenAPI document's int64, which every JSON client can
/// send back exactly.
pub const MAX_SEED: u64 = i64::MAX as u64;
/// Largest guidance weight (text or demonstrations) a request may ask for.
pub const MAX_GUIDANCE: f32 = 50.0;

/// The parts of a request before validation.
pub(super) struct Parsed {
    prompt: String,
    demonstrations: Vec<(Vec<u8>, Option<String>)>,
    num_images: Option<usize>,
    steps: Option<usize>,
    guidance: Option<f32>,
    demo_guidance: Option<f32>,
    seed: Option<u64>,
}

/// Reads the request's body as its content type says, within `serving.read_timeout_secs`.
pub(super) async fn parse(request: Request, state: &ApiState) -> Result<Parsed, ApiError> {
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
    let read_timeout = Duration::from_secs(state.config.read_timeout_secs);
    tokio::time::timeout(read_timeout, parse)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the request body did not arrive within {read_timeout:?}"),
            )
        })?
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

fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    suti_rng::SplitMix64::new(nanos ^ SEED_COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(32))
        .next_u64()
        & MAX_SEED
}

/// Checks a parsed request against the limits of `serving` and decodes its images.
pub(super) fn validate(parsed: Parsed, limits: &ServingConfig) -> Result<Generation, ApiError> {
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
    if !guidance.is_finite() || !(0.0..=MAX_GUIDANCE).contains(&guidance) {
        return Err(ApiError::unprocessable(
            "bad_guidance",
            "guidance must be between 0 and 50",
        ));
    }
    let demo_guidance = parsed.demo_guidance.or(limits.default_demo_guidance);
    if let Some(demo_guidance) = demo_guidance
        && (!demo_guidance.is_finite() || !(0.0..=MAX_GUIDANCE).contains(&demo_guidance))
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
