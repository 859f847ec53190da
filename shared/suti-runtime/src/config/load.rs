//! Loading the configuration: compiled-in defaults, then an optional file, then `SUTI__…`
//! environment variables, with unknown keys rejected and the result validated.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use config::builder::{ConfigBuilder, DefaultState};
use serde::{Deserialize, Serialize};

use super::{
    AdminConfig, ApprenticeStageConfig, ClipFilterConfig, CrawlerConfig, ExpertStageConfig,
    GeneratorConfig, ModelsConfig, QueueBackend, QueueConfig, ServingConfig, StagesConfig,
    StateBackend, StateConfig, StorageBackend, StorageConfig, TelemetryConfig,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The compiled-in defaults alone (`default.yaml`, no file, no environment), parsed once.
    pub fn defaults() -> &'static Self {
        static DEFAULTS: OnceLock<SutiConfig> = OnceLock::new();
        DEFAULTS.get_or_init(|| {
            Self::build(config::Config::builder().add_source(compiled_in()))
                .expect("the compiled-in defaults are valid")
        })
    }

    /// Loads defaults → file → environment, then validates.
    pub fn load(sources: &ConfigSources) -> Result<Self, ConfigError> {
        use config::{Environment, File, FileFormat};
        let mut builder = config::Config::builder().add_source(compiled_in());
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
        Self::build(builder.add_source(env))
    }

    /// Loads from a file path only (defaults → file → environment).
    pub fn load_file(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load(&ConfigSources {
            file: path.map(Path::to_path_buf),
            env: None,
        })
    }

    /// Merges the layers, reads them as a configuration, and validates it.
    fn build(layers: ConfigBuilder<DefaultState>) -> Result<Self, ConfigError> {
        let config: Self = layers
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work: every section checks its own, and the report
    /// lists all their problems together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.queue.validate(&mut problems);
        self.storage.validate(&mut problems);
        self.state.validate(&mut problems);
        self.admin.validate(&mut problems);
        self.telemetry.validate(&mut problems);
        self.stages.validate(&mut problems);
        self.crawler.validate(&mut problems);
        self.models.validate(&mut problems);
        self.expert.validate(&mut problems);
        self.generator.validate(&mut problems);
        self.apprentice.validate(&mut problems);
        self.serving.validate(&mut problems);
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
        let mut config = Self::defaults().clone();
        config.queue.backend = QueueBackend::InProcess;
        config.state.backend = StateBackend::InProcess;
        config.storage.backend = StorageBackend::Local;
        config.storage.local_root = local_root.into();
        config
    }
}

/// The compiled-in defaults as the first configuration layer.
fn compiled_in() -> config::File<config::FileSourceString, config::FileFormat> {
    config::File::from_str(DEFAULT_CONFIG_YAML, config::FileFormat::Yaml)
}

impl Default for SutiConfig {
    /// The compiled-in defaults.
    fn default() -> Self {
        Self::defaults().clone()
    }
}

/// Gives each section, as its `Default`, its part of the compiled-in defaults.
macro_rules! section_defaults {
    ($($section:ty => $field:ident),+ $(,)?) => {$(
        impl Default for $section {
            /// This section of the compiled-in defaults.
            fn default() -> Self {
                SutiConfig::defaults().$field.clone()
            }
        }
    )+};
}

section_defaults!(
    QueueConfig => queue,
    StorageConfig => storage,
    StateConfig => state,
    AdminConfig => admin,
    TelemetryConfig => telemetry,
    CrawlerConfig => crawler,
    ModelsConfig => models,
    ExpertStageConfig => expert,
    GeneratorConfig => generator,
    ClipFilterConfig => clip_filter,
    ApprenticeStageConfig => apprentice,
    ServingConfig => serving,
    StagesConfig => stages,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_what_loading_without_a_file_or_an_environment_gives() {
        let loaded = SutiConfig::load(&ConfigSources {
            file: None,
            env: Some(Vec::new()),
        })
        .unwrap();
        assert_eq!(SutiConfig::defaults(), &loaded);
        assert_eq!(SutiConfig::default(), loaded);
        assert_eq!(ExpertStageConfig::default(), loaded.expert);
        assert_eq!(ApprenticeStageConfig::default(), loaded.apprentice);
        assert_eq!(ExpertStageConfig::default().steps, 500);
        assert_eq!(ApprenticeStageConfig::default().generic_noun, "thing");
    }
}
