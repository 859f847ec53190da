//! RabbitMQ backend (lapin): quorum queues with a delivery limit, publisher confirms, prefetch,
//! reasoned dead-lettering, and reconnection with backoff when the broker goes away.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::Confirmation;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeBindOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::{
    Backoff, Broker, Consumer, DEAD_QUEUE_HEADER, DEAD_REASON_HEADER, Delivery, Envelope,
    QueueError, Settle, Topology, redact_url,
};

/// Persistent delivery mode: messages survive a broker restart.
const PERSISTENT: u8 = 2;

/// How to reach RabbitMQ and how hard to try. Its `Debug` hides the URL's password.
#[derive(Clone)]
pub struct AmqpOptions {
    /// `amqp://user:pass@host:port/vhost`.
    pub url: String,
    /// Name shown for the connection in the management UI.
    pub connection_name: String,
    /// Backoff between reconnect attempts.
    pub reconnect: Backoff,
    /// Attempts a publish makes (reconnecting in between) before it reports the broker unavailable.
    pub publish_attempts: u32,
    /// Limit on opening one connection.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for AmqpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpOptions")
            .field("url", &redact_url(&self.url))
            .field("connection_name", &self.connection_name)
            .field("reconnect", &self.reconnect)
            .field("publish_attempts", &self.publish_attempts)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl AmqpOptions {
    /// Options with production defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connection_name: "suti".into(),
            reconnect: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            publish_attempts: 8,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Opens a channel in confirm mode for publishing.
async fn open_publisher(connection: &Connection) -> Result<Channel, QueueError> {
    let publisher = connection.create_channel().await.map_err(unavailable)?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(unavailable)?;
    Ok(publisher)
}

/// A live connection with its confirm-mode publishing channel.
struct Live {
    connection: Arc<Connection>,
    publisher: Channel,
}

impl Live {
    fn is_usable(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

struct Inner {
    options: AmqpOptions,
    live: Mutex<Option<Arc<Live>>>,
    closed: AtomicBool,
}

/// A RabbitMQ connection shared by every publisher and consumer of one handle. Clones share it.
#[derive(Clone)]
pub struct AmqpBroker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("AmqpBroker")
            .field("connection_name", &self.inner.options.connection_name)
            .finish()
    }
}

fn unavailable(err: lapin::Error) -> QueueError {
    QueueError::Unavailable(err.to_string())
}

impl AmqpBroker {
    /// Connects to RabbitMQ (failing fast if it cannot be reached now).
    pub async fn connect(options: AmqpOptions) -> Result<Self, QueueError> {
        if !(options.url.starts_with("amqp://") || options.url.starts_with("amqps://")) {
            return Err(QueueError::Config(
                "the broker URL must start with amqp:// or amqps://".into(),
            ));
        }
        let broker = Self {
            inner: Arc::new(Inner {
                options,
                live: Mutex::new(None),
                closed: AtomicBool::new(false),
            }),
        };
        broker.live().await?;
        Ok(broker)
    }

    /// The current connection, reconnecting once if it is gone. A connection that is up but whose
    /// publishing channel was closed by a channel-level error keeps the connection and gets a new
    /// channel.
    async fn live(&self) -> Result<Arc<Live>, QueueError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(QueueError::Unavailable("connection closed".into()));
        }
        let mut slot = self.inner.live.lock().await;
        if let Some(live) = slot.as_ref() {
            if live.is_usable() {
                return Ok(live.clone());
            }
            if live.connection.status().connected()
                && let Ok(publisher) = open_publisher(&live.connection).await
            {
                let live = Arc::new(Live {
                    connection: live.connection.clone(),
                    publisher,
                });
                *slot = Some(live.clone());
                return Ok(live);
            }
        }
        let options = &self.inner.options;
        let properties = ConnectionProperties::default()
            .with_connection_name(options.connection_name.as_str().into());
        let connection = tokio::time::timeout(
            options.connect_timeout,
            Connection::connect(&options.url, properties),
        )
        .await
        .map_err(|_| QueueError::Unavailable("timed out connecting to the broker".into()))?
        .map_err(unavailable)?;
        let publisher = open_publisher(&connection).await?;
        debug!(name = %options.connection_name, "connected to the broker");
        let live = Arc::new(Live {
            connection: Arc::new(connection),
            publisher,
        });
        *slot = Some(live.clone());
        Ok(live)
    }

