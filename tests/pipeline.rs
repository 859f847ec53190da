//! The whole pipeline across processes (issue 8): the six services as separate `suti` processes
//! over the real RabbitMQ and Redis and an S3 server (s3s-fs) on loopback, at a minimal preset, on
//! a small synthetic web. The test seeds a crawl, runs the two training jobs when the clusters are
//! in, waits for an apprentice release, asks serving to render held-out subjects from their
//! demonstrations, and reads on each service's metrics endpoint the work that flowed through it.
//! Then Debian's Prometheus scrapes the six services and RabbitMQ, and every query of the Grafana
//! dashboards (issue 9) is run against it: each returns data, except those that only have series
//! once something has failed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use suti_data::{Assets, Scene, Split};
use suti_e2e::{
    SERVICES, has_apprentice_release, pipeline_env, post_generation, sample, seed_crawl,
    serve_pipeline_web, start, stop, tails, training_jobs,
};
use suti_queue::Broker;
use suti_storage::{ObjectStore, S3Store};
use suti_testkit::{
    S3Server, declare_pipeline, free_port, http_get, loopback_backends_env, unique, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_the_six_services_as_processes_turn_a_crawl_into_a_served_apprentice() {
    let logs = tempfile::tempdir().unwrap();
    let assets = Assets::open_default().expect("EmojiWorld assets (scripts/fetch-assets)");
    let served = serve_pipeline_web(assets.clone(), 5).await;
    let s3 = S3Server::start().await.unwrap();
    let bucket = unique("e2e");
    let store = S3Store::connect(&s3.options(&bucket), true).await.unwrap();
    let namespace = unique("e2e");
    let mut backends = loopback_backends_env(&namespace);
    backends.extend(s3.storage_env(&bucket));
    let base_env = pipeline_env(backends);

    let (broker, topology, _cleanup) = declare_pipeline(&namespace, 5).await.unwrap();

    let serving_port = free_port().unwrap();
    let mut admin = Vec::new();
    let mut children = Vec::new();
    for name in SERVICES {
        let port = free_port().unwrap();
        let mut env = base_env.clone();
        env.push(("SUTI__ADMIN__LISTEN".into(), format!("127.0.0.1:{port}")));
        env.push((
            "SUTI__SERVING__LISTEN".into(),
            format!("127.0.0.1:{serving_port}"),
        ));
        children.push(start(
            &[name],
            &env,
            &logs.path().join(format!("{name}.log")),
        ));
        admin.push((name, SocketAddr::from(([127, 0, 0, 1], port))));
    }
    let stop_all = |children: Vec<Child>| {
        for child in children {
            stop(child);
        }
    };

    // Seed the crawl; the training jobs run once the clusters are in.
    seed_crawl(&broker, &topology, "e2e", &served.base_url()).await;
    let crawler_admin = admin[0].1;
    let crawled = wait_until(Duration::from_secs(180), "the crawl to finish", || async {
        let (_, metrics) = http_get(crawler_admin, "/metrics")
            .await
            .unwrap_or_default();
        sample(
            &metrics,
            "suti_crawler_clusterer_processed_total",
            "outcome=\"done\"",
        ) >= 1.0
    })
    .await;
    if crawled.is_err() {
        stop_all(children);
        panic!("the crawl did not finish\n{}", tails(logs.path()));
    }
    let clusters = store.list("clusters/").await.unwrap().len();
    assert!(clusters >= 3, "{clusters} clusters\n{}", tails(logs.path()));
    for (name, args) in training_jobs() {
        let ok = start(&args, &base_env, &logs.path().join(format!("{name}.log")))
            .wait()
            .unwrap()
            .success();
        if !ok {
            stop_all(children);
            panic!("{name} failed\n{}", tails(logs.path()));
        }
    }

    // Experts, candidates, shards, then an apprentice release that serving loads.
    let released = wait_until(Duration::from_secs(300), "an apprentice release", || {
        has_apprentice_release(&store)
    })
    .await;
    if released.is_err() {
        stop_all(children);
        panic!("no apprentice release\n{}", tails(logs.path()));
    }
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{serving_port}");
    let loaded = wait_until(
        Duration::from_secs(60),
        "serving to load the release",
        || async {
            client
                .get(format!("{base}/v1/models"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
    if loaded.is_err() {
        stop_all(children);
        panic!("serving loaded no release\n{}", tails(logs.path()));
    }

    // Held-out subjects (never crawled) from their demonstrations.
    let held_out: Vec<_> = assets
        .catalog()
        .subjects(Split::HeldOut)
        .into_iter()
        .take(2)
        .collect();
    for subject in &held_out {
        let sprite = assets.sprite(subject).unwrap();
        let mut form = reqwest::multipart::Form::new()
            .text("prompt", format!("a {} in the snow", subject.class.noun))
            .text("num_images", "2")
            .text("steps", "4");
        for (k, scene) in [Scene::Beach, Scene::City].into_iter().enumerate() {
            let demo =
                suti_data::render::render_with_box(&sprite, scene, None, None, k as u64, 64).0;
            form = form
                .part(
                    "demonstration",
                    reqwest::multipart::Part::bytes(demo.to_png())
                        .mime_str("image/png")
                        .unwrap(),
                )
                .text(
                    "caption",
                    format!("my {} {}", subject.class.noun, scene.phrase()),
                );
        }
        let (status, body) = post_generation(&client, &base, form).await;
        assert!(status.is_success(), "{status} {body}");
        assert_eq!(body["images"].as_array().unwrap().len(), 2);
    }

    // Every stage's metrics show the work that went through it.
    let mut seen = Vec::new();
    for (name, addr) in &admin {
        let (status, metrics) = http_get(*addr, "/metrics").await.unwrap();
        assert_eq!(status, 200, "{name}");
        let metric = name.replace('-', "_");
        let value = if *name == "serving" {
            sample(&metrics, "suti_serving_requests_total", "status=\"200\"")
        } else {
            sample(
                &metrics,
                &format!("suti_{metric}_processed_total"),
                "outcome=\"done\"",
            )
        };
        seen.push(format!("{name}: {value}"));
        assert!(value >= 1.0, "{name} shows no work: {seen:?}\n{metrics}");
    }
    println!("work per service: {seen:?}");
    dashboards_return_data(&admin, logs.path()).await;
    stop_all(children);
    broker.close().await;
}

/// Series that exist only once something has failed (an error of some kind, a 5xx, a 429): a
/// healthy run leaves their panels empty.
fn only_after_failures(expr: &str) -> bool {
    expr.contains("_errors_total")
        || expr.contains(r#"status=~"5.."#)
        || expr.contains(r#"status="429""#)
}

/// Starts Prometheus against the services' admin ports (labelled as the scrape configuration of
/// deploy/prometheus labels them) and RabbitMQ's per-object metrics, then runs every query of the
/// committed dashboards and asserts each returns data.
async fn dashboards_return_data(admin: &[(&str, SocketAddr)], logs: &Path) {
    let prometheus = which("prometheus")
        .expect("Debian's prometheus is needed (scripts/test and scripts/check-deploy install it)");
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
    config.push_str("  - job_name: suti\n    static_configs:\n");
    for (name, addr) in admin {
        config.push_str(&format!(
            "      - targets: [\"{addr}\"]\n        labels: {{service: {name}}}\n"
        ));
    }
    config.push_str(
        "  - job_name: rabbitmq\n    metrics_path: /metrics/per-object\n    static_configs:\n      - targets: [\"127.0.0.1:15692\"]\n",
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port().unwrap();
    let mut child = Command::new(prometheus)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(logs.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let query = |expr: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let answer: serde_json::Value = client
                .get(format!("{base}/api/v1/query"))
                .query(&[("query", expr.as_str())])
                .send()
                .await?
                .json()
                .await?;
            query_result(answer)
        }
    };
    // Every target scraped at least three times, so that rates have samples to work with.
    let targets = admin.len() + 1;
    wait_until(
        Duration::from_secs(60),
        "Prometheus to scrape every target (RabbitMQ's needs rabbitmq_prometheus: scripts/services-up enables it)",
        || {
            let up = query("min_over_time(up[1m]) == 1 and count_over_time(up[1m]) >= 3".into());
            async move { up.await.is_ok_and(|series| series.len() == targets) }
        },
    )
    .await
    .unwrap();

    // Every service exports its readiness with each scrape, and all six are ready by now.
    let ready = query(r#"suti_ready{job="suti"} == 1"#.into())
        .await
        .unwrap();
    assert_eq!(ready.len(), admin.len(), "services ready: {ready:?}");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/suti/files/dashboards");
    let mut report = Vec::new();
    let mut empty = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let board: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                let concrete = expr
                    .replace("$__rate_interval", "30s")
                    .replace("$service", "generator");
                let series = query(concrete.clone()).await.unwrap_or_else(|e| {
                    panic!("{}: {expr}: {e}", path.display());
                });
                report.push(format!("{:>3} series  {}", series.len(), panel["title"]));
                if series.is_empty() && !only_after_failures(expr) {
                    empty.push(format!(
                        "{}: {}: {concrete}",
                        path.display(),
                        panel["title"]
                    ));
                }
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    println!("dashboard queries:\n{}", report.join("\n"));
    assert!(
        report.len() >= 20,
        "the three dashboards' queries: {report:?}"
    );
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );
}

/// The `result` array of a Prometheus query answer (a refused query fails the test).
fn query_result(answer: serde_json::Value) -> Result<Vec<serde_json::Value>, reqwest::Error> {
    if answer["status"] != "success" {
        panic!("Prometheus refused a query: {answer}");
    }
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// A program on the PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}
