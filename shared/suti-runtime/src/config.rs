//! Layered configuration (compiled-in defaults → optional file → `SUTI__SECTION__KEY` environment),
//! with unknown keys rejected, validation, and secrets redacted whenever it is printed.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Gives a choice setting its text form: written as its name, read from it, and refused with
/// every allowed name listed (a derived `Deserialize`, through the configuration loader, names
/// none of them).
macro_rules! named_choice {
    ($name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every name it may be written as.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// Its name in the configuration.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(unknown_choice(s, Self::NAMES)),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The error of a choice setting given `value`, naming every allowed one.
fn unknown_choice(value: &str, names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!(
        "unknown value {value:?}, expected one of {}",
        names.join(", ")
    )
}

/// The compiled-in defaults.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default.yaml");

/// Environment variable prefix: `SUTI__QUEUE__URL` sets `queue.url`.
pub const ENV_PREFIX: &str = "SUTI";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or parsed, or a key is unknown or mistyped.
    #[error("cannot load configuration: {0}")]
    Load(String),
    /// Values are present but not usable.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// A string that may hold a secret (a URL with a password): shown redacted in `Debug` and when
/// serialised, so printing the configuration never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value with any password inside a URL's user-info replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

/// Replaces the password of `scheme://user:password@host…` with `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{}{masked}{}", &url[..scheme_end + 3], &rest[at..])
        }
        None => url.to_string(),
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Which broker backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBackend {
    /// RabbitMQ.
    Amqp,
    /// In-process broker (embedded mode).
    InProcess,
}

named_choice!(QueueBackend {
    Amqp = "amqp",
    InProcess = "in_process",
});

/// The message broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Backend.
    pub backend: QueueBackend,
    /// AMQP URL (may hold a password).
    pub url: Secret,
    /// Prefix for exchange and queue names; empty in production.
    pub namespace: String,
    /// Failed deliveries before a message is dead-lettered.
    pub delivery_limit: u32,
    /// How long a stage holds a failed delivery while its storage or state backend does not
    /// answer, seconds, before requeueing it: an outage then costs one attempt, not all of them.
    pub outage_patience_secs: u64,
    /// Limit on opening a connection, seconds.
    pub connect_timeout_secs: u64,
    /// Attempts a publish makes, reconnecting in between.
    pub publish_attempts: u32,
}

/// Which storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageBackend {
    /// S3 or an S3-compatible server.
    S3,
    /// Files under `local_root` (embedded mode).
    Local,
}

named_choice!(StorageBackend {
    S3 = "s3",
    Local = "local",
});

/// Artifact storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Backend.
    pub backend: StorageBackend,
    /// Bucket.
    pub bucket: String,
    /// Endpoint URL; empty for AWS.
    pub endpoint: String,
    /// Region.
    pub region: String,
    /// Path-style addressing (MinIO, s3s-fs).
    pub path_style: bool,
    /// Create the bucket at start-up if it is missing.
    pub create_bucket: bool,
    /// Root folder of the local backend.
    pub local_root: PathBuf,
    /// Limit on one S3 operation, seconds.
    pub operation_timeout_secs: u64,
    /// Attempts the S3 client makes for a transient failure.
    pub max_attempts: u32,
}

/// Which state backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateBackend {
    /// Redis.
    Redis,
    /// In-process (embedded mode).
    InProcess,
}

named_choice!(StateBackend {
    Redis = "redis",
    InProcess = "in_process",
});

/// Shared state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Backend.
    pub backend: StateBackend,
    /// Redis URL (may hold a password).
    pub url: Secret,
    /// Prefix of every key.
    pub namespace: String,
    /// Connect and response timeout, seconds.
    pub timeout_secs: u64,
}

/// The admin HTTP port: metrics and health.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address.
    pub listen: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

named_choice!(LogFormat {
    Text = "text",
    Json = "json",
});

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Output format.
    pub log_format: LogFormat,
    /// tracing-subscriber filter directives (`RUST_LOG` overrides).
    pub log_filter: String,
}

/// What the members of a candidate cluster share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterGrouping {
    /// The page they were found on.
    Page,
    /// The page's directory.
    Directory,
    /// The page's host.
    Host,
}

