//! The data factory across processes (issue 6): crawled clusters in S3 (s3s-fs on loopback),
//! `suti train base` and `suti train scorer` as jobs, then expert-finetuner → generator →
//! clip-filter as three `suti` processes over the real RabbitMQ and Redis, at the `tiny` preset.
//! The accepted triplets must land in storage as dataset shards whose images exist.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use suti_data::{Assets, Scene, Split};
use suti_e2e::stop;
use suti_messages::{
    ApprenticePublishedV1, ClusterManifest, ClusterMember, ClusterMinedV1, ExampleShard,
    ExamplesAcceptedV1,
};
use suti_queue::{AmqpBroker, AmqpOptions, Broker, Envelope, Topology};
use suti_storage::{LocalStore, ObjectKey, ObjectStore, S3Store};
use suti_testkit::{S3Server, TopologyGuard, amqp_url, redis_url, unique, wait_until};

/// Places each test cluster's photos show; the generator prompts for the others.
const PLACES: [Scene; 4] = [
    Scene::Beach,
    Scene::City,
    Scene::WoodenFloor,
    Scene::PinkFabric,
];

/// Writes clusters as the crawler would: normalised 64-pixel PNGs and a manifest per cluster.
async fn plant_clusters(store: &dyn ObjectStore, count: usize) -> Vec<ClusterMinedV1> {
    let assets = Assets::open_default().expect("EmojiWorld assets (scripts/fetch-assets)");
    let subjects: Vec<_> = assets
        .catalog()
        .subjects(Split::Train)
        .into_iter()
        .step_by(41)
        .take(count)
        .collect();
    let mut mined = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        let sprite = assets.sprite(subject).unwrap();
        let noun = subject.class.noun.clone();
        let cluster_id = format!("c{i:02}");
        let mut members = Vec::new();
        for (k, &scene) in PLACES.iter().enumerate() {
            let image = suti_data::render::render_with_box(
                &sprite,
                scene,
                None,
                None,
                (i * 10 + k) as u64,
                64,
            )
            .0;
            let image_key = format!("images/{cluster_id}-{k}.png");
            store
                .put(
                    &ObjectKey::new(&image_key).unwrap(),
                    Bytes::from(image.to_png()),
                )
                .await
                .unwrap();
            members.push(ClusterMember {
                image_key: image_key.clone(),
                raw_key: format!("raw/{cluster_id}-{k}"),
                source_url: format!("http://example.test/{cluster_id}/{k}.png"),
                caption: format!("my {noun} {}", scene.phrase()),
            });
        }
        let manifest = ClusterManifest {
            run_id: "r".into(),
            cluster_id: cluster_id.clone(),
            subject_noun: noun.clone(),
            group_key: format!("http://example.test/{cluster_id}.html"),
            title: format!("{noun} pictures"),
            members: members.clone(),
        };
        let manifest_key = format!("clusters/{cluster_id}.msgpack");
        store
            .put(
                &ObjectKey::new(&manifest_key).unwrap(),
                Bytes::from(rmp_serde::to_vec_named(&manifest).unwrap()),
            )
            .await
            .unwrap();
        mined.push(ClusterMinedV1 {
            run_id: "r".into(),
            cluster_id,
            manifest_key,
            subject_noun: noun,
            image_keys: members.into_iter().map(|m| m.image_key).collect(),
        });
    }
    mined
}

