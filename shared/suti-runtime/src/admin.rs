//! The admin HTTP port every service exposes: Prometheus metrics and the liveness and readiness
//! probes that Kubernetes and compose healthchecks call.
//!
//! Each scrape of `/metrics` also runs the readiness checks and exports them as `suti_ready` and
//! `suti_readiness_check_ok{check}`, so a process that answers but cannot work (its broker, bucket
//! or model missing) shows in Prometheus and alerts, not only in a probe's log.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

use crate::{Health, ReadinessReport};

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    health: Health,
    readiness: ReadinessGauges,
    shutdown: CancellationToken,
}

/// The readiness probe's answer as metrics, refreshed on every scrape.
#[derive(Clone)]
struct ReadinessGauges {
    /// 1 while every check passes and the process is not shutting down.
    ready: IntGauge,
    /// 1 or 0 per named check.
    check_ok: IntGaugeVec,
}

impl ReadinessGauges {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let ready = IntGauge::new(
            "suti_ready",
            "1 while every readiness check passes (the answer of /health/readyz), else 0",
        )?;
        let check_ok = IntGaugeVec::new(
            Opts::new(
                "suti_readiness_check_ok",
                "1 while the named readiness check passes, else 0",
            ),
            &["check"],
        )?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(check_ok.clone()))?;
        Ok(Self { ready, check_ok })
    }

    fn record(&self, report: &ReadinessReport) {
        // A check that was removed must not keep its last value.
        self.check_ok.reset();
        for (check, outcome) in &report.checks {
            self.check_ok
                .with_label_values(&[check.as_str()])
                .set(i64::from(outcome == "ok"));
        }
        self.ready.set(i64::from(report.ready));
    }
}

/// Runs the readiness checks, counting a cancelled shutdown token as not ready.
async fn readiness(state: &AdminState) -> ReadinessReport {
    let mut report = state.health.report().await;
    if state.shutdown.is_cancelled() {
        report.ready = false;
        report
            .checks
            .insert("shutdown".into(), "shutting down".into());
    }
    state.readiness.record(&report);
    report
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
    readiness(&state).await;
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
    let report = readiness(&state).await;
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

/// Binds `listen` and serves the admin routes until `shutdown` is cancelled. Registers the readiness
/// gauges in `registry`, so it fails if another admin server already serves that registry.
pub async fn serve_admin(
    listen: &str,
    registry: Registry,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<AdminServer> {
    let readiness = ReadinessGauges::register(&registry).map_err(std::io::Error::other)?;
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
            readiness,
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
