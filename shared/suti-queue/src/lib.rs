//! Work queue of the pipeline (architecture.md §4): one [`Broker`] abstraction with two backends
//! that keep the same semantics — RabbitMQ through lapin ([`AmqpBroker`]) and an in-process broker
//! for the embedded mode ([`InProcessBroker`]).
//!
//! Semantics both backends keep:
//! - a topic exchange routes each message by its wire type to one quorum queue per consumer stage;
//!   `apprentice.published.*` is fanned out so every subscriber gets every release;
//! - publishing waits for the broker's confirm, and a nack or an unroutable message is an error;
//! - a consumer holds at most `prefetch` unacknowledged deliveries; a delivery is acked, requeued
//!   (it counts toward the queue's delivery limit, past which it is dead-lettered) or dead-lettered
//!   with a reason header into `<queue>.dead`;
//! - deliveries that were not acked when their connection went away return to the queue.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

mod amqp;
mod backoff;
mod memory;
mod redact;
mod topology;

pub use amqp::{AmqpBroker, AmqpOptions};
pub use backoff::Backoff;
pub use memory::InProcessBroker;
pub use redact::redact_url;
pub use topology::{QueueSpec, Topology};

/// Header that carries why a message was dead-lettered.
pub const DEAD_REASON_HEADER: &str = "x-suti-dead-reason";
/// Header that names the queue a dead-lettered message came from.
pub const DEAD_QUEUE_HEADER: &str = "x-suti-dead-queue";

/// One message with its wire metadata. The body is an encoded payload; the metadata travels in AMQP
/// properties and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Message id, deterministic where the work is (the same input gives the same id).
    pub message_id: String,
    /// Wire type (`cluster.mined.v1`); also the routing key.
    pub kind: String,
    /// Pipeline run the message belongs to.
    pub correlation_id: Option<String>,
    /// W3C trace context of the producer.
    pub traceparent: Option<String>,
    /// Further string headers (dead-letter reasons, for example).
    pub headers: BTreeMap<String, String>,
    /// Encoded payload.
    pub body: Vec<u8>,
}

impl Envelope {
    /// Encodes `payload` into an envelope with the given deterministic id.
    pub fn encode<M: suti_messages::Message>(
        payload: &M,
        message_id: impl Into<String>,
        correlation_id: Option<String>,
    ) -> Result<Self, suti_messages::CodecError> {
        Ok(Self {
            message_id: message_id.into(),
            kind: M::TYPE.to_string(),
            correlation_id,
            traceparent: None,
            headers: BTreeMap::new(),
            body: suti_messages::encode(payload)?,
        })
    }

    /// Decodes the body as `M`.
    pub fn decode<M: suti_messages::Message>(&self) -> Result<M, suti_messages::CodecError> {
        suti_messages::decode(&self.body)
    }

    /// The dead-letter reason, if this message was dead-lettered by a consumer.
    /// Messages the broker itself dead-lettered (delivery limit exceeded) carry RabbitMQ's
    /// `x-first-death-reason` instead.
    pub fn dead_reason(&self) -> Option<&str> {
        self.headers
            .get(DEAD_REASON_HEADER)
            .or_else(|| self.headers.get("x-first-death-reason"))
            .map(String::as_str)
    }
}

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker cannot be reached or the connection dropped; retrying later may work.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused a publish (nack) — for example a queue over its length limit.
    #[error("broker refused the message {message_id}: {reason}")]
    Nacked {
        /// Id of the refused message.
        message_id: String,
        /// What the broker said.
        reason: String,
    },
    /// No queue is bound for the message's type: the topology is missing or the type is unknown.
    #[error("no queue is bound for message type {kind} (is the topology declared?)")]
    Unroutable {
        /// Wire type of the message.
        kind: String,
    },
    /// The broker rejected a declaration (for example a queue that exists with other arguments).
    #[error("topology rejected by the broker: {0}")]
    Topology(String),
    /// A queue that was named does not exist.
    #[error("queue {0} does not exist")]
    NoSuchQueue(String),
    /// The channel or connection of a delivery is gone; the broker will redeliver the message.
    #[error("delivery channel closed: the broker will redeliver the message")]
    ChannelClosed,
    /// The configuration is invalid (bad URL, for example).
    #[error("invalid broker configuration: {0}")]
    Config(String),
}

impl QueueError {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Nacked { .. } | Self::ChannelClosed
        )
    }

    /// Low-cardinality label for the `kind` of an error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "broker_unavailable",
            Self::Nacked { .. } => "broker_nack",
            Self::Unroutable { .. } => "unroutable",
            Self::Topology(_) => "topology",
            Self::NoSuchQueue(_) => "no_such_queue",
            Self::ChannelClosed => "channel_closed",
            Self::Config(_) => "config",
        }
    }
}