    /// Forgets a connection that failed, so the next call reconnects.
    async fn invalidate(&self, failed: &Arc<Live>) {
        let mut slot = self.inner.live.lock().await;
        if slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, failed)) {
            *slot = None;
        }
    }

    /// A short-lived channel for declarations and queries, so that a channel-level error (a passive
    /// declare of a missing queue, say) never closes the shared publishing channel.
    async fn scratch_channel(&self) -> Result<Channel, QueueError> {
        let live = self.live().await?;
        match live.connection.create_channel().await {
            Ok(channel) => Ok(channel),
            Err(err) => {
                self.invalidate(&live).await;
                Err(unavailable(err))
            }
        }
    }

    async fn publish_on(
        &self,
        live: &Live,
        topology: &Topology,
        envelopes: &[Envelope],
    ) -> Result<(), PublishFailure> {
        let mut confirms = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            // Releases go to a fan-out whose subscribers may all be away; they catch up from
            // storage, so an unrouted release is not an error. Everything else must be routed.
            let mandatory = !topology.is_fanout(&envelope.kind);
            let confirm = live
                .publisher
                .basic_publish(
                    topology.exchange.as_str().into(),
                    envelope.kind.as_str().into(),
                    BasicPublishOptions {
                        mandatory,
                        ..BasicPublishOptions::default()
                    },
                    &envelope.body,
                    properties_of(envelope),
                )
                .await
                .map_err(PublishFailure::Connection)?;
            confirms.push((envelope, confirm));
        }
        for (envelope, confirm) in confirms {
            match confirm.await.map_err(PublishFailure::Connection)? {
                Confirmation::Ack(None) | Confirmation::NotRequested => {}
                Confirmation::Ack(Some(_returned)) => {
                    return Err(PublishFailure::Refused(QueueError::Unroutable {
                        kind: envelope.kind.clone(),
                    }));
                }
                Confirmation::Nack(_) => {
                    return Err(PublishFailure::Refused(QueueError::Nacked {
                        message_id: envelope.message_id.clone(),
                        reason: "negative publisher confirm".into(),
                    }));
                }
            }
        }
        Ok(())
    }

    /// Publishes to the default exchange, straight into the named queue, with a confirm.
    async fn publish_to_queue(&self, queue: &str, envelope: &Envelope) -> Result<(), QueueError> {
        let live = self.live().await?;
        let confirm = live
            .publisher
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &envelope.body,
                properties_of(envelope),
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) => Err(QueueError::NoSuchQueue(queue.to_string())),
            Confirmation::Nack(_) => Err(QueueError::Nacked {
                message_id: envelope.message_id.clone(),
                reason: format!("negative confirm from {queue}"),
            }),
        }
    }
}

enum PublishFailure {
    Connection(lapin::Error),
    Refused(QueueError),
}

fn quorum_arguments(
    delivery_limit: Option<u32>,
    dead_letter_exchange: Option<(&str, &str)>,
) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(limit) = delivery_limit {
        args.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit as i32));
    }
    if let Some((exchange, routing_key)) = dead_letter_exchange {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(exchange.into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(routing_key.into()),
        );
    }
    args
}

fn properties_of(envelope: &Envelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (key, value) in &envelope.headers {
        headers.insert(
            key.as_str().into(),
            AMQPValue::LongString(value.as_str().into()),
        );
    }
    if let Some(traceparent) = &envelope.traceparent {
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString(traceparent.as_str().into()),
        );
    }
    let mut props = BasicProperties::default()
        .with_message_id(envelope.message_id.as_str().into())
        .with_type(envelope.kind.as_str().into())
        .with_content_type(suti_messages::CONTENT_TYPE.into())
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers);
    if let Some(correlation_id) = &envelope.correlation_id {
        props = props.with_correlation_id(correlation_id.as_str().into());
    }
    props
}

