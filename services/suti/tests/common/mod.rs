//! What the factory's process tests share: clusters planted in storage as the crawler writes
//! them, and the environment of the `suti` processes that work on them.

use bytes::Bytes;
use suti_data::{Assets, Scene, Split};
use suti_messages::{ClusterManifest, ClusterMember, ClusterMinedV1};
use suti_storage::{ObjectKey, ObjectStore};
use suti_testkit::{S3Server, env_vars, loopback_backends_env};

/// Places each test cluster's photos show; the generator prompts for the others.
pub const PLACES: [Scene; 4] = [
    Scene::Beach,
    Scene::City,
    Scene::WoodenFloor,
    Scene::PinkFabric,
];

/// Writes `body` at `key`.
pub async fn put(store: &dyn ObjectStore, key: &str, body: Vec<u8>) {
    store
        .put(&ObjectKey::new(key).unwrap(), Bytes::from(body))
        .await
        .unwrap();
}

/// Writes clusters as the crawler would: normalised 64-pixel PNGs and a manifest per cluster.
pub async fn plant_clusters(store: &dyn ObjectStore, count: usize) -> Vec<ClusterMinedV1> {
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
            put(store, &image_key, image.to_png()).await;
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
        put(
            store,
            &manifest_key,
            rmp_serde::to_vec_named(&manifest).unwrap(),
        )
        .await;
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

/// The environment of the `suti` processes of a test: the machine's RabbitMQ and Redis under
/// `namespace`, `bucket` on `s3`, an admin port of their own, models followed every second, and
/// the test's `settings`.
pub fn services_env(
    namespace: &str,
    s3: &S3Server,
    bucket: &str,
    settings: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = loopback_backends_env(namespace);
    env.extend(s3.storage_env(bucket));
    env.extend(env_vars([
        ("SUTI__ADMIN__LISTEN", "127.0.0.1:0"),
        ("SUTI__MODELS__POLL_SECS", "1"),
    ]));
    env.extend(env_vars(settings.iter().copied()));
    env.extend(env_vars([("RUST_LOG", "info")]));
    env
}
