//! Running serving as a service: configuration → admin port → backends → the release it serves,
//! followed from the fan-out and `LATEST` → the HTTP API until shutdown.

use std::sync::Arc;
use std::time::Duration;

use suti_factory::BaseModel;
use suti_factory::artifacts::dit_loader;
use suti_messages::ApprenticePublishedV1;
use suti_queue::Consumer;
use suti_runtime::{ServiceName, SutiConfig};
use suti_stage::{ServiceError, ServiceHost, VersionedModels};
use suti_storage::layout::APPRENTICE_MODEL;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{ApiState, api_keys};
use crate::engine::{BatchLimits, Engine, LoadedModel, ModelSlot};
use crate::metrics::ServingMetrics;

/// Batching limits from the configuration.
pub fn batch_limits(config: &SutiConfig) -> BatchLimits {
    BatchLimits {
        max_images: config.serving.max_batch_images,
        wait: Duration::from_millis(config.serving.batch_wait_ms),
        max_queued: config.serving.max_queued,
    }
}

/// Swaps in release `version` unless it is already served.
async fn adopt(
    releases: &VersionedModels<BaseModel>,
    slot: &ModelSlot,
    version: &str,
) -> Result<(), String> {
    if slot.current().is_some_and(|m| m.version == version) {
        return Ok(());
    }
    let bundle = releases.version(version).await.map_err(|e| e.to_string())?;
    let model =
        LoadedModel::from_bundle(version.to_string(), &bundle).map_err(|e| e.to_string())?;
    slot.replace(model);
    Ok(())
}

/// Loads each release announced on the fan-out until shutdown.
fn adopt_announced(
    mut fanout: Box<dyn Consumer>,
    releases: Arc<VersionedModels<BaseModel>>,
    slot: ModelSlot,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = fanout.next() => d,
            };
            let Some(delivery) = delivery else { break };
            match delivery.envelope.decode::<ApprenticePublishedV1>() {
                Ok(release) => {
                    info!(version = %release.version, "release announced; loading it");
                    if let Err(e) = adopt(&releases, &slot, &release.version).await {
                        warn!(version = %release.version, error = %e, "cannot load the release");
                    }
                }
                Err(e) => warn!(error = %e, "an undecodable release announcement was ignored"),
            }
            let _ = delivery.ack().await;
        }
    });
}

/// Loads the release `LATEST` points at, every `poll`, until shutdown: the one published while
/// this replica was down was announced to no one.
fn adopt_latest(
    releases: Arc<VersionedModels<BaseModel>>,
    slot: ModelSlot,
    poll: Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            match releases.latest().await {
                Ok((version, _)) => {
                    if let Err(e) = adopt(&releases, &slot, &version).await {
                        warn!(%version, error = %e, "cannot load the latest release");
                    }
                }
                Err(e) if e.kind() == "model_missing" => {}
                Err(e) => warn!(error = %e, "cannot read the latest release"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    });
}

/// Runs serving until `shutdown` is cancelled.
pub async fn run(config: SutiConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let device = suti_factory::device::model_device(config.models.device)
        .map_err(|e| ServiceError::setup("choosing the model device", e))?;
    let text = suti_factory::towers::configured_text_encoder(&config.models.text_encoder, &device)
        .map_err(|e| ServiceError::setup("loading the text encoder", e))?;
    let keys = api_keys(&config)?;
    let config_examples = config.serving.example_subjects;
    let batching = batch_limits(&config);
    let serving = Arc::new(config.serving.clone());
    let header_timeout = Duration::from_secs(serving.read_timeout_secs);
    let poll = Duration::from_secs(config.models.poll_secs);
    let host = ServiceHost::start(ServiceName::Serving, config, shutdown.clone()).await?;
    let metrics = ServingMetrics::register(&host.registry)?;
    let releases = Arc::new(
        VersionedModels::new(
            APPRENTICE_MODEL,
            host.backends.storage.clone(),
            dit_loader(APPRENTICE_MODEL, device),
        )
        .with_health(host.health.clone()),
    );
    let slot = ModelSlot::with_demo_cache(serving.demo_cache_bytes);
    let engine = Engine::start(slot.clone(), Arc::new(text), batching, metrics.clone());

    // Releases arrive on the fan-out; LATEST is polled too, for the one published while this
    // replica was down.
    let fanout = host
        .backends
        .broker
        .subscribe_fanout(&host.backends.topology, 4)
        .await
        .map_err(|e| ServiceError::setup("subscribing to releases", e))?;
    adopt_announced(fanout, releases.clone(), slot.clone(), shutdown.clone());
    adopt_latest(releases, slot, poll, shutdown.clone());

    let listen = serving.listen.clone();
    let state = ApiState {
        engine,
        config: serving,
        keys: keys.map(Arc::new),
        state: host.backends.state.clone(),
        metrics,
        examples: Arc::new(crate::api::examples::Examples::configured(config_examples)),
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| ServiceError::setup(format!("listening on {listen}"), e))?;
    info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or(listen), "serving");
    crate::http::serve_http(
        listener,
        crate::api::router(state),
        header_timeout,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    host.backends.broker.close().await;
    Ok(())
}
