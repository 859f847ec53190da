//! What the crawler-clusterer stage tests share: the handler over a fetcher and shared state,
//! the stage's settings, the crawl counts as the admin port exports them, and the nouns the
//! crawl must find.

use std::sync::Arc;
use std::time::Duration;

use crawler_clusterer::engine::MineSettings;
use crawler_clusterer::fetch::Fetcher;
use crawler_clusterer::handler::CrawlHandler;
use crawler_clusterer::metrics::CrawlerMetrics;
use crawler_clusterer::politeness::Politeness;
use prometheus::Registry;
use suti_data::synthweb::Site;
use suti_models::image_tower::ImageTower;
use suti_queue::Topology;
use suti_stage::StageSettings;
use suti_state::{SharedState, TokenBucket};

/// The crawl handler: `fetcher` at `rate` per host, its frontier and rate in `state`.
pub fn crawl_handler(
    state: SharedState,
    fetcher: Fetcher,
    rate: TokenBucket,
    tower: Arc<ImageTower>,
    metrics: CrawlerMetrics,
) -> CrawlHandler {
    CrawlHandler {
        politeness: Arc::new(Politeness::new(state, fetcher.clone(), rate)),
        fetcher,
        tower,
        settings: MineSettings::default(),
        max_warc_record: 64 << 20,
        metrics: Some(metrics),
    }
}

/// The stage's settings: one crawl at a time from `topology`'s crawl requests, under the name
/// `service` (which names its completion marks).
pub fn crawl_settings(service: &str, topology: &Topology) -> StageSettings {
    StageSettings {
        service: service.into(),
        queue: topology.queue_name("crawl.requests"),
        prefetch: 1,
        concurrency: 1,
        handler_timeout: Duration::from_secs(600),
        idempotency_ttl: Duration::from_secs(3600),
        shutdown_grace: Duration::from_secs(10),
        outage_patience: Duration::from_secs(30),
    }
}

/// `registry`'s metrics in the text exposition format.
pub fn exported(registry: &Registry) -> String {
    let mut text = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut text,
    )
    .unwrap();
    String::from_utf8(text).unwrap()
}

/// The nouns of the subjects planted in `site`, sorted.
pub fn planted_nouns(site: &Site) -> Vec<String> {
    let mut nouns: Vec<String> = site
        .pages()
        .iter()
        .map(|p| p.subject.class.noun.clone())
        .collect();
    nouns.sort();
    nouns
}
