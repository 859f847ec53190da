//! The crawl engine: pages from the web (a polite breadth-first crawl) or from a WARC file, their
//! images ingested, embedded with the image tower and clustered. The same pages give the same
//! clusters whichever source they came from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use candle_core::Tensor;
use suti_data::DecodeLimits;
use suti_models::image_tower::{INPUT_SIZE, ImageTower, preprocess};
use url::Url;

use crate::cluster::{Candidate, ClusterGrouping, ClusterParams, cluster_group, group_key};
use crate::extract::{PageImage, extract};
use crate::fetch::{FetchSkip, Fetcher};
use crate::ingest::{IngestedImage, ingest};
use crate::politeness::Politeness;

/// How pages become clusters.
#[derive(Debug, Clone)]
pub struct MineSettings {
    /// What images are grouped by.
    pub grouping: ClusterGrouping,
    /// Clustering thresholds.
    pub cluster: ClusterParams,
    /// Side of the normalised images.
    pub model_size: u32,
    /// Smallest image side kept.
    pub min_image_side: u32,
    /// Decoding limits.
    pub decode: DecodeLimits,
    /// Images taken from one page at most.
    pub max_images_per_page: usize,
}

impl Default for MineSettings {
    fn default() -> Self {
        Self {
            grouping: ClusterGrouping::Page,
            cluster: ClusterParams {
                min_similarity: 0.1,
                ..ClusterParams::default()
            },
            model_size: 64,
            min_image_side: 32,
            decode: DecodeLimits::default(),
            max_images_per_page: 32,
        }
    }
}

/// An image found on a page and ingested.
#[derive(Debug, Clone)]
pub struct FoundImage {
    /// Where it was referenced.
    pub reference: PageImage,
    /// The ingested image.
    pub image: IngestedImage,
    /// The bytes as fetched.
    pub raw: bytes::Bytes,
}

/// A page with its ingested images.
#[derive(Debug, Clone)]
pub struct MinedPage {
    /// The page URL.
    pub url: Url,
    /// Its title.
    pub title: String,
    /// Its images, in page order.
    pub images: Vec<FoundImage>,
}

/// A cluster ready to store.
#[derive(Debug, Clone)]
pub struct MinedCluster {
    /// Deterministic id.
    pub id: String,
    /// The group it came from (a page URL by default).
    pub group_key: String,
    /// Subject noun.
    pub noun: String,
    /// Title of the (first) page of the group.
    pub title: String,
    /// Members, closest to the medoid first.
    pub members: Vec<FoundImage>,
}

/// What a crawl did, by count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrawlStats {
    /// Pages fetched (or read from the archive) and parsed.
    pub pages: u64,
    /// Images ingested.
    pub images: u64,
    /// Bytes fetched.
    pub bytes: u64,
    /// Skips by reason.
    pub skips: BTreeMap<String, u64>,
}

impl CrawlStats {
    /// Adds another crawl's counts.
    pub fn merge(&mut self, other: &CrawlStats) {
        self.pages += other.pages;
        self.images += other.images;
        self.bytes += other.bytes;
        for (reason, n) in &other.skips {
            *self.skips.entry(reason.clone()).or_default() += n;
        }
    }

    fn skip(&mut self, reason: &str) {
        *self.skips.entry(reason.to_string()).or_default() += 1;
    }
}

