//! Publishing with publisher confirms: a batch pipelines its confirms, is published again on a new
//! connection when the old one fails, and fails at once when the broker refuses it.

use lapin::Confirmation;
use lapin::options::BasicPublishOptions;
use tracing::warn;

use super::codec::properties_of;
use super::connection::{AmqpBroker, Live, unavailable};
use crate::{Envelope, QueueError, Topology};

/// Why a publish on one connection failed.
enum PublishFailure {
    /// The connection or channel failed: another connection may succeed.
    Connection(lapin::Error),
    /// The broker answered and refused: publishing again cannot help.
    Refused(QueueError),
}

impl AmqpBroker {
    /// Publishes `envelopes` to the topology's exchange and waits for every confirm, reconnecting
    /// and publishing the batch again when the connection fails.
    pub(super) async fn publish_confirmed(
        &self,
        topology: &Topology,
        envelopes: &[Envelope],
    ) -> Result<(), QueueError> {
        let options = self.options();
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

    /// Publishes a batch on one connection, pipelining the confirms.
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
    pub(super) async fn publish_to_queue(
        &self,
        queue: &str,
        envelope: &Envelope,
    ) -> Result<(), QueueError> {
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
