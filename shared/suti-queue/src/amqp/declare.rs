//! The broker's topology: declaring the exchanges, quorum queues, dead-letter queues and
//! bindings a [`Topology`] names, deleting them, and counting a queue's ready messages.

use lapin::ExchangeKind;
use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};

use super::connection::{AmqpBroker, unavailable};
use crate::{QueueError, Topology};

/// Arguments of a quorum queue: with a delivery limit and a dead-letter route for a stage queue,
/// without for its `.dead` queue.
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

impl AmqpBroker {
    /// Declares everything `topology` names; declaring what exists with the same arguments is a no-op.
    pub(super) async fn declare_topology(&self, topology: &Topology) -> Result<(), QueueError> {
        let channel = self.open_channel().await?;
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

    /// Deletes the queues and exchanges of `topology`.
    pub(super) async fn delete_topology(&self, topology: &Topology) -> Result<(), QueueError> {
        let channel = self.open_channel().await?;
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

    /// Messages ready in `queue`, asked with a passive declare.
    pub(super) async fn count_ready(&self, queue: &str) -> Result<u64, QueueError> {
        let channel = self.open_channel().await?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_queue_is_a_quorum_queue_with_a_limit_and_a_dead_letter_route() {
        let args = quorum_arguments(Some(5), Some(("dlx", "clusters")));
        let args = args.inner();
        assert_eq!(
            args.get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(args.get("x-delivery-limit"), Some(&AMQPValue::LongInt(5)));
        assert_eq!(
            args.get("x-dead-letter-routing-key"),
            Some(&AMQPValue::LongString("clusters".into()))
        );
        let dead = quorum_arguments(None, None);
        assert_eq!(
            dead.inner().len(),
            1,
            "a .dead queue is only a quorum queue"
        );
    }
}
