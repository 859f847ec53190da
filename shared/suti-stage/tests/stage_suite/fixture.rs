//! The test stage and its backends: a handler that records each execution in the state backend,
//! writes an artifact `effects/{cluster_id}` and publishes `expert.trained.v1` with a
//! deterministic id (or fails as its input's noun asks); one set of backends per test, real or
//! in-process; and workers that run the stage until stopped or killed.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use prometheus::Registry;
use suti_messages::{ClusterMinedV1, ExpertTrainedV1, LossSummary};
use suti_queue::{AmqpBroker, AmqpOptions, Broker, Envelope, InProcessBroker, Topology};
use suti_stage::{
    HandleContext, Handler, HandlerError, Outcome, StageBackends, StageMetrics, StageSettings,
    run_stage,
};
use suti_state::{InProcessState, RedisState, SharedState};
use suti_storage::{LocalStore, ObjectKey, SharedStore};
use suti_testkit::{S3Server, amqp_url, redis_url, unique, wait_until};
use tokio_util::sync::CancellationToken;

/// Noun that makes the test handler fail permanently.
pub const UNHANDLEABLE: &str = "unhandleable";
/// Noun that makes the test handler fail retryably on the first two attempts.
pub const FLAKY: &str = "flaky";
/// Noun that makes the test handler fail retryably every time.
pub const BROKEN: &str = "broken";
/// Noun that makes the test handler panic.
pub const PANICS: &str = "panics";

struct EffectHandler {
    /// Per-message work time, to keep deliveries in flight.
    work: Duration,
}

#[async_trait]
impl Handler for EffectHandler {
    type Input = ClusterMinedV1;

    async fn handle(
        &self,
        input: ClusterMinedV1,
        ctx: &HandleContext,
    ) -> Result<Outcome, HandlerError> {
        ctx.state.incr("executions", 1).await?;
        match input.subject_noun.as_str() {
            UNHANDLEABLE => {
                return Err(HandlerError::permanent(
                    "invalid_cluster",
                    format!("cluster {} has no usable images", input.cluster_id),
                ));
            }
            FLAKY if ctx.delivery_count < 2 => {
                return Err(HandlerError::retryable("gpu_busy", "the device is busy"));
            }
            BROKEN => return Err(HandlerError::retryable("gpu_busy", "the device is busy")),
            PANICS => panic!("index out of bounds in the test handler"),
            _ => {}
        }
        if !self.work.is_zero() {
            tokio::time::sleep(self.work).await;
        }
        ctx.state.set_add("handled", &input.cluster_id).await?;
        let key = ObjectKey::new(format!("effects/{}", input.cluster_id))?;
        let expert = ExpertTrainedV1 {
            run_id: input.run_id.clone(),
            cluster_id: input.cluster_id.clone(),
            manifest_key: input.manifest_key.clone(),
            base_version: "b1".into(),
            adapter_key: format!("experts/{}/b1.safetensors", input.cluster_id),
            identifier_token: "sks".into(),
            subject_noun: input.subject_noun.clone(),
            rank: 4,
            loss: LossSummary {
                first: 1.0,
                last: 0.5,
                min: 0.4,
                steps: 10,
            },
        };
        Outcome::none()
            .with_artifact(key, input.cluster_id.clone())
            .with_message(&expert, format!("expert-{}", input.cluster_id))
    }
}

type Connect = Arc<dyn Fn() -> BoxFuture<'static, Arc<dyn Broker>> + Send + Sync>;

/// One set of backends: a way to open broker connections, storage, state, a private topology.
pub struct Env {
    connect: Connect,
    /// Artifact storage the stage writes to.
    pub storage: SharedStore,
    state: SharedState,
    /// The test's private topology.
    pub topology: Topology,
    _guards: Vec<Box<dyn Any + Send>>,
}

impl Env {
    /// The real backends: the machine's RabbitMQ and Redis, an S3 server of the test's own.
    pub async fn real() -> Self {
        let (mut env, server) = Self::real_keeping_s3().await;
        env._guards.push(Box::new(server));
        env
    }

    /// The real backends, with the S3 server handed to the test (to suspend it).
    pub async fn real_keeping_s3() -> (Self, S3Server) {
        suti_testkit::init_tracing();
        let namespace = unique("t");
        let guard = suti_testkit::TopologyGuard::new(&Topology::pipeline(&namespace, 3));
        let server = S3Server::start().await.unwrap();
        let storage: SharedStore = Arc::new(server.store().await.unwrap());
        let state: SharedState = Arc::new(
            RedisState::connect(&redis_url(), &namespace, Duration::from_secs(5))
                .await
                .unwrap(),
        );
        let connect: Connect = Arc::new(|| {
            Box::pin(async {
                let mut options = AmqpOptions::new(amqp_url());
                options.connection_name = "suti-stage-test".into();
                Arc::new(AmqpBroker::connect(options).await.unwrap()) as Arc<dyn Broker>
            })
        });
        let env = Self::assemble(connect, storage, state, &namespace, vec![Box::new(guard)]).await;
        (env, server)
    }