fn suti(args: &[&str], env: &[(String, String)], log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_suti"))
        .args(args)
        .env_remove("SUTI_CONFIG")
        .envs(env.iter().cloned())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("starting suti")
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for name in [
        "train-base",
        "train-scorer",
        "expert-finetuner",
        "generator",
        "clip-filter",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        out.push_str(&format!("--- {name} (last lines)\n"));
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_clusters_become_accepted_triplets_through_three_service_processes() {
    let s3 = S3Server::start().await.unwrap();
    let bucket = unique("factory");
    let store = S3Store::connect(&s3.options(&bucket), true).await.unwrap();
    let mined = plant_clusters(&store, 6).await;
    let namespace = unique("factory");
    let logs_dir = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = [
        ("SUTI__QUEUE__URL", amqp_url()),
        ("SUTI__QUEUE__NAMESPACE", namespace.clone()),
        ("SUTI__STATE__URL", redis_url()),
        ("SUTI__STATE__NAMESPACE", namespace.clone()),
        ("SUTI__STORAGE__BACKEND", "s3".into()),
        ("SUTI__STORAGE__ENDPOINT", s3.endpoint.clone()),
        ("SUTI__STORAGE__BUCKET", bucket.clone()),
        ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
        ("SUTI__ADMIN__LISTEN", "127.0.0.1:0".into()),
        ("SUTI__MODELS__POLL_SECS", "1".into()),
        ("SUTI__EXPERT__STEPS", "30".into()),
        ("SUTI__GENERATOR__PROMPTS_PER_CLUSTER", "2".into()),
        ("SUTI__GENERATOR__IMAGES_PER_PROMPT", "2".into()),
        ("SUTI__GENERATOR__STEPS", "6".into()),
        // Barely trained models cannot be held to the production thresholds; the filter's
        // judgement is tested on constructed cases with a trained scorer (suti-factory's tests).
        ("SUTI__CLIP_FILTER__DELTA_CLIP_MIN", "-1.0".into()),
        ("SUTI__CLIP_FILTER__SUBJECT_SIMILARITY_MIN", "-1.0".into()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

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
        let status = suti(&args, &env, &logs_dir.path().join(format!("{name}.log")))
            .wait()
            .unwrap();
        assert!(status.success(), "{name} failed\n{}", logs(logs_dir.path()));
    }
    for model in ["base", "scorer"] {
        let latest = store
            .get(&ObjectKey::new(format!("models/{model}/LATEST")).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{model} not published: {e}\n{}", logs(logs_dir.path())));
        assert!(!latest.is_empty());
    }

    let topology = Topology::pipeline(&namespace, 5);
    let _cleanup = TopologyGuard::new(&topology);
    let broker = AmqpBroker::connect(AmqpOptions::new(amqp_url()))
        .await
        .unwrap();
    broker.declare(&topology).await.unwrap();
    let services: Vec<Child> = ["expert-finetuner", "generator", "clip-filter"]
        .iter()
        .map(|name| suti(&[name], &env, &logs_dir.path().join(format!("{name}.log"))))
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
        panic!("no shards arrived\n{}", logs(logs_dir.path()));
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
                suti(&first, &env, &log).wait().unwrap().success(),
                "{}",
                logs(logs_dir.path())
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
            suti(&args, &env, &log).wait().unwrap().success(),
            "{}",
            logs(logs_dir.path())
        );
        let output = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            output.contains("resumed from the checkpoint at step 5"),
            interrupted,
            "{output}"
        );
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
            store
                .put(
                    &ObjectKey::new(&image_key).unwrap(),
                    Bytes::from(image.to_png()),
                )
                .await
                .unwrap();
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
        };
        let shard_key = format!("datasets/apprentice/{}.msgpack", cluster.cluster_id);
        store
            .put(
                &ObjectKey::new(&shard_key).unwrap(),
                Bytes::from(rmp_serde::to_vec_named(&shard).unwrap()),
            )
            .await
            .unwrap();
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
    let env: Vec<(String, String)> = [
        ("SUTI__QUEUE__URL", amqp_url()),
        ("SUTI__QUEUE__NAMESPACE", namespace.clone()),
        ("SUTI__STATE__URL", redis_url()),
        ("SUTI__STATE__NAMESPACE", namespace.clone()),
        ("SUTI__STORAGE__BACKEND", "s3".into()),
        ("SUTI__STORAGE__ENDPOINT", s3.endpoint.clone()),
        ("SUTI__STORAGE__BUCKET", bucket.clone()),
        ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
        ("SUTI__ADMIN__LISTEN", "127.0.0.1:0".into()),
        ("SUTI__MODELS__POLL_SECS", "1".into()),
        ("SUTI__APPRENTICE__BATCH", batch.to_string()),
        ("SUTI__APPRENTICE__CHECKPOINT_EVERY", "5".into()),
        ("SUTI__APPRENTICE__RELEASE_EVERY", "10".into()),
        ("SUTI__APPRENTICE__REFRESH_SECS", "1".into()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let status = suti(
        &[
            "train", "base", "--preset", "test", "--steps", "10", "--batch", "4",
        ],
        &env,
        &logs_dir.path().join("train-base.log"),
    )
    .wait()
    .unwrap();
    assert!(status.success(), "{}", logs(logs_dir.path()));

    let topology = Topology::pipeline(&namespace, 5);
    let _cleanup = TopologyGuard::new(&topology);
    let broker = AmqpBroker::connect(AmqpOptions::new(amqp_url()))
        .await
        .unwrap();
    broker.declare(&topology).await.unwrap();
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

    let mut first = suti(&["apprentice-trainer"], &env, &log);
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

    let second = suti(&["apprentice-trainer"], &env, &log);
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
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut serving_env = env.clone();
    serving_env.push(("SUTI__SERVING__LISTEN".into(), format!("127.0.0.1:{port}")));
    let serving = suti(
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
            panic!("serving loaded no release\n{}", logs(logs_dir.path()));
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
    let answer = client
        .post(format!("http://127.0.0.1:{port}/v1/generations"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.unwrap();
    stop(serving);
    assert!(
        status.is_success(),
        "{status} {body}\n{}",
        logs(logs_dir.path())
    );
    assert_eq!(body["images"].as_array().unwrap().len(), 1);
    drop(releases);
    broker.close().await;
}
