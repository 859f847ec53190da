//! Running the clip-filter as a service: configuration → models → admin port → backends → the
//! stage, following the scorer's versions.

use std::sync::Arc;

use suti_factory::artifacts::{SCORER_MODEL, scorer_loader};
use suti_messages::FilterThresholds;
use suti_runtime::{ServiceName, SutiConfig};
use suti_stage::{ServiceError, ServiceHost};
use tokio_util::sync::CancellationToken;

use crate::handler::FilterHandler;
use crate::metrics::FilterMetrics;

/// Runs the clip-filter until `shutdown` is cancelled.
pub async fn run(config: SutiConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let device = suti_factory::device::model_device(config.models.device)
        .map_err(|e| ServiceError::setup("choosing the model device", e))?;
    let text = suti_factory::towers::configured_text_encoder(&config.models.text_encoder, &device)
        .map_err(|e| ServiceError::setup("loading the text encoder", e))?;
    let tower = suti_factory::towers::load_image_tower(
        &suti_factory::towers::image_tower_path(&config.models.image_tower),
        &device,
    )
    .map_err(|e| ServiceError::setup("loading the image tower", e))?;
    let thresholds = FilterThresholds {
        delta_clip_min: config.clip_filter.delta_clip_min,
        subject_similarity_min: config.clip_filter.subject_similarity_min,
    };
    let delta_reference = config.clip_filter.delta_reference;
    let host = ServiceHost::start(ServiceName::ClipFilter, config, shutdown).await?;
    host.run_stage_following(SCORER_MODEL, scorer_loader(device), |scorer, registry| {
        Ok(FilterHandler {
            scorer,
            tower: Arc::new(tower),
            text: Arc::new(text),
            thresholds,
            delta_reference,
            metrics: Some(FilterMetrics::register(registry)?),
        })
    })
    .await?;
    Ok(())
}