fn header_string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn header_int(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        _ => None,
    }
}

/// Rebuilds an envelope from a delivery, and reads the quorum queue's delivery count.
fn envelope_of(delivery: &lapin::message::Delivery) -> (Envelope, u32) {
    let props = &delivery.properties;
    let short = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_string());
    let mut headers = BTreeMap::new();
    let mut traceparent = None;
    let mut delivery_count = 0;
    if let Some(table) = props.headers() {
        for (key, value) in table.inner() {
            match key.as_str() {
                "x-delivery-count" => {
                    delivery_count =
                        header_int(value).unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32;
                }
                "traceparent" => traceparent = header_string(value),
                other => {
                    if let Some(s) = header_string(value) {
                        headers.insert(other.to_string(), s);
                    }
                }
            }
        }
    }
    let envelope = Envelope {
        message_id: short(props.message_id()).unwrap_or_default(),
        kind: short(props.kind()).unwrap_or_default(),
        correlation_id: short(props.correlation_id()),
        traceparent,
        headers,
        body: delivery.data.clone(),
    };
    (envelope, delivery_count)
}

#[async_trait]
impl Broker for AmqpBroker {
    fn backend(&self) -> &'static str {
        "amqp"
    }

    async fn declare(&self, topology: &Topology) -> Result<(), QueueError> {
        let channel = self.scratch_channel().await?;
        let refused = |what: &str, err: lapin::Error| {
            QueueError::Topology(format!("declaring {what}: {err}"))
        };
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for (name, kind) in [
            (&topology.exchange, ExchangeKind::Topic),
            (&topology.dead_letter_exchange, ExchangeKind::Direct),
            (&topology.fanout_exchange, ExchangeKind::Fanout),
        ] {
            channel
                .exchange_declare(name.as_str().into(), kind, durable, FieldTable::default())
                .await
                .map_err(|e| refused(name, e))?;
        }
        for pattern in &topology.fanout_patterns {
            channel
                .exchange_bind(
                    topology.fanout_exchange.as_str().into(),
                    topology.exchange.as_str().into(),
                    pattern.as_str().into(),
                    ExchangeBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| refused("the release fan-out binding", e))?;
        }
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        for spec in &topology.queues {
            let dead = spec.dead_name();
            channel
                .queue_declare(
                    dead.as_str().into(),
                    durable_queue,
                    quorum_arguments(None, None),
                )
                .await
                .map_err(|e| refused(&dead, e))?;
            channel
                .queue_bind(
                    dead.as_str().into(),
                    topology.dead_letter_exchange.as_str().into(),
                    spec.name.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| refused(&dead, e))?;
            channel
                .queue_declare(
                    spec.name.as_str().into(),
                    durable_queue,
                    quorum_arguments(
                        Some(topology.delivery_limit),
                        Some((&topology.dead_letter_exchange, &spec.name)),
                    ),
                )
                .await
                .map_err(|e| refused(&spec.name, e))?;
            for pattern in &spec.patterns {
                channel
                    .queue_bind(
                        spec.name.as_str().into(),
                        topology.exchange.as_str().into(),
                        pattern.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| refused(&spec.name, e))?;
            }
        }
        let _ = channel.close(200, "declared".into()).await;
        Ok(())
    }

    async fn delete(&self, topology: &Topology) -> Result<(), QueueError> {
        let channel = self.scratch_channel().await?;
        for spec in &topology.queues {
            for name in [spec.name.clone(), spec.dead_name()] {
                channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(unavailable)?;
            }
        }
        for name in [
            &topology.fanout_exchange,
            &topology.dead_letter_exchange,
            &topology.exchange,
        ] {
            channel
                .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .map_err(unavailable)?;
        }
        let _ = channel.close(200, "deleted".into()).await;
        Ok(())
    }

    async fn publish_batch(
        &self,
        topology: &Topology,
        envelopes: &[Envelope],
    ) -> Result<(), QueueError> {
        let options = &self.inner.options;
        let mut last_error = String::new();
        for attempt in 0..options.publish_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(options.reconnect.delay(attempt - 1)).await;
            }
            let live = match self.live().await {
                Ok(live) => live,
                Err(err) => {
                    last_error = err.to_string();
                    continue;
                }
            };
            match self.publish_on(&live, topology, envelopes).await {
                Ok(()) => return Ok(()),
                Err(PublishFailure::Refused(err)) => return Err(err),
                Err(PublishFailure::Connection(err)) if err.is_amqp_soft_error() => {
                    // A channel-level refusal (a missing exchange, say): retrying cannot help.
                    // The next publish opens a new channel on the same connection.
                    return Err(QueueError::Topology(format!(
                        "the broker refused the publish to {}: {err}",
                        topology.exchange
                    )));
                }
                Err(PublishFailure::Connection(err)) => {
                    // The batch is published again from the start: consumers deduplicate by
                    // message id, so a message confirmed before the failure may arrive twice.
                    warn!(attempt, error = %err, "publish failed; reconnecting");
                    last_error = err.to_string();
                    self.invalidate(&live).await;
                }
            }
        }
        Err(QueueError::Unavailable(format!(
            "publish failed after {} attempts: {last_error}",
            options.publish_attempts
        )))
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let mut consumer = AmqpConsumer {
            broker: self.clone(),
            source: Source::Queue(queue.to_string()),
            prefetch,
            current: None,
            failures: 0,
        };
        // Open now so that a missing queue is an error for the caller, not an endless retry.
        consumer.current = Some(consumer.open().await?);
        Ok(Box::new(consumer))
    }

    async fn subscribe_fanout(
        &self,
        topology: &Topology,
        prefetch: u16,
    ) -> Result<Box<dyn Consumer>, QueueError> {
        let mut consumer = AmqpConsumer {
            broker: self.clone(),
            source: Source::Fanout(topology.fanout_exchange.clone()),
            prefetch,
            current: None,
            failures: 0,
        };
        consumer.current = Some(consumer.open().await?);
        Ok(Box::new(consumer))
    }

    async fn ready_count(&self, queue: &str) -> Result<u64, QueueError> {
        let channel = self.scratch_channel().await?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|_| QueueError::NoSuchQueue(queue.to_string()))?;
        let _ = channel.close(200, "counted".into()).await;
        Ok(u64::from(declared.message_count()))
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.live().await.map(drop)
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Some(live) = self.inner.live.lock().await.take() {
            // A broker that stopped answering must not keep a process from exiting: the socket is
            // dropped with the connection either way.
            let deadline = self.inner.options.connect_timeout;
            let closing = live.connection.close(200, "closing".into());
            if tokio::time::timeout(deadline, closing).await.is_err() {
                warn!(
                    ?deadline,
                    "the broker did not confirm closing the connection; dropping it"
                );
            }
        }
    }
}

