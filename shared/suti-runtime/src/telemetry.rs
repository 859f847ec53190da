//! Logging set-up, OTLP trace export, the process's metrics registry with `suti_build_info`, and
//! shutdown signals.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use prometheus::{IntGaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};

/// The tracer provider when traces are exported, kept to flush it at exit.
static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global log subscriber (`RUST_LOG` overrides the configured filter). Later calls are
/// no-ops, so tests and the embedded mode may call it freely.
pub fn init_logging(config: &TelemetryConfig) {
    init_telemetry(config, "suti");
}

/// [`init_logging`], plus OTLP trace export as `service` when `telemetry.otlp_endpoint` is set:
/// every `tracing` span becomes an OpenTelemetry span, sent in batches from a thread of its own.
/// An exporter that cannot be built is logged and traces stay off; the service runs regardless.
pub fn init_telemetry(config: &TelemetryConfig, service: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let traces = if config.otlp_endpoint.is_empty() {
        Ok(None)
    } else {
        tracer_provider(config, service).map(Some)
    };
    let otel = match &traces {
        Ok(Some(provider)) => {
            Some(tracing_opentelemetry::layer().with_tracer(provider.tracer("suti")))
        }
        _ => None,
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let installed = match config.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    match traces {
        Ok(Some(provider)) if installed.is_ok() => {
            let _ = TRACER_PROVIDER.set(provider);
            tracing::info!(endpoint = %config.otlp_endpoint, "exporting traces over OTLP");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(
            endpoint = %config.otlp_endpoint,
            "traces are off: the OTLP exporter could not be built: {e}"
        ),
    }
}

/// An OTLP/HTTP (protobuf) exporter to `{otlp_endpoint}/v1/traces` behind a batch processor.
fn tracer_provider(config: &TelemetryConfig, service: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let endpoint = format!("{}/v1/traces", config.otlp_endpoint.trim_end_matches('/'));
    // The blocking HTTP client runs a runtime of its own, which cannot be created inside an
    // async context: build it on a plain thread.
    let exporter = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the exporter's thread panicked".to_string())??;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_string())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            crate::VERSION,
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.trace_sample_ratio,
        ))))
        .build())
}

/// Sends the spans still buffered (call before the process exits); a no-op without OTLP export.
pub fn flush_traces() {
    if let Some(provider) = TRACER_PROVIDER.get() {
        let _ = provider.force_flush();
    }
}

/// Makes `span` a child of the W3C `traceparent` a message carried (none, or one that does not
/// parse: `span` starts a trace of its own).
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(parent);
}

/// The W3C `traceparent` naming `span`, for the messages published while it runs; `None` when
/// traces are not exported (the span then has no OpenTelemetry context).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
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
