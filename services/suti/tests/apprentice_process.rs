//! The apprentice-trainer as a process: it indexes accepted shards planted in S3 (s3s-fs on
//! loopback), trains, checkpoints; killed and restarted, it resumes from its checkpoint; serving
//! then loads its latest release and renders with it.

mod common;

use std::time::Duration;

use common::{PLACES, plant_clusters, put, services_env};
use suti_data::{Assets, Scene, Split};
use suti_e2e::{post_generation, start, stop, tails};
use suti_messages::{ApprenticePublishedV1, ClusterMinedV1, ExampleShard, ExamplesAcceptedV1};
use suti_queue::{Broker, Envelope};
use suti_storage::{ObjectKey, ObjectStore, S3Store};
use suti_testkit::{S3Server, declare_pipeline, free_port, unique, wait_until};

/// Accepted-example shards for planted clusters: the cluster's photos as demonstrations, the
/// subject rendered in two other places as targets.
async fn plant_shards(
    store: &dyn ObjectStore,
    mined: &[ClusterMinedV1],
) -> Vec<ExamplesAcceptedV1> {
    let assets = Assets::open_default().unwrap();
    let mut accepted = Vec::new();
    for (i, cluster) in mined.iter().enumerate() {
        let subject = assets
            .catalog()
            .subjects(Split::Train)
            .into_iter()
            .find(|s| s.class.noun == cluster.subject_noun)
            .unwrap();
        let sprite = assets.sprite(&subject).unwrap();
        let mut examples = Vec::new();
        for (k, scene) in [Scene::Snow, Scene::Jungle].into_iter().enumerate() {
            let image = suti_data::render::render_with_box(
                &sprite,
                scene,
                None,
                None,
                90 + (i * 2 + k) as u64,
                64,
            )
            .0;
            let image_key = format!("candidates/{}/b/{k}.png", cluster.cluster_id);
            put(store, &image_key, image.to_png()).await;
            examples.push(suti_messages::AcceptedExample {
                image_key,
                prompt: format!("a {} {}", cluster.subject_noun, scene.phrase()),
                template: "recontextualisation".into(),
                seed: k as u64,
                clip_t: 0.3,
                delta_clip_t: 0.1,
                subject_similarity: 0.7,
            });
        }
        let shard = ExampleShard {
            run_id: "r".into(),
            cluster_id: cluster.cluster_id.clone(),
            subject_noun: cluster.subject_noun.clone(),
            scorer_version: "s".into(),
            demonstrations: cluster
                .image_keys
                .iter()
                .zip(PLACES)
                .map(|(key, place)| suti_messages::ShardDemonstration {
                    image_key: key.clone(),
                    caption: format!("my {} {}", cluster.subject_noun, place.phrase()),
                })
                .collect(),
            examples,
            rejected: Default::default(),
        };
        let shard_key = format!("datasets/apprentice/{}.msgpack", cluster.cluster_id);
        put(store, &shard_key, rmp_serde::to_vec_named(&shard).unwrap()).await;
        accepted.push(ExamplesAcceptedV1 {
            run_id: "r".into(),
            cluster_id: cluster.cluster_id.clone(),
            shard_key,
            accepted: 2,
            rejected: 0,
            scorer_version: "s".into(),
            thresholds: suti_messages::FilterThresholds {
                delta_clip_min: 0.02,
                subject_similarity_min: 0.45,
            },
        });
    }
    accepted
}

