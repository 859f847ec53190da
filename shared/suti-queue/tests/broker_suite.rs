//! One broker test suite for both backends: the machine's real RabbitMQ and the in-process broker.
//! Each check is a test of its own per backend (`amqp::prefetch_limits_unacked`,
//! `in_process::prefetch_limits_unacked`, …) on a namespaced topology of its own, deleted
//! afterwards.

use std::sync::Arc;
use std::time::Duration;

use suti_queue::{
    AmqpBroker, AmqpOptions, Broker, Consumer, DEAD_QUEUE_HEADER, Delivery, Envelope,
    InProcessBroker, QueueError, Topology,
};
use suti_testkit::{TopologyGuard, amqp_url, unique};

suti_testkit::backend_cases! {
    #[tokio::test]
    backends: [in_process, amqp],
    checks: [
        routes_by_type_and_keeps_metadata,
        unroutable_types_are_refused,
        prefetch_limits_unacked_deliveries,
        requeues_count_toward_the_delivery_limit,
        dead_letters_keep_the_message_and_the_reason,
        a_dropped_connection_returns_its_unacked_deliveries,
        fanout_reaches_every_subscriber,
        ready_counts_what_waits,
        the_broker_answers_a_ping,
    ],
}

fn envelope(kind: &str, id: &str) -> Envelope {
    Envelope {
        message_id: id.to_string(),
        kind: kind.to_string(),
        correlation_id: Some("run-1".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        headers: Default::default(),
        body: id.as_bytes().to_vec(),
    }
}

/// Opens a second, independent connection to the same broker.
type Connect = Box<dyn Fn() -> futures::future::BoxFuture<'static, Arc<dyn Broker>> + Send + Sync>;

/// A broker connection with a private topology declared (twice: declaring is idempotent).
struct Fixture {
    connect: Connect,
    broker: Arc<dyn Broker>,
    topology: Topology,
    _cleanup: Option<TopologyGuard>,
}

impl Fixture {
    async fn open(connect: Connect, amqp: bool) -> Self {
        let broker = connect().await;
        let topology = Topology::pipeline(&unique("t"), 2);
        let cleanup = amqp.then(|| TopologyGuard::new(&topology));
        broker.declare(&topology).await.unwrap();
        broker
            .declare(&topology)
            .await
            .expect("declaring twice is idempotent");
        Self {
            connect,
            broker,
            topology,
            _cleanup: cleanup,
        }
    }

    fn queue(&self, kind: &str) -> String {
        self.topology.queue_for(kind).unwrap().name.clone()
    }

    async fn publish(&self, kind: &str, id: &str) {
        self.broker
            .publish(&self.topology, &envelope(kind, id))
            .await
            .unwrap();
    }

    async fn consume(&self, kind: &str, prefetch: u16) -> Box<dyn Consumer> {
        self.broker
            .consume(&self.queue(kind), prefetch)
            .await
            .unwrap()
    }

    async fn dead_letters(&self, kind: &str) -> Box<dyn Consumer> {
        self.broker
            .consume(&format!("{}.dead", self.queue(kind)), 10)
            .await
            .unwrap()
    }

    async fn finish(self) {
        self.broker.delete(&self.topology).await.unwrap();
        self.broker.close().await;
    }
}

async fn in_process() -> Fixture {
    let root = InProcessBroker::new();
    let connect: Connect = Box::new(move || {
        let b = root.connect();
        Box::pin(async move { Arc::new(b) as Arc<dyn Broker> })
    });
    Fixture::open(connect, false).await
}

async fn amqp() -> Fixture {
    suti_testkit::init_tracing();
    let connect: Connect = Box::new(|| {
        Box::pin(async {
            let mut options = AmqpOptions::new(amqp_url());
            options.connection_name = unique("suti-test");
            Arc::new(
                AmqpBroker::connect(options)
                    .await
                    .expect("RabbitMQ on 127.0.0.1:5672"),
            ) as Arc<dyn Broker>
        })
    });
    Fixture::open(connect, true).await
}

/// The next delivery, failing the test if none comes within ten seconds.
async fn next_within(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery within 10 s")
        .expect("the consumer is open")
}

async fn no_delivery_within(consumer: &mut Box<dyn Consumer>, wait: Duration) -> bool {
    tokio::time::timeout(wait, consumer.next()).await.is_err()
}

/// Each type goes to its own queue, and the metadata survives the trip.
async fn routes_by_type_and_keeps_metadata(fixture: &Fixture) {
    fixture.publish("cluster.mined.v1", "m1").await;
    fixture.publish("expert.trained.v1", "e1").await;
    let mut clusters = fixture.consume("cluster.mined.v1", 2).await;
    let d = clusters.next().await.unwrap();
    assert_eq!(d.envelope, envelope("cluster.mined.v1", "m1"));
    assert!(!d.redelivered);
    assert_eq!(d.delivery_count, 0);
    d.ack().await.unwrap();
    let mut experts = fixture.consume("expert.trained.v1", 1).await;
    let d = experts.next().await.unwrap();
    assert_eq!(d.envelope, envelope("expert.trained.v1", "e1"));
    d.ack().await.unwrap();
}

async fn unroutable_types_are_refused(fixture: &Fixture) {
    let err = fixture
        .broker
        .publish(&fixture.topology, &envelope("no.such.v1", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Unroutable { .. }), "{err}");
    assert!(!err.is_retryable());
}

/// No more than `prefetch` (2) unacked deliveries; acking one frees a slot.
async fn prefetch_limits_unacked_deliveries(fixture: &Fixture) {
    let mut consumer = fixture.consume("cluster.mined.v1", 2).await;
    let batch: Vec<_> = (0..3)
        .map(|i| envelope("cluster.mined.v1", &format!("p{i}")))
        .collect();
    fixture
        .broker
        .publish_batch(&fixture.topology, &batch)
        .await
        .unwrap();
    let first = consumer.next().await.unwrap();
    let second = consumer.next().await.unwrap();
    assert!(no_delivery_within(&mut consumer, Duration::from_millis(300)).await);
    first.ack().await.unwrap();
    let third = consumer.next().await.unwrap();
    assert_eq!(third.envelope.message_id, "p2");
    third.ack().await.unwrap();
    second.ack().await.unwrap();
}

/// Requeues count toward the delivery limit (2): the third failure dead-letters the message.
async fn requeues_count_toward_the_delivery_limit(fixture: &Fixture) {
    let mut consumer = fixture.consume("cluster.mined.v1", 2).await;
    fixture.publish("cluster.mined.v1", "flaky").await;
    for attempt in 0..3 {
        let d = consumer.next().await.unwrap();
        assert_eq!(d.envelope.message_id, "flaky");
        assert_eq!(
            d.delivery_count, attempt,
            "delivery count on attempt {attempt}"
        );
        assert_eq!(d.redelivered, attempt > 0);
        d.requeue().await.unwrap();
    }
    let mut dead = fixture.dead_letters("cluster.mined.v1").await;
    let d = next_within(&mut dead).await;
    assert_eq!(d.envelope.message_id, "flaky");
    assert_eq!(d.envelope.dead_reason(), Some("delivery_limit"));
    d.ack().await.unwrap();
}

/// Dead-lettering with a reason keeps the message and says why.
async fn dead_letters_keep_the_message_and_the_reason(fixture: &Fixture) {
    let mut consumer = fixture.consume("cluster.mined.v1", 2).await;
    fixture.publish("cluster.mined.v1", "poison").await;
    let d = consumer.next().await.unwrap();
    d.dead_letter("undecodable body: bad msgpack")
        .await
        .unwrap();
    let mut dead = fixture.dead_letters("cluster.mined.v1").await;
    let d = next_within(&mut dead).await;
    assert_eq!(d.envelope.message_id, "poison");
    assert_eq!(
        d.envelope.dead_reason(),
        Some("undecodable body: bad msgpack")
    );
    assert_eq!(
        d.envelope.headers.get(DEAD_QUEUE_HEADER),
        Some(&fixture.queue("cluster.mined.v1"))
    );
    assert_eq!(d.envelope.body, b"poison");
    d.ack().await.unwrap();
}

/// A worker whose connection drops with unacked deliveries: they go back to the queue.
async fn a_dropped_connection_returns_its_unacked_deliveries(fixture: &Fixture) {
    let worker = (fixture.connect)().await;
    fixture.publish("cluster.mined.v1", "orphan").await;
    let mut worker_consumer = worker
        .consume(&fixture.queue("cluster.mined.v1"), 5)
        .await
        .unwrap();
    let d = worker_consumer.next().await.unwrap();
    assert_eq!(d.envelope.message_id, "orphan");
    std::mem::forget(d);
    worker.close().await;
    assert!(
        worker_consumer.next().await.is_none(),
        "a closed handle's consumer ends"
    );
    let mut consumer = fixture.consume("cluster.mined.v1", 5).await;
    let d = next_within(&mut consumer).await;
    assert_eq!(d.envelope.message_id, "orphan");
    assert!(d.redelivered);
    d.ack().await.unwrap();
}

/// Every subscriber gets every release; with none, publishing still succeeds.
async fn fanout_reaches_every_subscriber(fixture: &Fixture) {
    fixture.publish("apprentice.published.v1", "r0").await;
    let mut sub_a = fixture
        .broker
        .subscribe_fanout(&fixture.topology, 4)
        .await
        .unwrap();
    let replica = (fixture.connect)().await;
    let mut sub_b = replica
        .subscribe_fanout(&fixture.topology, 4)
        .await
        .unwrap();
    fixture.publish("apprentice.published.v1", "r1").await;
    for sub in [&mut sub_a, &mut sub_b] {
        let d = next_within(sub).await;
        assert_eq!(d.envelope.message_id, "r1");
        d.ack().await.unwrap();
    }
    replica.close().await;
}

/// Ready counts (what autoscaling and dashboards read); a queue that does not exist is an error.
async fn ready_counts_what_waits(fixture: &Fixture) {
    let experts = fixture.queue("expert.trained.v1");
    fixture
        .broker
        .publish_batch(
            &fixture.topology,
            &[
                envelope("expert.trained.v1", "c1"),
                envelope("expert.trained.v1", "c2"),
            ],
        )
        .await
        .unwrap();
    suti_testkit::wait_until(Duration::from_secs(5), "ready count", || {
        let broker = fixture.broker.clone();
        let experts = experts.clone();
        async move { broker.ready_count(&experts).await.unwrap() == 2 }
    })
    .await
    .unwrap();
    assert!(matches!(
        fixture.broker.ready_count(&unique("missing")).await,
        Err(QueueError::NoSuchQueue(_))
    ));
}

async fn the_broker_answers_a_ping(fixture: &Fixture) {
    fixture.broker.ping().await.unwrap();
}

#[tokio::test]
async fn amqp_declare_conflict_is_a_clear_topology_error() {
    let broker = AmqpBroker::connect(AmqpOptions::new(amqp_url()))
        .await
        .unwrap();
    let namespace = unique("t");
    let topology = Topology::pipeline(&namespace, 2);
    let _cleanup = TopologyGuard::new(&topology);
    broker.declare(&topology).await.unwrap();
    let err = broker
        .declare(&Topology::pipeline(&namespace, 7))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Topology(_)), "{err}");
    broker.delete(&topology).await.unwrap();
}

