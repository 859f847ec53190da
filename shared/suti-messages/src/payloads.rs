//! The v1 payloads, one per pipeline hop (architecture.md §2 and §4). Messages carry storage keys,
//! never blobs; the artifacts themselves live in object storage under the prefixes of
//! architecture.md §5.

use serde::{Deserialize, Serialize};

use crate::Message;

/// Bounds on one crawl, so a seed list cannot turn into an unbounded job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrawlLimits {
    /// Most pages fetched for this request.
    pub max_pages: u32,
    /// Most link hops followed from a seed.
    pub max_depth: u32,
    /// Most images taken from one page.
    pub max_images_per_page: u32,
    /// Most clusters published for this request.
    pub max_clusters: u32,
}

impl Default for CrawlLimits {
    fn default() -> Self {
        Self {
            max_pages: 1_000,
            max_depth: 3,
            max_images_per_page: 32,
            max_clusters: 1_000,
        }
    }
}

/// `crawl.request.v1`: start mining clusters from seed URLs and/or WARC files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrawlRequestV1 {
    /// Pipeline run this request belongs to (also the AMQP correlation id).
    pub run_id: String,
    /// Seed page URLs to crawl.
    #[serde(default)]
    pub seed_urls: Vec<String>,
    /// Storage keys of WARC files to ingest.
    #[serde(default)]
    pub warc_keys: Vec<String>,
    /// Bounds on the crawl.
    #[serde(default)]
    pub limits: CrawlLimits,
}

impl Message for CrawlRequestV1 {
    const TYPE: &'static str = "crawl.request.v1";
}

/// `cluster.mined.v1`: one subject cluster (3–10 images of one subject with captions) was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterMinedV1 {
    /// Pipeline run.
    pub run_id: String,
    /// Deterministic cluster id (a hash of the cluster's source and members).
    pub cluster_id: String,
    /// Key of the cluster manifest (`clusters/{cluster_id}.msgpack`).
    pub manifest_key: String,
    /// Class noun of the subject, taken from the captions (for example `teapot`).
    pub subject_noun: String,
    /// Keys of the normalised member images (`images/{sha256}.png`).
    pub image_keys: Vec<String>,
}

impl Message for ClusterMinedV1 {
    const TYPE: &'static str = "cluster.mined.v1";
}

/// Summary of a training loss curve, small enough for a message and a dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossSummary {
    /// Mean loss over the first tenth of the steps.
    pub first: f32,
    /// Mean loss over the last tenth of the steps.
    pub last: f32,
    /// Lowest loss seen.
    pub min: f32,
    /// Steps taken.
    pub steps: u32,
}

/// `expert.trained.v1`: a LoRA expert was fine-tuned on one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpertTrainedV1 {
    /// Pipeline run.
    pub run_id: String,
    /// Cluster the expert was trained on.
    pub cluster_id: String,
    /// Key of the cluster manifest.
    pub manifest_key: String,
    /// Version of the frozen base model the adapter applies to.
    pub base_version: String,
    /// Key of the adapter weights (`experts/{cluster_id}/{base_version}.safetensors`).
    pub adapter_key: String,
    /// Rare identifier token placed before the subject noun in prompts.
    pub identifier_token: String,
    /// Class noun of the subject.
    pub subject_noun: String,
    /// LoRA rank.
    pub rank: u32,
    /// The fine-tuning loss curve.
    pub loss: LossSummary,
}

impl Message for ExpertTrainedV1 {
    const TYPE: &'static str = "expert.trained.v1";
}

/// One generated candidate image and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Key of the generated image (`candidates/{cluster_id}/…png`).
    pub image_key: String,
    /// Prompt the expert was given.
    pub prompt: String,
    /// Prompt template family (`recontextualisation`, `accessorisation`, `property`).
    pub template: String,
    /// Sampler seed, so the image can be regenerated.
    pub seed: u64,
}

/// `candidates.generated.v1`: an expert rendered its subject in contexts the cluster never showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidatesGeneratedV1 {
    /// Pipeline run.
    pub run_id: String,
    /// Cluster whose expert generated the candidates.
    pub cluster_id: String,
    /// Key of the cluster manifest (the demonstrations).
    pub manifest_key: String,
    /// Key of the adapter that generated the candidates.
    pub adapter_key: String,
    /// Version of the base model the adapter applies to.
    pub base_version: String,
    /// The generated candidates.
    pub candidates: Vec<Candidate>,
    /// The expert's identifier token in the prompts (`sks`); the filter removes it to get the
    /// prompt the apprentice learns from. Added compatibly: older messages decode with it empty.
    #[serde(default)]
    pub identifier_token: String,
}

impl Message for CandidatesGeneratedV1 {
    const TYPE: &'static str = "candidates.generated.v1";
}

/// Thresholds the ΔCLIP filter applied (architecture.md §7.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterThresholds {
    /// Minimum ΔCLIP-T: how much better the target follows the prompt than the demonstrations do.
    pub delta_clip_min: f32,
    /// Minimum subject similarity between the target and the demonstrations.
    pub subject_similarity_min: f32,
}

