//! The artifacts the factory reads and writes (architecture.md §5), between storage and the
//! recipes: cluster manifests and their images, model versions, the crawled image–caption pairs,
//! the apprentice's accepted-example shards and its releases.
//! Every image read from storage is decoded with limits; a missing or malformed artifact is a
//! permanent error (the message that named it cannot succeed), a storage outage a retryable one.

use std::sync::Arc;

use candle_core::Device;
use suti_data::{DecodeLimits, RgbaImage};
use suti_messages::{ClusterManifest, ExampleShard};
use suti_models::text::TextEncoder;
use suti_models::{LoraConfig, ScorerConfig};
use suti_stage::HandlerError;
use suti_stage::models::{ModelLoader, model_key};
use suti_storage::{ObjectKey, SharedStore, layout};

use crate::apprentice::{DemoSet, SubjectNaming, Triplet};
use crate::bundle::{BaseModel, CONFIG_FILE, ScorerModel, WEIGHTS_FILE, version_of};
use crate::pixels::to_chw;
use crate::training::DenoiserTrainer;

pub use suti_storage::layout::{APPRENTICE_MODEL, BASE_MODEL, SCORER_MODEL};

/// Limits for images read back from storage: they were normalised by the crawler or generated
/// here, so anything large is a sign of a corrupted or planted object.
pub fn stored_image_limits() -> DecodeLimits {
    DecodeLimits {
        max_side: 1024,
        max_pixels: 1024 * 1024,
        max_bytes: 8 << 20,
    }
}

/// A key from a message field; an invalid one can never succeed.
pub fn key(raw: &str) -> Result<ObjectKey, HandlerError> {
    ObjectKey::new(raw).map_err(|e| HandlerError::permanent("invalid_key", e))
}

/// Reads and decodes a PNG from storage.
pub async fn read_image(store: &SharedStore, raw_key: &str) -> Result<RgbaImage, HandlerError> {
    let bytes = store.get(&key(raw_key)?).await?;
    RgbaImage::from_png_with_limits(&bytes, stored_image_limits())
        .map_err(|e| HandlerError::permanent("bad_image", format!("{raw_key}: {e}")))
}

/// A cluster: its manifest and its members' images, in manifest order.
pub struct Cluster {
    /// The manifest.
    pub manifest: ClusterManifest,
    /// The members' normalised images.
    pub images: Vec<RgbaImage>,
}

/// Reads a cluster manifest; one without members is malformed.
pub async fn read_manifest(
    store: &SharedStore,
    manifest_key: &str,
) -> Result<ClusterManifest, HandlerError> {
    let body = store.get(&key(manifest_key)?).await?;
    let manifest: ClusterManifest = rmp_serde::from_slice(&body)
        .map_err(|e| HandlerError::permanent("bad_manifest", format!("{manifest_key}: {e}")))?;
    if manifest.members.is_empty() {
        return Err(HandlerError::permanent(
            "bad_manifest",
            format!("{manifest_key} has no members"),
        ));
    }
    Ok(manifest)
}

/// Reads a cluster manifest and every member's image.
pub async fn read_cluster(
    store: &SharedStore,
    manifest_key: &str,
) -> Result<Cluster, HandlerError> {
    let manifest = read_manifest(store, manifest_key).await?;
    let mut images = Vec::with_capacity(manifest.members.len());
    for member in &manifest.members {
        images.push(read_image(store, &member.image_key).await?);
    }
    Ok(Cluster { manifest, images })
}

/// Runs compute off the async threads; a panic in it becomes a permanent error.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, HandlerError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(HandlerError::permanent("model", e)),
        Err(e) => Err(HandlerError::permanent("model_panicked", e)),
    }
}

async fn read_version_files(
    store: &SharedStore,
    name: &str,
    version: &str,
) -> Result<(bytes::Bytes, bytes::Bytes), HandlerError> {
    let config = store
        .get(
            &model_key(name, version, CONFIG_FILE)
                .map_err(|e| HandlerError::permanent("invalid_key", e))?,
        )
        .await?;
    let weights = store
        .get(
            &model_key(name, version, WEIGHTS_FILE)
                .map_err(|e| HandlerError::permanent("invalid_key", e))?,
        )
        .await?;
    Ok((config, weights))
}