named_choice!(ClusterGrouping {
    Page = "page",
    Directory = "directory",
    Host = "host",
});

/// crawler-clusterer settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrawlerConfig {
    /// Private address ranges the crawler may reach (CIDR strings).
    pub allow_private: Vec<String>,
    /// Largest body fetched, bytes.
    pub max_bytes: usize,
    /// Deadline of one fetch, seconds.
    pub timeout_secs: u64,
    /// Redirects followed at most.
    pub max_redirects: usize,
    /// `User-Agent`, also matched against robots.txt.
    pub user_agent: String,
    /// Sustained requests per second per host, across replicas.
    pub host_rate_per_second: f64,
    /// Burst of requests per host.
    pub host_burst: f64,
    /// What the members of a candidate cluster share.
    pub grouping: ClusterGrouping,
    /// Fewest members of a cluster.
    pub min_members: usize,
    /// Most members of a cluster.
    pub max_members: usize,
    /// Smallest similarity to the medoid a member may have.
    pub min_similarity: f32,
    /// Side of the normalised images.
    pub model_size: u32,
    /// Smallest image side kept.
    pub min_image_side: u32,
}

/// Where the models run: written `cpu`, `cuda` (the first GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelDevice {
    /// The CPU.
    #[default]
    Cpu,
    /// The CUDA GPU of this ordinal (needs a binary built with the `cuda` feature).
    Cuda(usize),
}

impl fmt::Display for ModelDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for ModelDevice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ordinal = s.strip_prefix("cuda:").map(str::parse::<usize>);
        match (s, ordinal) {
            ("cpu", _) => Ok(Self::Cpu),
            ("cuda", _) => Ok(Self::Cuda(0)),
            (_, Some(Ok(n))) => Ok(Self::Cuda(n)),
            _ => Err(unknown_choice(s, &["cpu", "cuda", "cuda:N"])),
        }
    }
}

impl Serialize for ModelDevice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModelDevice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The frozen pretrained towers, where the models run, and how stages follow published models.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Where every stage, serving and the jobs run their models.
    #[serde(default)]
    pub device: ModelDevice,
    /// Folder of MiniLM (`model.safetensors`, `tokenizer.json`, `config.json`); empty for the
    /// copy `scripts/fetch-assets` fetched.
    pub text_encoder: String,
    /// Path of the image tower's weights (`.pth`); empty for the fetched copy.
    pub image_tower: String,
    /// How often a stage checks whether a model's `LATEST` pointer moved, seconds.
    pub poll_secs: u64,
}

/// expert-finetuner: the LoRA fine-tune of one expert per cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpertStageConfig {
    /// Optimiser steps per expert (the paper: 500).
    pub steps: u64,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA scale numerator (the update is scaled by alpha / rank).
    pub alpha: f32,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Images per step.
    pub batch: usize,
    /// Rare token placed before the subject noun.
    pub identifier_token: String,
    /// Seed mixed with each cluster's id.
    pub seed: u64,
}

/// A family of DreamBench prompt templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateFamily {
    /// The subject in a new place (`a teapot on the beach`).
    Recontextualisation,
    /// The subject wearing something (animals only).
    Accessorisation,
    /// The subject with a property changed (`a red teapot`).
    Property,
}

named_choice!(TemplateFamily {
    Recontextualisation = "recontextualisation",
    Accessorisation = "accessorisation",
    Property = "property",
});

/// A denoising sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerChoice {
    /// DDIM.
    Ddim,
    /// DPM-Solver++(2M).
    DpmSolver2m,
}

named_choice!(SamplerChoice {
    Ddim = "ddim",
    DpmSolver2m = "dpm_solver2m",
});

/// generator: how each expert renders its subject in new contexts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Prompts per cluster.
    pub prompts_per_cluster: usize,
    /// Images per prompt.
    pub images_per_prompt: usize,
    /// Template families the prompts are drawn from.
    pub families: Vec<TemplateFamily>,
    /// Denoising steps.
    pub steps: usize,
    /// Classifier-free guidance weight.
    pub guidance: f32,
    /// The sampler.
    pub sampler: SamplerChoice,
    /// Images denoised together at most.
    pub max_batch: usize,
    /// Seed mixed with each cluster's id.
    pub seed: u64,
}

