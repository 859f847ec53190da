//! The crawler's metrics (architecture.md §11), besides the stage harness's standard ones.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::engine::CrawlStats;

/// Pages, images, clusters, bytes and skips by reason.
#[derive(Debug, Clone)]
pub struct CrawlerMetrics {
    pages: IntCounter,
    images: IntCounter,
    clusters: IntCounter,
    bytes: IntCounter,
    skips: IntCounterVec,
}

impl CrawlerMetrics {
    /// Creates the metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let skips = IntCounterVec::new(
            Opts::new(
                "suti_crawler_clusterer_skips_total",
                "Pages and images skipped, by reason (robots_disallowed, private_address, too_large, timeout, …)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(skips.clone()))?;
        Ok(Self {
            pages: counter(
                "suti_crawler_clusterer_pages_total",
                "Pages fetched or read from archives and parsed",
            )?,
            images: counter(
                "suti_crawler_clusterer_images_total",
                "Images fetched, decoded and normalised",
            )?,
            clusters: counter(
                "suti_crawler_clusterer_clusters_total",
                "Subject clusters mined",
            )?,
            bytes: counter(
                "suti_crawler_clusterer_fetched_bytes_total",
                "Bytes fetched or read from archives",
            )?,
            skips,
        })
    }

    /// Adds one crawl's counts.
    pub fn record(&self, stats: &CrawlStats, clusters: usize) {
        self.pages.inc_by(stats.pages);
        self.images.inc_by(stats.images);
        self.bytes.inc_by(stats.bytes);
        self.clusters.inc_by(clusters as u64);
        for (reason, n) in &stats.skips {
            self.skips.with_label_values(&[reason]).inc_by(*n);
        }
    }
}
