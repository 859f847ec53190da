//! API keys: which keys are accepted (stored as SHA-256 digests, compared in constant time) and
//! each key's rate, a token bucket shared by every replica through the state backend.

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};
use suti_runtime::SutiConfig;
use suti_stage::ServiceError;
use suti_state::TokenBucket;

use super::{ApiError, ApiState};

/// API keys (by SHA-256) and their per-key rate.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    /// SHA-256 digests of the accepted keys.
    pub hashes: Vec<[u8; 32]>,
    /// Per-key token bucket, shared by replicas through the state backend.
    pub rate: TokenBucket,
}

/// API keys from the configuration (none: the API is open; an error when keys are required but
/// none are given).
pub fn api_keys(config: &SutiConfig) -> Result<Option<ApiKeys>, ServiceError> {
    const SETTING: &str = "serving.api_key_hashes";
    let s = &config.serving;
    if s.api_key_hashes.is_empty() {
        if s.require_api_key {
            return Err(ServiceError::config(
                SETTING,
                "empty while serving.require_api_key is set: give the SHA-256 of at least one key \
                 (SUTI__SERVING__API_KEY_HASHES), or set serving.require_api_key to false to serve \
                 an open API",
            ));
        }
        return Ok(None);
    }
    let hashes = s
        .api_key_hashes
        .iter()
        .map(|h| {
            let bytes = hex::decode(h).map_err(|e| ServiceError::config(SETTING, e))?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| ServiceError::config(SETTING, "not a SHA-256 digest"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(ApiKeys {
        hashes,
        rate: TokenBucket {
            capacity: s.key_burst,
            refill_per_second: s.key_rate_per_second,
        },
    }))
}

/// Checks the API key and its rate, when keys are configured.
pub(super) async fn authorise(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(keys) = &state.keys else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "an API key is required (Authorization: Bearer <key>)",
            )
        })?;
    let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    // Compare against every stored digest without an early exit, so timing says nothing about
    // which (or how much of a) key matched.
    let matched = keys.hashes.iter().fold(0u8, |found, stored| {
        found | constant_time_eq(stored, &digest) as u8
    });
    if matched == 0 {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "the API key is not valid",
        ));
    }
    let bucket = format!("serving:key:{}", hex::encode(&digest[..8]));
    match state.state.take_tokens(&bucket, keys.rate, 1.0).await {
        Ok(decision) if decision.is_allowed() => Ok(()),
        Ok(suti_state::RateDecision::Limited { retry_after }) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests for this API key",
        )
        .retry_after(retry_after.as_secs().max(1))),
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "state_unavailable",
            format!("cannot check the rate limit: {e}"),
        )),
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_required_key_without_hashes_is_refused_and_an_open_api_is_allowed_otherwise() {
        let mut config = SutiConfig::defaults().clone();
        assert!(api_keys(&config).expect("open API allowed").is_none());
        config.serving.require_api_key = true;
        let refused = api_keys(&config).expect_err("no key while one is required");
        let why = std::error::Error::source(&refused).map(ToString::to_string);
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("require_api_key")),
            "{refused}: {why:?}"
        );
        config.serving.api_key_hashes = vec!["ab".repeat(32)];
        let keys = api_keys(&config).expect("a key given").expect("keys");
        assert_eq!(keys.hashes, vec![[0xab; 32]]);
    }
}
