//! The stage handler: a `crawl.request.v1` in, the clusters it mined out — normalised and raw
//! images, a manifest per cluster, and one `cluster.mined.v1` per cluster, all under keys derived
//! from content, so a redelivered request rewrites the same artifacts and message ids.

use std::sync::Arc;

use async_trait::async_trait;
use suti_messages::{ClusterManifest, ClusterMember, ClusterMinedV1, CrawlRequestV1};
use suti_models::image_tower::ImageTower;
use suti_stage::{HandleContext, Handler, HandlerError, Outcome};
use suti_storage::ObjectKey;
use url::Url;

use crate::engine::{MineSettings, MinedCluster, cluster_pages, crawl_web, mine_warc};
use crate::fetch::Fetcher;
use crate::politeness::Politeness;

/// The crawler-clusterer's handler.
pub struct CrawlHandler {
    /// The HTTP client.
    pub fetcher: Fetcher,
    /// robots.txt, frontier and rate (over the shared state backend).
    pub politeness: Arc<Politeness>,
    /// The image tower.
    pub tower: Arc<ImageTower>,
    /// Mining settings.
    pub settings: MineSettings,
    /// Largest WARC record read, bytes.
    pub max_warc_record: usize,
    /// Where the crawl counts go, if anywhere.
    pub metrics: Option<crate::metrics::CrawlerMetrics>,
}

fn key(s: String) -> Result<ObjectKey, HandlerError> {
    Ok(ObjectKey::new(s)?)
}

impl CrawlHandler {
    fn outcome(&self, run_id: &str, clusters: Vec<MinedCluster>) -> Result<Outcome, HandlerError> {
        let mut outcome = Outcome::none();
        for cluster in clusters {
            let mut members = Vec::new();
            for m in &cluster.members {
                let image_key = m.image.image_key();
                let raw_key = m.image.raw_key();
                outcome = outcome
                    .with_artifact(key(raw_key.clone())?, m.raw.clone())
                    .with_artifact(key(image_key.clone())?, m.image.normalised_png.clone());
                members.push(ClusterMember {
                    image_key,
                    raw_key,
                    source_url: m.reference.url.to_string(),
                    caption: if m.reference.caption.is_empty() {
                        m.reference.alt.clone()
                    } else {
                        m.reference.caption.clone()
                    },
                });
            }
            let manifest_key = suti_storage::layout::cluster_manifest(&cluster.id);
            let manifest = ClusterManifest {
                run_id: run_id.to_string(),
                cluster_id: cluster.id.clone(),
                subject_noun: cluster.noun.clone(),
                group_key: cluster.group_key.clone(),
                title: cluster.title.clone(),
                members: members.clone(),
            };
            let bytes = rmp_serde::to_vec_named(&manifest)
                .map_err(|e| HandlerError::permanent("manifest", e))?;
            outcome = outcome.with_artifact(key(manifest_key.clone())?, bytes);
            let message = ClusterMinedV1 {
                run_id: run_id.to_string(),
                cluster_id: cluster.id.clone(),
                manifest_key,
                subject_noun: cluster.noun,
                image_keys: members.into_iter().map(|m| m.image_key).collect(),
            };
            outcome = outcome.with_message(&message, format!("cluster-{}", cluster.id))?;
        }
        Ok(outcome)
    }
}

#[async_trait]
impl Handler for CrawlHandler {
    type Input = CrawlRequestV1;

    async fn handle(
        &self,
        request: CrawlRequestV1,
        ctx: &HandleContext,
    ) -> Result<Outcome, HandlerError> {
        let limits = &request.limits;
        let mut settings = self.settings.clone();
        settings.max_images_per_page = settings
            .max_images_per_page
            .min(limits.max_images_per_page as usize);
        let seeds: Vec<Url> = request
            .seed_urls
            .iter()
            .map(|s| {
                Url::parse(s)
                    .map_err(|e| HandlerError::permanent("bad_seed", format!("seed {s:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let (mut pages, mut stats) = crawl_web(
            &seeds,
            &request.run_id,
            &ctx.message_id,
            limits.max_pages as usize,
            limits.max_depth as usize,
            &self.fetcher,
            &self.politeness,
            &settings,
        )
        .await;
        for warc_key in &request.warc_keys {
            let bytes = ctx.storage.get(&key(warc_key.clone())?).await?;
            let records = suti_data::warc::read_warc(&bytes, self.max_warc_record)
                .map_err(|e| HandlerError::permanent("bad_warc", format!("{warc_key}: {e}")))?;
            let (warc_pages, warc_stats) = mine_warc(&records, &settings).await;
            pages.extend(warc_pages);
            stats.merge(&warc_stats);
        }
        let tower = self.tower.clone();
        let (mut clusters, _rejected) =
            tokio::task::spawn_blocking(move || cluster_pages(&pages, &tower, &settings))
                .await
                .map_err(|e| HandlerError::retryable("clustering_panicked", e))?
                .map_err(|e| HandlerError::retryable("clustering", e))?;
        clusters.truncate(limits.max_clusters as usize);
        if let Some(metrics) = &self.metrics {
            metrics.record(&stats, clusters.len());
        }
        tracing::info!(run = %request.run_id, pages = stats.pages, images = stats.images,
                       clusters = clusters.len(), skips = ?stats.skips, "crawl mined");
        self.outcome(&request.run_id, clusters)
    }
}