/// How the apprentice reads its demonstrations (the model's `DemoAttention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApprenticeDemoAttention {
    /// The target attends to [own | text | demonstrations] in one softmax, and every weight of
    /// the base trains.
    Shared,
    /// A zero-initialised reader per block attends to the frozen base's states of the
    /// demonstrations; only the readers train (about 4× cheaper a step, and it reads them).
    #[default]
    Gated,
    /// The gated readers with the whole network fine-tuned, the demonstrations encoded by a
    /// frozen copy of the base (releases twice the size).
    GatedFinetuned,
}

named_choice!(ApprenticeDemoAttention {
    Shared = "shared",
    Gated = "gated",
    GatedFinetuned = "gated_finetuned",
});

/// apprentice-trainer: continuous training on the accepted triplets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprenticeStageConfig {
    /// How the apprentice reads its demonstrations.
    #[serde(default)]
    pub demo_attention: ApprenticeDemoAttention,
    /// Share of the training prompts that name the subject by `generic_noun` instead of its class
    /// noun, so that only the demonstrations tell what the subject is (0 to 1).
    #[serde(default)]
    pub generic_noun_share: f32,
    /// The word those prompts say instead of the class noun.
    #[serde(default = "generic_noun")]
    pub generic_noun: String,
    /// Steps the learning-rate schedule spans (training continues at the final rate after).
    pub schedule_steps: u64,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// Fewest demonstrations per example.
    pub min_demos: usize,
    /// Most demonstrations per example.
    pub max_demos: usize,
    /// Seed of the new weights, batches and noise.
    pub seed: u64,
    /// Steps between checkpoints (weights, optimiser moments, generator state).
    pub checkpoint_every: u64,
    /// Steps between releases (`apprentice.published`).
    pub release_every: u64,
    /// How often the trainer looks for newly indexed shards, seconds.
    pub refresh_secs: u64,
    /// Indexed shards (one per cluster) a fresh run waits for before its first step, so that
    /// it does not learn the first clusters alone.
    #[serde(default = "one")]
    pub start_shards: usize,
    /// The longest a fresh run waits for `start_shards` after the first shard came, seconds;
    /// then it starts with the shards it has.
    #[serde(default)]
    pub start_wait_secs: u64,
}

fn one() -> usize {
    1
}

fn generic_noun() -> String {
    "thing".into()
}

/// serving: the HTTP API, its limits and dynamic batching.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingConfig {
    /// Address of the API and web page.
    pub listen: String,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Largest demonstration image, pixels (width × height).
    pub max_image_pixels: u64,
    /// Most demonstrations per request (the model takes up to 8).
    pub max_demos: usize,
    /// Longest prompt or caption, characters.
    pub max_prompt_chars: usize,
    /// Most images per request.
    pub max_images: usize,
    /// Most denoising steps per request.
    pub max_steps: usize,
    /// Denoising steps when a request gives none.
    pub default_steps: usize,
    /// Guidance weight when a request gives none (the paper serves with 15).
    pub default_guidance: f32,
    /// Separate guidance weight of the demonstrations when a request gives none: the text is
    /// guided by `default_guidance`, the demonstrations by this (null: one weight for both).
    pub default_demo_guidance: Option<f32>,
    /// Images denoised together at most.
    pub max_batch_images: usize,
    /// How long a batch waits for more requests before it starts, milliseconds.
    pub batch_wait_ms: u64,
    /// Requests waiting for the model at most; more get 429.
    pub max_queued: usize,
    /// Deadline of one request, seconds.
    pub request_timeout_secs: u64,
    /// Limit on reading a request's headers, and again its body, seconds: a client that sends
    /// them slowly (slowloris) is cut off, with 408 for a body.
    pub read_timeout_secs: u64,
    /// SHA-256 (hex) of the accepted API keys; empty: no key needed.
    pub api_key_hashes: Vec<String>,
    /// Requests per second per API key, sustained (shared by every replica).
    pub key_rate_per_second: f64,
    /// Burst of requests per API key.
    pub key_burst: f64,
}