/// `examples.accepted.v1`: the filtered (demonstrations, prompt, target) triplets of one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExamplesAcceptedV1 {
    /// Pipeline run.
    pub run_id: String,
    /// Cluster the examples came from.
    pub cluster_id: String,
    /// Key of the dataset shard (`datasets/apprentice/{cluster_id}.msgpack`).
    pub shard_key: String,
    /// Candidates accepted into the shard.
    pub accepted: u32,
    /// Candidates rejected by the filter.
    pub rejected: u32,
    /// Version of the scorer that judged them.
    pub scorer_version: String,
    /// Thresholds applied.
    pub thresholds: FilterThresholds,
}

impl Message for ExamplesAcceptedV1 {
    const TYPE: &'static str = "examples.accepted.v1";
}

/// Training metrics of one apprentice release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprenticeMetrics {
    /// Mean training loss over the last window of steps.
    pub loss: f32,
    /// Optimiser steps taken so far.
    pub steps: u64,
    /// Training examples seen so far.
    pub examples_seen: u64,
    /// Distinct clusters in the training index.
    pub clusters: u32,
}

/// `apprentice.published.v1`: a new apprentice release is ready to serve (fanned out to every replica).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprenticePublishedV1 {
    /// Release version (monotonic within a deployment).
    pub version: String,
    /// Key of the weights (`models/apprentice/{version}/model.safetensors`).
    pub weights_key: String,
    /// Key of the model config (`models/apprentice/{version}/config.json`).
    pub config_key: String,
    /// Base model version the apprentice was initialised from.
    pub base_version: String,
    /// Training metrics at release time.
    pub metrics: ApprenticeMetrics,
    /// Release time, milliseconds since the Unix epoch.
    pub published_at_ms: u64,
}

impl Message for ApprenticePublishedV1 {
    const TYPE: &'static str = "apprentice.published.v1";
}

/// One member of a cluster manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterMember {
    /// Key of the normalised image (`images/{sha256}.png`).
    pub image_key: String,
    /// Key of the bytes as crawled (`raw/{sha256}`).
    pub raw_key: String,
    /// Where the image was found.
    pub source_url: String,
    /// Its caption (figure caption, else alt text).
    pub caption: String,
}

/// The artifact `clusters/{cluster_id}.msgpack`: everything downstream stages need to know about
/// a cluster (written with `rmp_serde::to_vec_named`, like the messages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterManifest {
    /// Pipeline run.
    pub run_id: String,
    /// Deterministic cluster id.
    pub cluster_id: String,
    /// Class noun of the subject.
    pub subject_noun: String,
    /// What the members were grouped by (a page URL by default).
    pub group_key: String,
    /// Title of the page the cluster came from.
    pub title: String,
    /// The members, closest to the cluster's medoid first.
    pub members: Vec<ClusterMember>,
}

/// A demonstration in a dataset shard: one of the cluster's images and its caption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardDemonstration {
    /// Key of the normalised image (`images/{sha256}.png`).
    pub image_key: String,
    /// Its caption as crawled.
    pub caption: String,
}

/// One accepted training target: the subject in a context the demonstrations never showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedExample {
    /// Key of the generated image (`candidates/{cluster_id}/…png`).
    pub image_key: String,
    /// The prompt with the class noun alone (`a teapot on the beach`): what the apprentice sees.
    pub prompt: String,
    /// Prompt template family.
    pub template: String,
    /// Sampler seed the expert used.
    pub seed: u64,
    /// cos(target, prompt) in the scorer's space (CLIP-T).
    pub clip_t: f32,
    /// ΔCLIP-T: CLIP-T of the target minus the mean CLIP-T of the demonstrations.
    pub delta_clip_t: f32,
    /// Mean cosine similarity of the target to the demonstrations (image-tower features).
    pub subject_similarity: f32,
}

/// The accepted (demonstrations, prompt, target) triplets of one cluster: the artifact at
/// `datasets/apprentice/{cluster_id}.msgpack` (written with `rmp_serde::to_vec_named`). Every
/// example shares the cluster's demonstrations; the apprentice trainer draws 1–5 of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleShard {
    /// Pipeline run.
    pub run_id: String,
    /// Cluster the examples came from.
    pub cluster_id: String,
    /// Class noun of the subject.
    pub subject_noun: String,
    /// Version of the scorer that judged the candidates.
    pub scorer_version: String,
    /// The cluster's images and captions.
    pub demonstrations: Vec<ShardDemonstration>,
    /// The accepted targets.
    pub examples: Vec<AcceptedExample>,
    /// Candidates rejected, by reason (`prompt_not_followed`, `subject_lost`); absent in shards
    /// written before it was recorded.
    #[serde(default)]
    pub rejected: std::collections::BTreeMap<String, u32>,
}
