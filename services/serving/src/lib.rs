//! serving (architecture.md §1, §7.7): the apprentice over HTTP. Demonstrations (0–8 images with
//! optional captions) and a prompt in, PNGs out, in seconds, with no per-subject training.
//! Concurrent requests are denoised together (dynamic batching); a new `apprentice.published`
//! release is loaded in the background and swapped in without dropping requests; readiness says
//! whether a release is loaded. API keys, per-key rate limits and request limits are configuration.

pub mod api;
pub mod engine;
pub mod http;
pub mod metrics;

use std::sync::Arc;
use std::time::Duration;

use suti_factory::BaseModel;
use suti_factory::artifacts::dit_loader;
use suti_messages::ApprenticePublishedV1;
use suti_runtime::{ServiceName, SutiConfig};
use suti_stage::{ServiceHost, VersionedModels};
use suti_state::TokenBucket;
use suti_storage::layout::APPRENTICE_MODEL;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{ApiKeys, ApiLimits, ApiState};
use crate::engine::{BatchLimits, Engine, LoadedModel, ModelSlot};
use crate::metrics::ServingMetrics;

pub use suti_stage::ServiceError;

/// Request limits from the configuration.
pub fn api_limits(config: &SutiConfig) -> ApiLimits {
    let s = &config.serving;
    ApiLimits {
        max_body_bytes: s.max_body_bytes,
        max_image_pixels: s.max_image_pixels,
        max_demos: s.max_demos,
        max_prompt_chars: s.max_prompt_chars,
        max_images: s.max_images,
        max_steps: s.max_steps,
        default_steps: s.default_steps,
        default_guidance: s.default_guidance,
        default_demo_guidance: s.default_demo_guidance,
        request_timeout: Duration::from_secs(s.request_timeout_secs),
        read_timeout: Duration::from_secs(s.read_timeout_secs),
    }
}

/// Batching limits from the configuration.
pub fn batch_limits(config: &SutiConfig) -> BatchLimits {
    BatchLimits {
        max_images: config.serving.max_batch_images,
        wait: Duration::from_millis(config.serving.batch_wait_ms),
        max_queued: config.serving.max_queued,
    }
}

/// API keys from the configuration (none: the API is open).
pub fn api_keys(config: &SutiConfig) -> Result<Option<ApiKeys>, ServiceError> {
    let s = &config.serving;
    if s.api_key_hashes.is_empty() {
        return Ok(None);
    }
    const SETTING: &str = "serving.api_key_hashes";
    let hashes = s
        .api_key_hashes
        .iter()
        .map(|h| {
            let bytes = hex::decode(h).map_err(|e| ServiceError::config(SETTING, e))?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| ServiceError::config(SETTING, "not a SHA-256 digest"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(ApiKeys {
        hashes,
        rate: TokenBucket {
            capacity: s.key_burst,
            refill_per_second: s.key_rate_per_second,
        },
    }))
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

/// Runs serving until `shutdown` is cancelled.
pub async fn run(config: SutiConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let device = suti_factory::device::model_device(config.models.device)
        .map_err(|e| ServiceError::setup("choosing the model device", e))?;
    let text = suti_factory::towers::configured_text_encoder(&config.models.text_encoder, &device)
        .map_err(|e| ServiceError::setup("loading the text encoder", e))?;
    let keys = api_keys(&config)?;
    let (limits, batching) = (api_limits(&config), batch_limits(&config));
    let listen = config.serving.listen.clone();
    let header_timeout = limits.read_timeout;
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
    let slot = ModelSlot::default();
    let engine = Engine::start(slot.clone(), Arc::new(text), batching);

    // Releases arrive on the fan-out; LATEST is polled too, for the one published while this
    // replica was down.
    let mut fanout = host
        .backends
        .broker
        .subscribe_fanout(&host.backends.topology, 4)
        .await
        .map_err(|e| ServiceError::setup("subscribing to releases", e))?;
    {
        let (releases, slot, shutdown) = (releases.clone(), slot.clone(), shutdown.clone());
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
    {
        let (releases, slot, shutdown) = (releases.clone(), slot.clone(), shutdown.clone());
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

    let state = ApiState {
        engine,
        limits: Arc::new(limits),
        keys: keys.map(Arc::new),
        state: host.backends.state.clone(),
        metrics,
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| ServiceError::setup(format!("listening on {listen}"), e))?;
    info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or(listen), "serving");
    http::serve_http(
        listener,
        api::router(state),
        header_timeout,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    host.backends.broker.close().await;
    Ok(())
}
