//! Consuming: a consumer that reopens its channel (and the shared connection) with backoff when
//! it fails, and the settler that acks, requeues or dead-letters each delivery.

use async_trait::async_trait;
use futures::StreamExt;
use lapin::Channel;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use tracing::{debug, info, warn};

use super::codec::envelope_of;
use super::connection::{AmqpBroker, unavailable};
use crate::{
    Consumer, DEAD_QUEUE_HEADER, DEAD_REASON_HEADER, Delivery, Envelope, QueueError, Settle,
};

/// Where a consumer takes its deliveries from.
pub(super) enum Source {
    /// A stage queue, by name.
    Queue(String),
    /// A fan-out exchange, through a private queue of this subscriber.
    Fanout(String),
}

/// A consumer that survives connection loss: when its channel dies it reopens one (reconnecting
/// the shared connection if needed) with backoff, and resumes.
pub(super) struct AmqpConsumer {
    broker: AmqpBroker,
    source: Source,
    prefetch: u16,
    current: Option<(Channel, lapin::Consumer, String)>,
    failures: u32,
}

impl AmqpConsumer {
    /// Starts consuming `source`: opened now, so that a missing queue is an error for the
    /// caller, not an endless retry.
    pub(super) async fn start(
        broker: AmqpBroker,
        source: Source,
        prefetch: u16,
    ) -> Result<Box<dyn Consumer>, QueueError> {
        let mut consumer = Self {
            broker,
            source,
            prefetch,
            current: None,
            failures: 0,
        };
        consumer.current = Some(consumer.open().await?);
        Ok(Box::new(consumer))
    }

    /// Opens a channel with the prefetch set and starts consuming on it; returns the channel, the
    /// consumer and the queue's name.
    async fn open(&self) -> Result<(Channel, lapin::Consumer, String), QueueError> {
        let channel = self.broker.open_channel().await?;
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
            if self.broker.is_closed() {
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
                        let delay = self.broker.options().reconnect.delay(self.failures);
                        warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "consumer cannot reach the broker");
                        self.failures = self.failures.saturating_add(1);
                        tokio::time::sleep(delay).await;
                    }
                }
                continue;
            };
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    let (envelope, delivery_count) =
                        envelope_of(&delivery.properties, &delivery.data);
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
            let deadline = self.broker.options().connect_timeout;
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

/// Settles one delivery through its channel's acker.
struct AmqpSettler {
    broker: AmqpBroker,
    queue: String,
    acker: lapin::Acker,
}

/// A settlement's outcome: a poisoned acker means the channel is gone.
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