    /// The in-process backends of the embedded mode, with local storage.
    pub async fn in_process() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage: SharedStore = Arc::new(LocalStore::open(dir.path()).await.unwrap());
        let state: SharedState = Arc::new(InProcessState::new());
        let root = InProcessBroker::new();
        let connect: Connect = Arc::new(move || {
            let broker = root.connect();
            Box::pin(async move { Arc::new(broker) as Arc<dyn Broker> })
        });
        Self::assemble(connect, storage, state, &unique("t"), vec![Box::new(dir)]).await
    }

    async fn assemble(
        connect: Connect,
        storage: SharedStore,
        state: SharedState,
        namespace: &str,
        guards: Vec<Box<dyn Any + Send>>,
    ) -> Self {
        let topology = Topology::pipeline(namespace, 3);
        connect().await.declare(&topology).await.unwrap();
        Self {
            connect,
            storage,
            state,
            topology,
            _guards: guards,
        }
    }

    /// The queue the stage consumes.
    pub fn queue(&self) -> String {
        self.topology.queue_name("clusters")
    }

    fn settings(&self, concurrency: usize) -> StageSettings {
        StageSettings {
            service: "stage_test".into(),
            queue: self.queue(),
            prefetch: concurrency as u16,
            concurrency,
            handler_timeout: Duration::from_secs(30),
            idempotency_ttl: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(10),
            outage_patience: Duration::from_secs(30),
        }
    }

    fn backends(&self, broker: Arc<dyn Broker>) -> StageBackends {
        StageBackends {
            broker,
            storage: self.storage.clone(),
            state: self.state.clone(),
            topology: self.topology.clone(),
        }
    }

    /// Starts a stage worker on its own broker connection.
    pub async fn start_worker(&self, concurrency: usize, work: Duration) -> Worker {
        let broker = (self.connect)().await;
        let metrics = StageMetrics::register(&Registry::new(), "stage_test").unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_stage(
            EffectHandler { work },
            self.settings(concurrency),
            self.backends(broker.clone()),
            metrics.clone(),
            shutdown.clone(),
        ));
        Worker {
            broker,
            metrics,
            shutdown,
            task,
        }
    }

    /// The queue the stage dead-letters to.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.queue())
    }

    /// Waits (a minute at most) until `handled` inputs are handled and `dead_lettered` messages
    /// wait in the dead-letter queue.
    pub async fn wait_for_settlement(&self, worker: &Worker, handled: u64, dead_lettered: u64) {
        let dead_queue = self.dead_queue();
        wait_until(
            Duration::from_secs(60),
            &format!("{handled} handled and {dead_lettered} dead-lettered"),
            || async {
                self.handled().await == handled
                    && worker.broker.ready_count(&dead_queue).await.unwrap() == dead_lettered
            },
        )
        .await
        .unwrap();
    }

    /// Publishes `messages` on a connection of its own.
    pub async fn publish(&self, messages: &[Envelope]) {
        let broker = (self.connect)().await;
        for chunk in messages.chunks(500) {
            broker.publish_batch(&self.topology, chunk).await.unwrap();
        }
        broker.close().await;
    }

    /// Distinct inputs handled to the end.
    pub async fn handled(&self) -> u64 {
        self.state.set_len("handled").await.unwrap()
    }

    /// Handler calls, repeats included.
    pub async fn executions(&self) -> i64 {
        self.state.counter("executions").await.unwrap()
    }

    /// Takes every message from a queue (until it stays empty briefly).
    pub async fn drain(&self, queue: &str) -> Vec<Envelope> {
        let broker = (self.connect)().await;
        let mut consumer = broker.consume(queue, 500).await.unwrap();
        let mut out = Vec::new();
        while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
        {
            out.push(d.envelope.clone());
            d.ack().await.unwrap();
        }
        drop(consumer);
        broker.close().await;
        out
    }

    /// Deletes the topology and forgets the state namespace.
    pub async fn finish(self) {
        let broker = (self.connect)().await;
        broker.delete(&self.topology).await.unwrap();
        let _ = self.state.clear_namespace().await;
        broker.close().await;
    }
}

/// A stage running on a broker connection of its own.
pub struct Worker {
    /// Its connection.
    pub broker: Arc<dyn Broker>,
    /// Its metrics.
    pub metrics: StageMetrics,
    shutdown: CancellationToken,
    /// The running stage.
    pub task: tokio::task::JoinHandle<Result<(), suti_queue::QueueError>>,
}

impl Worker {
    /// Graceful stop.
    pub async fn stop(self) -> StageMetrics {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        self.broker.close().await;
        self.metrics
    }

    /// The worker dies: its task is gone and its connection drops with deliveries unacked.
    pub async fn kill(self) -> StageMetrics {
        self.task.abort();
        let _ = self.task.await;
        self.broker.close().await;
        self.metrics
    }
}

/// The `i`th `cluster.mined.v1` message, of a subject the handler treats as `noun` says.
pub fn cluster(i: usize, noun: &str) -> Envelope {
    let id = format!("c{i:05}");
    let payload = ClusterMinedV1 {
        run_id: "run-stage-test".into(),
        cluster_id: id.clone(),
        manifest_key: format!("clusters/{id}.msgpack"),
        subject_noun: noun.into(),
        image_keys: vec![format!("images/{id}.png")],
    };
    Envelope::encode(
        &payload,
        format!("cluster-{id}"),
        Some("run-stage-test".into()),
    )
    .unwrap()
}
