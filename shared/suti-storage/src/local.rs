//! Local-filesystem backend (embedded mode): objects are files under a root folder, written to a
//! temporary file and renamed into place so that a reader never sees half an object.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ObjectKey, ObjectMeta, ObjectStore, StorageError, StorageErrorKind, StorageResult};

/// Folder under the root that holds writes in progress. Keys cannot start with `.`, so it can never
/// collide with an object.
const TMP_DIR: &str = ".suti-tmp";

/// Temporary files older than this are left over from a crashed writer and are removed at open.
const STALE_TMP_AGE: Duration = Duration::from_secs(3600);

/// Objects stored as files under a root folder.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

fn io_error(op: &str, key: &str, err: std::io::Error) -> StorageError {
    let kind = match err.kind() {
        ErrorKind::NotFound => StorageErrorKind::NotFound,
        ErrorKind::PermissionDenied => StorageErrorKind::Unauthorized,
        ErrorKind::NotADirectory | ErrorKind::IsADirectory | ErrorKind::AlreadyExists => {
            StorageErrorKind::Rejected
        }
        _ => StorageErrorKind::Io,
    };
    StorageError::new(kind, format!("{op} {key}: {err}"))
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`, removing stale temporary files.
    pub async fn open(root: impl Into<PathBuf>) -> StorageResult<Self> {
        let root = root.into();
        let tmp = root.join(TMP_DIR);
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| io_error("create", &root.display().to_string(), e))?;
        if let Ok(mut entries) = tokio::fs::read_dir(&tmp).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                let stale = entry
                    .metadata()
                    .await
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > STALE_TMP_AGE);
                if stale {
                    let _ = tokio::fs::remove_file(entry.path()).await;
                }
            }
        }
        Ok(Self { root })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        // ObjectKey guarantees relative, dot-free segments: the path stays under the root.
        self.root.join(key.as_str())
    }

    async fn write_atomically(&self, key: &ObjectKey, body: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let target = self.path_of(key);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let tmp = self
            .root
            .join(TMP_DIR)
            .join(uuid::Uuid::new_v4().simple().to_string());
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            file.write_all(body).await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&tmp, &target).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, u64)>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let file_type = entry.file_type()?;
        let path = entry.path();
        if file_type.is_dir() {
            walk(&path, root, out)?;
        } else if file_type.is_file() {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let key = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((key, entry.metadata()?.len()));
        }
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn put(&self, key: &ObjectKey, body: Bytes) -> StorageResult<()> {
        self.write_atomically(key, &body)
            .await
            .map_err(|e| io_error("put", key.as_str(), e))
    }

    async fn get(&self, key: &ObjectKey) -> StorageResult<Bytes> {
        tokio::fs::read(self.path_of(key))
            .await
            .map(Bytes::from)
            .map_err(|e| io_error("get", key.as_str(), e))
    }

    async fn head(&self, key: &ObjectKey) -> StorageResult<Option<ObjectMeta>> {
        match tokio::fs::metadata(self.path_of(key)).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: m.len(),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("head", key.as_str(), e)),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> StorageResult<()> {
        match tokio::fs::remove_file(self.path_of(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("delete", key.as_str(), e)),
        }
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        // Walk only the deepest folder the prefix names, then filter by the full prefix.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        if !dir_part.is_empty() {
            ObjectKey::new(dir_part)?;
        }
        let root = self.root.clone();
        let start = root.join(dir_part);
        let prefix = prefix.to_string();
        let found = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&start, &root, &mut out).map(|()| out)
        })
        .await
        .map_err(|e| StorageError::new(StorageErrorKind::Io, format!("list {prefix}: {e}")))?
        .map_err(|e| io_error("list", &prefix, e))?;
        let mut metas: Vec<ObjectMeta> = found
            .into_iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .filter_map(|(key, size)| ObjectKey::new(key).ok().map(|key| ObjectMeta { key, size }))
            .collect();
        metas.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(metas)
    }

    async fn ping(&self) -> StorageResult<()> {
        tokio::fs::metadata(self.root.join(TMP_DIR))
            .await
            .map(drop)
            .map_err(|e| io_error("ping", &self.root.display().to_string(), e))
    }
}
