//! The stage harness under stress and faults, on the real backends (RabbitMQ, Redis, s3s-fs on
//! loopback) and on the in-process backends of the embedded mode. The suite's checks run on both,
//! each as a test of its own per backend (`amqp::graceful_shutdown_loses_nothing`,
//! `in_process::graceful_shutdown_loses_nothing`, …); the faults only the real backends can have
//! (an S3 outage, the broker closing its connections) are tests of their own.

mod fixture;

use std::time::Duration;

use fixture::{BROKEN, Env, FLAKY, PANICS, UNHANDLEABLE, cluster};
use suti_queue::Envelope;
use suti_storage::ObjectKey;
use suti_testkit::wait_until;

suti_testkit::backend_cases! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    backends: [amqp, in_process],
    checks: [
        ten_thousand_messages_survive_a_killed_consumer,
        poison_and_permanent_failures_are_dead_lettered_with_a_reason,
        retryable_failures_are_retried_then_dead_lettered,
        graceful_shutdown_loses_nothing,
    ],
}

async fn amqp() -> Env {
    Env::real().await
}

async fn in_process() -> Env {
    Env::in_process().await
}

/// The dead-letter reasons of `dead`, sorted.
fn sorted_reasons(dead: &[Envelope]) -> Vec<String> {
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|e| e.dead_reason().expect("a reason header").to_string())
        .collect();
    reasons.sort();
    reasons
}

