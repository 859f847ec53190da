//! In-process state for the embedded mode: the same operations as Redis, in one process's memory.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{RateDecision, StateResult, StateStore, TokenBucket, token_bucket_step};

#[derive(Debug, Default)]
struct Inner {
    marks: HashMap<String, Option<Instant>>,
    counters: HashMap<String, i64>,
    sets: HashMap<String, HashSet<String>>,
    buckets: HashMap<String, (f64, Instant)>,
}

/// State held in this process (embedded mode). Clones share the same state.
#[derive(Debug, Default, Clone)]
pub struct InProcessState {
    inner: std::sync::Arc<Mutex<Inner>>,
}

impl InProcessState {
    /// Empty state.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn live(expiry: &Option<Instant>, now: Instant) -> bool {
    expiry.is_none_or(|at| at > now)
}

#[async_trait]
impl StateStore for InProcessState {
    fn backend(&self) -> &'static str {
        "in_process"
    }

    async fn mark_if_absent(&self, key: &str, ttl: Option<Duration>) -> StateResult<bool> {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.marks.get(key).is_some_and(|e| live(e, now)) {
            return Ok(false);
        }
        inner.marks.insert(key.to_string(), ttl.map(|t| now + t));
        Ok(true)
    }

    async fn is_marked(&self, key: &str) -> StateResult<bool> {
        let now = Instant::now();
        Ok(self.lock().marks.get(key).is_some_and(|e| live(e, now)))
    }

    async fn unmark(&self, key: &str) -> StateResult<()> {
        self.lock().marks.remove(key);
        Ok(())
    }

    async fn incr(&self, key: &str, by: i64) -> StateResult<i64> {
        let mut inner = self.lock();
        let value = inner.counters.entry(key.to_string()).or_insert(0);
        *value += by;
        Ok(*value)
    }

    async fn counter(&self, key: &str) -> StateResult<i64> {
        Ok(self.lock().counters.get(key).copied().unwrap_or(0))
    }

    async fn set_add(&self, set: &str, member: &str) -> StateResult<bool> {
        Ok(self
            .lock()
            .sets
            .entry(set.to_string())
            .or_default()
            .insert(member.to_string()))
    }

    async fn set_contains(&self, set: &str, member: &str) -> StateResult<bool> {
        Ok(self
            .lock()
            .sets
            .get(set)
            .is_some_and(|s| s.contains(member)))
    }

    async fn set_len(&self, set: &str) -> StateResult<u64> {
        Ok(self.lock().sets.get(set).map_or(0, |s| s.len() as u64))
    }

    async fn take_tokens(
        &self,
        bucket: &str,
        spec: TokenBucket,
        tokens: f64,
    ) -> StateResult<RateDecision> {
        let now = Instant::now();
        let mut inner = self.lock();
        let (level, last) = inner
            .buckets
            .get(bucket)
            .copied()
            .unwrap_or((spec.capacity, now));
        let elapsed = now.duration_since(last).as_secs_f64();
        let (level, decision) = token_bucket_step(spec, level, elapsed, tokens);
        inner.buckets.insert(bucket.to_string(), (level, now));
        Ok(decision)
    }

    async fn clear_namespace(&self) -> StateResult<()> {
        *self.lock() = Inner::default();
        Ok(())
    }

    async fn ping(&self) -> StateResult<()> {
        Ok(())
    }
}