/// Loads base-model versions from storage onto `device`.
pub fn base_loader(device: Device) -> ModelLoader<BaseModel> {
    dit_loader(BASE_MODEL, device)
}

/// Loads versions of a DiT model (`base`, `apprentice`) from storage onto `device`.
pub fn dit_loader(name: &'static str, device: Device) -> ModelLoader<BaseModel> {
    Arc::new(move |store: SharedStore, version: String| {
        let device = device.clone();
        Box::pin(async move {
            let (config, weights) = read_version_files(&store, name, &version).await?;
            blocking(move || BaseModel::from_bytes(&config, &weights, &device)).await
        })
    })
}

/// Loads scorer versions from storage onto `device`.
pub fn scorer_loader(device: Device) -> ModelLoader<ScorerModel> {
    Arc::new(move |store: SharedStore, version: String| {
        let device = device.clone();
        Box::pin(async move {
            let (config, weights) = read_version_files(&store, SCORER_MODEL, &version).await?;
            blocking(move || ScorerModel::from_bytes(&config, &weights, &device)).await
        })
    })
}

/// The LoRA shape of a stored adapter: its update is saved pre-scaled (see
/// [`crate::expert::TrainedExpert`]), so only the rank matters.
pub fn stored_adapter_lora(rank: usize) -> LoraConfig {
    LoraConfig {
        rank,
        alpha: rank as f32,
    }
}

/// Key of an expert's adapter.
pub fn adapter_key(cluster_id: &str, base_version: &str) -> Result<ObjectKey, HandlerError> {
    key(&layout::expert_adapter(cluster_id, base_version))
}

/// Key of an expert's loss curve.
pub fn expert_losses_key(cluster_id: &str, base_version: &str) -> Result<ObjectKey, HandlerError> {
    key(&layout::expert_losses(cluster_id, base_version))
}

/// Key of a cluster's dataset shard.
pub fn shard_key(cluster_id: &str) -> Result<ObjectKey, HandlerError> {
    key(&layout::apprentice_shard(cluster_id))
}

/// Every crawled (image, caption) pair: the members of every cluster manifest in storage. Images
/// that fail to decode are skipped and counted.
pub async fn crawled_pairs(
    store: &SharedStore,
) -> Result<(Vec<(RgbaImage, String)>, usize), HandlerError> {
    let mut pairs = Vec::new();
    let mut skipped = 0;
    let mut seen = std::collections::HashSet::new();
    for object in store.list(layout::CLUSTERS_PREFIX).await? {
        let body = store.get(&object.key).await?;
        let Ok(manifest) = rmp_serde::from_slice::<ClusterManifest>(&body) else {
            skipped += 1;
            continue;
        };
        for member in manifest.members {
            if !seen.insert(member.image_key.clone()) {
                continue;
            }
            match read_image(store, &member.image_key).await {
                Ok(image) => pairs.push((image, member.caption)),
                Err(e) if e.is_retryable() => return Err(e),
                Err(_) => skipped += 1,
            }
        }
    }
    Ok((pairs, skipped))
}

/// The default scorer shape (for `suti train scorer`).
pub fn default_scorer_config() -> ScorerConfig {
    ScorerConfig::default()
}

/// A training checkpoint read back from storage.
pub struct StoredCheckpoint {
    /// Its step.
    pub step: u64,
    /// Weights, optimiser moments and generator state (safetensors).
    pub tensors: bytes::Bytes,
    /// Metadata (JSON).
    pub meta: bytes::Bytes,
}

fn checkpoint_key(model: &str, step: u64, file: &str) -> Result<ObjectKey, HandlerError> {
    key(&layout::checkpoint_file(model, step, file))
}

fn checkpoint_pointer(model: &str) -> Result<ObjectKey, HandlerError> {
    key(&layout::checkpoint_latest(model))
}

/// Writes a checkpoint of model `model` at `step`: both files, then the pointer, so a reader
/// following the pointer always finds a whole checkpoint.
pub async fn write_checkpoint(
    store: &SharedStore,
    model: &str,
    step: u64,
    tensors: Vec<u8>,
    meta: Vec<u8>,
) -> Result<(), HandlerError> {
    store
        .put(
            &checkpoint_key(model, step, "state.safetensors")?,
            tensors.into(),
        )
        .await?;
    store
        .put(&checkpoint_key(model, step, "meta.json")?, meta.into())
        .await?;
    store
        .put(&checkpoint_pointer(model)?, format!("{step}\n").into())
        .await?;
    Ok(())
}

