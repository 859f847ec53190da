//! Politeness shared across replicas (architecture.md §2, §10): robots.txt honoured (fetched once
//! per origin and cached), a crawl frontier in the state backend so that no URL of a run is fetched
//! twice by any replica, and a per-host token bucket in the state backend so that replicas together
//! keep each host's rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use suti_state::{RateDecision, SharedState, StateError, TokenBucket};
use url::Url;

use crate::fetch::{FetchSkip, Fetcher};

/// How long a robots.txt answer is trusted.
const ROBOTS_TTL: Duration = Duration::from_secs(3600);
/// Longest robots.txt read.
const ROBOTS_MAX_BYTES: usize = 512 << 10;

/// What robots.txt says about an origin.
#[derive(Clone)]
enum RobotsRules {
    /// Parsed rules.
    Rules(Arc<texting_robots::Robot>),
    /// No robots.txt (4xx): everything allowed.
    AllowAll,
    /// robots.txt unreachable or failing (5xx, timeout): nothing allowed, per RFC 9309.
    DisallowAll,
}

/// Robots, frontier and rate limit for one crawler process.
pub struct Politeness {
    state: SharedState,
    fetcher: Fetcher,
    user_agent: String,
    rate: TokenBucket,
    robots: Mutex<HashMap<String, (RobotsRules, Instant)>>,
}

impl Politeness {
    /// Politeness over `state`, fetching robots.txt with `fetcher`, at `rate` per host.
    pub fn new(state: SharedState, fetcher: Fetcher, rate: TokenBucket) -> Self {
        let user_agent = fetcher.limits().user_agent.clone();
        Self {
            state,
            fetcher,
            user_agent,
            rate,
            robots: Mutex::new(HashMap::new()),
        }
    }

    fn origin(url: &Url) -> String {
        url.origin().ascii_serialization()
    }

    async fn rules(&self, url: &Url) -> RobotsRules {
        let origin = Self::origin(url);
        if let Some((rules, at)) = self
            .robots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&origin)
            && at.elapsed() < ROBOTS_TTL
        {
            return rules.clone();
        }
        let rules = match url.join("/robots.txt") {
            // Servers label robots.txt inconsistently; any content type is read as rules.
            Ok(robots_url) => match self.fetcher.fetch(&robots_url, &[""]).await {
                Ok(fetched) if fetched.body.len() <= ROBOTS_MAX_BYTES => {
                    match texting_robots::Robot::new(&self.user_agent, &fetched.body) {
                        Ok(robot) => RobotsRules::Rules(Arc::new(robot)),
                        Err(_) => RobotsRules::AllowAll,
                    }
                }
                Err(FetchSkip::Status(code)) if (400..500).contains(&code) => RobotsRules::AllowAll,
                _ => RobotsRules::DisallowAll,
            },
            Err(_) => RobotsRules::DisallowAll,
        };
        self.robots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(origin, (rules.clone(), Instant::now()));
        rules
    }

    /// Whether robots.txt allows fetching `url`.
    pub async fn allowed(&self, url: &Url) -> bool {
        match self.rules(url).await {
            RobotsRules::Rules(robot) => robot.allowed(url.as_str()),
            RobotsRules::AllowAll => true,
            RobotsRules::DisallowAll => false,
        }
    }

    /// Claims `url` in the run's frontier for `owner` (the crawl request's message id): true for
    /// exactly one owner across every replica, and true again for that owner. A crawl redelivered
    /// after its worker died thus fetches again what its first attempt had claimed, instead of
    /// finding everything taken and mining nothing. (A crash between the two writes below loses
    /// that one URL to the redelivery: the window is one Redis round trip.)
    pub async fn claim(&self, run_id: &str, owner: &str, url: &Url) -> Result<bool, StateError> {
        let owned = format!("frontier:{run_id}:owner:{owner}");
        if self
            .state
            .set_add(&format!("frontier:{run_id}"), url.as_str())
            .await?
        {
            self.state.set_add(&owned, url.as_str()).await?;
            return Ok(true);
        }
        self.state.set_contains(&owned, url.as_str()).await
    }

    /// Waits until the host of `url` has a token in the shared bucket.
    pub async fn wait_turn(&self, url: &Url) -> Result<(), StateError> {
        let bucket = format!("host:{}", url.host_str().unwrap_or(""));
        loop {
            match self.state.take_tokens(&bucket, self.rate, 1.0).await? {
                RateDecision::Allowed => return Ok(()),
                RateDecision::Limited { retry_after } => {
                    tokio::time::sleep(retry_after.min(Duration::from_secs(5))).await;
                }
            }
        }
    }
}
