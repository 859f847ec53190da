//! Running the apprentice-trainer as a service: configuration → models → admin port → backends →
//! the training loop beside the indexing stage, both until shutdown.

use std::sync::Arc;

use suti_factory::artifacts::{BASE_MODEL, base_loader};
use suti_runtime::{ServiceName, SutiConfig};
use suti_stage::{ServiceError, ServiceHost};
use tokio_util::sync::CancellationToken;

use crate::handler::IndexHandler;
use crate::metrics::TrainerMetrics;
use crate::training::{TrainerBackends, TrainingLoop};

/// Runs the apprentice-trainer until `shutdown` is cancelled.
pub async fn run(config: SutiConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let device = suti_factory::device::model_device(config.models.device)
        .map_err(|e| ServiceError::setup("choosing the model device", e))?;
    let text = suti_factory::towers::configured_text_encoder(&config.models.text_encoder, &device)
        .map_err(|e| ServiceError::setup("loading the text encoder", e))?;
    let settings = config.apprentice.clone();
    let host = ServiceHost::start(ServiceName::ApprenticeTrainer, config, shutdown.clone()).await?;
    // The apprentice starts from the base that is latest when it starts; it does not follow
    // later versions.
    let Some(base) = host
        .model_when_published(BASE_MODEL, base_loader(device))
        .await
    else {
        return Ok(());
    };
    let (base_version, base_model) = base
        .latest()
        .await
        .map_err(|e| ServiceError::setup("reading the latest base model", e))?;
    let metrics = TrainerMetrics::register(&host.registry)?;
    let training = TrainingLoop::new(
        TrainerBackends {
            storage: host.backends.storage.clone(),
            state: host.backends.state.clone(),
            broker: host.backends.broker.clone(),
            topology: host.backends.topology.clone(),
        },
        Arc::new(text),
        settings,
        Some(metrics),
    );
    let runtime = tokio::runtime::Handle::current();
    let stop_training = shutdown.clone();
    // A trainer that fails stops the whole process, so the orchestrator restarts it from the
    // last checkpoint instead of leaving a consumer that no longer trains.
    let trainer = tokio::task::spawn_blocking(move || {
        let result = training.run(base_model, base_version, runtime, stop_training.clone());
        if let Err(e) = &result {
            tracing::error!(error = %e, "the training loop failed; stopping the service");
            stop_training.cancel();
        }
        result
    });
    host.run_stage(IndexHandler).await?;
    match trainer.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServiceError::stopped("training stopped", e)),
        Err(e) => Err(ServiceError::stopped("training panicked", e)),
    }
}