/// 10,000 messages; the first worker is killed mid-stream with unacked deliveries; a second one
/// finishes. Nothing is lost, and only work that was in flight at the kill runs twice.
async fn ten_thousand_messages_survive_a_killed_consumer(env: &Env) {
    let total: usize = std::env::var("SUTI_STAGE_TEST_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let concurrency = 32;
    let messages: Vec<Envelope> = (0..total).map(|i| cluster(i, "teapot")).collect();
    env.publish(&messages).await;

    let victim = env.start_worker(concurrency, Duration::ZERO).await;
    let kill_at = (total / 4) as i64;
    wait_until(
        Duration::from_secs(120),
        "the victim to get a quarter through",
        || async { env.executions().await >= kill_at },
    )
    .await
    .unwrap();
    let victim = victim.kill().await;
    let executed_by_victim = env.executions().await;
    assert!(
        executed_by_victim < total as i64,
        "the victim must die mid-stream"
    );

    let survivor = env.start_worker(concurrency, Duration::ZERO).await;
    wait_until(
        Duration::from_secs(300),
        "every message to be handled",
        || async { env.handled().await == total as u64 },
    )
    .await
    .unwrap();
    wait_until(Duration::from_secs(60), "the queue to drain", || async {
        survivor.metrics.in_flight.get() == 0
            && survivor.broker.ready_count(&env.queue()).await.unwrap() == 0
    })
    .await
    .unwrap();

    // Redeliveries of completed work are skipped by the idempotency marks: replaying 100 finished
    // messages executes nothing.
    let before_replay = env.executions().await;
    env.publish(&messages[..100]).await;
    wait_until(
        Duration::from_secs(60),
        "the replay to be skipped",
        || async { survivor.metrics.processed("duplicate") >= 100 },
    )
    .await
    .unwrap();
    assert_eq!(
        env.executions().await,
        before_replay,
        "a completed message ran again"
    );
    let survivor = survivor.stop().await;

    // None lost: every message handled, its artifact written, its downstream message published.
    assert_eq!(env.handled().await, total as u64);
    let effects = env.storage.list("effects/").await.unwrap();
    assert_eq!(effects.len(), total);
    let downstream = env.drain(&env.topology.queue_name("experts")).await;
    let distinct: std::collections::HashSet<_> =
        downstream.iter().map(|e| e.message_id.clone()).collect();
    assert_eq!(
        distinct.len(),
        total,
        "every message published its downstream message"
    );

    // Effects not doubled: only work in flight when the victim died ran twice, and its
    // downstream copies carry the same ids.
    let executions = env.executions().await as usize;
    let repeated = executions - total;
    assert!(
        repeated <= concurrency,
        "{repeated} executions repeated (at most {concurrency} were in flight)"
    );
    assert!(
        downstream.len() - total <= concurrency,
        "{} extra downstream copies",
        downstream.len() - total
    );
    // Every message was settled as done, or done by the victim and — redelivered because the
    // victim died before its ack reached the broker — settled as a duplicate. The victim's own
    // counters can miss the few settlements it made in the instant it was killed.
    let settled =
        victim.processed("done") + survivor.processed("done") + survivor.processed("duplicate")
            - 100;
    assert!(
        settled + concurrency as u64 >= total as u64,
        "only {settled} of {total} settled"
    );
    println!(
        "kill mid-stream: {total} messages, victim executed {executed_by_victim}, \
         repeated {repeated}, downstream copies {} ({} distinct), survivor duplicates {}",
        downstream.len(),
        distinct.len(),
        survivor.processed("duplicate")
    );
}

/// A poison body, a message of the wrong type and a non-retryable failure all end in the
/// dead-letter queue with a reason; the messages behind them are handled.
async fn poison_and_permanent_failures_are_dead_lettered_with_a_reason(env: &Env) {
    let mut messages: Vec<Envelope> = (0..5).map(|i| cluster(i, "teapot")).collect();
    let mut poison = cluster(900, "teapot");
    poison.body = b"\xc1\xc1 this is not msgpack".to_vec();
    poison.message_id = "poison".into();
    messages.push(poison);
    let mut wrong_type = cluster(901, "teapot");
    wrong_type.kind = "cluster.mined.v9".into();
    messages.push(wrong_type);
    messages.push(cluster(902, UNHANDLEABLE));
    messages.extend((5..25).map(|i| cluster(i, "teapot")));
    env.publish(&messages).await;

    let worker = env.start_worker(4, Duration::ZERO).await;
    env.wait_for_settlement(&worker, 25, 3).await;
    let metrics = worker.stop().await;
    assert_eq!(metrics.processed("done"), 25);
    assert_eq!(metrics.processed("dead_lettered"), 3);
    assert_eq!(metrics.errors("undecodable"), 1);
    assert_eq!(metrics.errors("wrong_type"), 1);
    assert_eq!(metrics.errors("invalid_cluster"), 1);

    let dead = env.drain(&env.dead_queue()).await;
    let reasons = sorted_reasons(&dead);
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].contains("cluster c00902 has no usable images"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("undecodable body"), "{reasons:?}");
    assert!(
        reasons[2].contains("unexpected message type \"cluster.mined.v9\""),
        "{reasons:?}"
    );
    let poison = dead.iter().find(|e| e.message_id == "poison").unwrap();
    assert_eq!(
        poison.body, b"\xc1\xc1 this is not msgpack",
        "the dead letter keeps the body"
    );
}

