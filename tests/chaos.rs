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

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use suti_e2e::{pipeline_env, sample, seed_crawl, signal, start, stop, tails, training_jobs};
use suti_queue::{AmqpBroker, AmqpOptions, Broker, Topology};
use suti_state::{RedisState, SharedState};
use suti_storage::{ObjectKey, ObjectStore, S3Store};
use suti_testkit::{
    PrivateRabbit, PrivateRedis, S3Server, free_port, http_get, unique, wait_until,
};

const SERVICES: [&str; 6] = [
    "crawler-clusterer",
    "expert-finetuner",
    "generator",
    "clip-filter",
    "apprentice-trainer",
    "serving",
];

/// The failpoint each stage's first process is started with: between them they cover a death
/// part-way through the writes, between the writes and the publish, and between the publish and
/// the ack.
fn first_failpoint(service: &str) -> Option<&'static str> {
    match service {
        "crawler-clusterer" => Some("artifacts_partly_written:1"),
        "expert-finetuner" => Some("artifacts_written:2"),
        "generator" => Some("artifacts_partly_written:2"),
        "clip-filter" => Some("published:2"),
        _ => None,
    }
}

/// One worker process per service, restarted whenever it exits; counts what it did.
struct Supervisor {
    env: Vec<(String, String)>,
    logs: PathBuf,
    serving_port: u16,
    workers: BTreeMap<&'static str, Worker>,
    /// Faults injected, in order, with the seconds since the start.
    faults: Vec<String>,
    /// SIGKILLs the test sent.
    kills_sent: usize,
    /// Deaths by SIGKILL (the test's and the failpoints').
    killed: usize,
    /// Exits with an error status (a service that cannot reach a backend at start-up exits 1).
    exited_with_error: usize,
    started: Instant,
}

struct Worker {
    child: Option<Child>,
    admin: SocketAddr,
    incarnation: usize,
    deaths: usize,
}

impl Supervisor {
    fn spawn(&mut self, name: &'static str) {
        let worker = self.workers.get_mut(name).expect("a known service");
        worker.incarnation += 1;
        let mut env = self.env.clone();
        env.push(("SUTI__ADMIN__LISTEN".into(), worker.admin.to_string()));
        env.push((
            "SUTI__SERVING__LISTEN".into(),
            format!("127.0.0.1:{}", self.serving_port),
        ));
        if worker.incarnation == 1
            && let Some(point) = first_failpoint(name)
        {
            env.push(("SUTI_FAILPOINT".into(), point.into()));
        }
        let log = self.logs.join(format!("{name}.{}.log", worker.incarnation));
        worker.child = Some(start(&[name], &env, &log));
    }

    fn note(&mut self, fault: String) {
        let at = self.started.elapsed().as_secs_f64();
        println!("chaos: {at:6.1}s  {fault}");
        self.faults.push(format!("{at:.1} s: {fault}"));
    }

    /// Restarts every worker that has exited, noting how it ended.
    fn revive(&mut self) {
        let mut dead = Vec::new();
        for (name, worker) in &mut self.workers {
            if let Some(child) = &mut worker.child
                && let Ok(Some(status)) = child.try_wait()
            {
                worker.deaths += 1;
                worker.child = None;
                dead.push((*name, status));
            }
        }
        for (name, status) in dead {
            use std::os::unix::process::ExitStatusExt;
            if status.signal() == Some(9) {
                self.killed += 1;
            } else {
                self.exited_with_error += 1;
            }
            self.note(format!("{name} exited ({status}); restarted"));
            self.spawn(name);
        }
    }

    /// SIGKILLs `name`'s process (the supervisor restarts it).
    fn kill(&mut self, name: &'static str, why: &str) {
        if let Some(child) = &self.workers[name].child {
            signal(child, "KILL");
            self.kills_sent += 1;
            self.note(format!("SIGKILL {name} ({why})"));
        }
    }

    fn stop_all(&mut self) {
        for worker in self.workers.values_mut() {
            if let Some(child) = worker.child.take() {
                stop(child);
            }
        }
    }
}

