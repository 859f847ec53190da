//! The stage handler: every candidate is scored against its cluster's demonstrations, and the
//! accepted ones are written as a shard of training triplets and announced downstream.

use std::sync::Arc;

use async_trait::async_trait;
use suti_factory::ScorerModel;
use suti_factory::artifacts::{blocking, read_cluster, read_image, shard_key};
use suti_factory::filter::{DeltaReference, FilterModels, judge};
use suti_messages::{
    AcceptedExample, CandidatesGeneratedV1, ExampleShard, ExamplesAcceptedV1, FilterThresholds,
    ShardDemonstration,
};
use suti_models::image_tower::ImageTower;
use suti_models::text::TextEncoder;
use suti_stage::{HandleContext, Handler, HandlerError, Outcome, VersionedModels};

use crate::metrics::FilterMetrics;

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
        let mut rejected_by_reason = std::collections::BTreeMap::<String, u32>::new();
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
                Err(reason) => {
                    rejected += 1;
                    *rejected_by_reason
                        .entry(reason.label().to_string())
                        .or_default() += 1;
                }
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
            rejected: rejected_by_reason,
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
