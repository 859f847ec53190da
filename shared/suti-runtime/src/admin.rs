//! The admin HTTP port every service exposes: Prometheus metrics and the liveness and readiness
//! probes that Kubernetes and compose healthchecks call.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

use crate::Health;

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    health: Health,
    shutdown: CancellationToken,
}

/// A running admin server.
#[derive(Debug)]
pub struct AdminServer {
    /// The address it listens on (useful when the configuration asked for port 0).
    pub addr: SocketAddr,
    /// The server task; it ends after the shutdown token is cancelled.
    pub task: tokio::task::JoinHandle<()>,
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn livez() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "alive": true }))
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let mut report = state.health.report().await;
    if state.shutdown.is_cancelled() {
        report.ready = false;
        report
            .checks
            .insert("shutdown".into(), "shutting down".into());
    }
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report))
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "error": "not_found",
            "message": "admin routes are /metrics, /health/livez and /health/readyz"
        })),
    )
}

/// Binds `listen` and serves the admin routes until `shutdown` is cancelled.
pub async fn serve_admin(
    listen: &str,
    registry: Registry,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<AdminServer> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/livez", get(livez))
        .route("/health/readyz", get(readyz))
        .fallback(not_found)
        .with_state(AdminState {
            registry,
            health,
            shutdown: shutdown.clone(),
        });
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    tracing::info!(%addr, "admin server listening");
    Ok(AdminServer { addr, task })
}
