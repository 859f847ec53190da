//! Redis backend: a `ConnectionManager` (reconnects by itself) with every key under a namespace,
//! and the token bucket as a Lua script so that replicas share one bucket atomically.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisError, RetryMethod, Script};

use crate::{RateDecision, StateError, StateResult, StateStore, TokenBucket};

/// Refill for the elapsed time on Redis's own clock, then take the tokens if there are enough; the
/// same arithmetic as `token_bucket_step`. The wait is returned as a string because Redis truncates
/// Lua numbers to integers.
const TOKEN_BUCKET_LUA: &str = r#"
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local requested = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(state[1])
local at = tonumber(state[2])
if level == nil then level = capacity; at = now end
local elapsed = now - at
if elapsed < 0 then elapsed = 0 end
level = math.min(capacity, level + elapsed * rate)
local allowed = 0
local wait = 0
if level >= requested then
  level = level - requested
  allowed = 1
elseif rate > 0 then
  wait = (requested - level) / rate
else
  wait = -1
end
redis.call('HSET', KEYS[1], 'level', tostring(level), 'at', tostring(now))
local ttl = 3600000
if rate > 0 then ttl = math.ceil(capacity / rate * 1000) + 1000 end
redis.call('PEXPIRE', KEYS[1], ttl)
return {allowed, tostring(wait)}
"#;

/// Redis-backed state.
#[derive(Clone)]
pub struct RedisState {
    connection: ConnectionManager,
    namespace: String,
    token_bucket: Script,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn state_error(err: RedisError) -> StateError {
    let retryable = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || !matches!(err.retry_method(), RetryMethod::NoRetry);
    if retryable {
        StateError::Unavailable(err.to_string())
    } else {
        StateError::Refused(err.to_string())
    }
}

impl RedisState {
    /// Connects to `url` (`redis://[:password@]host:port/db`); keys go under `namespace:`.
    pub async fn connect(url: &str, namespace: &str, timeout: Duration) -> StateResult<Self> {
        let client = redis::Client::open(url).map_err(|e| StateError::Config(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let connection =
            tokio::time::timeout(timeout, client.get_connection_manager_with_config(config))
                .await
                .map_err(|_| StateError::Unavailable("timed out connecting to redis".into()))?
                .map_err(state_error)?;
        Ok(Self {
            connection,
            namespace: namespace.to_string(),
            token_bucket: Script::new(TOKEN_BUCKET_LUA),
        })
    }

    fn key(&self, kind: &str, key: &str) -> String {
        format!("{}:{kind}:{key}", self.namespace)
    }
}

#[async_trait]
impl StateStore for RedisState {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn mark_if_absent(&self, key: &str, ttl: Option<Duration>) -> StateResult<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key("mark", key)).arg(1).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        let reply: Option<String> = cmd
            .query_async(&mut self.connection.clone())
            .await
            .map_err(state_error)?;
        Ok(reply.is_some())
    }

    async fn is_marked(&self, key: &str) -> StateResult<bool> {
        self.connection
            .clone()
            .exists(self.key("mark", key))
            .await
            .map_err(state_error)
    }

    async fn unmark(&self, key: &str) -> StateResult<()> {
        self.connection
            .clone()
            .del::<_, ()>(self.key("mark", key))
            .await
            .map_err(state_error)
    }

    async fn incr(&self, key: &str, by: i64) -> StateResult<i64> {
        self.connection
            .clone()
            .incr(self.key("counter", key), by)
            .await
            .map_err(state_error)
    }

    async fn counter(&self, key: &str) -> StateResult<i64> {
        let value: Option<i64> = self
            .connection
            .clone()
            .get(self.key("counter", key))
            .await
            .map_err(state_error)?;
        Ok(value.unwrap_or(0))
    }

    async fn set_add(&self, set: &str, member: &str) -> StateResult<bool> {
        let added: i64 = self
            .connection
            .clone()
            .sadd(self.key("set", set), member)
            .await
            .map_err(state_error)?;
        Ok(added == 1)
    }

    async fn set_contains(&self, set: &str, member: &str) -> StateResult<bool> {
        self.connection
            .clone()
            .sismember(self.key("set", set), member)
            .await
            .map_err(state_error)
    }

    async fn set_len(&self, set: &str) -> StateResult<u64> {
        self.connection
            .clone()
            .scard(self.key("set", set))
            .await
            .map_err(state_error)
    }

    async fn take_tokens(
        &self,
        bucket: &str,
        spec: TokenBucket,
        tokens: f64,
    ) -> StateResult<RateDecision> {
        let (allowed, wait): (i64, String) = self
            .token_bucket
            .key(self.key("bucket", bucket))
            .arg(spec.capacity)
            .arg(spec.refill_per_second)
            .arg(tokens)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(state_error)?;
        if allowed == 1 {
            return Ok(RateDecision::Allowed);
        }
        let wait: f64 = wait.parse().unwrap_or(-1.0);
        let retry_after = if wait < 0.0 {
            Duration::MAX
        } else {
            Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX)
        };
        Ok(RateDecision::Limited { retry_after })
    }

    async fn clear_namespace(&self) -> StateResult<()> {
        let mut connection = self.connection.clone();
        let pattern = format!("{}:*", self.namespace);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(state_error)?;
            if !keys.is_empty() {
                connection.del::<_, ()>(keys).await.map_err(state_error)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn ping(&self) -> StateResult<()> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.connection.clone())
            .await
            .map(drop)
            .map_err(state_error)
    }
}