/// What ΔCLIP-T subtracts from the target's CLIP-T.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaReference {
    /// The demonstrations' mean CLIP-T for the same prompt (the paper).
    Demonstrations,
    /// The target's own mean similarity to the demonstrations' captions, so that image quality
    /// cancels out.
    Captions,
}

named_choice!(DeltaReference {
    Demonstrations = "demonstrations",
    Captions = "captions",
});

/// clip-filter: the ΔCLIP thresholds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipFilterConfig {
    /// Least ΔCLIP-T accepted (the paper: 0.02).
    pub delta_clip_min: f32,
    /// Least mean image-tower similarity to the demonstrations accepted.
    pub subject_similarity_min: f32,
    /// What ΔCLIP-T subtracts from the target's CLIP-T.
    pub delta_reference: DeltaReference,
}

/// One queue-consuming stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Unacknowledged deliveries the broker hands this worker at once.
    pub prefetch: u16,
    /// Deliveries handled at the same time.
    pub concurrency: usize,
    /// Limit on one handler call, seconds; past it the attempt counts as a retryable failure.
    pub handler_timeout_secs: u64,
    /// How long a completed message's idempotency mark is kept, hours.
    pub idempotency_ttl_hours: u64,
}

/// Settings of every queue-consuming stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagesConfig {
    /// crawler-clusterer.
    pub crawler_clusterer: StageConfig,
    /// expert-finetuner.
    pub expert_finetuner: StageConfig,
    /// generator.
    pub generator: StageConfig,
    /// clip-filter.
    pub clip_filter: StageConfig,
    /// apprentice-trainer.
    pub apprentice_trainer: StageConfig,
}

/// The whole configuration of a suti process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SutiConfig {
    /// Message broker.
    pub queue: QueueConfig,
    /// Artifact storage.
    pub storage: StorageConfig,
    /// Shared state.
    pub state: StateConfig,
    /// Admin HTTP port.
    pub admin: AdminConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// crawler-clusterer.
    pub crawler: CrawlerConfig,
    /// Pretrained towers and published models.
    pub models: ModelsConfig,
    /// expert-finetuner.
    pub expert: ExpertStageConfig,
    /// generator.
    pub generator: GeneratorConfig,
    /// clip-filter.
    pub clip_filter: ClipFilterConfig,
    /// apprentice-trainer.
    pub apprentice: ApprenticeStageConfig,
    /// serving.
    pub serving: ServingConfig,
    /// Queue-consuming stages.
    pub stages: StagesConfig,
}

/// The six services of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceName {
    /// Mines subject clusters from web pages and WARC files.
    CrawlerClusterer,
    /// Fine-tunes one LoRA expert per cluster.
    ExpertFinetuner,
    /// Lets each expert generate its subject in new contexts.
    Generator,
    /// Keeps the generations that pass the ΔCLIP filter.
    ClipFilter,
    /// Trains the apprentice on the accepted triplets.
    ApprenticeTrainer,
    /// Serves the apprentice over HTTP.
    Serving,
}

impl ServiceName {
    /// Every service, in pipeline order.
    pub const ALL: [ServiceName; 6] = [
        Self::CrawlerClusterer,
        Self::ExpertFinetuner,
        Self::Generator,
        Self::ClipFilter,
        Self::ApprenticeTrainer,
        Self::Serving,
    ];