/// Runs the supervisor's revive loop until the returned flag is dropped.
fn keep_alive(supervisor: Arc<Mutex<Supervisor>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            supervisor.lock().unwrap().revive();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Stops every worker and fails the test with their logs' tails.
fn fail(what: &str, supervisor: &Arc<Mutex<Supervisor>>, logs: &Path) -> ! {
    supervisor.lock().unwrap().stop_all();
    panic!("{what}\n{}", tails(logs));
}

/// Whether `bytes` is a whole object of the kind its key names.
fn whole(key: &str, bytes: &[u8]) -> Result<(), String> {
    if key.ends_with(".png") {
        suti_data::RgbaImage::from_png(bytes)
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else if key.ends_with(".safetensors") {
        let len = bytes
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
            .ok_or("shorter than its header length")?;
        let header = bytes.get(8..8 + len).ok_or("header cut short")?;
        let header: serde_json::Value =
            serde_json::from_slice(header).map_err(|e| e.to_string())?;
        let end = header
            .as_object()
            .ok_or("header is not an object")?
            .values()
            .filter_map(|t| t["data_offsets"][1].as_u64())
            .max()
            .unwrap_or(0) as usize;
        (bytes.len() == 8 + len + end)
            .then_some(())
            .ok_or_else(|| format!("{} bytes, header says {}", bytes.len(), 8 + len + end))
    } else if key.ends_with(".msgpack") {
        rmp_serde::from_slice::<serde_json::Value>(bytes)
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else {
        Ok(())
    }
}

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
    let site = suti_data::synthweb::Site::new(
        assets,
        suti_data::synthweb::SiteParams {
            subjects,
            slow_duration: Duration::from_secs(2),
            huge_bytes: 1 << 20,
            ..Default::default()
        },
    );
    let served = suti_data::synthweb::serve(site, "127.0.0.1:0")
        .await
        .unwrap();
    let bucket = unique("chaos");
    let store = S3Store::connect(&s3.options(&bucket), true).await.unwrap();
    let namespace = unique("chaos");
    let (queue_url, state_url) = (rabbit.url(), redis.url());
    let env = pipeline_env(&suti_e2e::Backends {
        queue_url: &queue_url,
        state_url: &state_url,
        namespace: &namespace,
        s3_endpoint: &s3.endpoint,
        bucket: &bucket,
        access_key: &s3.access_key,
        secret_key: &s3.secret_key,
    });
    let topology = Topology::pipeline(&namespace, 5);

    let mut supervisor = Supervisor {
        env: env.clone(),
        logs: logs.path().to_path_buf(),
        serving_port: free_port().unwrap(),
        workers: BTreeMap::new(),
        faults: Vec::new(),
        kills_sent: 0,
        killed: 0,
        exited_with_error: 0,
        started: Instant::now(),
    };
    for name in SERVICES {
        supervisor.workers.insert(
            name,
            Worker {
                child: None,
                admin: SocketAddr::from(([127, 0, 0, 1], free_port().unwrap())),
                incarnation: 0,
                deaths: 0,
            },
        );
        supervisor.spawn(name);
    }
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
            shards_indexed().await >= clusters.len()
                && store
                    .head(&ObjectKey::new("models/apprentice/LATEST").unwrap())
                    .await
                    .ok()
                    .flatten()
                    .is_some()
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
    let keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.as_str().to_string())
        .collect();
    let per_cluster = |prefix: &str| -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for key in &keys {
            if let Some(rest) = key.strip_prefix(prefix) {
                let mut parts = rest.splitn(2, '/');
                let cluster = parts
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches(".msgpack");
                let below = parts.next().unwrap_or_default();
                let set = below.split('/').next().unwrap_or_default().to_string();
                out.entry(cluster.to_string()).or_default().insert(set);
            }
        }
        out
    };
    let experts = per_cluster("experts/");
    let candidates = per_cluster("candidates/");
    let shards = per_cluster("datasets/apprentice/");
    let mut problems = Vec::new();
    let mut duplicate_artifacts = 0;
    for cluster in &clusters {
        for (what, found) in [
            ("expert", &experts),
            ("candidate set", &candidates),
            ("example shard", &shards),
        ] {
            let count = found.get(cluster).map_or(0, BTreeSet::len);
            duplicate_artifacts += count.saturating_sub(1);
            if count != 1 {
                problems.push(format!("cluster {cluster}: {count} {what}s"));
            }
        }
    }
    let mut broken = 0;
    for key in &keys {
        let bytes = store
            .get(&ObjectKey::new(key.clone()).unwrap())
            .await
            .unwrap();
        if let Err(e) = whole(key, &bytes) {
            broken += 1;
            problems.push(format!("{key} is not whole: {e}"));
        }
        if key.split('/').any(|part| part.starts_with('.')) {
            problems.push(format!("{key} is a temporary object"));
        }
    }
    let mut dead_lettered = 0;
    for queue in &topology.queues {
        let dead = queue.dead_name();
        let count = rabbit.queue_messages(&dead).await.unwrap();
        dead_lettered += count;
        if count > 0 {
            problems.push(format!("{dead} holds {count} messages"));
        }
    }
    let indexed = shards_indexed().await;
    if indexed != clusters.len() {
        problems.push(format!(
            "{indexed} shards indexed for {} clusters",
            clusters.len()
        ));
    }
    // Work the surviving processes skipped as already done (earlier ones took their counts with
    // them).
    let mut duplicates = 0.0;
    let admins: Vec<(&str, SocketAddr)> = supervisor
        .lock()
        .unwrap()
        .workers
        .iter()
        .map(|(name, worker)| (*name, worker.admin))
        .collect();
    // No secret in any log or metric: the S3 secret key and the broker's password.
    let secrets = [s3.secret_key.clone(), "guest:guest".to_string()];
    let mut secrets_seen = Vec::new();
    for entry in std::fs::read_dir(logs.path()).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for secret in &secrets {
            if text.contains(secret.as_str()) {
                secrets_seen.push(format!("{} holds {secret:?}", entry.path().display()));
            }
        }
    }
    for (name, admin) in admins {
        if let Ok((_, metrics)) = http_get(admin, "/metrics").await {
            for secret in &secrets {
                if metrics.contains(secret.as_str()) {
                    secrets_seen.push(format!("{name}'s metrics hold {secret:?}"));
                }
            }
            if name == "serving" {
                continue;
            }
            duplicates += sample(
                &metrics,
                &format!("suti_{}_processed_total", name.replace('-', "_")),
                "outcome=\"duplicate\"",
            );
        }
    }
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
        "items: {} clusters, {} experts, {} candidate sets, {} example shards, {indexed} shards indexed, {} objects checked whole ({broken} not)",
        clusters.len(),
        experts.values().map(BTreeSet::len).sum::<usize>(),
        candidates.values().map(BTreeSet::len).sum::<usize>(),
        shards.values().map(BTreeSet::len).sum::<usize>(),
        keys.len(),
    );
    println!(
        "duplicates acknowledged without work by the last processes: {duplicates}; duplicate artifacts: {duplicate_artifacts}; dead-lettered: {dead_lettered}; lost: {}",
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

/// S3 is away when a service starts: the process does not exit; it keeps trying, reports not ready
/// (check `backends`) on its admin port meanwhile, and its backends are ready once S3 answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_a_service_started_while_s3_is_away_waits_for_it_and_reports_not_ready() {
    let logs = tempfile::tempdir().unwrap();
    let mut s3 = S3Server::start().await.unwrap();
    let bucket = unique("b");
    // The bucket exists before the outage; the service only has to reach it.
    drop(S3Store::connect(&s3.options(&bucket), true).await.unwrap());
    s3.suspend();
    let namespace = unique("t");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let env: Vec<(String, String)> = [
        ("SUTI__QUEUE__URL", suti_testkit::amqp_url()),
        ("SUTI__QUEUE__NAMESPACE", namespace.clone()),
        ("SUTI__STATE__URL", suti_testkit::redis_url()),
        ("SUTI__STATE__NAMESPACE", namespace.clone()),
        ("SUTI__STORAGE__BACKEND", "s3".into()),
        ("SUTI__STORAGE__ENDPOINT", s3.endpoint.clone()),
        ("SUTI__STORAGE__BUCKET", bucket.clone()),
        ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
        ("SUTI__ADMIN__LISTEN", admin.to_string()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let topology = Topology::pipeline(&namespace, 5);
    let _cleanup = suti_testkit::TopologyGuard::new(&topology);
    let mut child = start(
        &["apprentice-trainer"],
        &env,
        &logs.path().join("apprentice-trainer.log"),
    );
    let not_ready = wait_until(Duration::from_secs(60), "a not-ready answer", || async {
        http_get(admin, "/health/readyz")
            .await
            .is_ok_and(|(status, body)| status == 503 && body.contains("unreachable"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let exited = child.try_wait().unwrap();
    s3.resume().await.unwrap();
    // Its backends are then ready (the trainer itself still waits for a base model, and says so).
    let ready = wait_until(
        Duration::from_secs(60),
        "backends once S3 answers",
        || async {
            http_get(admin, "/health/readyz")
                .await
                .is_ok_and(|(_, body)| {
                    serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|report| {
                        report["checks"]["backends"] == "ok" && report["checks"]["storage"] == "ok"
                    })
                })
        },
    )
    .await;
    let log = tails(logs.path());
    stop(child);
    assert!(
        not_ready.is_ok(),
        "no not-ready answer while S3 was away\n{log}"
    );
    assert!(
        exited.is_none(),
        "the service exited while S3 was away\n{log}"
    );
    assert!(
        ready.is_ok(),
        "backends not ready after S3 came back\n{log}"
    );
    assert!(log.contains("retrying"), "{log}");
}