/// Clusters mined pages: groups, embeds (features centred on the crawl's mean, which separates
/// subjects from banners and thumbnails far better than raw features), and filters.
pub fn cluster_pages(
    pages: &[MinedPage],
    tower: &ImageTower,
    settings: &MineSettings,
) -> candle_core::Result<(Vec<MinedCluster>, BTreeMap<String, u64>)> {
    let mut groups: BTreeMap<String, Vec<FoundImage>> = BTreeMap::new();
    let mut titles: HashMap<String, String> = HashMap::new();
    for page in pages {
        let key = group_key(settings.grouping, &page.url);
        titles
            .entry(key.clone())
            .or_insert_with(|| page.title.clone());
        groups
            .entry(key)
            .or_default()
            .extend(page.images.iter().cloned());
    }
    // Embed every distinct image once.
    let mut features: HashMap<String, Vec<f32>> = HashMap::new();
    let distinct: Vec<&FoundImage> = {
        let mut seen = std::collections::HashSet::new();
        groups
            .values()
            .flatten()
            .filter(|f| seen.insert(f.image.sha256.clone()))
            .collect()
    };
    for chunk in distinct.chunks(16) {
        let inputs = chunk
            .iter()
            .map(|f| {
                let img = f.image.tower_input.centre_square(INPUT_SIZE as u32);
                preprocess(INPUT_SIZE, INPUT_SIZE, &img.pixels, tower.device())
            })
            .collect::<candle_core::Result<Vec<Tensor>>>()?;
        let rows = tower
            .features(&Tensor::stack(&inputs, 0)?)?
            .to_vec2::<f32>()?;
        for (f, row) in chunk.iter().zip(rows) {
            features.insert(f.image.sha256.clone(), row);
        }
    }
    // Summed in hash order, so that the same images give the same mean bit for bit.
    let mut shas: Vec<&String> = features.keys().collect();
    shas.sort_unstable();
    let dim = features.values().next().map_or(0, Vec::len);
    let mut mean = vec![0f32; dim];
    for sha in shas {
        for (m, v) in mean.iter_mut().zip(&features[sha]) {
            *m += v / features.len() as f32;
        }
    }
    let centred = |row: &[f32]| -> Vec<f32> {
        let c: Vec<f32> = row.iter().zip(&mean).map(|(v, m)| v - m).collect();
        let norm = c.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        c.iter().map(|x| x / norm).collect()
    };
    let mut clusters = Vec::new();
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    for (key, images) in groups {
        let candidates: Vec<Candidate> = images
            .iter()
            .map(|f| Candidate {
                sha256: f.image.sha256.clone(),
                phash: f.image.phash,
                features: centred(&features[&f.image.sha256]),
                caption: if f.reference.caption.is_empty() {
                    f.reference.alt.clone()
                } else {
                    f.reference.caption.clone()
                },
            })
            .collect();
        match cluster_group(&key, &candidates, &settings.cluster) {
            Ok(cluster) => clusters.push(MinedCluster {
                id: cluster.id,
                title: titles.get(&key).cloned().unwrap_or_default(),
                group_key: key,
                noun: cluster.noun,
                members: cluster.members.iter().map(|&i| images[i].clone()).collect(),
            }),
            Err(reason) => *rejected.entry(reason.reason().to_string()).or_default() += 1,
        }
    }
    Ok((clusters, rejected))
}

/// Ingests the images of one parsed page with `get` (a fetch or an archive lookup).
async fn mine_page<F, Fut>(
    url: Url,
    html: &str,
    settings: &MineSettings,
    stats: &mut CrawlStats,
    mut get: F,
) -> (MinedPage, Vec<Url>)
where
    F: FnMut(Url) -> Fut,
    Fut: std::future::Future<Output = Result<bytes::Bytes, FetchSkip>>,
{
    let page = extract(&url, html);
    stats.pages += 1;
    let mut images = Vec::new();
    for reference in page.images.into_iter().take(settings.max_images_per_page) {
        match get(reference.url.clone()).await {
            Ok(raw) => {
                stats.bytes += raw.len() as u64;
                match ingest(
                    &raw,
                    settings.decode,
                    settings.model_size,
                    settings.min_image_side,
                ) {
                    Ok(image) => {
                        stats.images += 1;
                        images.push(FoundImage {
                            reference,
                            image,
                            raw,
                        });
                    }
                    Err(skip) => stats.skip(skip.reason()),
                }
            }
            Err(skip) => stats.skip(skip.reason()),
        }
    }
    (
        MinedPage {
            url,
            title: page.title,
            images,
        },
        page.links,
    )
}

