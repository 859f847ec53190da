//! The in-process broker of the embedded mode (architecture.md §6): the same routing, prefetch,
//! ack, requeue, delivery-limit and dead-letter semantics as the RabbitMQ topology, inside one
//! process.
//!
//! A handle is a connection: [`InProcessBroker::connect`] opens another one on the same broker, and
//! [`Broker::close`] returns that connection's unacknowledged deliveries to their queues, as RabbitMQ
//! does when a worker's connection drops.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::topology::topic_matches;
use crate::{
    Broker, Consumer, DEAD_QUEUE_HEADER, DEAD_REASON_HEADER, Delivery, Envelope, QueueError,
    Settle, Topology,
};

/// Header the broker sets on a message dead-lettered for exceeding the delivery limit (the same
/// name and value RabbitMQ uses).
const FIRST_DEATH_REASON: &str = "x-first-death-reason";

#[derive(Debug, Clone)]
struct Stored {
    envelope: Envelope,
    /// Failed deliveries so far.
    delivery_count: u32,
    redelivered: bool,
}

#[derive(Debug)]
struct Unacked {
    connection: u64,
    consumer: u64,
    message: Stored,
}

#[derive(Debug)]
struct QueueState {
    ready: VecDeque<Stored>,
    unacked: HashMap<u64, Unacked>,
    delivery_limit: Option<u32>,
    dead_letter_queue: Option<String>,
    /// Set for a fan-out subscriber's private queue: deleted when that connection closes.
    exclusive_to: Option<u64>,
    notify: Arc<Notify>,
}

impl QueueState {
    fn new(delivery_limit: Option<u32>, dead_letter_queue: Option<String>) -> Self {
        Self {
            ready: VecDeque::new(),
            unacked: HashMap::new(),
            delivery_limit,
            dead_letter_queue,
            exclusive_to: None,
            notify: Arc::new(Notify::new()),
        }
    }

    fn unacked_by(&self, consumer: u64) -> usize {
        self.unacked
            .values()
            .filter(|u| u.consumer == consumer)
            .count()
    }
}

#[derive(Debug, Default)]
struct State {
    /// Declared topic exchanges and their topologies.
    exchanges: HashMap<String, Topology>,
    queues: HashMap<String, QueueState>,
    /// Subscriber queues of each fan-out exchange.
    fanout_subscribers: HashMap<String, Vec<String>>,
    next_tag: u64,
}

impl State {
    fn push(&mut self, queue: &str, message: Stored) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.ready.push_back(message);
            q.notify.notify_waiters();
        }
    }

    /// Returns a failed delivery to its queue, or dead-letters it past the delivery limit.
    fn return_to_queue(&mut self, queue: &str, mut message: Stored) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        message.delivery_count += 1;
        message.redelivered = true;
        match (q.delivery_limit, q.dead_letter_queue.clone()) {
            (Some(limit), dead) if message.delivery_count > limit => {
                if let Some(dead) = dead {
                    let headers = &mut message.envelope.headers;
                    headers.insert(FIRST_DEATH_REASON.into(), "delivery_limit".into());
                    headers.insert(DEAD_QUEUE_HEADER.into(), queue.into());
                    message.delivery_count = 0;
                    message.redelivered = false;
                    self.push(&dead, message);
                }
                // Without a dead-letter queue the broker drops it, as RabbitMQ does.
            }
            _ => {
                q.ready.push_back(message);
                q.notify.notify_waiters();
            }
        }
    }
}

