//! One broker test suite for both backends: the machine's real RabbitMQ and the in-process broker.
//! Each run declares its own namespaced topology and deletes it afterwards.

use std::sync::Arc;
use std::time::Duration;

use suti_queue::{
    AmqpBroker, AmqpOptions, Broker, DEAD_QUEUE_HEADER, Envelope, InProcessBroker, QueueError,
    Topology,
};
use suti_testkit::{amqp_url, unique};

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

/// The next delivery, failing the test if none comes within ten seconds.
async fn next_within(consumer: &mut Box<dyn suti_queue::Consumer>) -> suti_queue::Delivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery within 10 s")
        .expect("the consumer is open")
}

async fn no_delivery_within(consumer: &mut Box<dyn suti_queue::Consumer>, wait: Duration) -> bool {
    tokio::time::timeout(wait, consumer.next()).await.is_err()
}

async fn run_suite(connect: Connect, amqp: bool) {
    let broker = connect().await;
    let topology = Topology::pipeline(&unique("t"), 2);
    let _cleanup = amqp.then(|| suti_testkit::TopologyGuard::new(&topology));
    broker.declare(&topology).await.unwrap();
    broker
        .declare(&topology)
        .await
        .expect("declaring twice is idempotent");
    let clusters = topology.queue_for("cluster.mined.v1").unwrap().name.clone();
    let experts = topology
        .queue_for("expert.trained.v1")
        .unwrap()
        .name
        .clone();

    // Routing by type; metadata survives the trip.
    broker
        .publish(&topology, &envelope("cluster.mined.v1", "m1"))
        .await
        .unwrap();
    broker
        .publish(&topology, &envelope("expert.trained.v1", "e1"))
        .await
        .unwrap();
    let err = broker
        .publish(&topology, &envelope("no.such.v1", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Unroutable { .. }), "{err}");
    assert!(!err.is_retryable());
    let mut consumer = broker.consume(&clusters, 2).await.unwrap();
    let d = consumer.next().await.unwrap();
    assert_eq!(d.envelope, envelope("cluster.mined.v1", "m1"));
    assert!(!d.redelivered);
    assert_eq!(d.delivery_count, 0);
    d.ack().await.unwrap();
    let mut expert_consumer = broker.consume(&experts, 1).await.unwrap();
    expert_consumer.next().await.unwrap().ack().await.unwrap();

    // Prefetch: no more than 2 unacked deliveries; acking one frees a slot.
    let batch: Vec<_> = (0..3)
        .map(|i| envelope("cluster.mined.v1", &format!("p{i}")))
        .collect();
    broker.publish_batch(&topology, &batch).await.unwrap();
    let first = consumer.next().await.unwrap();
    let _second = consumer.next().await.unwrap();
    assert!(no_delivery_within(&mut consumer, Duration::from_millis(300)).await);
    first.ack().await.unwrap();
    let third = consumer.next().await.unwrap();
    assert_eq!(third.envelope.message_id, "p2");
    third.ack().await.unwrap();
    _second.ack().await.unwrap();

    // Requeue counts toward the delivery limit (2): the third failure dead-letters the message.
    broker
        .publish(&topology, &envelope("cluster.mined.v1", "flaky"))
        .await
        .unwrap();
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
    let mut dead = broker
        .consume(&format!("{clusters}.dead"), 10)
        .await
        .unwrap();
    let d = next_within(&mut dead).await;
    assert_eq!(d.envelope.message_id, "flaky");
    assert_eq!(d.envelope.dead_reason(), Some("delivery_limit"));
    d.ack().await.unwrap();

    // Dead-lettering with a reason keeps the message and says why.
    broker
        .publish(&topology, &envelope("cluster.mined.v1", "poison"))
        .await
        .unwrap();
    let d = consumer.next().await.unwrap();
    d.dead_letter("undecodable body: bad msgpack")
        .await
        .unwrap();
    let d = next_within(&mut dead).await;
    assert_eq!(d.envelope.message_id, "poison");
    assert_eq!(
        d.envelope.dead_reason(),
        Some("undecodable body: bad msgpack")
    );
    assert_eq!(d.envelope.headers.get(DEAD_QUEUE_HEADER), Some(&clusters));
    assert_eq!(d.envelope.body, b"poison");
    d.ack().await.unwrap();

    // A worker whose connection drops with unacked deliveries: they go back to the queue.
    let worker = connect().await;
    broker
        .publish(&topology, &envelope("cluster.mined.v1", "orphan"))
        .await
        .unwrap();
    drop(consumer);
    let mut worker_consumer = worker.consume(&clusters, 5).await.unwrap();
    let d = worker_consumer.next().await.unwrap();
    assert_eq!(d.envelope.message_id, "orphan");
    std::mem::forget(d);
    worker.close().await;
    assert!(
        worker_consumer.next().await.is_none(),
        "a closed handle's consumer ends"
    );
    let mut consumer = broker.consume(&clusters, 5).await.unwrap();
    let d = next_within(&mut consumer).await;
    assert_eq!(d.envelope.message_id, "orphan");
    assert!(d.redelivered);
    d.ack().await.unwrap();

    // Fan-out: every subscriber gets every release; with none, publishing still succeeds.
    broker
        .publish(&topology, &envelope("apprentice.published.v1", "r0"))
        .await
        .unwrap();
    let mut sub_a = broker.subscribe_fanout(&topology, 4).await.unwrap();
    let replica = connect().await;
    let mut sub_b = replica.subscribe_fanout(&topology, 4).await.unwrap();
    broker
        .publish(&topology, &envelope("apprentice.published.v1", "r1"))
        .await
        .unwrap();
    for sub in [&mut sub_a, &mut sub_b] {
        let d = next_within(sub).await;
        assert_eq!(d.envelope.message_id, "r1");
        d.ack().await.unwrap();
    }
    replica.close().await;

    // Ready counts (what autoscaling and dashboards read). A live AMQP consumer takes messages
    // off the ready count as soon as they arrive, so the experts consumer goes first.
    drop(expert_consumer);
    broker
        .publish_batch(
            &topology,
            &[
                envelope("expert.trained.v1", "c1"),
                envelope("expert.trained.v1", "c2"),
            ],
        )
        .await
        .unwrap();
    suti_testkit::wait_until(Duration::from_secs(5), "ready count", || {
        let broker = broker.clone();
        let experts = experts.clone();
        async move { broker.ready_count(&experts).await.unwrap() == 2 }
    })
    .await
    .unwrap();
    assert!(matches!(
        broker.ready_count(&unique("missing")).await,
        Err(QueueError::NoSuchQueue(_))
    ));
    broker.ping().await.unwrap();

    drop((consumer, dead, sub_a));
    broker.delete(&topology).await.unwrap();
    broker.close().await;
}

#[tokio::test]
async fn in_process_backend_passes_the_suite() {
    let root = InProcessBroker::new();
    let connect: Connect = Box::new(move || {
        let b = root.connect();
        Box::pin(async move { Arc::new(b) as Arc<dyn Broker> })
    });
    run_suite(connect, false).await;
}

#[tokio::test]
async fn amqp_backend_passes_the_suite() {
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
    run_suite(connect, true).await;
}

#[tokio::test]
async fn amqp_declare_conflict_is_a_clear_topology_error() {
    let broker = AmqpBroker::connect(AmqpOptions::new(amqp_url()))
        .await
        .unwrap();
    let namespace = unique("t");
    let topology = Topology::pipeline(&namespace, 2);
    let _cleanup = suti_testkit::TopologyGuard::new(&topology);
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
    let _cleanup = suti_testkit::TopologyGuard::new(&declared);
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = AmqpBroker::connect(AmqpOptions::new(format!(
        "amqp://guest:guest@127.0.0.1:{port}/%2f"
    )))
    .await
    .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
