//! Chaos (issue 10): the pipeline of `pipeline.rs` — the six services as separate processes — while
//! faults are injected. Workers die by SIGKILL at the harness's failpoints (part-way through their
//! artifact writes, between the writes and the publish, between the publish and the ack) and at
//! random moments; the RabbitMQ node is stopped and started again; S3 refuses connections for 30 s;
//! Redis is restarted. A supervisor restarts every worker that dies, as Kubernetes would.
//!
//! Afterwards every cluster must have exactly one expert, one candidate set and one example shard,
//! the apprentice must have indexed each shard once and published a release, every object in the
//! bucket must be whole, and no dead-letter queue may hold a message. The test prints a report of
//! the faults and counts (docs/chaos-report.md holds one).
//!
//! It runs on a RabbitMQ node and a Redis server of its own (suti-testkit's `PrivateRabbit` and
//! `PrivateRedis`), so restarting them disturbs no other test. `SUTI_CHAOS_FULL=1` runs the full
//! form (more subjects, a random kill every few seconds); `SUTI_CHAOS_SEED` replays a schedule.

mod audit;
mod supervisor;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit::{check_artifacts, check_dead_letters, secrets_and_duplicates};
use rand::{Rng, SeedableRng};
use supervisor::{Supervisor, fail, keep_alive};
use suti_e2e::{
    SERVICES, has_apprentice_release, pipeline_env, seed_crawl, serve_pipeline_web, start, tails,
    training_jobs,
};
use suti_queue::{AmqpBroker, AmqpOptions, Broker, Topology};
use suti_state::{RedisState, SharedState};
use suti_storage::{ObjectStore, S3Store};
use suti_testkit::{PrivateRabbit, PrivateRedis, S3Server, backends_env, unique, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_the_pipeline_survives_killed_workers_and_backend_restarts() {
    let full = std::env::var("SUTI_CHAOS_FULL").is_ok_and(|v| v == "1");
    let seed: u64 = std::env::var("SUTI_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!(
        "chaos: seed {seed} ({} form)",
        if full { "full" } else { "short" }
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let logs = tempfile::tempdir().unwrap();

    let rabbit = PrivateRabbit::start().await.unwrap();
    let mut redis = PrivateRedis::start().await.unwrap();
    let mut s3 = S3Server::start().await.unwrap();
    let assets =
        suti_data::Assets::open_default().expect("EmojiWorld assets (scripts/fetch-assets)");
    let subjects = if full { 8 } else { 4 };
    let served = serve_pipeline_web(assets, subjects).await;
    let bucket = unique("chaos");
    let store = S3Store::connect(&s3.options(&bucket), true).await.unwrap();
    let namespace = unique("chaos");
    let mut backends = backends_env(&rabbit.url(), &redis.url(), &namespace);
    backends.extend(s3.storage_env(&bucket));
    let env = pipeline_env(backends);
    let topology = Topology::pipeline(&namespace, 5);

    let supervisor = Supervisor::start_all(env.clone(), logs.path());
    let serving_port = supervisor.serving_port;
    let supervisor = Arc::new(Mutex::new(supervisor));
    let reviver = keep_alive(supervisor.clone());

    // The crawl: its worker dies part-way through writing what it mined (failpoint), and the
    // redelivery mines it again.
    {
        let broker = AmqpBroker::connect(AmqpOptions::new(rabbit.url()))
            .await
            .unwrap();
        broker.declare(&topology).await.unwrap();
        seed_crawl(&broker, &topology, "chaos", &served.base_url()).await;
        broker.close().await;
    }
    let crawled = wait_until(Duration::from_secs(300), "every cluster mined", || async {
        store
            .list("clusters/")
            .await
            .is_ok_and(|c| c.len() >= subjects)
    })
    .await;
    if crawled.is_err() {
        fail(
            "the crawl did not mine every subject",
            &supervisor,
            logs.path(),
        );
    }
    // The crawl's outcome may still be writing; training reads the clusters once it is acked.
    let acked = wait_until(
        Duration::from_secs(60),
        "the crawl acknowledged",
        || async {
            rabbit
                .queue_messages(&topology.queue_name("crawl.requests"))
                .await
                .is_ok_and(|n| n == 0)
        },
    )
    .await;
    if acked.is_err() {
        fail("the crawl was not acknowledged", &supervisor, logs.path());
    }
    for (name, args) in training_jobs() {
        let ok = start(&args, &env, &logs.path().join(format!("{name}.log")))
            .wait()
            .unwrap()
            .success();
        if !ok {
            fail(&format!("{name} failed"), &supervisor, logs.path());
        }
    }
    let clusters: Vec<String> = store
        .list("clusters/")
        .await
        .unwrap()
        .iter()
        .filter_map(|m| {
            m.key
                .as_str()
                .strip_prefix("clusters/")?
                .strip_suffix(".msgpack")
                .map(str::to_string)
        })
        .collect();

    // The faults, while experts, candidates and shards flow.
    let state: SharedState = Arc::new(
        RedisState::connect(&redis.url(), &namespace, Duration::from_secs(5))
            .await
            .unwrap(),
    );
    let shards_indexed = || {
        let state = state.clone();
        async move { state.set_len("apprentice:index").await.unwrap_or(0) as usize }
    };
    // Notes a fault with how far the pipeline had got.
    let note_fault = |what: &str| {
        let (supervisor, what) = (supervisor.clone(), what.to_string());
        let indexed = shards_indexed();
        let total = clusters.len();
        async move {
            let progress = format!("{} of {total} shards indexed", indexed.await);
            supervisor
                .lock()
                .unwrap()
                .note(format!("{what} ({progress})"));
        }
    };
    let pause = |rng: &mut rand::rngs::StdRng, low: u64, high: u64| {
        Duration::from_millis(rng.random_range(low..high))
    };
    tokio::time::sleep(pause(&mut rng, 2_000, 6_000)).await;
    let victim = ["apprentice-trainer", "serving"][rng.random_range(0..2)];
    supervisor.lock().unwrap().kill(victim, "random moment");
    tokio::time::sleep(pause(&mut rng, 2_000, 6_000)).await;

    note_fault("RabbitMQ node stopping").await;
    rabbit.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    rabbit.start_again().await.unwrap();
    supervisor
        .lock()
        .unwrap()
        .note("RabbitMQ node started again".into());

    tokio::time::sleep(pause(&mut rng, 2_000, 8_000)).await;
    note_fault("S3 unreachable (connections refused) for 30 s").await;
    s3.suspend();
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(30) {
        if full && rng.random_bool(0.3) {
            let victim = SERVICES[rng.random_range(0..SERVICES.len())];
            supervisor
                .lock()
                .unwrap()
                .kill(victim, "random moment, during the S3 outage");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    s3.resume().await.unwrap();
    supervisor.lock().unwrap().note("S3 back".into());

    tokio::time::sleep(pause(&mut rng, 2_000, 8_000)).await;
    note_fault("Redis restarting").await;
    redis.restart().await.unwrap();
    supervisor.lock().unwrap().note("Redis back".into());

    // Every stage must have died at least once; kill those the failpoints have not reached.
    for name in SERVICES {
        let untouched = supervisor.lock().unwrap().workers[name].deaths == 0;
        if untouched {
            supervisor
                .lock()
                .unwrap()
                .kill(name, "each stage at least once");
            tokio::time::sleep(pause(&mut rng, 1_000, 4_000)).await;
        }
    }
    if full {
        for _ in 0..10 {
            tokio::time::sleep(pause(&mut rng, 2_000, 8_000)).await;
            let victim = SERVICES[rng.random_range(0..SERVICES.len())];
            supervisor.lock().unwrap().kill(victim, "random moment");
        }
    }

    // The pipeline finishes: every cluster's shard indexed, and a release out.
    let finished = wait_until(
        Duration::from_secs(600),
        "every shard indexed and an apprentice release",
        || async {
            shards_indexed().await >= clusters.len() && has_apprentice_release(&store).await
        },
    )
    .await;
    if finished.is_err() {
        let indexed = shards_indexed().await;
        fail(
            &format!(
                "the pipeline did not finish: {indexed} of {} shards indexed",
                clusters.len()
            ),
            &supervisor,
            logs.path(),
        );
    }
    supervisor
        .lock()
        .unwrap()
        .note("every shard indexed and a release published".into());
    let client = reqwest::Client::new();
    let served_release = wait_until(Duration::from_secs(60), "serving the release", || async {
        client
            .get(format!("http://127.0.0.1:{serving_port}/v1/models"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    if served_release.is_err() {
        fail("serving loaded no release", &supervisor, logs.path());
    }
    // Let the queues settle (in-flight duplicates acknowledged) before counting.
    let settled = wait_until(Duration::from_secs(120), "empty queues", || async {
        let mut total = 0;
        for queue in &topology.queues {
            total += rabbit.queue_messages(&queue.name).await.unwrap_or(1);
        }
        total == 0
    })
    .await;
    if settled.is_err() {
        fail("the queues did not drain", &supervisor, logs.path());
    }
    reviver.abort();

    // The counts.
    let mut problems = Vec::new();
    let artifacts = check_artifacts(&store, &clusters, &mut problems).await;
    let dead_lettered = check_dead_letters(&rabbit, &topology, &mut problems).await;
    let indexed = shards_indexed().await;
    if indexed != clusters.len() {
        problems.push(format!(
            "{indexed} shards indexed for {} clusters",
            clusters.len()
        ));
    }
    let admins: Vec<(&str, SocketAddr)> = supervisor
        .lock()
        .unwrap()
        .workers
        .iter()
        .map(|(name, worker)| (*name, worker.admin))
        .collect();
    // No secret in any log or metric: the S3 secret key and the broker's password.
    let secrets = [s3.secret_key.clone(), "guest:guest".to_string()];
    let (secrets_seen, duplicates) = secrets_and_duplicates(logs.path(), &admins, &secrets).await;
    let supervisor_state = supervisor.lock().unwrap();
    let deaths: usize = supervisor_state.workers.values().map(|w| w.deaths).sum();
    let kills = supervisor_state.kills_sent;
    let at_failpoints = supervisor_state.killed.saturating_sub(kills);
    let exited = supervisor_state.exited_with_error;
    println!(
        "chaos report (seed {seed}, {} form)",
        if full { "full" } else { "short" }
    );
    println!("faults:");
    for fault in &supervisor_state.faults {
        println!("  {fault}");
    }
    println!(
        "worker deaths: {deaths} ({kills} SIGKILLs sent by the test, {at_failpoints} at failpoints, {exited} exits at start-up with a backend unreachable); per service: {}",
        supervisor_state
            .workers
            .iter()
            .map(|(n, w)| format!("{n} {}", w.deaths))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "items: {} clusters, {} experts, {} candidate sets, {} example shards, {indexed} shards indexed, {} objects checked whole ({} not)",
        clusters.len(),
        artifacts.experts,
        artifacts.candidate_sets,
        artifacts.shards,
        artifacts.objects,
        artifacts.broken,
    );
    println!(
        "duplicates acknowledged without work by the last processes: {duplicates}; duplicate artifacts: {}; dead-lettered: {dead_lettered}; lost: {}",
        artifacts.duplicates,
        clusters.len().saturating_sub(indexed),
    );
    println!(
        "secrets in {} log files and the metrics: {}",
        std::fs::read_dir(logs.path()).map_or(0, |d| d.count()),
        secrets_seen.len()
    );
    drop(supervisor_state);
    supervisor.lock().unwrap().stop_all();
    problems.extend(secrets_seen);
    assert!(problems.is_empty(), "{problems:#?}\n{}", tails(logs.path()));
    // Every stage died at least once.
    for (name, worker) in &supervisor.lock().unwrap().workers {
        assert!(worker.deaths >= 1, "{name} never died");
    }
}