    /// The CLI and container name (`expert-finetuner`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrawlerClusterer => "crawler-clusterer",
            Self::ExpertFinetuner => "expert-finetuner",
            Self::Generator => "generator",
            Self::ClipFilter => "clip-filter",
            Self::ApprenticeTrainer => "apprentice-trainer",
            Self::Serving => "serving",
        }
    }

    /// The metric-name form (`expert_finetuner`), as in `suti_expert_finetuner_received_total`.
    pub fn metric_name(self) -> &'static str {
        match self {
            Self::CrawlerClusterer => "crawler_clusterer",
            Self::ExpertFinetuner => "expert_finetuner",
            Self::Generator => "generator",
            Self::ClipFilter => "clip_filter",
            Self::ApprenticeTrainer => "apprentice_trainer",
            Self::Serving => "serving",
        }
    }

    /// The stage queue this service consumes (un-namespaced), if it consumes one.
    pub fn input_queue(self) -> Option<&'static str> {
        match self {
            Self::CrawlerClusterer => Some("crawl.requests"),
            Self::ExpertFinetuner => Some("clusters"),
            Self::Generator => Some("experts"),
            Self::ClipFilter => Some("candidates"),
            Self::ApprenticeTrainer => Some("examples"),
            Self::Serving => None,
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == s || n.metric_name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|n| n.as_str()).collect();
                format!(
                    "unknown service {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl StagesConfig {
    /// The settings of a queue-consuming service (`None` for serving).
    pub fn for_service(&self, service: ServiceName) -> Option<&StageConfig> {
        match service {
            ServiceName::CrawlerClusterer => Some(&self.crawler_clusterer),
            ServiceName::ExpertFinetuner => Some(&self.expert_finetuner),
            ServiceName::Generator => Some(&self.generator),
            ServiceName::ClipFilter => Some(&self.clip_filter),
            ServiceName::ApprenticeTrainer => Some(&self.apprentice_trainer),
            ServiceName::Serving => None,
        }
    }
}

/// Where the configuration comes from, besides the compiled-in defaults.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// A YAML file (`--config`).
    pub file: Option<PathBuf>,
    /// Environment variables to read; `None` reads the process environment.
    pub env: Option<Vec<(String, String)>>,
}

