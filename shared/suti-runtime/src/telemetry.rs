//! Logging set-up, the process's metrics registry with `suti_build_info`, and shutdown signals.

use prometheus::{IntGaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetryConfig};

/// Installs the global log subscriber (`RUST_LOG` overrides the configured filter). Later calls are
/// no-ops, so tests and the embedded mode may call it freely.
pub fn init_logging(config: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A fresh registry holding `suti_build_info{version, git_sha, service}` = 1 and
/// `suti_process_start_time_seconds` (its changes count restarts, under compose as on Kubernetes).
pub fn build_info_registry(service: &str) -> Registry {
    let registry = Registry::new();
    let info = IntGaugeVec::new(
        Opts::new(
            "suti_build_info",
            "Build of the running suti binary; always 1, the labels carry the information",
        ),
        &["version", "git_sha", "service"],
    )
    .expect("static metric definition");
    info.with_label_values(&[crate::VERSION, crate::GIT_SHA, service])
        .set(1);
    registry
        .register(Box::new(info))
        .expect("a fresh registry has no build info yet");
    let started = prometheus::Gauge::new(
        "suti_process_start_time_seconds",
        "When this process started, seconds since the Unix epoch",
    )
    .expect("static metric definition");
    started.set(*PROCESS_STARTED);
    registry
        .register(Box::new(started))
        .expect("a fresh registry has no start time yet");
    registry
}

/// The process's start, read once: every registry of one process reports the same instant.
static PROCESS_STARTED: std::sync::LazyLock<f64> = std::sync::LazyLock::new(|| {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
});

/// A token cancelled on SIGTERM or SIGINT (Ctrl-C): the signal to stop consuming, finish or requeue
/// in-flight work, and exit.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
        trigger.cancel();
    });
    token
}
