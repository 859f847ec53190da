//! The runner: consumes a queue, runs each delivery through its [`Handler`] under a timeout and a
//! panic guard, writes and publishes the outcome, and settles the delivery exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use suti_messages::Message;
use suti_queue::{Broker, Delivery, Envelope, QueueError, Topology};
use suti_state::SharedState;
use suti_storage::SharedStore;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::failpoint;
use crate::handler::{HandleContext, Handler, HandlerError, Outcome, Settled};
use crate::metrics::StageMetrics;

/// How a stage runs.
#[derive(Debug, Clone)]
pub struct StageSettings {
    /// Service name in metric form (`expert_finetuner`); names metrics and idempotency marks.
    pub service: String,
    /// Full (namespaced) name of the queue to consume.
    pub queue: String,
    /// Unacknowledged deliveries held at once.
    pub prefetch: u16,
    /// Deliveries handled at the same time.
    pub concurrency: usize,
    /// Limit on one handler call.
    pub handler_timeout: Duration,
    /// How long completion marks are kept.
    pub idempotency_ttl: Duration,
    /// How long in-flight work may take to finish after shutdown is asked.
    pub shutdown_grace: Duration,
    /// How long a failed delivery is held while storage or state does not answer, before it is
    /// requeued.
    pub outage_patience: Duration,
}

impl StageSettings {
    /// Settings for `service` consuming its queue in `topology`, from its configuration.
    pub fn from_config(
        service: suti_runtime::ServiceName,
        config: &suti_runtime::StageConfig,
        topology: &Topology,
    ) -> Option<Self> {
        let queue = topology.queue_name(service.input_queue()?);
        Some(Self {
            service: service.metric_name().to_string(),
            queue,
            prefetch: config.prefetch,
            concurrency: config.concurrency,
            handler_timeout: Duration::from_secs(config.handler_timeout_secs),
            idempotency_ttl: Duration::from_secs(config.idempotency_ttl_hours * 3600),
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
            outage_patience: Duration::from_secs(600),
        })
    }
}

/// The backends a stage works with.
#[derive(Clone)]
pub struct StageBackends {
    /// Broker.
    pub broker: Arc<dyn Broker>,
    /// Storage.
    pub storage: SharedStore,
    /// State.
    pub state: SharedState,
    /// Topology (where downstream messages go, and the delivery limit).
    pub topology: Topology,
}

impl From<&suti_runtime::Backends> for StageBackends {
    fn from(b: &suti_runtime::Backends) -> Self {
        Self {
            broker: b.broker.clone(),
            storage: b.storage.clone(),
            state: b.state.clone(),
            topology: b.topology.clone(),
        }
    }
}
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

struct Stage<H: Handler> {
    handler: H,
    settings: StageSettings,
    backends: StageBackends,
    metrics: StageMetrics,
    shutdown: CancellationToken,
}

/// How often a held delivery asks whether the backends answer again.
const OUTAGE_POLL: Duration = Duration::from_secs(1);

/// Runs `handler` until `shutdown` is cancelled. Returns once in-flight work has finished or the
/// grace period has passed; deliveries not yet settled then return to the queue.
pub async fn run_stage<H: Handler>(
    handler: H,
    settings: StageSettings,
    backends: StageBackends,
    metrics: StageMetrics,
    shutdown: CancellationToken,
) -> Result<(), QueueError> {
    let mut consumer = backends
        .broker
        .consume(&settings.queue, settings.prefetch)
        .await?;
    info!(service = %settings.service, queue = %settings.queue, prefetch = settings.prefetch,
          concurrency = settings.concurrency, "stage consuming");
    let stage = Arc::new(Stage {
        handler,
        settings,
        backends,
        metrics,
        shutdown: shutdown.clone(),
    });
    let permits = Arc::new(Semaphore::new(stage.settings.concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break,
            delivery = consumer.next() => delivery,
        };
        let Some(delivery) = delivery else {
            info!(queue = %stage.settings.queue, "broker handle closed; stage stops");
            break;
        };
        let stage = stage.clone();
        in_flight.spawn(async move {
            stage.process(delivery).await;
            drop(permit);
        });
        while in_flight.try_join_next().is_some() {}
    }
    // Stop receiving, but keep the channel open until in-flight work has acked; then dropping the
    // consumer returns whatever was prefetched and never started.
    info!(service = %stage.settings.service, in_flight = in_flight.len(), "stage stopping");
    consumer.cancel().await;
    let grace = stage.settings.shutdown_grace;
    if tokio::time::timeout(grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        warn!(
            remaining = in_flight.len(),
            "in-flight work did not finish within the grace period; it will be redelivered"
        );
        in_flight.abort_all();
    }
    drop(consumer);
    info!(service = %stage.settings.service, "stage stopped");
    Ok(())
}

