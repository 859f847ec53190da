//! Readiness: named checks (broker, storage, state, and whatever a service adds — a model loaded,
//! say), run concurrently with a deadline when `/health/readyz` is asked.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The readiness checks of one process. Clones share them.
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<RwLock<BTreeMap<String, Check>>>,
    flags: Arc<RwLock<BTreeMap<String, Option<String>>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .checks
            .read()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Health").field("checks", &names).finish()
    }
}

/// The answer of a readiness probe.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReadinessReport {
    /// Whether every check passed.
    pub ready: bool,
    /// `ok` or the failure, per check.
    pub checks: BTreeMap<String, String>,
}

/// How long one check may take before it counts as failed.
const CHECK_DEADLINE: Duration = Duration::from_secs(3);

impl Health {
    /// No checks: ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an asynchronous check.
    pub fn add_check<F>(&self, name: &str, check: F)
    where
        F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
    {
        if let Ok(mut checks) = self.checks.write() {
            checks.insert(name.to_string(), Arc::new(check));
        }
    }

    /// Sets a flag check: ready when `problem` is `None`, otherwise not ready with that reason.
    pub fn set_flag(&self, name: &str, problem: Option<String>) {
        if let Ok(mut flags) = self.flags.write() {
            flags.insert(name.to_string(), problem);
        }
    }

    /// Runs every check.
    pub async fn report(&self) -> ReadinessReport {
        let checks: Vec<(String, Check)> = self
            .checks
            .read()
            .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let results =
            futures::future::join_all(checks.into_iter().map(|(name, check)| async move {
                let outcome = match tokio::time::timeout(CHECK_DEADLINE, check()).await {
                    Ok(Ok(())) => "ok".to_string(),
                    Ok(Err(e)) => e,
                    Err(_) => format!("no answer within {CHECK_DEADLINE:?}"),
                };
                (name, outcome)
            }))
            .await;
        let mut report: BTreeMap<String, String> = results.into_iter().collect();
        if let Ok(flags) = self.flags.read() {
            for (name, problem) in flags.iter() {
                report.insert(name.clone(), problem.clone().unwrap_or_else(|| "ok".into()));
            }
        }
        ReadinessReport {
            ready: report.values().all(|v| v == "ok"),
            checks: report,
        }
    }
}
