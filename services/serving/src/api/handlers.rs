//! The routes: the web page, the OpenAPI document, `/v1/models` and `/v1/generations`, which
//! authorises, reads and validates a request, renders it within the request deadline and counts it.

use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::auth::authorise;
use super::examples::Examples;
use super::request::{parse, validate};
use super::{ApiError, ApiState, GenerationOut, ImageOut};
use super::{MAX_GUIDANCE, MAX_SEED};
use crate::engine::EngineError;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");
/// The web page.
const PAGE: &str = include_str!("../page.html");

/// The API's routes over `state`.
pub fn router(state: ApiState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/v1/models", get(models))
        .route("/v1/settings", get(settings))
        .route("/v1/examples", get(examples))
        .route("/report/", get(report_index))
        .route("/report/{*path}", get(report_file))
        .route("/v1/generations", post(generations))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn models(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let model = state
        .engine
        .slot()
        .current()
        .ok_or_else(ApiError::no_model)?;
    Ok(Json(serde_json::json!({
        "data": [{
            "id": model.version,
            "object": "model",
            "image_size": model.image_size(),
            "max_demonstrations": model.dit.config().max_demos,
        }]
    })))
}

/// The limits and defaults a client needs to build a request the server accepts.
async fn settings(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let config = &state.config;
    let model = state.engine.slot().current();
    let max_demonstrations = model.as_ref().map_or(config.max_demos, |m| {
        config.max_demos.min(m.dit.config().max_demos)
    });
    Json(serde_json::json!({
        "max_demonstrations": max_demonstrations,
        "max_images": config.max_images,
        "default_num_images": 1,
        "max_steps": config.max_steps,
        "default_steps": config.default_steps,
        "max_guidance": MAX_GUIDANCE,
        "default_guidance": config.default_guidance,
        "default_demo_guidance": config.default_demo_guidance,
        "max_seed": MAX_SEED,
        "max_prompt_chars": config.max_prompt_chars,
        "max_image_pixels": config.max_image_pixels,
        "max_body_bytes": config.max_body_bytes,
        "api_key_required": state.keys.is_some(),
        "model": model.as_ref().map(|m| serde_json::json!({
            "id": m.version,
            "image_size": m.image_size(),
        })),
        "report_url": (!config.report_dir.is_empty()).then_some("/report/"),
    }))
}

/// Example subjects and prompt suggestions for the web page.
async fn examples(State(state): State<ApiState>) -> Json<Examples> {
    Json(state.examples.as_ref().clone())
}

async fn report_index(State(state): State<ApiState>) -> Response {
    report_file(State(state), Path("report.html".to_string())).await
}

/// A file of the configured report folder: `report.html`, `contact-sheet.png` and what is under
/// `eval/` (not the run's data beside them).
async fn report_file(State(state): State<ApiState>, Path(path): Path<String>) -> Response {
    let not_found =
        || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such report file").into_response();
    if state.config.report_dir.is_empty() {
        return not_found();
    }
    let allowed = path == "report.html"
        || path == "contact-sheet.png"
        || (path.starts_with("eval/")
            && path.split('/').all(|part| {
                !part.is_empty()
                    && part != ".."
                    && part != "."
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            }));
    let content_type = match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("md") => "text/markdown; charset=utf-8",
        _ => return not_found(),
    };
    if !allowed {
        return not_found();
    }
    let file = std::path::Path::new(&state.config.report_dir).join(&path);
    match tokio::fs::read(&file).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(_) => not_found(),
    }
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
    let parsed = parse(request, state).await?;
    let generation = validate(parsed, &state.config)?;
    let seeds = generation.seeds.clone();
    let rendered = tokio::time::timeout(
        Duration::from_secs(state.config.request_timeout_secs),
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
        EngineError::NoModel => ApiError::no_model(),
        EngineError::Busy => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", e.to_string()).retry_after(1)
        }
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