impl<H: Handler> Stage<H> {
    fn mark_key(&self, message_id: &str) -> String {
        format!("{}:done:{message_id}", self.settings.service)
    }

    async fn process(&self, delivery: Delivery) {
        let started = Instant::now();
        self.metrics.received.inc();
        self.metrics.in_flight.inc();
        let span = info_span!("handle", service = %self.settings.service,
                              message_id = %delivery.envelope.message_id,
                              run = delivery.envelope.correlation_id.as_deref().unwrap_or(""),
                              otel.name = %format!("{} handle", self.settings.service),
                              otel.kind = "consumer");
        // With OTLP export on, this handling is a span of the trace the message carries.
        suti_runtime::continue_trace(&span, delivery.envelope.traceparent.as_deref());
        let settled = self.settle(delivery).instrument(span).await;
        self.metrics.in_flight.dec();
        self.metrics
            .processed
            .with_label_values(&[settled.label()])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[settled.label()])
            .observe(started.elapsed().as_secs_f64());
    }

    fn error(&self, kind: &str) {
        self.metrics.errors.with_label_values(&[kind]).inc();
    }

    async fn dead_letter(&self, delivery: Delivery, kind: &str, reason: String) -> Settled {
        self.error(kind);
        warn!(%reason, "dead-lettering message");
        match delivery.dead_letter(&reason).await {
            Ok(()) => Settled::DeadLettered,
            Err(e) => {
                self.error(e.kind());
                Settled::Unsettled
            }
        }
    }

    /// A retryable failure: requeue after a delay, or dead-letter on the last allowed attempt so
    /// that the dead-letter queue says why.
    async fn retry(&self, delivery: Delivery, kind: &str, message: String) -> Settled {
        self.wait_out_outage().await;
        let limit = self.backends.topology.delivery_limit;
        if delivery.delivery_count >= limit {
            let reason = format!(
                "gave up after {} attempts; last error: {message}",
                delivery.delivery_count + 1
            );
            return self.dead_letter(delivery, kind, reason).await;
        }
        self.error(kind);
        warn!(error = %message, attempt = delivery.delivery_count + 1, "retryable failure; requeueing");
        tokio::time::sleep(suti_queue::retry_delay(delivery.delivery_count)).await;
        match delivery.requeue().await {
            Ok(()) => Settled::Retried,
            Err(e) => {
                self.error(e.kind());
                Settled::Unsettled
            }
        }
    }

    /// Holds the current delivery while storage or state does not answer (up to the outage
    /// patience, or until shutdown). The failure was then the backend's, not the message's: without
    /// the hold, the requeue delays of a few seconds would use up every attempt within one outage
    /// and dead-letter messages that succeed once the backend is back.
    async fn wait_out_outage(&self) {
        let started = Instant::now();
        let mut announced = false;
        loop {
            let (storage, state) = tokio::join!(
                tokio::time::timeout(OUTAGE_POLL * 5, self.backends.storage.ping()),
                tokio::time::timeout(OUTAGE_POLL * 5, self.backends.state.ping())
            );
            let problem = match (storage, state) {
                (Ok(Ok(())), Ok(Ok(()))) => break,
                (Ok(Err(e)), _) => format!("storage: {e}"),
                (Err(_), _) => "storage: no answer".to_string(),
                (_, Ok(Err(e))) => format!("state: {e}"),
                (_, Err(_)) => "state: no answer".to_string(),
            };
            if started.elapsed() >= self.settings.outage_patience {
                warn!(%problem, "backend still unavailable after the outage patience; requeueing");
                return;
            }
            if !announced {
                warn!(%problem, "backend unavailable; holding the delivery until it answers");
                announced = true;
            }
            if tokio::time::timeout(OUTAGE_POLL, self.shutdown.cancelled())
                .await
                .is_ok()
            {
                return;
            }
        }
        if announced {
            info!(held = ?started.elapsed(), "backend answers again; requeueing the held delivery");
        }
    }

    async fn settle(&self, delivery: Delivery) -> Settled {
        let envelope = &delivery.envelope;
        let expected = <H::Input as Message>::TYPE;
        if envelope.kind != expected {
            let reason = format!(
                "unexpected message type {:?}: this stage consumes {expected}",
                envelope.kind
            );
            return self.dead_letter(delivery, "wrong_type", reason).await;
        }
        let input: H::Input = match envelope.decode() {
            Ok(input) => input,
            Err(e) => {
                let reason = format!("undecodable body: {e}");
                return self.dead_letter(delivery, "undecodable", reason).await;
            }
        };
        if envelope.message_id.is_empty() {
            let reason = "missing message_id: idempotency needs one".to_string();
            return self.dead_letter(delivery, "missing_id", reason).await;
        }
        let mark = self.mark_key(&envelope.message_id);
        match self.backends.state.is_marked(&mark).await {
            Ok(true) => {
                debug!("already completed; acknowledging the duplicate");
                return self.ack(delivery, Settled::Duplicate).await;
            }
            Ok(false) => {}
            Err(e) => return self.retry(delivery, e.kind(), e.to_string()).await,
        }
        let ctx = HandleContext {
            message_id: envelope.message_id.clone(),
            correlation_id: envelope.correlation_id.clone(),
            delivery_count: delivery.delivery_count,
            storage: self.backends.storage.clone(),
            state: self.backends.state.clone(),
        };
        // A panicking handler must not leave its delivery unsettled (it would sit unacked until
        // the connection closes): it counts as a retryable failure, so a persistent bug ends in
        // the dead-letter queue with the panic message.
        let guarded = std::panic::AssertUnwindSafe(self.handler.handle(input, &ctx)).catch_unwind();
        let handled = match tokio::time::timeout(self.settings.handler_timeout, guarded).await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => Err(HandlerError::retryable(
                "handler_panic",
                format!("handler panicked: {}", panic_message(panic.as_ref())),
            )),
            Err(_) => Err(HandlerError::retryable(
                "handler_timeout",
                format!(
                    "handler took longer than {:?}",
                    self.settings.handler_timeout
                ),
            )),
        };
        let outcome = match handled {
            Ok(outcome) => outcome,
            Err(HandlerError::Permanent { kind, reason }) => {
                return self.dead_letter(delivery, kind, reason).await;
            }
            Err(HandlerError::Retryable { kind, message }) => {
                return self.retry(delivery, kind, message).await;
            }
        };
        if let Err(e) = self.deliver(outcome, &delivery.envelope).await {
            return match e {
                HandlerError::Permanent { kind, reason } => {
                    self.dead_letter(delivery, kind, reason).await
                }
                HandlerError::Retryable { kind, message } => {
                    self.retry(delivery, kind, message).await
                }
            };
        }
        // The mark only saves work on redelivery: every effect above is idempotent, so failing to
        // set it costs a repeat, never a wrong result.
        if let Err(e) = self
            .backends
            .state
            .mark_if_absent(&mark, Some(self.settings.idempotency_ttl))
            .await
        {
            self.error(e.kind());
            warn!(error = %e, "could not record completion; a redelivery would repeat the work");
        }
        self.ack(delivery, Settled::Done).await
    }

    /// Writes the artifacts, then publishes the messages (confirmed), inheriting the run and trace.
    async fn deliver(&self, outcome: Outcome, input: &Envelope) -> Result<(), HandlerError> {
        // The messages' parent is this handling's span when traces are exported, else the trace
        // the input carried, unchanged.
        let traceparent = suti_runtime::traceparent_of(&tracing::Span::current())
            .or_else(|| input.traceparent.clone());
        let several = outcome.artifacts.len() >= 2;
        for (written, (key, body)) in outcome.artifacts.into_iter().enumerate() {
            self.backends.storage.put(&key, body).await?;
            if several && written == 0 {
                failpoint::failpoint("artifacts_partly_written");
            }
        }
        failpoint::failpoint("artifacts_written");
        if outcome.messages.is_empty() {
            return Ok(());
        }
        let messages: Vec<Envelope> = outcome
            .messages
            .into_iter()
            .map(|mut m| {
                if m.correlation_id.is_none() {
                    m.correlation_id = input.correlation_id.clone();
                }
                if m.traceparent.is_none() {
                    m.traceparent = traceparent.clone();
                }
                m
            })
            .collect();
        self.backends
            .broker
            .publish_batch(&self.backends.topology, &messages)
            .await?;
        self.metrics.published.inc_by(messages.len() as u64);
        failpoint::failpoint("published");
        Ok(())
    }

    async fn ack(&self, delivery: Delivery, settled: Settled) -> Settled {
        match delivery.ack().await {
            Ok(()) => settled,
            Err(e) => {
                // The channel is gone; the broker redelivers and the mark makes it a duplicate.
                self.error(e.kind());
                Settled::Unsettled
            }
        }
    }
}
