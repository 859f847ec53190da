//! The stage handler: a mined cluster becomes a LoRA expert of the current base model, written
//! as an artifact and announced downstream.

use std::sync::Arc;

use async_trait::async_trait;
use suti_factory::BaseModel;
use suti_factory::artifacts::{adapter_key, blocking, expert_losses_key, read_cluster};
use suti_factory::expert::{finetune_expert, personalise};
use suti_factory::pixels::to_chw;
use suti_factory::training::Pair;
use suti_messages::{ClusterMinedV1, ExpertTrainedV1};
use suti_models::text::TextEncoder;
use suti_runtime::config::ExpertStageConfig;
use suti_stage::{HandleContext, Handler, HandlerError, Outcome, VersionedModels};

use crate::metrics::ExpertMetrics;

/// The stage's handler.
pub struct ExpertHandler {
    /// The base model, following `models/base/LATEST`.
    pub base: Arc<VersionedModels<BaseModel>>,
    /// The frozen text encoder.
    pub text: Arc<TextEncoder>,
    /// Fine-tune settings.
    pub config: ExpertStageConfig,
    /// Metrics, when registered.
    pub metrics: Option<ExpertMetrics>,
}

#[async_trait]
impl Handler for ExpertHandler {
    type Input = ClusterMinedV1;

    async fn handle(
        &self,
        input: ClusterMinedV1,
        ctx: &HandleContext,
    ) -> Result<Outcome, HandlerError> {
        let (base_version, base) = self.base.latest().await?;
        let adapter_key = adapter_key(&input.cluster_id, &base_version)?;
        let cluster = read_cluster(&ctx.storage, &input.manifest_key).await?;
        let noun = cluster.manifest.subject_noun.clone();
        let size = base.config.image_size;
        let identifier = self.config.identifier_token.clone();
        let pairs: Vec<Pair> = cluster
            .images
            .iter()
            .zip(&cluster.manifest.members)
            .map(|(image, member)| Pair {
                image: to_chw(image, size),
                caption: personalise(&member.caption, &noun, &identifier),
            })
            .collect();
        let (text, config, metrics) =
            (self.text.clone(), self.config.clone(), self.metrics.clone());
        let seed = suti_rng::fnv1a64(input.cluster_id.as_bytes()) ^ config.seed;
        let trained = blocking(move || {
            finetune_expert(&base, &pairs, &text, &config, seed, |_, _| {
                if let Some(m) = &metrics {
                    m.steps.inc();
                }
            })
        })
        .await?;
        if let Some(m) = &self.metrics {
            m.busy_seconds.inc_by(trained.seconds);
            m.final_loss.observe(f64::from(trained.loss.last));
        }
        tracing::info!(cluster = %input.cluster_id, base = %base_version, loss_first = trained.loss.first,
            loss_last = trained.loss.last, seconds = trained.seconds, "expert trained");
        let message = ExpertTrainedV1 {
            run_id: input.run_id,
            cluster_id: input.cluster_id.clone(),
            manifest_key: input.manifest_key,
            base_version: base_version.clone(),
            adapter_key: adapter_key.as_str().to_string(),
            identifier_token: identifier,
            subject_noun: noun,
            rank: self.config.rank as u32,
            loss: trained.loss,
        };
        let losses_key = expert_losses_key(&input.cluster_id, &base_version)?;
        Outcome::none()
            .with_artifact(losses_key, trained.history.to_json())
            .with_artifact(adapter_key, trained.adapter)
            .with_message(
                &message,
                format!("expert-{}-{base_version}", input.cluster_id),
            )
    }
}
