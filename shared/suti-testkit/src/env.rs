//! Environments for suti processes under test (or for `SutiConfig::load` in the test's own
//! process): which broker, state and namespace to use, as the `SUTI__…` variables a deployment
//! would set.

use crate::{amqp_url, redis_url};

/// Owned `(name, value)` pairs from borrowed ones, the form a process environment is passed in.
pub fn env_vars<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// The environment that points a suti process's queue at `queue_url` and its state at
/// `state_url`, both under `namespace`.
pub fn backends_env(queue_url: &str, state_url: &str, namespace: &str) -> Vec<(String, String)> {
    env_vars([
        ("SUTI__QUEUE__URL", queue_url),
        ("SUTI__QUEUE__NAMESPACE", namespace),
        ("SUTI__STATE__URL", state_url),
        ("SUTI__STATE__NAMESPACE", namespace),
    ])
}

/// [`backends_env`] for the machine's RabbitMQ and Redis ([`amqp_url`], [`redis_url`]).
pub fn loopback_backends_env(namespace: &str) -> Vec<(String, String)> {
    backends_env(&amqp_url(), &redis_url(), namespace)
}
