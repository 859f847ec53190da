//! The API's JSON: the generation request as JSON clients send it, the answer, and the error
//! every failure turns into (`{"error": {"code", "message"}}` with its HTTP status).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A request that is well formed but asks for what the limits refuse.
    pub(super) fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// The same error, telling the client when to try again (`Retry-After`).
    pub(super) fn retry_after(self, seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds),
            ..self
        }
    }

    /// No release is loaded yet.
    pub(super) fn no_model() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_model",
            "no apprentice release is loaded yet",
        )
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
