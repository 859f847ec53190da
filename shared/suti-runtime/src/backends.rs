//! Connecting the broker, storage and state that the configuration names, with their readiness
//! checks registered.

use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use suti_queue::{AmqpBroker, AmqpOptions, Broker, InProcessBroker, Topology};
use suti_state::{InProcessState, RedisState, SharedState};
use suti_storage::{
    InstrumentedStore, LocalStore, S3Options, S3Store, SharedStore, StorageMetrics,
};

use crate::Health;
use crate::config::{QueueBackend, StateBackend, StorageBackend, SutiConfig};

/// Why a backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The broker.
    #[error(transparent)]
    Queue(#[from] suti_queue::QueueError),
    /// Storage.
    #[error(transparent)]
    Storage(#[from] suti_storage::StorageError),
    /// State.
    #[error(transparent)]
    State(#[from] suti_state::StateError),
    /// Metrics registration.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl RuntimeError {
    /// Whether waiting and trying again may help (a backend that is still starting).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Queue(e) => e.is_retryable(),
            Self::Storage(e) => e.is_retryable(),
            Self::State(e) => e.is_retryable(),
            Self::Metrics(_) => false,
        }
    }
}

/// The three backends a service works with, and the topology it declared.
#[derive(Clone)]
pub struct Backends {
    /// Message broker.
    pub broker: Arc<dyn Broker>,
    /// Artifact storage (instrumented).
    pub storage: SharedStore,
    /// Shared state.
    pub state: SharedState,
    /// The pipeline topology, declared on the broker.
    pub topology: Topology,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("broker", &self.broker.backend())
            .field("storage", &self.storage.backend())
            .field("state", &self.state.backend())
            .finish()
    }
}

impl Backends {
    /// Connects what `config` names, declares the topology, and registers readiness checks and the
    /// storage metrics.
    pub async fn connect(
        config: &SutiConfig,
        connection_name: &str,
        registry: &Registry,
        health: &Health,
    ) -> Result<Self, RuntimeError> {
        let broker = connect_broker(config, connection_name).await?;
        let storage = connect_storage(config).await?;
        let state: SharedState = match config.state.backend {
            StateBackend::Redis => Arc::new(
                RedisState::connect(
                    config.state.url.expose(),
                    &config.state.namespace,
                    Duration::from_secs(config.state.timeout_secs),
                )
                .await?,
            ),
            StateBackend::InProcess => in_process_state(),
        };
        let topology = Topology::pipeline(&config.queue.namespace, config.queue.delivery_limit);
        broker.declare(&topology).await?;
        let storage: SharedStore =
            InstrumentedStore::new(storage, StorageMetrics::register(registry)?);
        let backends = Self {
            broker,
            storage,
            state,
            topology,
        };
        backends.register_checks(health);
        Ok(backends)
    }

    /// Registers the broker, storage and state readiness checks.
    pub fn register_checks(&self, health: &Health) {
        let broker = self.broker.clone();
        health.add_check("broker", move || {
            let broker = broker.clone();
            Box::pin(async move { broker.ping().await.map_err(|e| e.to_string()) })
        });
        let storage = self.storage.clone();
        health.add_check("storage", move || {
            let storage = storage.clone();
            Box::pin(async move { storage.ping().await.map_err(|e| e.to_string()) })
        });
        let state = self.state.clone();
        health.add_check("state", move || {
            let state = state.clone();
            Box::pin(async move { state.ping().await.map_err(|e| e.to_string()) })
        });
    }
}

/// Connects the configured broker alone (for one-off commands such as `suti crawl`), under
/// `connection_name` as RabbitMQ's management UI shows it.
pub async fn connect_broker(
    config: &SutiConfig,
    connection_name: &str,
) -> Result<Arc<dyn Broker>, RuntimeError> {
    Ok(match config.queue.backend {
        QueueBackend::Amqp => {
            let mut options = AmqpOptions::new(config.queue.url.expose());
            options.connection_name = connection_name.to_string();
            options.connect_timeout = Duration::from_secs(config.queue.connect_timeout_secs);
            options.publish_attempts = config.queue.publish_attempts;
            Arc::new(AmqpBroker::connect(options).await?)
        }
        QueueBackend::InProcess => Arc::new(in_process_broker().connect()),
    })
}

/// Connects the configured storage alone (for one-off jobs such as `suti train`).
pub async fn connect_storage(config: &SutiConfig) -> Result<SharedStore, RuntimeError> {
    Ok(match config.storage.backend {
        StorageBackend::S3 => {
            let mut options = S3Options::from_env(config.storage.bucket.clone())?;
            if !config.storage.endpoint.is_empty() {
                options.endpoint = Some(config.storage.endpoint.clone());
            }
            options.region = config.storage.region.clone();
            options.path_style = config.storage.path_style;
            options.operation_timeout = Duration::from_secs(config.storage.operation_timeout_secs);
            options.max_attempts = config.storage.max_attempts;
            Arc::new(S3Store::connect(&options, config.storage.create_bucket).await?)
        }
        StorageBackend::Local => {
            Arc::new(LocalStore::open(config.storage.local_root.clone()).await?)
        }
    })
}

/// This process's in-process broker: every service of the process that is configured with
/// `queue.backend: in_process` connects to this one (the embedded mode), as separate processes
/// share one RabbitMQ. Each connection has its own handle, so closing one leaves the others up.
fn in_process_broker() -> &'static InProcessBroker {
    static BROKER: std::sync::OnceLock<InProcessBroker> = std::sync::OnceLock::new();
    BROKER.get_or_init(InProcessBroker::new)
}

/// This process's in-process state, shared the same way.
fn in_process_state() -> SharedState {
    static STATE: std::sync::OnceLock<SharedState> = std::sync::OnceLock::new();
    STATE
        .get_or_init(|| Arc::new(InProcessState::new()))
        .clone()
}