/// A polite breadth-first crawl from `seeds` within their hosts: at most `max_pages` pages and
/// `max_depth` link hops; every URL (page or image) claimed once in the run's shared frontier, by
/// `owner` (the crawl request's message id, so that its redelivery may fetch its URLs again).
#[allow(clippy::too_many_arguments)]
pub async fn crawl_web(
    seeds: &[Url],
    run_id: &str,
    owner: &str,
    max_pages: usize,
    max_depth: usize,
    fetcher: &Fetcher,
    politeness: &Politeness,
    settings: &MineSettings,
) -> (Vec<MinedPage>, CrawlStats) {
    let mut stats = CrawlStats::default();
    let hosts: Vec<String> = seeds
        .iter()
        .filter_map(|u| u.host_str().map(str::to_string))
        .collect();
    let mut queue: VecDeque<(Url, usize)> = seeds.iter().map(|u| (u.clone(), 0)).collect();
    let mut pages = Vec::new();
    // Images this crawler fetched, by URL: an image on many pages (a logo, a thumbnail) is fetched
    // once but belongs to every page it appears on.
    let fetched_images: std::sync::Mutex<HashMap<Url, bytes::Bytes>> = Default::default();
    // URLs this crawl has already tried: the frontier answers yes again for its owner, so it cannot
    // tell a second link to a page from a redelivery.
    let tried: std::sync::Mutex<std::collections::HashSet<Url>> = Default::default();
    let first_try = |url: &Url| {
        tried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url.clone())
    };
    while let Some((url, depth)) = queue.pop_front() {
        if pages.len() >= max_pages {
            break;
        }
        if !first_try(&url) {
            continue;
        }
        match politeness.claim(run_id, owner, &url).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => {
                stats.skip("state_unavailable");
                continue;
            }
        }
        // The address policy first: a private address is refused as such, before even its
        // robots.txt is asked for.
        if let Err(refusal) = fetcher.policy().check(&url).await {
            stats.skip(refusal.reason());
            continue;
        }
        if !politeness.allowed(&url).await {
            stats.skip("robots_disallowed");
            continue;
        }
        if let Err(e) = politeness.wait_turn(&url).await {
            // Without the shared rate limit the crawl would not be polite: skip, do not fetch.
            tracing::warn!(error = %e, "rate limiter unavailable");
            stats.skip("state_unavailable");
            continue;
        }
        let html = match fetcher.fetch(&url, &["text/html"]).await {
            Ok(fetched) => {
                stats.bytes += fetched.body.len() as u64;
                String::from_utf8_lossy(&fetched.body).into_owned()
            }
            Err(skip) => {
                stats.skip(skip.reason());
                continue;
            }
        };
        let fetched_images = &fetched_images;
        let get = |image_url: Url| async move {
            let cached = fetched_images
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&image_url)
                .cloned();
            if let Some(bytes) = cached {
                return Ok(bytes);
            }
            if !first_try(&image_url) {
                // Tried on an earlier page of this crawl and skipped there.
                return Err(FetchSkip::AlreadyTried);
            }
            match politeness.claim(run_id, owner, &image_url).await {
                Ok(true) => {}
                // Claimed by another replica of this run: it is that replica's to fetch.
                Ok(false) => return Err(FetchSkip::ClaimedElsewhere),
                Err(e) => return Err(FetchSkip::Connect(e.to_string())),
            }
            fetcher.policy().check(&image_url).await?;
            if !politeness.allowed(&image_url).await {
                return Err(FetchSkip::RobotsDisallowed);
            }
            politeness
                .wait_turn(&image_url)
                .await
                .map_err(|e| FetchSkip::Connect(format!("rate limiter unavailable: {e}")))?;
            let body = fetcher.fetch(&image_url, &["image/"]).await?.body;
            fetched_images
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(image_url, body.clone());
            Ok(body)
        };
        let (page, links) = mine_page(url, &html, settings, &mut stats, get).await;
        pages.push(page);
        if depth < max_depth {
            for link in links {
                if link
                    .host_str()
                    .is_some_and(|h| hosts.iter().any(|s| s == h))
                {
                    queue.push_back((link, depth + 1));
                }
            }
        }
    }
    (pages, stats)
}

/// The same mining over a WARC archive's `response` records: every archived HTML page, its images
/// looked up in the archive.
pub async fn mine_warc(
    records: &[suti_data::warc::WarcRecord],
    settings: &MineSettings,
) -> (Vec<MinedPage>, CrawlStats) {
    let mut stats = CrawlStats::default();
    let by_uri: HashMap<&str, &suti_data::warc::HttpResponse> = records
        .iter()
        .filter_map(|r| Some((r.target_uri.as_deref()?, r.http.as_ref()?)))
        .collect();
    let mut pages = Vec::new();
    let mut html_uris: Vec<&str> = by_uri
        .iter()
        .filter(|(_, h)| {
            h.status == 200
                && h.header("content-type")
                    .is_some_and(|c| c.starts_with("text/html"))
        })
        .map(|(u, _)| *u)
        .collect();
    html_uris.sort_unstable();
    for uri in html_uris {
        let Ok(url) = Url::parse(uri) else {
            stats.skip("bad_url");
            continue;
        };
        let html = String::from_utf8_lossy(&by_uri[uri].body).into_owned();
        let by_uri = &by_uri;
        let get = |image_url: Url| async move {
            match by_uri.get(image_url.as_str()) {
                Some(h) if h.status == 200 => Ok(bytes::Bytes::from(h.body.clone())),
                Some(h) => Err(FetchSkip::Status(h.status)),
                None => Err(FetchSkip::Status(404)),
            }
        };
        let (page, _) = mine_page(url, &html, settings, &mut stats, get).await;
        pages.push(page);
    }
    (pages, stats)
}

/// A shared image tower.
pub type SharedTower = Arc<ImageTower>;
