//! What a chaos run must leave behind, checked: exactly one expert, candidate set and example shard
//! per cluster, every object whole and none temporary, no dead letter, and no secret in any log
//! or metrics page.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use suti_e2e::sample;
use suti_queue::Topology;
use suti_storage::{ObjectKey, ObjectStore};
use suti_testkit::{PrivateRabbit, http_get};

/// What the pipeline wrote, counted for the report.
pub struct Artifacts {
    /// Objects in the bucket (each checked whole).
    pub objects: usize,
    /// Experts over all clusters.
    pub experts: usize,
    /// Candidate sets over all clusters.
    pub candidate_sets: usize,
    /// Example shards over all clusters.
    pub shards: usize,
    /// Sets beyond the one each cluster should have.
    pub duplicates: usize,
    /// Objects that are not whole.
    pub broken: usize,
}

/// The distinct sets under `prefix` per cluster: `experts/c01/v1/…` counts `v1` for `c01`.
fn per_cluster(keys: &[String], prefix: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for key in keys {
        if let Some(rest) = key.strip_prefix(prefix) {
            let mut parts = rest.splitn(2, '/');
            let cluster = parts
                .next()
                .unwrap_or_default()
                .trim_end_matches(".msgpack");
            let below = parts.next().unwrap_or_default();
            let set = below.split('/').next().unwrap_or_default().to_string();
            out.entry(cluster.to_string()).or_default().insert(set);
        }
    }
    out
}

/// Checks that every cluster has one expert, one candidate set and one example shard, and that
/// every object in `store` is whole and none is temporary; each failure is added to `problems`.
pub async fn check_artifacts(
    store: &dyn ObjectStore,
    clusters: &[String],
    problems: &mut Vec<String>,
) -> Artifacts {
    let keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.as_str().to_string())
        .collect();
    let experts = per_cluster(&keys, "experts/");
    let candidates = per_cluster(&keys, "candidates/");
    let shards = per_cluster(&keys, "datasets/apprentice/");
    let mut duplicates = 0;
    for cluster in clusters {
        for (what, found) in [
            ("expert", &experts),
            ("candidate set", &candidates),
            ("example shard", &shards),
        ] {
            let count = found.get(cluster).map_or(0, BTreeSet::len);
            duplicates += count.saturating_sub(1);
            if count != 1 {
                problems.push(format!("cluster {cluster}: {count} {what}s"));
            }
        }
    }
    let mut broken = 0;
    for key in &keys {
        let bytes = store
            .get(&ObjectKey::new(key.clone()).unwrap())
            .await
            .unwrap();
        if let Err(e) = whole(key, &bytes) {
            broken += 1;
            problems.push(format!("{key} is not whole: {e}"));
        }
        if key.split('/').any(|part| part.starts_with('.')) {
            problems.push(format!("{key} is a temporary object"));
        }
    }
    let total = |sets: &BTreeMap<String, BTreeSet<String>>| sets.values().map(BTreeSet::len).sum();
    Artifacts {
        objects: keys.len(),
        experts: total(&experts),
        candidate_sets: total(&candidates),
        shards: total(&shards),
        duplicates,
        broken,
    }
}

/// Whether `bytes` is a whole object of the kind its key names.
fn whole(key: &str, bytes: &[u8]) -> Result<(), String> {
    if key.ends_with(".png") {
        suti_data::RgbaImage::from_png(bytes)
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else if key.ends_with(".safetensors") {
        let len = bytes
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
            .ok_or("shorter than its header length")?;
        let header = bytes.get(8..8 + len).ok_or("header cut short")?;
        let header: serde_json::Value =
            serde_json::from_slice(header).map_err(|e| e.to_string())?;
        let end = header
            .as_object()
            .ok_or("header is not an object")?
            .values()
            .filter_map(|t| t["data_offsets"][1].as_u64())
            .max()
            .unwrap_or(0) as usize;
        (bytes.len() == 8 + len + end)
            .then_some(())
            .ok_or_else(|| format!("{} bytes, header says {}", bytes.len(), 8 + len + end))
    } else if key.ends_with(".msgpack") {
        rmp_serde::from_slice::<serde_json::Value>(bytes)
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else if key.ends_with(".json") {
        // Model configs and loss curves.
        serde_json::from_slice::<serde_json::Value>(bytes)
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else {
        Ok(())
    }
}

/// Messages left in the dead-letter queues; each queue holding any is added to `problems`.
pub async fn check_dead_letters(
    rabbit: &PrivateRabbit,
    topology: &Topology,
    problems: &mut Vec<String>,
) -> u64 {
    let mut dead_lettered = 0;
    for queue in &topology.queues {
        let dead = queue.dead_name();
        let count = rabbit.queue_messages(&dead).await.unwrap();
        dead_lettered += count;
        if count > 0 {
            problems.push(format!("{dead} holds {count} messages"));
        }
    }
    dead_lettered
}

/// Where a secret shows: in a log file under `logs`, or on a service's metrics page. Also sums
/// the deliveries the surviving processes skipped as already done (earlier incarnations took
/// their counts with them).
pub async fn secrets_and_duplicates(
    logs: &Path,
    admins: &[(&str, SocketAddr)],
    secrets: &[String],
) -> (Vec<String>, f64) {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(logs).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for secret in secrets {
            if text.contains(secret.as_str()) {
                seen.push(format!("{} holds {secret:?}", entry.path().display()));
            }
        }
    }
    let mut duplicates = 0.0;
    for &(name, admin) in admins {
        if let Ok((_, metrics)) = http_get(admin, "/metrics").await {
            for secret in secrets {
                if metrics.contains(secret.as_str()) {
                    seen.push(format!("{name}'s metrics hold {secret:?}"));
                }
            }
            if name == "serving" {
                continue;
            }
            duplicates += sample(
                &metrics,
                &format!("suti_{}_processed_total", name.replace('-', "_")),
                "outcome=\"duplicate\"",
            );
        }
    }
    (seen, duplicates)
}
