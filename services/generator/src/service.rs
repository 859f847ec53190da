//! Running the generator as a service: configuration → models → admin port → backends → the
//! stage, following the base model's versions.

use std::sync::Arc;

use suti_factory::artifacts::{BASE_MODEL, base_loader};
use suti_factory::prompts::prompt_kind;
use suti_models::diffusion::{SamplerConfig, SamplerKind};
use suti_runtime::{SamplerChoice, ServiceName, SutiConfig};
use suti_stage::{ServiceError, ServiceHost};
use tokio_util::sync::CancellationToken;

use crate::handler::{GeneratorHandler, GeneratorSettings};
use crate::metrics::GeneratorMetrics;

/// Settings from the configuration.
pub fn generator_settings(config: &SutiConfig) -> GeneratorSettings {
    let g = &config.generator;
    let kind = match g.sampler {
        SamplerChoice::Ddim => SamplerKind::Ddim,
        SamplerChoice::DpmSolver2m => SamplerKind::DpmSolver2m,
    };
    GeneratorSettings {
        prompts_per_cluster: g.prompts_per_cluster,
        images_per_prompt: g.images_per_prompt,
        families: g.families.iter().map(|&f| prompt_kind(f)).collect(),
        sampler: SamplerConfig {
            steps: g.steps,
            guidance: g.guidance,
            kind,
            seed: g.seed,
            ..SamplerConfig::default()
        },
        max_batch: g.max_batch,
    }
}

/// Runs the generator until `shutdown` is cancelled.
pub async fn run(config: SutiConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let device = suti_factory::device::model_device(config.models.device)
        .map_err(|e| ServiceError::setup("choosing the model device", e))?;
    let settings = generator_settings(&config);
    let text = suti_factory::towers::configured_text_encoder(&config.models.text_encoder, &device)
        .map_err(|e| ServiceError::setup("loading the text encoder", e))?;
    let host = ServiceHost::start(ServiceName::Generator, config, shutdown).await?;
    host.run_stage_following(BASE_MODEL, base_loader(device), |base, registry| {
        Ok(GeneratorHandler {
            base,
            text: Arc::new(text),
            settings,
            metrics: Some(GeneratorMetrics::register(registry)?),
        })
    })
    .await?;
    Ok(())
}