/// The latest checkpoint of model `model`, if any.
pub async fn read_latest_checkpoint(
    store: &SharedStore,
    model: &str,
) -> Result<Option<StoredCheckpoint>, HandlerError> {
    let Some(step) =
        suti_storage::read_pointer(store.as_ref(), &checkpoint_pointer(model)?).await?
    else {
        return Ok(None);
    };
    let step: u64 = step.parse().map_err(|_| {
        HandlerError::permanent(
            "bad_checkpoint",
            format!("models/{model}/checkpoints/LATEST holds {step:?}"),
        )
    })?;
    Ok(Some(StoredCheckpoint {
        step,
        tensors: store
            .get(&checkpoint_key(model, step, "state.safetensors")?)
            .await?,
        meta: store
            .get(&checkpoint_key(model, step, "meta.json")?)
            .await?,
    }))
}

/// Forgets model `model`'s checkpoints (its pointer; the objects stay for inspection).
pub async fn clear_checkpoint_pointer(
    store: &SharedStore,
    model: &str,
) -> Result<(), HandlerError> {
    Ok(store.delete(&checkpoint_pointer(model)?).await?)
}

/// The training triplets of one accepted-examples shard (`datasets/apprentice/{cluster}.msgpack`)
/// at the model's `size`: the cluster's demonstrations shared by all its accepted examples, their
/// prompts named as `naming` says. An empty shard gives none; an unreadable one is a permanent
/// error.
pub async fn read_shard(
    storage: &SharedStore,
    shard_key: &str,
    size: usize,
    text: &TextEncoder,
    naming: &SubjectNaming,
) -> Result<Vec<Triplet>, HandlerError> {
    let body = storage.get(&key(shard_key)?).await?;
    let shard: ExampleShard = rmp_serde::from_slice(&body)
        .map_err(|e| HandlerError::permanent("bad_shard", format!("{shard_key}: {e}")))?;
    if shard.examples.is_empty() || shard.demonstrations.is_empty() {
        return Ok(Vec::new());
    }
    let mut images = Vec::new();
    let mut captions = Vec::new();
    for demo in &shard.demonstrations {
        images.push(to_chw(&read_image(storage, &demo.image_key).await?, size));
        captions.push(demo.caption.clone());
    }
    let demos = Arc::new(
        DemoSet::new(images, &captions, text)
            .map_err(|e| HandlerError::permanent("bad_shard", e))?,
    );
    let mut triplets = Vec::new();
    for (index, example) in shard.examples.iter().enumerate() {
        triplets.push(Triplet {
            demos: demos.clone(),
            prompt: naming.name(
                &example.prompt,
                &shard.subject_noun,
                &shard.cluster_id,
                index,
            ),
            target: to_chw(&read_image(storage, &example.image_key).await?, size),
        });
    }
    Ok(triplets)
}

/// Publishes `trainer`'s weights as an apprentice release (`models/apprentice/{version}/`, with
/// its `LATEST` pointer) named by its step and the weights' hash, with the loss curve of the
/// steps this process trained (`losses.json`); returns the version. The
/// `apprentice.published` message is the caller's.
pub async fn publish_release(
    storage: &SharedStore,
    trainer: &DenoiserTrainer,
    history: &crate::training::LossHistory,
) -> Result<String, HandlerError> {
    let bundle = BaseModel {
        config: trainer.config().clone(),
        tensors: trainer
            .weights()
            .map_err(|e| HandlerError::permanent("model", e))?,
    };
    let (config_json, weights) = bundle
        .to_bytes()
        .map_err(|e| HandlerError::permanent("model", e))?;
    let version = format!(
        "{:010}-{}",
        trainer.steps_done(),
        &version_of(&weights)[..8]
    );
    suti_stage::publish_model_version(
        storage,
        APPRENTICE_MODEL,
        &version,
        vec![
            (CONFIG_FILE, config_json),
            (WEIGHTS_FILE, weights),
            (crate::training::LOSSES_FILE, history.to_json()),
        ],
    )
    .await?;
    Ok(version)
}