#[derive(Debug, Default)]
struct Hub {
    state: std::sync::Mutex<State>,
    next_id: AtomicU64,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that matters
        // more than losing the whole broker, so a poisoned lock is taken over.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A connection to an in-process broker. Clones share the connection; [`InProcessBroker::connect`]
/// opens a new one on the same broker.
#[derive(Debug, Clone)]
pub struct InProcessBroker {
    hub: Arc<Hub>,
    connection: u64,
    closed: Arc<AtomicBool>,
}

impl Default for InProcessBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessBroker {
    /// A new, empty broker and a first connection to it.
    pub fn new() -> Self {
        let hub = Arc::new(Hub::default());
        let connection = hub.id();
        Self {
            hub,
            connection,
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Opens another connection to the same broker (another worker).
    pub fn connect(&self) -> Self {
        Self {
            hub: self.hub.clone(),
            connection: self.hub.id(),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn check_open(&self) -> Result<(), QueueError> {
        if self.closed.load(Ordering::Acquire) {
            Err(QueueError::Unavailable("connection closed".into()))
        } else {
            Ok(())
        }
    }

    fn consumer(&self, queue: String, prefetch: u16) -> Box<dyn Consumer> {
        Box::new(InProcessConsumer {
            broker: self.clone(),
            queue,
            consumer: self.hub.id(),
            prefetch: usize::from(prefetch.max(1)),
        })
    }
}

#[async_trait]
impl Broker for InProcessBroker {
    fn backend(&self) -> &'static str {
        "in_process"
    }

    async fn declare(&self, topology: &Topology) -> Result<(), QueueError> {
        self.check_open()?;
        let mut state = self.hub.lock();
        for spec in &topology.queues {
            if let Some(existing) = state.queues.get(&spec.name)
                && existing.delivery_limit != Some(topology.delivery_limit)
            {
                return Err(QueueError::Topology(format!(
                    "queue {} exists with delivery limit {:?}, declared with {}",
                    spec.name, existing.delivery_limit, topology.delivery_limit
                )));
            }
        }
        for spec in &topology.queues {
            let dead = spec.dead_name();
            state
                .queues
                .entry(dead.clone())
                .or_insert_with(|| QueueState::new(None, None));
            state
                .queues
                .entry(spec.name.clone())
                .or_insert_with(|| QueueState::new(Some(topology.delivery_limit), Some(dead)));
        }
        state
            .exchanges
            .insert(topology.exchange.clone(), topology.clone());
        state
            .fanout_subscribers
            .entry(topology.fanout_exchange.clone())
            .or_default();
        Ok(())
    }

    async fn delete(&self, topology: &Topology) -> Result<(), QueueError> {
        let mut state = self.hub.lock();
        for spec in &topology.queues {
            for name in [spec.name.clone(), spec.dead_name()] {
                if let Some(q) = state.queues.remove(&name) {
                    q.notify.notify_waiters();
                }
            }
        }
        state.exchanges.remove(&topology.exchange);
        if let Some(subscribers) = state.fanout_subscribers.remove(&topology.fanout_exchange) {
            for name in subscribers {
                if let Some(q) = state.queues.remove(&name) {
                    q.notify.notify_waiters();
                }
            }
        }
        Ok(())
    }

    async fn publish_batch(
        &self,
        topology: &Topology,
        envelopes: &[Envelope],
    ) -> Result<(), QueueError> {
        self.check_open()?;
        let mut state = self.hub.lock();
        let Some(declared) = state.exchanges.get(&topology.exchange).cloned() else {
            return Err(QueueError::Unroutable {
                kind: envelopes
                    .first()
                    .map(|e| e.kind.clone())
                    .unwrap_or_default(),
            });
        };
        // Route everything first so that a batch with one unroutable message publishes nothing.
        let mut routed = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let mut targets: Vec<String> = declared
                .queues
                .iter()
                .filter(|q| q.patterns.iter().any(|p| topic_matches(p, &envelope.kind)))
                .map(|q| q.name.clone())
                .collect();
            let fanout = declared.is_fanout(&envelope.kind);
            if fanout {
                targets.extend(
                    state
                        .fanout_subscribers
                        .get(&declared.fanout_exchange)
                        .cloned()
                        .unwrap_or_default(),
                );
            } else if targets.is_empty() {
                return Err(QueueError::Unroutable {
                    kind: envelope.kind.clone(),
                });
            }
            routed.push((envelope, targets));
        }
        for (envelope, targets) in routed {
            for target in targets {
                state.push(
                    &target,
                    Stored {
                        envelope: envelope.clone(),
                        delivery_count: 0,
                        redelivered: false,
                    },
                );
            }
        }
        Ok(())
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        self.check_open()?;
        if !self.hub.lock().queues.contains_key(queue) {
            return Err(QueueError::NoSuchQueue(queue.to_string()));
        }
        Ok(self.consumer(queue.to_string(), prefetch))
    }

    async fn subscribe_fanout(
        &self,
        topology: &Topology,
        prefetch: u16,
    ) -> Result<Box<dyn Consumer>, QueueError> {
        self.check_open()?;
        let name = format!("{}.subscriber-{}", topology.fanout_exchange, self.hub.id());
        {
            let mut state = self.hub.lock();
            let mut queue = QueueState::new(None, None);
            queue.exclusive_to = Some(self.connection);
            state.queues.insert(name.clone(), queue);
            state
                .fanout_subscribers
                .entry(topology.fanout_exchange.clone())
                .or_default()
                .push(name.clone());
        }
        Ok(self.consumer(name, prefetch))
    }

    async fn ready_count(&self, queue: &str) -> Result<u64, QueueError> {
        let state = self.hub.lock();
        state
            .queues
            .get(queue)
            .map(|q| q.ready.len() as u64)
            .ok_or_else(|| QueueError::NoSuchQueue(queue.to_string()))
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.check_open()
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut state = self.hub.lock();
        let mut returned = Vec::new();
        let mut exclusive = Vec::new();
        for (name, q) in state.queues.iter_mut() {
            let tags: Vec<u64> = q
                .unacked
                .iter()
                .filter(|(_, u)| u.connection == self.connection)
                .map(|(tag, _)| *tag)
                .collect();
            for tag in tags {
                if let Some(u) = q.unacked.remove(&tag) {
                    returned.push((name.clone(), u.message));
                }
            }
            if q.exclusive_to == Some(self.connection) {
                exclusive.push(name.clone());
            }
            q.notify.notify_waiters();
        }
        for (queue, message) in returned {
            state.return_to_queue(&queue, message);
        }
        for name in exclusive {
            state.queues.remove(&name);
            for subscribers in state.fanout_subscribers.values_mut() {
                subscribers.retain(|s| s != &name);
            }
        }
    }
}

struct InProcessConsumer {
    broker: InProcessBroker,
    queue: String,
    consumer: u64,
    prefetch: usize,
}

#[async_trait]
impl Consumer for InProcessConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let notify = {
                let mut state = self.broker.hub.lock();
                if self.broker.closed.load(Ordering::Acquire) {
                    return None;
                }
                state.next_tag += 1;
                let tag = state.next_tag;
                let q = state.queues.get_mut(&self.queue)?;
                if q.unacked_by(self.consumer) < self.prefetch
                    && let Some(message) = q.ready.pop_front()
                {
                    let delivery = Delivery::new(
                        message.envelope.clone(),
                        message.redelivered,
                        message.delivery_count,
                        Box::new(InProcessSettler {
                            broker: self.broker.clone(),
                            queue: self.queue.clone(),
                            tag,
                        }),
                    );
                    q.unacked.insert(
                        tag,
                        Unacked {
                            connection: self.broker.connection,
                            consumer: self.consumer,
                            message,
                        },
                    );
                    return Some(delivery);
                }
                q.notify.clone()
            };
            // Register interest, then re-check under the lock, so a wake-up between the check above
            // and the wait below is not lost.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.broker.hub.lock();
                let ready = state
                    .queues
                    .get(&self.queue)
                    .map(|q| !q.ready.is_empty() && q.unacked_by(self.consumer) < self.prefetch);
                match ready {
                    None => return None,
                    Some(true) => continue,
                    Some(false) if self.broker.closed.load(Ordering::Acquire) => return None,
                    Some(false) => {}
                }
            }
            notified.await;
        }
    }
}

