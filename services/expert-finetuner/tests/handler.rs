//! The expert-finetuner's handler on local storage: a cluster becomes an adapter under
//! `experts/{cluster}/{base}` and an `expert.trained` message; a malformed or missing manifest is
//! a permanent failure (dead-lettered), not a retry.

use std::sync::Arc;

use bytes::Bytes;
use candle_core::Device;
use expert_finetuner::ExpertHandler;
use suti_factory::artifacts::{BASE_MODEL, base_loader};
use suti_factory::base::untrained_base_model;
use suti_factory::bundle::{CONFIG_FILE, WEIGHTS_FILE};
use suti_messages::{ClusterManifest, ClusterMember, ClusterMinedV1, ExpertTrainedV1};
use suti_models::DitConfig;
use suti_runtime::config::ExpertStageConfig;
use suti_stage::{HandleContext, Handler, VersionedModels, publish_model_version};
use suti_storage::{LocalStore, ObjectKey, SharedStore};

async fn setup() -> (tempfile::TempDir, SharedStore, ExpertHandler) {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(LocalStore::open(dir.path()).await.unwrap());
    let config = DitConfig {
        max_demos: 0,
        ..DitConfig::test()
    };
    let (config_json, weights) = untrained_base_model(&config, 1, &Device::Cpu)
        .unwrap()
        .to_bytes()
        .unwrap();
    publish_model_version(
        &store,
        BASE_MODEL,
        "b1",
        vec![(CONFIG_FILE, config_json), (WEIGHTS_FILE, weights)],
    )
    .await
    .unwrap();
    let text = suti_factory::towers::load_text_encoder(
        &suti_factory::towers::text_encoder_dir(""),
        &Device::Cpu,
    )
    .unwrap();
    let handler = ExpertHandler {
        base: Arc::new(VersionedModels::new(
            BASE_MODEL,
            store.clone(),
            base_loader(Device::Cpu),
        )),
        text: Arc::new(text),
        config: ExpertStageConfig {
            steps: 3,
            batch: 2,
            rank: 2,
            ..ExpertStageConfig::default()
        },
        metrics: None,
    };
    (dir, store, handler)
}

fn context(store: &SharedStore) -> HandleContext {
    HandleContext {
        message_id: "m".into(),
        correlation_id: None,
        delivery_count: 0,
        storage: store.clone(),
        state: Arc::new(suti_state::InProcessState::new()),
    }
}

fn mined(manifest_key: &str) -> ClusterMinedV1 {
    ClusterMinedV1 {
        run_id: "r".into(),
        cluster_id: "c1".into(),
        manifest_key: manifest_key.into(),
        subject_noun: "teapot".into(),
        image_keys: vec![],
    }
}

#[tokio::test]
async fn a_cluster_becomes_an_adapter_and_a_message() {
    let (_dir, store, handler) = setup().await;
    let mut members = Vec::new();
    for k in 0..3u8 {
        let mut image = suti_data::RgbaImage::new(64, 64);
        image.pixels.iter_mut().for_each(|p| *p = 40 * k + 30);
        let key = format!("images/{k}.png");
        store
            .put(&ObjectKey::new(&key).unwrap(), Bytes::from(image.to_png()))
            .await
            .unwrap();
        members.push(ClusterMember {
            image_key: key,
            raw_key: format!("raw/{k}"),
            source_url: "http://example.test/".into(),
            caption: format!("our teapot on the beach, photo {k}"),
        });
    }
    let manifest = ClusterManifest {
        run_id: "r".into(),
        cluster_id: "c1".into(),
        subject_noun: "teapot".into(),
        group_key: "http://example.test/".into(),
        title: "teapot".into(),
        members,
    };
    store
        .put(
            &ObjectKey::new("clusters/c1.msgpack").unwrap(),
            Bytes::from(rmp_serde::to_vec_named(&manifest).unwrap()),
        )
        .await
        .unwrap();
    let outcome = handler
        .handle(mined("clusters/c1.msgpack"), &context(&store))
        .await
        .unwrap();
    // The adapter and, outside `experts/` (adapters only), its loss curve.
    assert_eq!(outcome.artifacts.len(), 2);
    assert_eq!(outcome.artifacts[0].0.as_str(), "expert-losses/c1/b1.json");
    let curve: Vec<serde_json::Value> = serde_json::from_slice(&outcome.artifacts[0].1).unwrap();
    assert!(!curve.is_empty() && curve.iter().all(|p| p["loss"].as_f64().is_some()));
    assert_eq!(outcome.artifacts[1].0.as_str(), "experts/c1/b1.safetensors");
    let message: ExpertTrainedV1 = outcome.messages[0].decode().unwrap();
    assert_eq!(message.adapter_key, "experts/c1/b1.safetensors");
    assert_eq!((message.loss.steps, message.rank), (3, 2));
    assert_eq!(message.identifier_token, "sks");
    assert_eq!(outcome.messages[0].message_id, "expert-c1-b1");
}

#[tokio::test]
async fn a_malformed_or_missing_manifest_is_permanent() {
    let (_dir, store, handler) = setup().await;
    store
        .put(
            &ObjectKey::new("clusters/bad.msgpack").unwrap(),
            Bytes::from_static(b"\xc1 not msgpack"),
        )
        .await
        .unwrap();
    let bad = handler
        .handle(mined("clusters/bad.msgpack"), &context(&store))
        .await
        .unwrap_err();
    assert!(!bad.is_retryable(), "{bad}");
    assert_eq!(bad.kind(), "bad_manifest");
    let missing = handler
        .handle(mined("clusters/none.msgpack"), &context(&store))
        .await
        .unwrap_err();
    assert!(!missing.is_retryable(), "{missing}");
    let hostile = handler
        .handle(mined("../etc/passwd"), &context(&store))
        .await
        .unwrap_err();
    assert_eq!(hostile.kind(), "invalid_key");
}