enum Source {
    Queue(String),
    Fanout(String),
}

/// A consumer that survives connection loss: when its channel dies it reopens one (reconnecting
/// the shared connection if needed) with backoff, and resumes.
struct AmqpConsumer {
    broker: AmqpBroker,
    source: Source,
    prefetch: u16,
    current: Option<(Channel, lapin::Consumer, String)>,
    failures: u32,
}

impl AmqpConsumer {
    async fn open(&self) -> Result<(Channel, lapin::Consumer, String), QueueError> {
        let live = self.broker.live().await?;
        let channel = match live.connection.create_channel().await {
            Ok(channel) => channel,
            Err(err) => {
                self.broker.invalidate(&live).await;
                return Err(unavailable(err));
            }
        };
        channel
            .basic_qos(self.prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let queue = match &self.source {
            Source::Queue(name) => name.clone(),
            Source::Fanout(exchange) => {
                // A private queue per subscriber: exclusive and auto-deleted with the connection.
                let declared = channel
                    .queue_declare(
                        "".into(),
                        QueueDeclareOptions {
                            exclusive: true,
                            auto_delete: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(unavailable)?;
                let name = declared.name().as_str().to_string();
                channel
                    .queue_bind(
                        name.as_str().into(),
                        exchange.as_str().into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| QueueError::Topology(format!("binding to {exchange}: {e}")))?;
                name
            }
        };
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| match e.kind() {
                lapin::ErrorKind::ProtocolError(_) => QueueError::NoSuchQueue(queue.clone()),
                _ => unavailable(e),
            })?;
        Ok((channel, consumer, queue))
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            if self.broker.inner.closed.load(Ordering::Acquire) {
                return None;
            }
            let Some((_channel, consumer, queue)) = self.current.as_mut() else {
                match self.open().await {
                    Ok(opened) => {
                        if self.failures > 0 {
                            info!(queue = %opened.2, "consumer reconnected");
                        }
                        self.failures = 0;
                        self.current = Some(opened);
                    }
                    Err(err) => {
                        let delay = self.broker.inner.options.reconnect.delay(self.failures);
                        warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "consumer cannot reach the broker");
                        self.failures = self.failures.saturating_add(1);
                        tokio::time::sleep(delay).await;
                    }
                }
                continue;
            };
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    let (envelope, delivery_count) = envelope_of(&delivery);
                    let settler = AmqpSettler {
                        broker: self.broker.clone(),
                        queue: queue.clone(),
                        acker: delivery.acker,
                    };
                    return Some(Delivery::new(
                        envelope,
                        delivery.redelivered,
                        delivery_count,
                        Box::new(settler),
                    ));
                }
                Some(Err(err)) => {
                    warn!(error = %err, "consumer channel failed; reconnecting");
                    self.current = None;
                }
                None => {
                    debug!("consumer stream ended; reconnecting");
                    self.current = None;
                }
            }
        }
    }

    async fn cancel(&mut self) {
        if let Some((channel, consumer, _)) = self.current.as_ref() {
            let deadline = self.broker.inner.options.connect_timeout;
            let cancelling = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default());
            if tokio::time::timeout(deadline, cancelling).await.is_err() {
                warn!(
                    ?deadline,
                    "the broker did not confirm cancelling the consumer"
                );
            }
        }
    }
}

