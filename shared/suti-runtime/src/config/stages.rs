//! The `stages` section: how each queue-consuming service takes deliveries, and the names of the
//! six services.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One queue-consuming stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Unacknowledged deliveries the broker hands this worker at once.
    pub prefetch: u16,
    /// Deliveries handled at the same time.
    pub concurrency: usize,
    /// Limit on one handler call, seconds; past it the attempt counts as a retryable failure.
    pub handler_timeout_secs: u64,
    /// How long a completed message's idempotency mark is kept, hours.
    pub idempotency_ttl_hours: u64,
    /// Seconds that work in flight may take to finish once shutdown is asked, before its
    /// deliveries go back to the queue. The orchestrator's own grace period (Kubernetes'
    /// `terminationGracePeriodSeconds`, compose's `stop_grace_period`) must be longer.
    pub shutdown_grace_secs: u64,
}

impl StageConfig {
    /// Adds to `problems` what in this stage's settings cannot work; `name` is its key under
    /// `stages` (`clip_filter`).
    pub fn validate(&self, name: &str, problems: &mut Vec<String>) {
        if self.prefetch == 0 {
            problems.push(format!("stages.{name}.prefetch must be at least 1"));
        }
        if self.concurrency == 0 {
            problems.push(format!("stages.{name}.concurrency must be at least 1"));
        }
        if self.concurrency > usize::from(self.prefetch) {
            problems.push(format!(
                "stages.{name}.concurrency ({}) cannot exceed its prefetch ({})",
                self.concurrency, self.prefetch
            ));
        }
        if self.handler_timeout_secs == 0 {
            problems.push(format!(
                "stages.{name}.handler_timeout_secs must be positive"
            ));
        }
        if self.shutdown_grace_secs == 0 {
            problems.push(format!(
                "stages.{name}.shutdown_grace_secs must be at least 1"
            ));
        }
    }
}

/// Settings of every queue-consuming stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagesConfig {
    /// crawler-clusterer.
    pub crawler_clusterer: StageConfig,
    /// expert-finetuner.
    pub expert_finetuner: StageConfig,
    /// generator.
    pub generator: StageConfig,
    /// clip-filter.
    pub clip_filter: StageConfig,
    /// apprentice-trainer.
    pub apprentice_trainer: StageConfig,
}

impl StagesConfig {
    /// The settings of a queue-consuming service (`None` for serving).
    pub fn for_service(&self, service: ServiceName) -> Option<&StageConfig> {
        match service {
            ServiceName::CrawlerClusterer => Some(&self.crawler_clusterer),
            ServiceName::ExpertFinetuner => Some(&self.expert_finetuner),
            ServiceName::Generator => Some(&self.generator),
            ServiceName::ClipFilter => Some(&self.clip_filter),
            ServiceName::ApprenticeTrainer => Some(&self.apprentice_trainer),
            ServiceName::Serving => None,
        }
    }

    /// Adds to `problems` what in this section parses but cannot work, naming each stage.
    pub fn validate(&self, problems: &mut Vec<String>) {
        for service in ServiceName::ALL {
            if let Some(stage) = self.for_service(service) {
                stage.validate(service.metric_name(), problems);
            }
        }
    }
}

/// The six services of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceName {
    /// Mines subject clusters from web pages and WARC files.
    CrawlerClusterer,
    /// Fine-tunes one LoRA expert per cluster.
    ExpertFinetuner,
    /// Lets each expert generate its subject in new contexts.
    Generator,
    /// Keeps the generations that pass the ΔCLIP filter.
    ClipFilter,
    /// Trains the apprentice on the accepted triplets.
    ApprenticeTrainer,
    /// Serves the apprentice over HTTP.
    Serving,
}

impl ServiceName {
    /// Every service, in pipeline order.
    pub const ALL: [ServiceName; 6] = [
        Self::CrawlerClusterer,
        Self::ExpertFinetuner,
        Self::Generator,
        Self::ClipFilter,
        Self::ApprenticeTrainer,
        Self::Serving,
    ];

    /// The CLI and container name (`expert-finetuner`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrawlerClusterer => "crawler-clusterer",
            Self::ExpertFinetuner => "expert-finetuner",
            Self::Generator => "generator",
            Self::ClipFilter => "clip-filter",
            Self::ApprenticeTrainer => "apprentice-trainer",
            Self::Serving => "serving",
        }
    }

    /// The metric-name form (`expert_finetuner`), as in `suti_expert_finetuner_received_total`.
    pub fn metric_name(self) -> &'static str {
        match self {
            Self::CrawlerClusterer => "crawler_clusterer",
            Self::ExpertFinetuner => "expert_finetuner",
            Self::Generator => "generator",
            Self::ClipFilter => "clip_filter",
            Self::ApprenticeTrainer => "apprentice_trainer",
            Self::Serving => "serving",
        }
    }

    /// The stage queue this service consumes (un-namespaced), if it consumes one.
    pub fn input_queue(self) -> Option<&'static str> {
        match self {
            Self::CrawlerClusterer => Some("crawl.requests"),
            Self::ExpertFinetuner => Some("clusters"),
            Self::Generator => Some("experts"),
            Self::ClipFilter => Some("candidates"),
            Self::ApprenticeTrainer => Some("examples"),
            Self::Serving => None,
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == s || n.metric_name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|n| n.as_str()).collect();
                format!(
                    "unknown service {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}