impl SutiConfig {
    /// Loads defaults → file → environment, then validates.
    pub fn load(sources: &ConfigSources) -> Result<Self, ConfigError> {
        use config::{Environment, File, FileFormat};
        let mut builder = config::Config::builder()
            .add_source(File::from_str(DEFAULT_CONFIG_YAML, FileFormat::Yaml));
        if let Some(path) = &sources.file {
            if !path.exists() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Yaml));
        }
        let mut env = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            // SUTI__CRAWLER__ALLOW_PRIVATE=127.0.0.0/8,::1
            .list_separator(",")
            .with_list_parse_key("crawler.allow_private")
            .with_list_parse_key("generator.families")
            .with_list_parse_key("serving.api_key_hashes");
        if let Some(vars) = &sources.env {
            env = env.source(Some(vars.iter().cloned().collect()));
        }
        let config: Self = builder
            .add_source(env)
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Loads from a file path only (defaults → file → environment).
    pub fn load_file(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load(&ConfigSources {
            file: path.map(Path::to_path_buf),
            env: None,
        })
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.queue.backend == QueueBackend::Amqp {
            let url = self.queue.url.expose();
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                problems.push("queue.url must start with amqp:// or amqps://".to_string());
            }
        }
        if self.queue.delivery_limit == 0 {
            problems.push("queue.delivery_limit must be at least 1".into());
        }
        if !self
            .queue
            .namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            problems.push("queue.namespace may only hold letters, digits and -_.".into());
        }
        if self.storage.backend == StorageBackend::S3 {
            if self.storage.bucket.is_empty() {
                problems.push("storage.bucket must not be empty".into());
            }
            let endpoint = &self.storage.endpoint;
            let is_url = endpoint.starts_with("http://") || endpoint.starts_with("https://");
            if !(endpoint.is_empty() || is_url) {
                problems.push("storage.endpoint must be empty or an http(s) URL".into());
            }
        }
        if self.state.backend == StateBackend::Redis {
            let url = self.state.url.expose();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                problems.push("state.url must start with redis:// or rediss://".into());
            }
        }
        if self.admin.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "admin.listen {:?} is not an address like 0.0.0.0:9090",
                self.admin.listen
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_filter).is_err() {
            problems.push(format!(
                "telemetry.log_filter {:?} is not a valid filter",
                self.telemetry.log_filter
            ));
        }
        for service in ServiceName::ALL {
            if let Some(stage) = self.stages.for_service(service) {
                let name = service.metric_name();
                if stage.prefetch == 0 {
                    problems.push(format!("stages.{name}.prefetch must be at least 1"));
                }
                if stage.concurrency == 0 {
                    problems.push(format!("stages.{name}.concurrency must be at least 1"));
                }
                if stage.concurrency > usize::from(stage.prefetch) {
                    problems.push(format!(
                        "stages.{name}.concurrency ({}) cannot exceed its prefetch ({})",
                        stage.concurrency, stage.prefetch
                    ));
                }
                if stage.handler_timeout_secs == 0 {
                    problems.push(format!(
                        "stages.{name}.handler_timeout_secs must be positive"
                    ));
                }
            }
        }
        if self.crawler.min_members == 0 || self.crawler.min_members > self.crawler.max_members {
            problems.push("crawler.min_members must be between 1 and crawler.max_members".into());
        }
        if self.crawler.host_rate_per_second <= 0.0 || self.crawler.host_burst < 1.0 {
            problems.push(
                "crawler.host_rate_per_second must be positive and host_burst at least 1".into(),
            );
        }
        if self.models.poll_secs == 0 {
            problems.push("models.poll_secs must be at least 1".into());
        }
        if self.expert.steps == 0 || self.expert.rank == 0 || self.expert.batch == 0 {
            problems.push("expert.steps, expert.rank and expert.batch must be at least 1".into());
        }
        if self.expert.identifier_token.split_whitespace().count() != 1 {
            problems.push("expert.identifier_token must be one word".into());
        }
        let g = &self.generator;
        if g.prompts_per_cluster == 0
            || g.images_per_prompt == 0
            || g.steps == 0
            || g.max_batch == 0
        {
            problems.push(
                "generator.prompts_per_cluster, images_per_prompt, steps and max_batch must be at least 1"
                    .into(),
            );
        }
        let a = &self.apprentice;
        if a.batch == 0 || a.checkpoint_every == 0 || a.release_every == 0 || a.refresh_secs == 0 {
            problems.push(
                "apprentice.batch, checkpoint_every, release_every and refresh_secs must be at least 1"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&a.generic_noun_share) {
            problems.push(format!(
                "apprentice.generic_noun_share is a share, from 0 to 1 (got {})",
                a.generic_noun_share
            ));
        }
        if a.generic_noun.trim().is_empty() {
            problems.push("apprentice.generic_noun must be a word".into());
        }
        if a.min_demos == 0 || a.min_demos > a.max_demos || a.max_demos > 8 {
            problems.push(
                "apprentice demonstrations must satisfy 1 <= min_demos <= max_demos <= 8".into(),
            );
        }
        let sv = &self.serving;
        if sv.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!("serving.listen {:?} is not an address", sv.listen));
        }
        if sv.max_demos > 8 {
            problems.push("serving.max_demos cannot exceed 8 (the model's limit)".into());
        }
        if sv.max_images == 0 || sv.max_steps == 0 || sv.max_batch_images == 0 || sv.max_queued == 0
        {
            problems.push(
                "serving.max_images, max_steps, max_batch_images and max_queued must be at least 1"
                    .into(),
            );
        }
        if !(0.0..=50.0).contains(&sv.default_guidance)
            || sv
                .default_demo_guidance
                .is_some_and(|g| !(0.0..=50.0).contains(&g))
        {
            problems.push(
                "serving.default_guidance and default_demo_guidance must be between 0 and 50"
                    .into(),
            );
        }
        if sv.default_steps == 0 || sv.default_steps > sv.max_steps {
            problems.push("serving.default_steps must be between 1 and serving.max_steps".into());
        }
        if sv
            .api_key_hashes
            .iter()
            .any(|h| h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()))
        {
            problems.push(
                "serving.api_key_hashes must be SHA-256 digests in hex (64 characters)".into(),
            );
        }
        if g.families.is_empty() {
            problems.push("generator.families must list at least one template family".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The configuration as YAML with every secret redacted.
    pub fn to_redacted_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// A configuration for the embedded mode: in-process broker and state, local storage.
    pub fn embedded(local_root: impl Into<PathBuf>) -> Self {
        let mut config = Self::load(&ConfigSources {
            file: None,
            env: Some(Vec::new()),
        })
        .expect("the compiled-in defaults are valid");
        config.queue.backend = QueueBackend::InProcess;
        config.state.backend = StateBackend::InProcess;
        config.storage.backend = StorageBackend::Local;
        config.storage.local_root = local_root.into();
        config
    }
}
