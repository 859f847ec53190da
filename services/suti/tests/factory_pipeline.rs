//! The data factory across processes (issue 6): crawled clusters in S3 (s3s-fs on loopback),
//! `suti train base` and `suti train scorer` as jobs, then expert-finetuner → generator →
//! clip-filter as three `suti` processes over the real RabbitMQ and Redis, at the `tiny` preset.
//! The accepted triplets must land in storage as dataset shards whose images exist. Also: `suti
//! train base` resumes from its checkpoint to the same model.

mod common;

use std::process::Child;
use std::time::Duration;

use common::{plant_clusters, services_env};
use suti_e2e::{start, stop, tails};
use suti_messages::{ExampleShard, ExamplesAcceptedV1};
use suti_queue::{Broker, Envelope};
use suti_storage::{LocalStore, ObjectKey, ObjectStore, S3Store};
use suti_testkit::{S3Server, declare_pipeline, unique, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_clusters_become_accepted_triplets_through_three_service_processes() {
    let s3 = S3Server::start().await.unwrap();
    let bucket = unique("factory");
    let store = S3Store::connect(&s3.options(&bucket), true).await.unwrap();
    let mined = plant_clusters(&store, 6).await;
    let namespace = unique("factory");
    let logs_dir = tempfile::tempdir().unwrap();
    let env = services_env(
        &namespace,
        &s3,
        &bucket,
        &[
            ("SUTI__EXPERT__STEPS", "30"),
            ("SUTI__GENERATOR__PROMPTS_PER_CLUSTER", "2"),
            ("SUTI__GENERATOR__IMAGES_PER_PROMPT", "2"),
            ("SUTI__GENERATOR__STEPS", "6"),
            // Barely trained models cannot be held to the production thresholds; the filter's
            // judgement is tested on constructed cases with a trained scorer (suti-factory's
            // tests).
            ("SUTI__CLIP_FILTER__DELTA_CLIP_MIN", "-1.0"),
            ("SUTI__CLIP_FILTER__SUBJECT_SIMILARITY_MIN", "-1.0"),
        ],
    );

    // The one-off jobs: base model and scorer from the planted (crawled) pairs.
    for (name, args) in [
        (
            "train-base",
            vec![
                "train", "base", "--preset", "tiny", "--steps", "40", "--batch", "8",
            ],
        ),
        (
            "train-scorer",
            vec!["train", "scorer", "--steps", "60", "--batch", "12"],
        ),
    ] {
        let status = start(&args, &env, &logs_dir.path().join(format!("{name}.log")))
            .wait()
            .unwrap();
        assert!(
            status.success(),
            "{name} failed\n{}",
            tails(logs_dir.path())
        );
    }
    for model in ["base", "scorer"] {
        let latest = store
            .get(&ObjectKey::new(format!("models/{model}/LATEST")).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{model} not published: {e}\n{}", tails(logs_dir.path())));
        assert!(!latest.is_empty());
    }

    let (broker, topology, _cleanup) = declare_pipeline(&namespace, 5).await.unwrap();
    let services: Vec<Child> = ["expert-finetuner", "generator", "clip-filter"]
        .iter()
        .map(|name| start(&[name], &env, &logs_dir.path().join(format!("{name}.log"))))
        .collect();
    let flowing = &mined[..2];
    for cluster in flowing {
        broker
            .publish(
                &topology,
                &Envelope::encode(
                    cluster,
                    format!("cluster-{}", cluster.cluster_id),
                    Some("r".into()),
                )
                .unwrap(),
            )
            .await
            .unwrap();
    }
    let examples = topology.queue_name("examples");
    let arrived = wait_until(Duration::from_secs(300), "two example shards", || async {
        broker.ready_count(&examples).await.unwrap_or(0) >= 2
    })
    .await;
    if arrived.is_err() {
        for child in services {
            stop(child);
        }
        panic!("no shards arrived\n{}", tails(logs_dir.path()));
    }

    let mut consumer = broker.consume(&examples, 4).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let delivery = consumer.next().await.unwrap();
        let accepted: ExamplesAcceptedV1 = delivery.envelope.decode().unwrap();
        let shard: ExampleShard = rmp_serde::from_slice(
            &store
                .get(&ObjectKey::new(&accepted.shard_key).unwrap())
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(shard.cluster_id, accepted.cluster_id);
        assert_eq!(
            accepted.accepted + accepted.rejected,
            4,
            "2 prompts × 2 images"
        );
        assert_eq!(shard.examples.len() as u32, accepted.accepted);
        assert!(
            accepted.accepted > 0,
            "the permissive thresholds accept everything"
        );
        assert_eq!(shard.demonstrations.len(), 4);
        for example in &shard.examples {
            assert!(
                !example.prompt.contains("sks"),
                "the apprentice's prompt has no identifier"
            );
            assert!(example.prompt.contains(&shard.subject_noun));
            let png = store
                .get(&ObjectKey::new(&example.image_key).unwrap())
                .await
                .unwrap();
            let image = suti_data::RgbaImage::from_png(&png).unwrap();
            assert_eq!((image.width, image.height), (32, 32), "tiny renders 32×32");
        }
        let adapter = store
            .list(&format!("experts/{}/", accepted.cluster_id))
            .await
            .unwrap();
        assert_eq!(adapter.len(), 1, "one adapter per cluster and base version");
        seen.push(accepted.cluster_id.clone());
        delivery.ack().await.unwrap();
    }
    seen.sort();
    assert_eq!(seen, vec!["c00".to_string(), "c01".to_string()]);
    drop(consumer);
    for child in services {
        stop(child);
    }
    broker.close().await;
}

/// `suti train base` stopped part-way resumes from its checkpoint and publishes exactly the model
/// an uninterrupted run publishes (versions are hashes of the weights).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_base_resumes_from_its_checkpoint_to_the_same_model() {
    let logs_dir = tempfile::tempdir().unwrap();
    let mut versions = Vec::new();
    for interrupted in [true, false] {
        let root = tempfile::tempdir().unwrap();
        let store = LocalStore::open(root.path()).await.unwrap();
        plant_clusters(&store, 3).await;
        let env: Vec<(String, String)> = vec![
            ("SUTI__STORAGE__BACKEND".into(), "local".into()),
            (
                "SUTI__STORAGE__LOCAL_ROOT".into(),
                root.path().display().to_string(),
            ),
        ];
        let args = [
            "train", "base", "--preset", "test", "--steps", "12", "--batch", "4",
        ];
        let log = logs_dir.path().join("train-base.log");
        if interrupted {
            let mut first = args.to_vec();
            first.extend(["--stop-after", "5"]);
            assert!(
                start(&first, &env, &log).wait().unwrap().success(),
                "{}",
                tails(logs_dir.path())
            );
            assert!(
                std::fs::read_to_string(&log)
                    .unwrap()
                    .contains("stopped at step 5 of 12")
            );
            let pointer = ObjectKey::new("models/base/LATEST").unwrap();
            assert!(
                store.head(&pointer).await.unwrap().is_none(),
                "nothing published yet"
            );
        }
        assert!(
            start(&args, &env, &log).wait().unwrap().success(),
            "{}",
            tails(logs_dir.path())
        );
        let output = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            output.contains("resumed from the checkpoint at step 5"),
            interrupted,
            "{output}"
        );
        // Off a terminal the phase prints plain lines: its start, each tenth with the rate and
        // time left, and its end.
        assert!(
            output.contains("base model: 0/12 steps (0 %)")
                || output.contains("base model: 5/12 steps (42 %)"),
            "{output}"
        );
        assert!(
            output.contains("/12 steps (") && output.contains(" left, "),
            "{output}"
        );
        assert!(output.contains("base model: done, "), "{output}");
        let latest = store
            .get(&ObjectKey::new("models/base/LATEST").unwrap())
            .await
            .unwrap();
        versions.push(String::from_utf8_lossy(&latest).trim().to_string());
    }
    assert_eq!(
        versions[0], versions[1],
        "resumed and uninterrupted runs give the same weights"
    );
}
