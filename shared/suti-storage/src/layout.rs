//! The bucket's layout (architecture.md §5): every key and prefix the pipeline writes, in one
//! place. Keys derive from the input (content hashes, cluster ids, versions), so a redelivered
//! message rewrites the same keys.

/// Model name of the base text-to-image model (`models/base/…`).
pub const BASE_MODEL: &str = "base";
/// Model name of the scorer (`models/scorer/…`).
pub const SCORER_MODEL: &str = "scorer";
/// Model name of the apprentice (`models/apprentice/…`).
pub const APPRENTICE_MODEL: &str = "apprentice";

/// Bytes as crawled.
pub const RAW_PREFIX: &str = "raw/";
/// Normalised images.
pub const IMAGES_PREFIX: &str = "images/";
/// Cluster manifests.
pub const CLUSTERS_PREFIX: &str = "clusters/";
/// Experts' LoRA adapters.
pub const EXPERTS_PREFIX: &str = "experts/";
/// Experts' generations.
pub const CANDIDATES_PREFIX: &str = "candidates/";
/// The apprentice's training shards, one per cluster.
pub const APPRENTICE_SHARDS_PREFIX: &str = "datasets/apprentice/";
/// Suffix of every manifest and shard (MessagePack).
pub const MSGPACK_SUFFIX: &str = ".msgpack";

/// The bytes of a crawled image, by the SHA-256 of those bytes.
pub fn raw_image(sha256: &str) -> String {
    format!("{RAW_PREFIX}{sha256}")
}

/// A normalised image (PNG), by the SHA-256 of the bytes as crawled.
pub fn image(sha256: &str) -> String {
    format!("{IMAGES_PREFIX}{sha256}.png")
}

/// A cluster's manifest.
pub fn cluster_manifest(cluster_id: &str) -> String {
    format!("{CLUSTERS_PREFIX}{cluster_id}{MSGPACK_SUFFIX}")
}

/// An expert's adapter, for the base version it was trained over.
pub fn expert_adapter(cluster_id: &str, base_version: &str) -> String {
    format!("{EXPERTS_PREFIX}{cluster_id}/{base_version}.safetensors")
}

/// Prefix of the experts' loss curves (kept apart from `experts/`, which holds adapters only).
pub const EXPERT_LOSSES_PREFIX: &str = "expert-losses/";

/// An expert's loss curve (JSON, `[{"step", "loss"}, …]`).
pub fn expert_losses(cluster_id: &str, base_version: &str) -> String {
    format!("{EXPERT_LOSSES_PREFIX}{cluster_id}/{base_version}.json")
}

/// Generation `index` of an expert for one prompt.
pub fn candidate(cluster_id: &str, base_version: &str, prompt_id: &str, index: usize) -> String {
    format!("{CANDIDATES_PREFIX}{cluster_id}/{base_version}/{prompt_id}-{index}.png")
}

/// A cluster's accepted training triplets.
pub fn apprentice_shard(cluster_id: &str) -> String {
    format!("{APPRENTICE_SHARDS_PREFIX}{cluster_id}{MSGPACK_SUFFIX}")
}

/// `file` of version `version` of model `model` (`base`, `scorer`, `apprentice`).
pub fn model_file(model: &str, version: &str, file: &str) -> String {
    format!("models/{model}/{version}/{file}")
}

/// Model `model`'s `LATEST` pointer to its current version.
pub fn model_latest(model: &str) -> String {
    format!("models/{model}/LATEST")
}

/// `file` of model `model`'s training checkpoint at `step`.
pub fn checkpoint_file(model: &str, step: u64, file: &str) -> String {
    format!("models/{model}/checkpoints/{step}/{file}")
}

/// Model `model`'s pointer to its latest checkpoint's step.
pub fn checkpoint_latest(model: &str) -> String {
    format!("models/{model}/checkpoints/LATEST")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout is a contract with every deployed bucket: these keys must not move.
    #[test]
    fn the_layout_is_the_documented_one() {
        assert_eq!(raw_image("ab"), "raw/ab");
        assert_eq!(image("ab"), "images/ab.png");
        assert_eq!(cluster_manifest("c1"), "clusters/c1.msgpack");
        assert_eq!(expert_adapter("c1", "b1"), "experts/c1/b1.safetensors");
        assert_eq!(
            candidate("c1", "b1", "beach", 3),
            "candidates/c1/b1/beach-3.png"
        );
        assert_eq!(apprentice_shard("c1"), "datasets/apprentice/c1.msgpack");
        assert_eq!(
            model_file("base", "v1", "config.json"),
            "models/base/v1/config.json"
        );
        assert_eq!(model_latest("apprentice"), "models/apprentice/LATEST");
        assert_eq!(
            checkpoint_file("apprentice", 200, "meta.json"),
            "models/apprentice/checkpoints/200/meta.json"
        );
        assert_eq!(checkpoint_latest("base"), "models/base/checkpoints/LATEST");
        for key in [
            raw_image("a"),
            image("a"),
            cluster_manifest("a"),
            apprentice_shard("a"),
        ] {
            assert!(crate::ObjectKey::new(key).is_ok());
        }
    }
}