/// A retryable failure is requeued and succeeds later; one that never succeeds is dead-lettered
/// on its last allowed attempt with the last error as the reason.
async fn retryable_failures_are_retried_then_dead_lettered(env: &Env) {
    let messages = [
        cluster(1, FLAKY),
        cluster(2, BROKEN),
        cluster(3, "teapot"),
        cluster(4, PANICS),
    ];
    env.publish(&messages).await;
    let worker = env.start_worker(2, Duration::ZERO).await;
    // flaky and teapot handled; broken and panics dead-lettered.
    env.wait_for_settlement(&worker, 2, 2).await;
    let metrics = worker.stop().await;
    // flaky: 2 retries then done; broken and panics: 3 retries each (delivery limit 3), then
    // dead-lettered on the fourth attempt.
    assert_eq!(metrics.processed("retried"), 8);
    assert_eq!(metrics.processed("done"), 2);
    assert_eq!(metrics.processed("dead_lettered"), 2);
    assert_eq!(metrics.errors("handler_panic"), 4);
    let reasons = sorted_reasons(&env.drain(&env.dead_queue()).await);
    for reason in &reasons {
        assert!(reason.starts_with("gave up after 4 attempts"), "{reason}");
    }
    assert!(
        reasons[0].contains("handler panicked: index out of bounds"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("the device is busy"), "{reasons:?}");
}

/// Shutdown stops consuming, lets in-flight work finish, and leaves the rest in the queue.
async fn graceful_shutdown_loses_nothing(env: &Env) {
    let messages: Vec<Envelope> = (0..200).map(|i| cluster(i, "teapot")).collect();
    env.publish(&messages).await;
    let worker = env.start_worker(4, Duration::from_millis(50)).await;
    wait_until(Duration::from_secs(30), "some progress", || async {
        env.handled().await >= 20
    })
    .await
    .unwrap();
    let metrics = worker.stop().await;
    assert_eq!(
        metrics.in_flight.get(),
        0,
        "in-flight work finished before exit"
    );
    let handled = env.handled().await;
    assert!(handled < 200, "shutdown should stop the stream early");
    let left = env.drain(&env.queue()).await;
    assert_eq!(
        handled as usize + left.len(),
        200,
        "nothing lost at shutdown"
    );
}

/// S3 goes away for far longer than every requeue delay together (the topology allows 3 attempts:
/// 0.2 + 0.4 + 0.8 s). The workers hold their failed deliveries until storage answers again, so
/// every message succeeds afterwards and none is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_a_storage_outage_longer_than_every_retry_dead_letters_nothing() {
    let (env, mut s3) = Env::real_keeping_s3().await;
    s3.suspend();
    let messages: Vec<Envelope> = (0..4).map(|i| cluster(i, "teapot")).collect();
    env.publish(&messages).await;
    let worker = env.start_worker(2, Duration::ZERO).await;
    let dead_queue = env.dead_queue();
    // Both workers' deliveries have been tried and failed on the write; none may give up
    // meanwhile.
    wait_until(Duration::from_secs(30), "the first attempts", || async {
        env.handled().await >= 2
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(worker.broker.ready_count(&dead_queue).await.unwrap(), 0);
    assert_eq!(worker.metrics.processed("done"), 0);
    s3.resume().await.unwrap();
    wait_until(
        Duration::from_secs(60),
        "the writes after the outage",
        || {
            let metrics = worker.metrics.clone();
            async move { metrics.processed("done") == 4 }
        },
    )
    .await
    .unwrap();
    let metrics = worker.stop().await;
    assert_eq!(metrics.processed("dead_lettered"), 0);
    assert!(env.drain(&dead_queue).await.is_empty());
    for i in 0..4 {
        let key = ObjectKey::new(format!("effects/c{i:05}")).unwrap();
        assert!(env.storage.head(&key).await.unwrap().is_some());
    }
    assert_eq!(
        env.drain(&env.topology.queue_name("experts")).await.len(),
        4
    );
    env.finish().await;
}

/// The broker closes every connection under a running consumer (`rabbitmqctl
/// close_all_connections`): the stage reconnects and finishes the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_consumer_reconnects_after_the_broker_closes_its_connections() {
    let env = Env::real().await;
    let total = 3_000;
    let messages: Vec<Envelope> = (0..total).map(|i| cluster(i, "teapot")).collect();
    env.publish(&messages).await;
    let worker = env.start_worker(16, Duration::ZERO).await;
    wait_until(Duration::from_secs(60), "a third of the stream", || async {
        env.handled().await >= (total / 3) as u64
    })
    .await
    .unwrap();
    suti_testkit::rabbitmqctl(&["close_all_connections", "suti test: forced disconnect"])
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(180),
        "the whole stream after the disconnect",
        || async { env.handled().await == total as u64 },
    )
    .await
    .unwrap();
    assert!(
        !worker.task.is_finished(),
        "the stage kept running through the disconnect"
    );
    let metrics = worker.stop().await;
    let downstream = env.drain(&env.topology.queue_name("experts")).await;
    let distinct: std::collections::HashSet<_> = downstream.iter().map(|e| &e.message_id).collect();
    assert_eq!(distinct.len(), total);
    println!(
        "reconnect: {total} messages, done {}, unsettled at the disconnect {}, duplicates {}",
        metrics.processed("done"),
        metrics.processed("unsettled"),
        metrics.processed("duplicate")
    );
    env.finish().await;
}
