//! clip-filter (architecture.md §7.6): consumes `candidates.generated.v1`, scores every candidate
//! against the cluster's demonstrations (ΔCLIP-T and subject similarity), writes the accepted
//! (demonstrations, prompt, target) triplets as `datasets/apprentice/{cluster_id}.msgpack` and
//! publishes `examples.accepted.v1`.

use std::sync::Arc;

use async_trait::async_trait;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use suti_factory::ScorerModel;
use suti_factory::artifacts::{
    SCORER_MODEL, blocking, read_cluster, read_image, scorer_loader, shard_key,
};
use suti_factory::filter::{DeltaReference, FilterModels, judge};
use suti_messages::{
    AcceptedExample, CandidatesGeneratedV1, ExampleShard, ExamplesAcceptedV1, FilterThresholds,
    ShardDemonstration,
};
use suti_models::image_tower::ImageTower;
use suti_models::text::TextEncoder;
use suti_runtime::{ServiceName, SutiConfig};
use suti_stage::{HandleContext, Handler, HandlerError, Outcome, ServiceHost, VersionedModels};
use tokio_util::sync::CancellationToken;

/// Acceptance and score distributions, besides the harness's standard metrics.
#[derive(Debug, Clone)]
pub struct FilterMetrics {
    accepted: IntCounter,
    rejected: IntCounterVec,
    delta_clip: Histogram,
    subject_similarity: Histogram,
}