/// The apprentice-trainer as a process: it indexes accepted shards, trains, checkpoints; killed
/// with SIGKILL and restarted, it resumes from its checkpoint — the step count and the examples
/// seen continue — and keeps publishing releases to the fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_the_apprentice_trainer_resumes_after_a_kill_and_publishes_releases() {
    let s3 = S3Server::start().await.unwrap();
    let bucket = unique("apprentice");
    let store = S3Store::connect(&s3.options(&bucket), true).await.unwrap();
    let mined = plant_clusters(&store, 3).await;
    let accepted = plant_shards(&store, &mined).await;
    let namespace = unique("apprentice");
    let logs_dir = tempfile::tempdir().unwrap();
    let batch = 4u64;
    let env = services_env(
        &namespace,
        &s3,
        &bucket,
        &[
            ("SUTI__APPRENTICE__BATCH", &batch.to_string()),
            ("SUTI__APPRENTICE__CHECKPOINT_EVERY", "5"),
            ("SUTI__APPRENTICE__RELEASE_EVERY", "10"),
            ("SUTI__APPRENTICE__REFRESH_SECS", "1"),
        ],
    );
    let status = start(
        &[
            "train", "base", "--preset", "test", "--steps", "10", "--batch", "4",
        ],
        &env,
        &logs_dir.path().join("train-base.log"),
    )
    .wait()
    .unwrap();
    assert!(status.success(), "{}", tails(logs_dir.path()));

    let (broker, topology, _cleanup) = declare_pipeline(&namespace, 5).await.unwrap();
    let mut releases = broker.subscribe_fanout(&topology, 16).await.unwrap();
    for message in &accepted {
        let id = format!("examples-{}", message.cluster_id);
        broker
            .publish(
                &topology,
                &Envelope::encode(message, id, Some("r".into())).unwrap(),
            )
            .await
            .unwrap();
    }
    let log = logs_dir.path().join("apprentice-trainer.log");
    let pointer = ObjectKey::new("models/apprentice/checkpoints/LATEST").unwrap();
    let checkpoint_step = || async {
        store
            .get(&pointer)
            .await
            .ok()
            .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<u64>().ok())
            .unwrap_or(0)
    };

    let mut first = start(&["apprentice-trainer"], &env, &log);
    let reached = wait_until(
        Duration::from_secs(240),
        "a checkpoint at step 10",
        || async { checkpoint_step().await >= 10 },
    )
    .await;
    // SIGKILL: no chance to write a last checkpoint.
    let _ = first.kill();
    let _ = first.wait();
    let first_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(reached.is_ok(), "no checkpoint\n{first_log}");
    assert!(
        first_log.contains("starting from the base model"),
        "{first_log}"
    );
    let killed_at = checkpoint_step().await;

    let second = start(&["apprentice-trainer"], &env, &log);
    let mut resumed_release = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while resumed_release.is_none() && tokio::time::Instant::now() < deadline {
        let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_secs(5), releases.next()).await
        else {
            continue;
        };
        let release: ApprenticePublishedV1 = delivery.envelope.decode().unwrap();
        delivery.ack().await.unwrap();
        if release.metrics.steps > killed_at {
            resumed_release = Some(release);
        }
    }
    stop(second);
    let second_log = std::fs::read_to_string(&log).unwrap_or_default();
    let release =
        resumed_release.unwrap_or_else(|| panic!("no release after the restart\n{second_log}"));
    assert!(
        second_log.contains("resumed from the checkpoint")
            && second_log.contains(&format!("step={killed_at}")),
        "{second_log}"
    );
    assert_eq!(
        release.metrics.examples_seen,
        release.metrics.steps * batch,
        "examples seen continue across the restart"
    );
    assert_eq!(release.metrics.clusters, 3);
    let weights = store
        .get(&ObjectKey::new(&release.weights_key).unwrap())
        .await
        .unwrap();
    assert!(!weights.is_empty());
    let after_stop = checkpoint_step().await;
    assert!(
        after_stop > killed_at,
        "a graceful stop checkpoints: {after_stop} > {killed_at}"
    );

    // Serving loads the latest release and renders with it.
    let port = free_port().unwrap();
    let mut serving_env = env.clone();
    serving_env.push(("SUTI__SERVING__LISTEN".into(), format!("127.0.0.1:{port}")));
    let serving = start(
        &["serving"],
        &serving_env,
        &logs_dir.path().join("serving.log"),
    );
    let client = reqwest::Client::new();
    let models_url = format!("http://127.0.0.1:{port}/v1/models");
    let loaded = wait_until(
        Duration::from_secs(60),
        "serving to load a release",
        || async {
            match client.get(&models_url).send().await {
                Ok(r) if r.status().is_success() => r
                    .json::<serde_json::Value>()
                    .await
                    .map(|v| v["data"][0]["id"].as_str().is_some())
                    .unwrap_or(false),
                _ => false,
            }
        },
    )
    .await;
    let models: serde_json::Value = match loaded {
        Ok(()) => client
            .get(&models_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
        Err(_) => {
            stop(serving);
            panic!("serving loaded no release\n{}", tails(logs_dir.path()));
        }
    };
    let latest = store
        .get(&ObjectKey::new("models/apprentice/LATEST").unwrap())
        .await
        .unwrap();
    assert_eq!(
        models["data"][0]["id"].as_str().unwrap(),
        String::from_utf8_lossy(&latest).trim()
    );
    let demo = store
        .get(&ObjectKey::new(&mined[0].image_keys[0]).unwrap())
        .await
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("prompt", format!("a {} in the snow", mined[0].subject_noun))
        .text("steps", "3")
        .part(
            "demonstration",
            reqwest::multipart::Part::bytes(demo.to_vec())
                .mime_str("image/png")
                .unwrap(),
        );
    let (status, body) = post_generation(&client, &format!("http://127.0.0.1:{port}"), form).await;
    stop(serving);
    assert!(
        status.is_success(),
        "{status} {body}\n{}",
        tails(logs_dir.path())
    );
    assert_eq!(body["images"].as_array().unwrap().len(), 1);
    drop(releases);
    broker.close().await;
}
