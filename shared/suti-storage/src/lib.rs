//! Artifact storage (architecture.md §5): one [`ObjectStore`] trait with an S3 backend
//! ([`S3Store`]) and a local-filesystem backend for the embedded mode ([`LocalStore`]).
//!
//! Both keep the same contract, checked by one shared test suite:
//! - a reader never sees a half-written object: an object is either absent or whole;
//! - keys are validated ([`ObjectKey`]): relative, no `.`/`..` segments, a small character set, so a
//!   key built from untrusted input cannot escape its prefix;
//! - errors carry a [`StorageErrorKind`] that decides whether to retry.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

mod instrumented;
pub mod layout;
mod local;
mod s3;

pub use instrumented::{InstrumentedStore, StorageMetrics};
pub use local::LocalStore;
pub use s3::{S3Credentials, S3Options, S3Store};

/// Longest key accepted (S3's own limit is 1024 bytes).
pub const MAX_KEY_LEN: usize = 1024;

/// A validated object key: `segment/segment/…`, each segment non-empty, not starting with `.`, made of
/// ASCII letters, digits and `-_.=+@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `key`.
    pub fn new(key: impl Into<String>) -> Result<Self, StorageError> {
        let key = key.into();
        let invalid = |why: &str| {
            Err(StorageError::new(
                StorageErrorKind::InvalidKey,
                format!("invalid object key {key:?}: {why}"),
            ))
        };
        if key.is_empty() {
            return invalid("empty");
        }
        if key.len() > MAX_KEY_LEN {
            return invalid("longer than 1024 bytes");
        }
        for segment in key.split('/') {
            if segment.is_empty() {
                return invalid("empty path segment");
            }
            if segment.starts_with('.') {
                return invalid("a segment may not start with '.'");
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.=+@".contains(&b))
            {
                return invalid("only ASCII letters, digits and -_.=+@ are allowed");
            }
        }
        Ok(Self(key))
    }

    /// Joins a validated prefix and one more segment (or several, separated by `/`).
    pub fn join(&self, rest: &str) -> Result<Self, StorageError> {
        Self::new(format!("{}/{rest}", self.0))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of failure a storage operation met; decides retries and labels metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The object does not exist.
    NotFound,
    /// The credentials were refused or lack permission.
    Unauthorized,
    /// The operation took too long.
    Timeout,
    /// The server could not be reached or failed on its side (5xx, connection refused).
    Unavailable,
    /// The key is not a valid object key.
    InvalidKey,
    /// The bucket does not exist.
    NoSuchBucket,
    /// A local filesystem error.
    Io,
    /// Anything else the server rejected.
    Rejected,
}

impl StorageErrorKind {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Timeout | Self::Unavailable | Self::Io)
    }

    /// Low-cardinality label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::InvalidKey => "invalid_key",
            Self::NoSuchBucket => "no_such_bucket",
            Self::Io => "io",
            Self::Rejected => "rejected",
        }
    }
}

/// A failed storage operation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage {}: {message}", kind.label())]
pub struct StorageError {
    /// What kind of failure.
    pub kind: StorageErrorKind,
    /// Human-readable detail (never credentials).
    pub message: String,
}

impl StorageError {
    /// A new error.
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

/// Result of a storage operation.
pub type StorageResult<T> = Result<T, StorageError>;

/// Size and identity of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key.
    pub key: ObjectKey,
    /// Size in bytes.
    pub size: u64,
}

/// An object store. Writes are atomic from a reader's view; deletes are idempotent.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Short name of the backend (`s3`, `local`), for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Writes a whole object, replacing any previous one.
    async fn put(&self, key: &ObjectKey, body: Bytes) -> StorageResult<()>;

    /// Reads a whole object.
    async fn get(&self, key: &ObjectKey) -> StorageResult<Bytes>;

    /// Size of an object, or `None` if it does not exist.
    async fn head(&self, key: &ObjectKey) -> StorageResult<Option<ObjectMeta>>;

    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, key: &ObjectKey) -> StorageResult<()>;

    /// Every object whose key starts with `prefix` (a plain string prefix), sorted by key.
    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>>;

    /// Checks that the store answers and the bucket is reachable (readiness).
    async fn ping(&self) -> StorageResult<()>;
}

/// A shared handle to any object store.
pub type SharedStore = Arc<dyn ObjectStore>;

/// Reads a `LATEST`-style pointer object: its content, trimmed, names the current version.
pub async fn read_pointer(
    store: &dyn ObjectStore,
    key: &ObjectKey,
) -> StorageResult<Option<String>> {
    match store.get(key).await {
        Ok(body) => Ok(Some(String::from_utf8_lossy(&body).trim().to_string())),
        Err(e) if e.kind == StorageErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
