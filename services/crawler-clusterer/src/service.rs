//! Running crawler-clusterer as a service: configuration → admin port → backends → the stage.

use std::sync::Arc;
use std::time::Duration;

use suti_runtime::{ServiceName, SutiConfig};
use suti_stage::ServiceHost;
use suti_state::TokenBucket;
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterParams;
use crate::engine::MineSettings;
use crate::fetch::{FetchLimits, Fetcher};
use crate::handler::CrawlHandler;
use crate::politeness::Politeness;
use crate::url_policy::{Cidr, UrlPolicy};

pub use suti_stage::ServiceError;

/// Mining settings and fetch limits from the configuration.
pub fn settings_from(
    config: &SutiConfig,
) -> Result<(UrlPolicy, FetchLimits, MineSettings, TokenBucket), ServiceError> {
    let c = &config.crawler;
    let allow = c
        .allow_private
        .iter()
        .map(|s| {
            s.parse::<Cidr>()
                .map_err(|e| ServiceError::config("crawler.allow_private", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let limits = FetchLimits {
        max_bytes: c.max_bytes,
        timeout: Duration::from_secs(c.timeout_secs),
        max_redirects: c.max_redirects,
        user_agent: c.user_agent.clone(),
        ..FetchLimits::default()
    };
    let settings = MineSettings {
        grouping: c.grouping,
        cluster: ClusterParams {
            min_members: c.min_members,
            max_members: c.max_members,
            min_similarity: c.min_similarity,
            ..ClusterParams::default()
        },
        model_size: c.model_size,
        min_image_side: c.min_image_side,
        ..MineSettings::default()
    };
    let rate = TokenBucket {
        capacity: c.host_burst,
        refill_per_second: c.host_rate_per_second,
    };
    Ok((UrlPolicy::new(allow), limits, settings, rate))
}

/// Runs the crawler-clusterer until `shutdown` is cancelled.
pub async fn run(config: SutiConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let (policy, limits, settings, rate) = settings_from(&config)?;
    let tower_path = suti_factory::towers::image_tower_path(&config.models.image_tower);
    let device = suti_factory::device::model_device(config.models.device)
        .map_err(|e| ServiceError::setup("choosing the model device", e))?;
    let tower = suti_factory::towers::load_image_tower(&tower_path, &device)
        .map_err(|e| ServiceError::setup("loading the image tower", e))?;
    let fetcher = Fetcher::new(policy, limits)
        .map_err(|e| ServiceError::setup("building the crawler's HTTP client", e))?;
    let host = ServiceHost::start(ServiceName::CrawlerClusterer, config, shutdown).await?;
    let handler = CrawlHandler {
        politeness: Arc::new(Politeness::new(
            host.backends.state.clone(),
            fetcher.clone(),
            rate,
        )),
        fetcher,
        tower: Arc::new(tower),
        settings,
        max_warc_record: 256 << 20,
        metrics: Some(crate::metrics::CrawlerMetrics::register(&host.registry)?),
    };
    host.run_stage(handler).await?;
    Ok(())
}
