//! Hosting a service process: logging, metrics registry, admin port, backends from configuration,
//! shutdown on SIGTERM — everything around a handler, so a service's `main` is only its handler.

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{
    Counter, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry,
};
use suti_runtime::{
    AdminServer, Backends, Health, RuntimeError, ServiceName, SutiConfig, build_info_registry,
    serve_admin,
};
use tokio_util::sync::CancellationToken;

use crate::models::{ModelLoader, VersionedModels};
use crate::{Handler, StageMetrics, StageSettings, run_stage};

/// How long the admin server may take to drain its connections at shutdown.
const ADMIN_DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A backend could not be reached or set up.
    #[error(transparent)]
    Backend(#[from] RuntimeError),
    /// The admin port could not be bound.
    #[error("cannot serve the admin port on {listen}")]
    Admin {
        /// The configured address.
        listen: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The service consumes no stage queue.
    #[error("{0} does not consume a stage queue")]
    NotAStage(ServiceName),
    /// Metrics could not be registered.
    #[error("registering metrics")]
    Metrics(#[from] prometheus::Error),
    /// The broker failed while consuming.
    #[error(transparent)]
    Queue(#[from] suti_queue::QueueError),
}

/// The error a [`ServiceError`] keeps as its cause.
type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a service stopped before its shutdown was asked. Each kind says what failed and keeps the
/// error that made it fail as its source, so the chain reads `what: why` (as `suti` prints it).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The host (admin port, backends, metrics, the stage queue) failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A setting holds a value the service cannot run with.
    #[error("{setting}")]
    Config {
        /// The setting, as its path in the configuration (`crawler.allow_private`).
        setting: &'static str,
        /// What is wrong with its value.
        #[source]
        source: Cause,
    },
    /// Something the service needs before it works (a model, a listener, a subscription) could
    /// not be set up.
    #[error("{what}")]
    Setup {
        /// What was being set up (`loading the text encoder`).
        what: String,
        /// Why it failed.
        #[source]
        source: Cause,
    },
    /// Work the service runs beside its stage (the apprentice's training) stopped with an error.
    #[error("{what}")]
    Stopped {
        /// How it stopped (`training stopped`).
        what: String,
        /// Why.
        #[source]
        source: Cause,
    },
}

impl ServiceError {
    /// Setting up `what` failed because of `source`.
    pub fn setup(what: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self::Setup {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The value of `setting` is unusable, as `source` says.
    pub fn config(setting: &'static str, source: impl Into<Cause>) -> Self {
        Self::Config {
            setting,
            source: source.into(),
        }
    }

    /// Work running beside the stage stopped (`what`) because of `source`.
    pub fn stopped(what: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self::Stopped {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// A service's own metrics go into the host's registry; failing to register them is the host's.
impl From<prometheus::Error> for ServiceError {
    fn from(e: prometheus::Error) -> Self {
        Self::Host(HostError::Metrics(e))
    }
}

/// The longest wait between two attempts to reach the backends at start-up.
const CONNECT_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Connects the backends, retrying with backoff while one is unreachable (a broker restarting, S3
/// away) instead of exiting: the process stays up and reports not ready under the check
/// `backends` until every backend answers, or until shutdown. A configuration error fails at once.
async fn connect_with_retries(
    config: &SutiConfig,
    connection_name: &str,
    registry: &Registry,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<Backends, HostError> {
    let backoff = suti_queue::Backoff::new(std::time::Duration::from_secs(1), CONNECT_RETRY_MAX);
    health.set_flag("backends", Some("connecting".into()));
    let mut attempt = 0;
    loop {
        match Backends::connect(config, connection_name, registry, health).await {
            Ok(backends) => {
                health.set_flag("backends", None);
                if attempt > 0 {
                    tracing::info!(attempts = attempt + 1, "backends reached");
                }
                return Ok(backends);
            }
            Err(e) if e.is_retryable() => {
                let delay = backoff.delay(attempt);
                tracing::warn!(error = %e, attempt = attempt + 1, retry_in = ?delay,
                               "a backend is unreachable at start-up; retrying");
                health.set_flag("backends", Some(format!("unreachable: {e}")));
                attempt += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(e.into()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A running service process: its registry, readiness, admin port and backends.
pub struct ServiceHost {
    /// Which service this is.
    pub service: ServiceName,
    /// The configuration it runs with.
    pub config: SutiConfig,
    /// The process's metrics registry.
    pub registry: Registry,
    /// Readiness checks.
    pub health: Health,
    /// Cancelled on SIGTERM/SIGINT, or by [`ServiceHost::shutdown`].
    pub shutdown: CancellationToken,
    /// The admin server.
    pub admin: AdminServer,
    /// Broker, storage and state.
    pub backends: Backends,
}

impl ServiceHost {
    /// Serves the admin port and connects the configured backends. `shutdown` is the token that
    /// stops the service (use [`suti_runtime::shutdown_on_signal`] in a real process).
    pub async fn start(
        service: ServiceName,
        config: SutiConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, HostError> {
        let registry = build_info_registry(service.as_str());
        let health = Health::new();
        let admin = serve_admin(
            &config.admin.listen,
            registry.clone(),
            health.clone(),
            shutdown.clone(),
        )
        .await
        .map_err(|source| HostError::Admin {
            listen: config.admin.listen.clone(),
            source,
        })?;
        let backends =
            connect_with_retries(&config, service.as_str(), &registry, &health, &shutdown).await?;
        Ok(Self {
            service,
            config,
            registry,
            health,
            shutdown,
            admin,
            backends,
        })
    }

    /// Model `name` from the host's storage, loaded by `loader`, its readiness reported under the
    /// host's health, once its first version is published and loaded (checked every
    /// `models.poll_secs`); `None` if shutdown came first. Messages that arrive before it stay
    /// queued instead of burning their delivery attempts.
    pub async fn model_when_published<T: Send + Sync + 'static>(
        &self,
        name: &'static str,
        loader: ModelLoader<T>,
    ) -> Option<Arc<VersionedModels<T>>> {
        let models = Arc::new(
            VersionedModels::new(name, self.backends.storage.clone(), loader)
                .with_health(self.health.clone()),
        );
        models
            .wait_for_first(self.model_poll(), &self.shutdown)
            .await
            .then_some(models)
    }

    /// [`ServiceHost::model_when_published`], then followed until shutdown: a new version loads
    /// as soon as it is published.
    pub async fn follow_model<T: Send + Sync + 'static>(
        &self,
        name: &'static str,
        loader: ModelLoader<T>,
    ) -> Option<Arc<VersionedModels<T>>> {
        let models = self.model_when_published(name, loader).await?;
        models.watch(self.model_poll(), self.shutdown.clone());
        Some(models)
    }

    /// Follows model `name` as [`ServiceHost::follow_model`] does, then runs on the stage queue the
    /// handler that `handler_for` makes from it (registering the stage's own metrics in the
    /// registry it is given) until shutdown. A shutdown before the model's first version is a
    /// clean stop.
    pub async fn run_stage_following<T: Send + Sync + 'static, H: Handler>(
        self,
        name: &'static str,
        loader: ModelLoader<T>,
        handler_for: impl FnOnce(Arc<VersionedModels<T>>, &Registry) -> prometheus::Result<H>,
    ) -> Result<(), HostError> {
        let Some(models) = self.follow_model(name, loader).await else {
            return Ok(());
        };
        let handler = handler_for(models, &self.registry)?;
        self.run_stage(handler).await
    }

    fn model_poll(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.config.models.poll_secs)
    }

    /// Runs `handler` on the service's stage queue until shutdown, then stops the admin port.
    pub async fn run_stage<H: Handler>(self, handler: H) -> Result<(), HostError> {
        let stage_config = self
            .config
            .stages
            .for_service(self.service)
            .ok_or(HostError::NotAStage(self.service))?;
        let mut settings =
            StageSettings::from_config(self.service, stage_config, &self.backends.topology)
                .ok_or(HostError::NotAStage(self.service))?;
        settings.outage_patience =
            std::time::Duration::from_secs(self.config.queue.outage_patience_secs);
        let metrics = StageMetrics::register(&self.registry, self.service.metric_name())?;
        let result = run_stage(
            handler,
            settings,
            (&self.backends).into(),
            metrics,
            self.shutdown.clone(),
        )
        .await;
        self.shutdown.cancel();
        // The admin server drains its connections gracefully; a scraper that keeps one open must
        // not keep the process from exiting, so the drain has a deadline.
        let mut admin = self.admin.task;
        if tokio::time::timeout(ADMIN_DRAIN_DEADLINE, &mut admin)
            .await
            .is_err()
        {
            tracing::warn!(
                deadline = ?ADMIN_DRAIN_DEADLINE,
                "the admin server did not drain its connections; closing them"
            );
            admin.abort();
        }
        self.backends.broker.close().await;
        tracing::info!(service = %self.service, "service stopped");
        Ok(result?)
    }
}

/// Makes a service's own metrics and registers each in a registry as it is made, so that a
/// service's metrics struct is built field by field, each metric's name and help in one call.
#[derive(Clone, Copy)]
pub struct MetricRegistrar<'a> {
    registry: &'a Registry,
}

impl<'a> MetricRegistrar<'a> {
    /// Registers into `registry`.
    pub fn new(registry: &'a Registry) -> Self {
        Self { registry }
    }

    /// Registers `metric` and hands it back.
    pub fn register<M: Collector + Clone + 'static>(&self, metric: M) -> prometheus::Result<M> {
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    /// A counter of whole events.
    pub fn int_counter(&self, name: &str, help: &str) -> prometheus::Result<IntCounter> {
        self.register(IntCounter::new(name, help)?)
    }

    /// A counter of a quantity (seconds, say).
    pub fn counter(&self, name: &str, help: &str) -> prometheus::Result<Counter> {
        self.register(Counter::new(name, help)?)
    }

    /// A whole number that goes up and down.
    pub fn int_gauge(&self, name: &str, help: &str) -> prometheus::Result<IntGauge> {
        self.register(IntGauge::new(name, help)?)
    }

    /// A quantity that goes up and down.
    pub fn gauge(&self, name: &str, help: &str) -> prometheus::Result<Gauge> {
        self.register(Gauge::new(name, help)?)
    }

    /// A distribution over `buckets` (upper bounds).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
    ) -> prometheus::Result<Histogram> {
        self.register(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets),
        )?)
    }

    /// Counters of whole events, one per value of `labels`.
    pub fn int_counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    /// Distributions over `buckets`, one per value of `labels`.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
        labels: &[&str],
    ) -> prometheus::Result<HistogramVec> {
        self.register(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets),
            labels,
        )?)
    }
}