impl FilterMetrics {
    /// Creates the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let accepted = IntCounter::new(
            "suti_clip_filter_accepted_total",
            "Candidates accepted as training targets",
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "suti_clip_filter_rejected_total",
                "Candidates rejected, by reason (prompt_not_followed, subject_lost)",
            ),
            &["reason"],
        )?;
        let delta_clip = Histogram::with_opts(
            HistogramOpts::new(
                "suti_clip_filter_delta_clip_t",
                "ΔCLIP-T of every scored candidate",
            )
            .buckets(vec![-0.2, -0.1, -0.05, 0.0, 0.02, 0.05, 0.1, 0.2, 0.4]),
        )?;
        let subject_similarity = Histogram::with_opts(
            HistogramOpts::new(
                "suti_clip_filter_subject_similarity",
                "Subject similarity of every scored candidate to its demonstrations",
            )
            .buckets(vec![0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
        )?;
        registry.register(Box::new(accepted.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(delta_clip.clone()))?;
        registry.register(Box::new(subject_similarity.clone()))?;
        Ok(Self {
            accepted,
            rejected,
            delta_clip,
            subject_similarity,
        })
    }
}

/// The stage's handler.
pub struct FilterHandler {
    /// The scorer, following `models/scorer/LATEST`.
    pub scorer: Arc<VersionedModels<ScorerModel>>,
    /// The frozen image tower.
    pub tower: Arc<ImageTower>,
    /// The frozen text encoder.
    pub text: Arc<TextEncoder>,
    /// Acceptance thresholds.
    pub thresholds: FilterThresholds,
    /// What ΔCLIP-T is measured against.
    pub delta_reference: DeltaReference,
    /// Metrics, when registered.
    pub metrics: Option<FilterMetrics>,
}

/// The prompt with the class noun alone: the expert's prompt without its identifier token.
pub fn plain_prompt(prompt: &str, identifier: &str) -> String {
    if identifier.is_empty() {
        return prompt.to_string();
    }
    prompt
        .split_whitespace()
        .filter(|word| *word != identifier)
        .collect::<Vec<_>>()
        .join(" ")
}

#[async_trait]
impl Handler for FilterHandler {
    type Input = CandidatesGeneratedV1;

    async fn handle(
        &self,
        input: CandidatesGeneratedV1,
        ctx: &HandleContext,
    ) -> Result<Outcome, HandlerError> {
        let (scorer_version, scorer) = self.scorer.latest().await?;
        let cluster = read_cluster(&ctx.storage, &input.manifest_key).await?;
        let mut candidates = Vec::with_capacity(input.candidates.len());
        for c in &input.candidates {
            let image = read_image(&ctx.storage, &c.image_key).await?;
            candidates.push((image, plain_prompt(&c.prompt, &input.identifier_token)));
        }
        let prompts: Vec<String> = candidates.iter().map(|(_, p)| p.clone()).collect();
        let captions: Vec<String> = cluster
            .manifest
            .members
            .iter()
            .map(|m| m.caption.clone())
            .collect();
        let (tower, text, demos) = (self.tower.clone(), self.text.clone(), cluster.images);
        let reference = self.delta_reference;
        let scores = blocking(move || {
            FilterModels {
                tower: &tower,
                scorer: &scorer,
                text: &text,
            }
            .score_against(&demos, &captions, &candidates, reference)
        })
        .await?;
        let mut examples = Vec::new();
        let mut rejected = 0u32;
        for ((candidate, prompt), score) in input.candidates.iter().zip(prompts).zip(&scores) {
            let verdict = judge(score, &self.thresholds);
            tracing::debug!(image = %candidate.image_key, clip_t = score.clip_t,
                delta_clip_t = score.delta_clip_t, subject_similarity = score.subject_similarity,
                verdict = verdict.map_or_else(|r| r.label(), |()| "accepted"), "candidate scored");
            if let Some(m) = &self.metrics {
                m.delta_clip.observe(f64::from(score.delta_clip_t));
                m.subject_similarity
                    .observe(f64::from(score.subject_similarity));
                match verdict {
                    Ok(()) => m.accepted.inc(),
                    Err(reason) => m.rejected.with_label_values(&[reason.label()]).inc(),
                }
            }
            match verdict {
                Ok(()) => examples.push(AcceptedExample {
                    image_key: candidate.image_key.clone(),
                    prompt,
                    template: candidate.template.clone(),
                    seed: candidate.seed,
                    clip_t: score.clip_t,
                    delta_clip_t: score.delta_clip_t,
                    subject_similarity: score.subject_similarity,
                }),
                Err(_) => rejected += 1,
            }
        }
        let accepted = examples.len() as u32;
        let n = scores.len().max(1) as f32;
        tracing::info!(
            cluster = %input.cluster_id,
            accepted,
            rejected,
            mean_delta_clip_t = scores.iter().map(|s| s.delta_clip_t).sum::<f32>() / n,
            mean_subject_similarity = scores.iter().map(|s| s.subject_similarity).sum::<f32>() / n,
            "candidates filtered"
        );
        let shard = ExampleShard {
            run_id: input.run_id.clone(),
            cluster_id: input.cluster_id.clone(),
            subject_noun: cluster.manifest.subject_noun.clone(),
            scorer_version: scorer_version.clone(),
            demonstrations: cluster
                .manifest
                .members
                .iter()
                .map(|m| ShardDemonstration {
                    image_key: m.image_key.clone(),
                    caption: m.caption.clone(),
                })
                .collect(),
            examples,
        };
        let shard_key = shard_key(&input.cluster_id)?;
        let shard_bytes = rmp_serde::to_vec_named(&shard)
            .map_err(|e| HandlerError::permanent("encode_shard", e))?;
        let message = ExamplesAcceptedV1 {
            run_id: input.run_id,
            cluster_id: input.cluster_id.clone(),
            shard_key: shard_key.as_str().to_string(),
            accepted,
            rejected,
            scorer_version,
            thresholds: self.thresholds.clone(),
        };
        Outcome::none()
            .with_artifact(shard_key, shard_bytes)
            .with_message(
                &message,
                format!("examples-{}-{}", input.cluster_id, input.base_version),
            )
    }
}

pub use suti_stage::ServiceError;

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
    let Some(scorer) = host.follow_model(SCORER_MODEL, scorer_loader(device)).await else {
        return Ok(());
    };
    let metrics = FilterMetrics::register(&host.registry)?;
    host.run_stage(FilterHandler {
        scorer,
        tower: Arc::new(tower),
        text: Arc::new(text),
        thresholds,
        delta_reference,
        metrics: Some(metrics),
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identifier_is_removed_from_the_prompt() {
        assert_eq!(
            plain_prompt("a sks teapot on the beach", "sks"),
            "a teapot on the beach"
        );
        assert_eq!(plain_prompt("a teapot", ""), "a teapot");
    }
}
