//! Running the expert-finetuner as a service: configuration → models → admin port → backends →
//! the stage, following the base model's versions.

use std::sync::Arc;

use suti_factory::artifacts::{BASE_MODEL, base_loader};
use suti_runtime::{ServiceName, SutiConfig};
use suti_stage::{ServiceError, ServiceHost};
use tokio_util::sync::CancellationToken;

use crate::handler::ExpertHandler;
use crate::metrics::ExpertMetrics;

/// Runs the expert-finetuner until `shutdown` is cancelled.
pub async fn run(config: SutiConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let device = suti_factory::device::model_device(config.models.device)
        .map_err(|e| ServiceError::setup("choosing the model device", e))?;
    let text = suti_factory::towers::configured_text_encoder(&config.models.text_encoder, &device)
        .map_err(|e| ServiceError::setup("loading the text encoder", e))?;
    let settings = config.expert.clone();
    let host = ServiceHost::start(ServiceName::ExpertFinetuner, config, shutdown).await?;
    host.run_stage_following(BASE_MODEL, base_loader(device), |base, registry| {
        Ok(ExpertHandler {
            base,
            text: Arc::new(text),
            config: settings,
            metrics: Some(ExpertMetrics::register(registry)?),
        })
    })
    .await?;
    Ok(())
}
