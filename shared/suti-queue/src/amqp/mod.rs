//! RabbitMQ backend (lapin): quorum queues with a delivery limit, publisher confirms, prefetch,
//! reasoned dead-lettering, and reconnection with backoff when the broker goes away.
//!
//! The handle's shared connection lives in `connection`, publishing with confirms in `publish`,
//! the envelope's AMQP form in `codec`, the topology in `declare`, and consumers with their
//! settlement in `consumer`; the [`Broker`] implementation here only routes to them.

mod codec;
mod connection;
mod consumer;
mod declare;
mod publish;

use async_trait::async_trait;

pub use connection::{AmqpBroker, AmqpOptions};
use consumer::{AmqpConsumer, Source};

use crate::{Broker, Consumer, Envelope, QueueError, Topology};

#[async_trait]
impl Broker for AmqpBroker {
    fn backend(&self) -> &'static str {
        "amqp"
    }

    async fn declare(&self, topology: &Topology) -> Result<(), QueueError> {
        self.declare_topology(topology).await
    }

    async fn delete(&self, topology: &Topology) -> Result<(), QueueError> {
        self.delete_topology(topology).await
    }

    async fn publish_batch(
        &self,
        topology: &Topology,
        envelopes: &[Envelope],
    ) -> Result<(), QueueError> {
        self.publish_confirmed(topology, envelopes).await
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        AmqpConsumer::start(self.clone(), Source::Queue(queue.to_string()), prefetch).await
    }

    async fn subscribe_fanout(
        &self,
        topology: &Topology,
        prefetch: u16,
    ) -> Result<Box<dyn Consumer>, QueueError> {
        let source = Source::Fanout(topology.fanout_exchange.clone());
        AmqpConsumer::start(self.clone(), source, prefetch).await
    }

    async fn ready_count(&self, queue: &str) -> Result<u64, QueueError> {
        self.count_ready(queue).await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.live().await.map(drop)
    }

    async fn close(&self) {
        self.close_connection().await
    }
}
