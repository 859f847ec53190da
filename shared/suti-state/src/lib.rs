//! Shared state (architecture.md §2, §4): idempotency marks, counters, a token-bucket rate limiter
//! shared across replicas, and set membership — over Redis ([`RedisState`]) or in-process
//! ([`InProcessState`], the embedded mode), with the same semantics.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

mod memory;
mod redis_backend;

pub use memory::InProcessState;
pub use redis_backend::RedisState;

/// What went wrong talking to the state backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    /// The backend cannot be reached or timed out; retrying later may work.
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the request (wrong type at a key, bad credentials, …).
    #[error("state backend refused the request: {0}")]
    Refused(String),
    /// The configuration is invalid (bad URL, for example).
    #[error("invalid state backend configuration: {0}")]
    Config(String),
}

impl StateError {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Low-cardinality label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "state_unavailable",
            Self::Refused(_) => "state_refused",
            Self::Config(_) => "state_config",
        }
    }
}

/// Result of a state operation.
pub type StateResult<T> = Result<T, StateError>;

/// A token bucket: up to `capacity` tokens, refilled at `refill_per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    /// Most tokens the bucket holds (the burst size).
    pub capacity: f64,
    /// Tokens added per second (the sustained rate).
    pub refill_per_second: f64,
}

/// The answer of a rate limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateDecision {
    /// The tokens were taken.
    Allowed,
    /// Not enough tokens: try again after this long.
    Limited {
        /// When enough tokens will have been refilled.
        retry_after: Duration,
    },
}

impl RateDecision {
    /// Whether the request may proceed.
    pub fn is_allowed(self) -> bool {
        matches!(self, Self::Allowed)
    }
}

/// Shared state of the pipeline. Every key is namespaced by the backend.
#[async_trait]
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Short name of the backend (`redis`, `in_process`).
    fn backend(&self) -> &'static str;

    /// Sets a mark if it is absent (`SET NX`); returns whether this call set it. With a TTL the
    /// mark expires, so long-finished work does not pin memory forever.
    async fn mark_if_absent(&self, key: &str, ttl: Option<Duration>) -> StateResult<bool>;

    /// Whether a mark is set.
    async fn is_marked(&self, key: &str) -> StateResult<bool>;

    /// Removes a mark.
    async fn unmark(&self, key: &str) -> StateResult<()>;

    /// Adds `by` to a counter and returns the new value.
    async fn incr(&self, key: &str, by: i64) -> StateResult<i64>;

    /// A counter's value (0 if never set).
    async fn counter(&self, key: &str) -> StateResult<i64>;

    /// Adds a member to a set; returns whether it was new.
    async fn set_add(&self, set: &str, member: &str) -> StateResult<bool>;

    /// Whether a set has a member.
    async fn set_contains(&self, set: &str, member: &str) -> StateResult<bool>;

    /// Members in a set.
    async fn set_len(&self, set: &str) -> StateResult<u64>;

    /// Takes `tokens` from the named bucket if it has them. Atomic across every replica sharing the
    /// backend; time is the backend's clock, so replicas' clocks need not agree.
    async fn take_tokens(
        &self,
        bucket: &str,
        spec: TokenBucket,
        tokens: f64,
    ) -> StateResult<RateDecision>;

    /// Deletes every key under this store's namespace (tests and resets).
    async fn clear_namespace(&self) -> StateResult<()>;

    /// Checks that the backend answers (readiness).
    async fn ping(&self) -> StateResult<()>;
}

/// A shared handle to any state backend.
pub type SharedState = Arc<dyn StateStore>;

/// Token-bucket arithmetic shared by both backends (the Redis script mirrors it): refill for the
/// elapsed time, then take `requested` if available. Returns the new level and the decision.
pub fn token_bucket_step(
    spec: TokenBucket,
    level: f64,
    elapsed_seconds: f64,
    requested: f64,
) -> (f64, RateDecision) {
    let level = (level + elapsed_seconds.max(0.0) * spec.refill_per_second).min(spec.capacity);
    if level >= requested {
        (level - requested, RateDecision::Allowed)
    } else {
        let missing = requested - level;
        let wait = if spec.refill_per_second > 0.0 {
            missing / spec.refill_per_second
        } else {
            f64::INFINITY
        };
        (
            level,
            RateDecision::Limited {
                retry_after: Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_and_caps() {
        let spec = TokenBucket {
            capacity: 2.0,
            refill_per_second: 1.0,
        };
        let (level, d) = token_bucket_step(spec, 2.0, 0.0, 1.0);
        assert!(d.is_allowed());
        assert_eq!(level, 1.0);
        let (level, d) = token_bucket_step(spec, 0.0, 0.5, 1.0);
        assert_eq!(level, 0.5);
        assert_eq!(
            d,
            RateDecision::Limited {
                retry_after: Duration::from_millis(500)
            }
        );
        let (level, _) = token_bucket_step(spec, 0.0, 100.0, 0.0);
        assert_eq!(level, 2.0, "refill is capped at the capacity");
    }
}
