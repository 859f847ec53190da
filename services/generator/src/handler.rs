//! The stage handler: a trained expert renders candidate images for prompts its cluster never
//! showed, written as artifacts and announced downstream.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use suti_data::PromptKind;
use suti_factory::BaseModel;
use suti_factory::artifacts::{blocking, key, read_manifest, stored_adapter_lora};
use suti_factory::generate::generate;
use suti_factory::prompts::{family_name, generation_prompts};
use suti_messages::{Candidate, CandidatesGeneratedV1, ExpertTrainedV1};
use suti_models::diffusion::SamplerConfig;
use suti_models::text::TextEncoder;
use suti_stage::{HandleContext, Handler, HandlerError, Outcome, VersionedModels};

use crate::metrics::GeneratorMetrics;

/// How candidates are generated.
#[derive(Debug, Clone)]
pub struct GeneratorSettings {
    /// Prompts per cluster.
    pub prompts_per_cluster: usize,
    /// Images per prompt.
    pub images_per_prompt: usize,
    /// Template families.
    pub families: Vec<PromptKind>,
    /// Sampler (its seed is mixed with each cluster's id).
    pub sampler: SamplerConfig,
    /// Images denoised together at most.
    pub max_batch: usize,
}

/// The stage's handler.
pub struct GeneratorHandler {
    /// Base-model versions (an expert applies to the version it was trained on).
    pub base: Arc<VersionedModels<BaseModel>>,
    /// The frozen text encoder.
    pub text: Arc<TextEncoder>,
    /// Generation settings.
    pub settings: GeneratorSettings,
    /// Metrics, when registered.
    pub metrics: Option<GeneratorMetrics>,
}

#[async_trait]
impl Handler for GeneratorHandler {
    type Input = ExpertTrainedV1;

    async fn handle(
        &self,
        input: ExpertTrainedV1,
        ctx: &HandleContext,
    ) -> Result<Outcome, HandlerError> {
        if input.rank == 0 {
            return Err(HandlerError::permanent("bad_message", "adapter rank 0"));
        }
        let base = self.base.version(&input.base_version).await?;
        let adapter = ctx.storage.get(&key(&input.adapter_key)?).await?;
        let manifest = read_manifest(&ctx.storage, &input.manifest_key).await?;
        let captions: Vec<String> = manifest.members.iter().map(|m| m.caption.clone()).collect();
        let cluster_seed = suti_rng::fnv1a64(input.cluster_id.as_bytes());
        let prompts = generation_prompts(
            &input.subject_noun,
            &input.identifier_token,
            &captions,
            &self.settings.families,
            self.settings.prompts_per_cluster,
            cluster_seed,
        );
        if prompts.is_empty() {
            return Err(HandlerError::permanent(
                "no_prompts",
                "the cluster already shows every context of the configured families",
            ));
        }
        let texts: Vec<String> = prompts.iter().map(|p| p.expert_text.clone()).collect();
        let sampler = SamplerConfig {
            seed: self.settings.sampler.seed ^ cluster_seed,
            ..self.settings.sampler.clone()
        };
        let (text, per_prompt, max_batch) = (
            self.text.clone(),
            self.settings.images_per_prompt,
            self.settings.max_batch,
        );
        let lora = stored_adapter_lora(input.rank as usize);
        let started = Instant::now();
        let generated = blocking(move || {
            let expert = base.with_adapter(&adapter, lora)?;
            generate(&expert, &text, &texts, per_prompt, &sampler, max_batch)
        })
        .await?;
        if let Some(m) = &self.metrics {
            m.images.inc_by(generated.len() as u64);
            m.busy_seconds.inc_by(started.elapsed().as_secs_f64());
        }
        let mut outcome = Outcome::none();
        let mut candidates = Vec::with_capacity(generated.len());
        for (k, g) in generated.iter().enumerate() {
            let prompt = &prompts[g.prompt_index];
            let image_key = key(&suti_storage::layout::candidate(
                &input.cluster_id,
                &input.base_version,
                prompt.prompt.id,
                k,
            ))?;
            candidates.push(Candidate {
                image_key: image_key.as_str().to_string(),
                prompt: prompt.expert_text.clone(),
                template: family_name(prompt.prompt.kind).to_string(),
                seed: g.seed,
            });
            outcome = outcome.with_artifact(image_key, g.image.to_png());
        }
        tracing::info!(cluster = %input.cluster_id, images = candidates.len(),
            seconds = started.elapsed().as_secs_f64(), "candidates generated");
        let message = CandidatesGeneratedV1 {
            run_id: input.run_id,
            cluster_id: input.cluster_id.clone(),
            manifest_key: input.manifest_key,
            adapter_key: input.adapter_key,
            base_version: input.base_version.clone(),
            candidates,
            identifier_token: input.identifier_token,
        };
        outcome.with_message(
            &message,
            format!("candidates-{}-{}", input.cluster_id, input.base_version),
        )
    }
}