struct InProcessSettler {
    broker: InProcessBroker,
    queue: String,
    tag: u64,
}

impl InProcessSettler {
    fn take(&self, state: &mut State) -> Result<Stored, QueueError> {
        let q = state
            .queues
            .get_mut(&self.queue)
            .ok_or(QueueError::ChannelClosed)?;
        let unacked = q
            .unacked
            .remove(&self.tag)
            .ok_or(QueueError::ChannelClosed)?;
        q.notify.notify_waiters();
        Ok(unacked.message)
    }
}

#[async_trait]
impl Settle for InProcessSettler {
    async fn ack(&self) -> Result<(), QueueError> {
        let mut state = self.broker.hub.lock();
        self.take(&mut state).map(drop)
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        let mut state = self.broker.hub.lock();
        let message = self.take(&mut state)?;
        state.return_to_queue(&self.queue, message);
        Ok(())
    }

    async fn dead_letter(&self, _envelope: &Envelope, reason: &str) -> Result<(), QueueError> {
        let mut state = self.broker.hub.lock();
        let dead = state
            .queues
            .get(&self.queue)
            .and_then(|q| q.dead_letter_queue.clone());
        let mut message = self.take(&mut state)?;
        let headers = &mut message.envelope.headers;
        headers.insert(DEAD_REASON_HEADER.into(), reason.into());
        headers.insert(DEAD_QUEUE_HEADER.into(), self.queue.clone());
        message.delivery_count = 0;
        message.redelivered = false;
        if let Some(dead) = dead {
            state.push(&dead, message);
        }
        Ok(())
    }
}
