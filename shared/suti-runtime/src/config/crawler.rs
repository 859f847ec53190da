//! The `crawler` section: crawler-clusterer's politeness, limits and clustering thresholds.

use serde::{Deserialize, Serialize};

use super::choice::named_choice;

/// What the members of a candidate cluster share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterGrouping {
    /// The page they were found on.
    Page,
    /// The page's directory.
    Directory,
    /// The page's host.
    Host,
}

named_choice!(ClusterGrouping {
    Page = "page",
    Directory = "directory",
    Host = "host",
});

/// crawler-clusterer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrawlerConfig {
    /// Private address ranges the crawler may reach (CIDR strings).
    pub allow_private: Vec<String>,
    /// Largest body fetched, bytes.
    pub max_bytes: usize,
    /// Deadline of one fetch, seconds.
    pub timeout_secs: u64,
    /// Redirects followed at most.
    pub max_redirects: usize,
    /// `User-Agent`, also matched against robots.txt.
    pub user_agent: String,
    /// Sustained requests per second per host, across replicas.
    pub host_rate_per_second: f64,
    /// Burst of requests per host.
    pub host_burst: f64,
    /// What the members of a candidate cluster share.
    pub grouping: ClusterGrouping,
    /// Fewest members of a cluster.
    pub min_members: usize,
    /// Most members of a cluster.
    pub max_members: usize,
    /// Smallest similarity to the medoid a member may have.
    pub min_similarity: f32,
    /// Side of the normalised images.
    pub model_size: u32,
    /// Smallest image side kept.
    pub min_image_side: u32,
}

impl CrawlerConfig {
    /// Adds to `problems` what in this section parses but cannot work.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.min_members == 0 || self.min_members > self.max_members {
            problems.push("crawler.min_members must be between 1 and crawler.max_members".into());
        }
        if self.host_rate_per_second <= 0.0 || self.host_burst < 1.0 {
            problems.push(
                "crawler.host_rate_per_second must be positive and host_burst at least 1".into(),
            );
        }
    }
}
