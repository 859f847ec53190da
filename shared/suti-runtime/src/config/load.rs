//! Loading the configuration: compiled-in defaults, then an optional file, then `SUTI__…`
//! environment variables, with unknown keys rejected and the result validated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    AdminConfig, ApprenticeStageConfig, ClipFilterConfig, CrawlerConfig, ExpertStageConfig,
    GeneratorConfig, ModelsConfig, QueueBackend, QueueConfig, ServiceName, ServingConfig,
    StagesConfig, StateBackend, StateConfig, StorageBackend, StorageConfig, TelemetryConfig,
};

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