struct AmqpSettler {
    broker: AmqpBroker,
    queue: String,
    acker: lapin::Acker,
}

fn settled(result: Result<bool, lapin::Error>) -> Result<(), QueueError> {
    match result {
        Ok(true) => Ok(()),
        // The acker was poisoned: its channel closed, and the broker redelivers the message.
        Ok(false) | Err(_) => Err(QueueError::ChannelClosed),
    }
}

#[async_trait]
impl Settle for AmqpSettler {
    async fn ack(&self) -> Result<(), QueueError> {
        settled(self.acker.ack(BasicAckOptions::default()).await)
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        settled(
            self.acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await,
        )
    }

    async fn dead_letter(&self, envelope: &Envelope, reason: &str) -> Result<(), QueueError> {
        // RabbitMQ's own dead-lettering cannot carry a reason, so the consumer publishes the copy
        // (confirmed) into `<queue>.dead` and only then acks the original. A crash in between
        // leaves the original unacked: it is redelivered and dead-lettered again, never lost.
        let mut copy = envelope.clone();
        copy.headers
            .insert(DEAD_REASON_HEADER.into(), reason.to_string());
        copy.headers
            .insert(DEAD_QUEUE_HEADER.into(), self.queue.clone());
        self.broker
            .publish_to_queue(&format!("{}.dead", self.queue), &copy)
            .await?;
        self.ack().await
    }
}

#[cfg(test)]
mod debug_output {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!(
            "{:?}",
            AmqpOptions::new("amqp://suti:hunter2@rabbit:5672/%2f")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("amqp://suti:***@rabbit:5672/%2f"), "{shown}");
    }
}