/// A message handed to a consumer. It must be settled exactly once: [`Delivery::ack`],
/// [`Delivery::requeue`] or [`Delivery::dead_letter`]. A delivery dropped unsettled stays unacked
/// until its connection closes, then returns to the queue.
pub struct Delivery {
    /// The message.
    pub envelope: Envelope,
    /// Whether the broker delivered this message before.
    pub redelivered: bool,
    /// How many earlier deliveries of this message failed (the quorum queue's `x-delivery-count`).
    pub delivery_count: u32,
    settler: Box<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message_id", &self.envelope.message_id)
            .field("kind", &self.envelope.kind)
            .field("redelivered", &self.redelivered)
            .field("delivery_count", &self.delivery_count)
            .finish()
    }
}

impl Delivery {
    pub(crate) fn new(
        envelope: Envelope,
        redelivered: bool,
        delivery_count: u32,
        settler: Box<dyn Settle>,
    ) -> Self {
        Self {
            envelope,
            redelivered,
            delivery_count,
            settler,
        }
    }

    /// Acknowledges the message: it is done and leaves the queue.
    pub async fn ack(self) -> Result<(), QueueError> {
        self.settler.ack().await
    }

    /// Returns the message to its queue for another attempt; this counts toward the delivery limit.
    pub async fn requeue(self) -> Result<(), QueueError> {
        self.settler.requeue().await
    }

    /// Moves the message to `<queue>.dead` with `reason` in the [`DEAD_REASON_HEADER`] header.
    pub async fn dead_letter(self, reason: &str) -> Result<(), QueueError> {
        self.settler.dead_letter(&self.envelope, reason).await
    }
}

/// Backend-specific settlement of one delivery.
#[async_trait]
pub(crate) trait Settle: Send + Sync {
    async fn ack(&self) -> Result<(), QueueError>;
    async fn requeue(&self) -> Result<(), QueueError>;
    async fn dead_letter(&self, envelope: &Envelope, reason: &str) -> Result<(), QueueError>;
}

/// A stream of deliveries from one queue. Backends reconnect underneath: `next` only returns
/// `None` once the broker handle was closed.
#[async_trait]
pub trait Consumer: Send {
    /// Waits for the next delivery.
    async fn next(&mut self) -> Option<Delivery>;

    /// Stops the broker from sending more deliveries while the ones already handed out can still
    /// be settled (graceful shutdown). Dropping the consumer afterwards returns anything received
    /// but not handed out.
    async fn cancel(&mut self) {}
}

/// A message broker: publish with confirms, consume with prefetch, declare the topology.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Short name of the backend (`amqp`, `in_process`), for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Declares the exchanges, queues, dead-letter queues and bindings; idempotent.
    async fn declare(&self, topology: &Topology) -> Result<(), QueueError>;

    /// Deletes the queues and exchanges of a topology (tests and benchmarks clean up with it).
    async fn delete(&self, topology: &Topology) -> Result<(), QueueError>;

    /// Publishes one message to the topology's exchange and waits for the broker's confirm.
    async fn publish(&self, topology: &Topology, envelope: &Envelope) -> Result<(), QueueError> {
        self.publish_batch(topology, std::slice::from_ref(envelope))
            .await
    }

    /// Publishes messages with pipelined confirms: returns once every one is confirmed.
    async fn publish_batch(
        &self,
        topology: &Topology,
        envelopes: &[Envelope],
    ) -> Result<(), QueueError>;

    /// Consumes a stage queue with at most `prefetch` unacknowledged deliveries in flight.
    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError>;

    /// Subscribes to the fan-out of releases: this subscriber gets every message published to the
    /// topology's fan-out from now on, independently of every other subscriber.
    async fn subscribe_fanout(
        &self,
        topology: &Topology,
        prefetch: u16,
    ) -> Result<Box<dyn Consumer>, QueueError>;

    /// Messages ready for delivery in a queue (not counting unacknowledged ones).
    async fn ready_count(&self, queue: &str) -> Result<u64, QueueError>;

    /// Checks that the broker answers (readiness).
    async fn ping(&self) -> Result<(), QueueError>;

    /// Closes this handle's connection. Unacknowledged deliveries return to their queues, as when a
    /// worker dies, and consumers of this handle end.
    async fn close(&self);
}

/// Default wait before asking for a requeued message again, by how often it failed before.
pub fn retry_delay(delivery_count: u32) -> Duration {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(10)).delay(delivery_count)
}
