//! The routes: the web page, the OpenAPI document, `/v1/models` and `/v1/generations`, which
//! authorises, reads and validates a request, renders it within the request deadline and counts it.

use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::auth::authorise;
use super::request::{parse, validate};
use super::{ApiError, ApiState, GenerationOut, ImageOut};
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
