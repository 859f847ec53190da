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
