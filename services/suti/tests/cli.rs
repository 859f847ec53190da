//! The `suti` binary as a user runs it.

use std::process::{Command, Output};

fn suti(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_suti"));
    command.args(args).env_remove("SUTI_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("running suti")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_prints_the_crate_version() {
    let out = suti(&["version"], &[]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with(&format!("suti {}", env!("CARGO_PKG_VERSION"))));
    let out = suti(&["version", "--json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn config_check_prints_the_effective_redacted_configuration() {
    let out = suti(
        &["config", "check", "expert-finetuner"],
        &[("SUTI__QUEUE__URL", "amqp://suti:hunter2@rabbit:5672/%2f")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("consumes queue \"clusters\""), "{stdout}");
    assert!(
        stdout.contains("amqp://suti:***@rabbit:5672/%2f"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"));
    assert!(text(&out.stderr).contains("configuration of expert-finetuner is valid"));
}

#[test]
fn config_check_fails_with_the_reason_on_bad_configuration() {
    let out = suti(
        &["config", "check", "generator"],
        &[("SUTI__QUEUE__URLL", "x")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("urll"), "{}", text(&out.stderr));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("suti.yaml");
    std::fs::write(&file, "stages:\n  generator:\n    prefetch: 0\n").unwrap();
    let out = suti(
        &[
            "config",
            "check",
            "generator",
            "--config",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("stages.generator.prefetch must be at least 1"));

    let out = suti(&["config", "check", "no-such-service"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("expected one of crawler-clusterer"));
}

#[test]
fn config_defaults_print_the_commented_defaults() {
    let out = suti(&["config", "defaults"], &[]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("SUTI__<SECTION>__<KEY>"));
}

#[test]
fn bench_queue_prints_rates_for_the_in_process_broker() {
    let out = suti(
        &[
            "bench",
            "queue",
            "--backend",
            "in-process",
            "--messages",
            "2000",
            "--single",
            "100",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in [
        "one confirm per message",
        "confirmed batches of 500",
        "consume + ack",
    ] {
        assert!(stdout.contains(line), "{stdout}");
    }
    assert!(stdout.contains("msg/s"));
}

#[test]
fn amqp_bench_queue_measures_the_real_broker() {
    let out = suti(
        &["bench", "queue", "--messages", "2000", "--single", "50"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("backend amqp"));
}

#[test]
fn bench_render_prints_images_per_second() {
    let out = suti(
        &["bench", "render", "--images", "50", "--sizes", "32,64"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("32×32") && stdout.contains("64×64"),
        "{stdout}"
    );
    assert!(stdout.contains("images/s"));
}

#[test]
fn synthweb_writes_the_benchmark_set_and_lists_held_out_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let out = suti(
        &[
            "synthweb",
            "benchmark",
            "--out",
            dir.path().to_str().unwrap(),
            "--subjects",
            "2",
            "--size",
            "32",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let subjects = manifest["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 2);
    for subject in subjects {
        assert_eq!(subject["demos"].as_array().unwrap().len(), 5);
        assert_eq!(subject["prompts"].as_array().unwrap().len(), 25);
        let first = subject["prompts"][0]["true_image"].as_str().unwrap();
        assert!(dir.path().join(first).exists());
    }
    let out = suti(&["synthweb", "subjects", "--split", "held-out"], &[]);
    assert!(out.status.success());
    let listed = text(&out.stdout);
    for subject in subjects {
        assert!(
            listed.contains(subject["id"].as_str().unwrap()),
            "benchmark subjects are held out"
        );
    }
}

#[test]
fn bench_train_and_sample_print_throughput_for_a_preset() {
    let out = suti(
        &[
            "bench",
            "train",
            "--presets",
            "test",
            "--batch",
            "4",
            "--steps",
            "1",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("img/s"), "{}", text(&out.stdout));
    let out = suti(
        &[
            "bench",
            "sample",
            "--presets",
            "test",
            "--steps",
            "2",
            "--images",
            "1",
            "--demos",
            "1",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("cached") && stdout.contains("cache saves"),
        "{stdout}"
    );
}

#[test]
fn bench_json_names_the_machine_and_holds_the_figures() {
    let out = suti(
        &[
            "bench", "render", "--images", "20", "--sizes", "32", "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["benchmark"], "render");
    let machine = &doc["machine"];
    assert!(machine["matmul_backend"].as_str().unwrap().contains("gemm"));
    assert!(machine["vector_features"].is_array());
    assert!(
        doc["results"][0]["render_images_per_second"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    let out = suti(
        &[
            "bench",
            "train",
            "--presets",
            "test",
            "--batch",
            "4",
            "--steps",
            "1",
            "--json",
        ],
        &[("RAYON_NUM_THREADS", "2")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["machine"]["threads"], "2");
    let result = &doc["results"][0];
    assert_eq!(result["preset"], "test");
    assert!(result["images_per_second"].as_f64().unwrap() > 0.0);
}

/// `suti crawl` puts one crawl request, with the options given, on the real broker's queue of the
/// configured namespace; a request that could not be crawled is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_crawl_publishes_the_request_the_crawler_takes() {
    use suti_queue::Broker;

    let namespace = suti_testkit::unique("crawlcmd");
    let (broker, topology, _guard) = suti_testkit::declare_pipeline(&namespace, 5).await.unwrap();
    let env = [
        ("SUTI__QUEUE__URL", suti_testkit::amqp_url()),
        ("SUTI__QUEUE__NAMESPACE", namespace.clone()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    for (args, why) in [
        (vec!["crawl"], "nothing to crawl"),
        (
            vec!["crawl", "--seed", "ftp://example.org/"],
            "only http and https",
        ),
        (
            vec!["crawl", "--seed", "http://example.org/", "--run-id", "a b"],
            "--run-id",
        ),
    ] {
        let out = suti(&args, &env);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            text(&out.stderr).contains(why),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }

    let out = suti(
        &[
            "crawl",
            "--seed",
            "http://synthweb:8000/",
            "--warc",
            "warc/site.warc.gz",
            "--run-id",
            "cli-run",
            "--max-pages",
            "50",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("crawl cli-run requested"));

    let mut consumer = broker
        .consume(&topology.queue_name("crawl.requests"), 1)
        .await
        .unwrap();
    let delivery = tokio::time::timeout(std::time::Duration::from_secs(10), consumer.next())
        .await
        .expect("the request reaches the crawler's queue")
        .expect("a delivery");
    let request: suti_messages::CrawlRequestV1 = delivery.envelope.decode().unwrap();
    assert_eq!(request.run_id, "cli-run");
    assert_eq!(request.seed_urls, vec!["http://synthweb:8000/".to_string()]);
    assert_eq!(request.warc_keys, vec!["warc/site.warc.gz".to_string()]);
    assert_eq!(request.limits.max_pages, 50);
    assert_eq!(
        request.limits.max_depth,
        suti_messages::CrawlLimits::default().max_depth
    );
    delivery.ack().await.unwrap();
}