#[tokio::test]
async fn amqp_publishing_to_an_undeclared_topology_is_a_clear_error_and_the_handle_recovers() {
    let broker = AmqpBroker::connect(AmqpOptions::new(amqp_url()))
        .await
        .unwrap();
    let undeclared = Topology::pipeline(&unique("t"), 2);
    let started = std::time::Instant::now();
    let err = broker
        .publish(&undeclared, &envelope("cluster.mined.v1", "m"))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Topology(_)), "{err}");
    assert!(!err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refusals are not retried"
    );
    let declared = Topology::pipeline(&unique("t"), 2);
    let _cleanup = TopologyGuard::new(&declared);
    broker.declare(&declared).await.unwrap();
    broker
        .publish(&declared, &envelope("cluster.mined.v1", "m"))
        .await
        .expect("the handle works again after a channel-level refusal");
    broker.delete(&declared).await.unwrap();
}

#[tokio::test]
async fn amqp_bad_url_and_unreachable_broker_are_errors() {
    let err = AmqpBroker::connect(AmqpOptions::new("http://127.0.0.1"))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Config(_)));
    let port = suti_testkit::free_port().unwrap();
    let err = AmqpBroker::connect(AmqpOptions::new(format!(
        "amqp://guest:guest@127.0.0.1:{port}/%2f"
    )))
    .await
    .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
