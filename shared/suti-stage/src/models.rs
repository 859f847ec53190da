//! Versioned models a stage works with (architecture.md §5): `models/{name}/{version}/…` with a
//! `LATEST` pointer. A stage keeps the versions it uses in memory, follows `LATEST` when it moves,
//! and is not ready while no version has been published.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use suti_runtime::Health;
use suti_storage::{ObjectKey, SharedStore, StorageError, read_pointer};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::HandlerError;

/// Loads version `version` of a model from storage.
pub type ModelLoader<T> =
    Arc<dyn Fn(SharedStore, String) -> BoxFuture<'static, Result<T, HandlerError>> + Send + Sync>;

/// Versions kept in memory at once: the current one and the one before, for work still in flight
/// against it.
const KEPT_VERSIONS: usize = 2;

/// The key of `file` in version `version` of model `name`.
pub fn model_key(name: &str, version: &str, file: &str) -> Result<ObjectKey, StorageError> {
    ObjectKey::new(suti_storage::layout::model_file(name, version, file))
}

/// The key of model `name`'s `LATEST` pointer.
pub fn latest_key(name: &str) -> Result<ObjectKey, StorageError> {
    ObjectKey::new(suti_storage::layout::model_latest(name))
}

/// Publishes a model version: every file first, then the `LATEST` pointer, so a reader that
/// follows the pointer always finds a whole version.
pub async fn publish_model_version(
    store: &SharedStore,
    name: &str,
    version: &str,
    files: Vec<(&str, Vec<u8>)>,
) -> Result<(), StorageError> {
    for (file, bytes) in files {
        store
            .put(&model_key(name, version, file)?, Bytes::from(bytes))
            .await?;
    }
    store
        .put(&latest_key(name)?, Bytes::from(format!("{version}\n")))
        .await
}

/// The in-memory versions of one model.
pub struct VersionedModels<T> {
    name: &'static str,
    store: SharedStore,
    loader: ModelLoader<T>,
    kept: Mutex<Vec<(String, Arc<T>)>>,
    health: Option<Health>,
}

impl<T: Send + Sync + 'static> VersionedModels<T> {
    /// Versions of model `name` (`base`, `scorer`), loaded by `loader`.
    pub fn new(name: &'static str, store: SharedStore, loader: ModelLoader<T>) -> Self {
        Self {
            name,
            store,
            loader,
            kept: Mutex::new(Vec::new()),
            health: None,
        }
    }

    /// Reports readiness under the check `model_{name}`: not ready until a version is loaded.
    pub fn with_health(mut self, health: Health) -> Self {
        health.set_flag(
            &self.check_name(),
            Some(format!("no {} model loaded yet", self.name)),
        );
        self.health = Some(health);
        self
    }

    fn check_name(&self) -> String {
        format!("model_{}", self.name)
    }

    /// The version `LATEST` names and the model, loading it if it is new. A retryable error when
    /// none has been published: work waits for the model rather than failing.
    pub async fn latest(&self) -> Result<(String, Arc<T>), HandlerError> {
        let version = read_pointer(self.store.as_ref(), &latest_key(self.name)?)
            .await?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                HandlerError::retryable(
                    "model_missing",
                    format!("no {} model has been published yet", self.name),
                )
            })?;
        let model = self.version(&version).await?;
        Ok((version, model))
    }

    /// Version `version`, from memory or storage.
    pub async fn version(&self, version: &str) -> Result<Arc<T>, HandlerError> {
        // Refuse names that would escape the model's folder before they reach a key.
        model_key(self.name, version, "x").map_err(|e| {
            HandlerError::permanent(
                "model_version",
                format!("{} version {version:?}: {e}", self.name),
            )
        })?;
        let mut kept = self.kept.lock().await;
        if let Some(position) = kept.iter().position(|(v, _)| v == version) {
            let entry = kept.remove(position);
            let model = entry.1.clone();
            kept.push(entry);
            return Ok(model);
        }
        let model = Arc::new((self.loader)(self.store.clone(), version.to_string()).await?);
        info!(model = self.name, version, "model loaded");
        kept.push((version.to_string(), model.clone()));
        if kept.len() > KEPT_VERSIONS {
            kept.remove(0);
        }
        if let Some(health) = &self.health {
            health.set_flag(&self.check_name(), None);
        }
        Ok(model)
    }

    /// Waits until a version is published and loaded, checking every `every`; false if `shutdown`
    /// came first. A stage calls this before consuming: messages that arrive before the first
    /// model stay queued instead of burning their delivery attempts.
    pub async fn wait_for_first(&self, every: Duration, shutdown: &CancellationToken) -> bool {
        let mut announced = false;
        loop {
            match self.latest().await {
                Ok(_) => return true,
                Err(e) => {
                    if !announced {
                        info!(model = self.name, reason = %e, "waiting for a model before consuming");
                        announced = true;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Follows `LATEST` every `every` until `shutdown`: loads a new version as soon as it is
    /// published, so the first message after a release does not wait for the load.
    pub fn watch(self: &Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let models = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = models.latest().await
                    && e.kind() != "model_missing"
                {
                    warn!(model = models.name, error = %e, "cannot load the latest model");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use suti_storage::LocalStore;

    use super::*;

    /// A "model" that is the text of its `weights` file; loads are counted.
    fn counting_loader(loads: Arc<AtomicUsize>) -> ModelLoader<String> {
        Arc::new(move |store: SharedStore, version: String| {
            let loads = loads.clone();
            Box::pin(async move {
                loads.fetch_add(1, Ordering::SeqCst);
                let bytes = store.get(&model_key("toy", &version, "weights")?).await?;
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            })
        })
    }

    #[tokio::test]
    async fn a_stage_is_not_ready_until_a_version_exists_then_follows_latest() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(LocalStore::open(dir.path()).await.unwrap());
        let health = Health::new();
        let loads = Arc::new(AtomicUsize::new(0));
        let models = VersionedModels::new("toy", store.clone(), counting_loader(loads.clone()))
            .with_health(health.clone());

        let missing = models.latest().await.unwrap_err();
        assert!(missing.is_retryable(), "work waits for a model: {missing}");
        assert!(!health.report().await.ready);

        publish_model_version(&store, "toy", "v1", vec![("weights", b"one".to_vec())])
            .await
            .unwrap();
        let (version, model) = models.latest().await.unwrap();
        assert_eq!((version.as_str(), model.as_str()), ("v1", "one"));
        assert!(health.report().await.ready);
        models.latest().await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 1, "kept in memory");

        publish_model_version(&store, "toy", "v2", vec![("weights", b"two".to_vec())])
            .await
            .unwrap();
        let (version, model) = models.latest().await.unwrap();
        assert_eq!((version.as_str(), model.as_str()), ("v2", "two"));
        assert_eq!(
            *models.version("v1").await.unwrap(),
            "one",
            "the previous one is kept"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);

        let escape = models.version("../x").await.unwrap_err();
        assert!(
            !escape.is_retryable(),
            "a hostile version name is refused: {escape}"
        );
    }
}
