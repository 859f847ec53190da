//! What a stage's business logic is: a [`Handler`] turns one input into an [`Outcome`] or a
//! [`HandlerError`] that says whether a retry may help; [`Settled`] is how the harness ended the
//! delivery.

use async_trait::async_trait;
use bytes::Bytes;
use suti_messages::Message;
use suti_queue::{Envelope, QueueError};
use suti_state::{SharedState, StateError};
use suti_storage::{ObjectKey, SharedStore, StorageError};

/// Why a handler failed, and whether another attempt may succeed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A transient failure (a backend briefly away, a timeout): the message is requeued.
    #[error("{kind}: {message}")]
    Retryable {
        /// Low-cardinality label for the errors metric.
        kind: &'static str,
        /// What happened.
        message: String,
    },
    /// The input can never be handled (invalid content, a missing artifact): dead-lettered.
    #[error("{kind}: {reason}")]
    Permanent {
        /// Low-cardinality label for the errors metric.
        kind: &'static str,
        /// Why; becomes the dead-letter reason header.
        reason: String,
    },
}

impl HandlerError {
    /// A transient failure.
    pub fn retryable(kind: &'static str, message: impl ToString) -> Self {
        Self::Retryable {
            kind,
            message: message.to_string(),
        }
    }

    /// A failure no retry can fix.
    pub fn permanent(kind: &'static str, reason: impl ToString) -> Self {
        Self::Permanent {
            kind,
            reason: reason.to_string(),
        }
    }

    /// A retryable or permanent failure, as the source error says.
    pub fn classified(retryable: bool, kind: &'static str, error: impl ToString) -> Self {
        if retryable {
            Self::retryable(kind, error)
        } else {
            Self::permanent(kind, error)
        }
    }

    /// The metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Retryable { kind, .. } | Self::Permanent { kind, .. } => kind,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }
}

impl From<StorageError> for HandlerError {
    fn from(e: StorageError) -> Self {
        let kind = match e.kind {
            suti_storage::StorageErrorKind::NotFound => "storage_not_found",
            suti_storage::StorageErrorKind::Unauthorized => "storage_unauthorized",
            suti_storage::StorageErrorKind::Timeout => "storage_timeout",
            suti_storage::StorageErrorKind::Unavailable => "storage_unavailable",
            suti_storage::StorageErrorKind::InvalidKey => "storage_invalid_key",
            suti_storage::StorageErrorKind::NoSuchBucket => "storage_no_such_bucket",
            suti_storage::StorageErrorKind::Io => "storage_io",
            suti_storage::StorageErrorKind::Rejected => "storage_rejected",
        };
        Self::classified(e.is_retryable(), kind, e)
    }
}

impl From<StateError> for HandlerError {
    fn from(e: StateError) -> Self {
        Self::classified(e.is_retryable(), e.kind(), e)
    }
}

impl From<QueueError> for HandlerError {
    fn from(e: QueueError) -> Self {
        Self::classified(e.is_retryable(), e.kind(), e)
    }
}

impl From<suti_messages::CodecError> for HandlerError {
    fn from(e: suti_messages::CodecError) -> Self {
        Self::permanent("codec", e)
    }
}

/// What a handled message produces: artifacts the harness writes, then messages it publishes.
/// Keys and message ids must derive from the input, so a redelivered message rewrites the same
/// artifacts and republishes the same ids.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Objects to write before anything is published.
    pub artifacts: Vec<(ObjectKey, Bytes)>,
    /// Messages to publish (confirmed) after the artifacts are written.
    pub messages: Vec<Envelope>,
}

impl Outcome {
    /// Nothing to write or publish.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds an artifact.
    pub fn with_artifact(mut self, key: ObjectKey, body: impl Into<Bytes>) -> Self {
        self.artifacts.push((key, body.into()));
        self
    }

    /// Adds a downstream message with a deterministic id.
    pub fn with_message<M: Message>(
        mut self,
        payload: &M,
        message_id: impl Into<String>,
    ) -> Result<Self, HandlerError> {
        self.messages
            .push(Envelope::encode(payload, message_id, None)?);
        Ok(self)
    }
}

/// What a handler may use besides its input.
#[derive(Clone)]
pub struct HandleContext {
    /// Id of the message being handled.
    pub message_id: String,
    /// Pipeline run (correlation id) of the message.
    pub correlation_id: Option<String>,
    /// Earlier failed deliveries of this message.
    pub delivery_count: u32,
    /// Artifact storage.
    pub storage: SharedStore,
    /// Shared state.
    pub state: SharedState,
}

/// A stage's business logic.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The payload this stage consumes.
    type Input: Message;

    /// Handles one input. Must be idempotent in its effects: artifacts and downstream ids derive
    /// from the input.
    async fn handle(
        &self,
        input: Self::Input,
        ctx: &HandleContext,
    ) -> Result<Outcome, HandlerError>;
}
/// How one delivery ended, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Handled, written, published, acked.
    Done,
    /// Already completed before: acked without handling again.
    Duplicate,
    /// Requeued for another attempt.
    Retried,
    /// Moved to the dead-letter queue.
    DeadLettered,
    /// Could not be settled (its channel is gone); the broker redelivers it.
    Unsettled,
}

impl Settled {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Duplicate => "duplicate",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
            Self::Unsettled => "unsettled",
        }
    }
}
