//! expert-finetuner (architecture.md §2, §7.4): consumes `cluster.mined.v1`, fine-tunes a LoRA
//! expert of the current base model on the cluster's images and personalised captions, writes the
//! adapter to `experts/{cluster_id}/{base_version}.safetensors` and publishes `expert.trained.v1`.

use std::sync::Arc;

use async_trait::async_trait;
use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};
use suti_factory::BaseModel;
use suti_factory::artifacts::{BASE_MODEL, adapter_key, base_loader, blocking, read_cluster};
use suti_factory::expert::{finetune_expert, personalise};
use suti_factory::pixels::to_chw;
use suti_factory::training::Pair;
use suti_messages::{ClusterMinedV1, ExpertTrainedV1};
use suti_models::text::TextEncoder;
use suti_runtime::config::ExpertStageConfig;
use suti_runtime::{ServiceName, SutiConfig};
use suti_stage::{HandleContext, Handler, HandlerError, Outcome, ServiceHost, VersionedModels};
use tokio_util::sync::CancellationToken;

/// Fine-tuning throughput and cost, besides the harness's standard metrics.
#[derive(Debug, Clone)]
pub struct ExpertMetrics {
    steps: IntCounter,
    busy_seconds: prometheus::Counter,
    final_loss: Histogram,
}

impl ExpertMetrics {
    /// Creates the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let steps = IntCounter::new(
            "suti_expert_finetuner_steps_total",
            "Fine-tuning optimiser steps taken",
        )?;
        let busy_seconds = prometheus::Counter::new(
            "suti_expert_finetuner_busy_seconds_total",
            "Seconds spent fine-tuning (compute cost)",
        )?;
        let final_loss = Histogram::with_opts(
            HistogramOpts::new(
                "suti_expert_finetuner_final_loss",
                "Mean loss over the last tenth of each expert's fine-tune",
            )
            .buckets(vec![0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]),
        )?;
        registry.register(Box::new(steps.clone()))?;
        registry.register(Box::new(busy_seconds.clone()))?;
        registry.register(Box::new(final_loss.clone()))?;
        Ok(Self {
            steps,
            busy_seconds,
            final_loss,
        })
    }
}

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
        Outcome::none()
            .with_artifact(adapter_key, trained.adapter)
            .with_message(
                &message,
                format!("expert-{}-{base_version}", input.cluster_id),
            )
    }
}

pub use suti_stage::ServiceError;

/// Runs the expert-finetuner until `shutdown` is cancelled.
pub async fn run(config: SutiConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let device = suti_factory::device::model_device(config.models.device)
        .map_err(|e| ServiceError::setup("choosing the model device", e))?;
    let text = suti_factory::towers::configured_text_encoder(&config.models.text_encoder, &device)
        .map_err(|e| ServiceError::setup("loading the text encoder", e))?;
    let settings = config.expert.clone();
    let host = ServiceHost::start(ServiceName::ExpertFinetuner, config, shutdown).await?;
    let Some(base) = host.follow_model(BASE_MODEL, base_loader(device)).await else {
        return Ok(());
    };
    let metrics = ExpertMetrics::register(&host.registry)?;
    host.run_stage(ExpertHandler {
        base,
        text: Arc::new(text),
        config: settings,
        metrics: Some(metrics),
    })
    .await?;
    Ok(())
}
