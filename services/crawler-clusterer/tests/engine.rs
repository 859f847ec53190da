//! The crawl engine on the synthetic web: clusters are the planted subjects, distractors are
//! rejected, the disallowed area is never fetched, and the WARC archive of the same site gives the
//! same clusters.

mod common;

use std::sync::Arc;

use common::{image_tower, loopback_fetcher, serve_synthetic_web};
use crawler_clusterer::engine::{MineSettings, cluster_pages, crawl_web, mine_warc};
use crawler_clusterer::politeness::Politeness;
use suti_state::{InProcessState, TokenBucket};
use url::Url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synthweb_crawl_finds_the_planted_subjects_and_the_warc_gives_the_same_clusters() {
    let (site, served) = serve_synthetic_web(8).await;
    let base = Url::parse(&served.base_url()).unwrap();
    let fetcher = loopback_fetcher();
    let politeness = Politeness::new(
        Arc::new(InProcessState::new()),
        fetcher.clone(),
        TokenBucket {
            capacity: 50.0,
            refill_per_second: 500.0,
        },
    );
    let settings = MineSettings::default();
    let (pages, stats) = crawl_web(
        &[base.join("/").unwrap()],
        "run",
        "crawl-1",
        100,
        4,
        &fetcher,
        &politeness,
        &settings,
    )
    .await;
    let tower = image_tower();
    let (clusters, rejected) = cluster_pages(&pages, &tower, &settings).unwrap();
    println!("stats {stats:?}\nrejected {rejected:?}");

    // Never the disallowed area; hostile resources skipped with their reasons.
    assert!(
        served
            .requested()
            .iter()
            .all(|p| !p.starts_with("/private/"))
    );
    for reason in ["too_large", "image_too_large", "redirect_loop"] {
        assert!(
            stats.skips.contains_key(reason),
            "no {reason} skip in {:?}",
            stats.skips
        );
    }

    // Every planted subject page gives a cluster, ≥ 95 % of whose members are its subject.
    let (mut members, mut right) = (0, 0);
    for page in site.pages() {
        let key = format!("{}{}", served.base_url(), page.path());
        let cluster = clusters
            .iter()
            .find(|c| c.group_key == key)
            .unwrap_or_else(|| panic!("no cluster for {key}"));
        let prefix = format!("/img/{}/", page.subject.id());
        members += cluster.members.len();
        right += cluster
            .members
            .iter()
            .filter(|m| m.reference.url.path().starts_with(&prefix))
            .count();
        assert_eq!(cluster.noun, page.subject.class.noun, "{key}");
    }
    println!(
        "{} clusters, {right}/{members} members are their page's subject",
        clusters.len()
    );
    assert!(right as f64 >= 0.95 * members as f64, "{right}/{members}");
    drop(served);

    // The same site as a WARC archive gives the same clusters.
    let mut warc = Vec::new();
    suti_data::warc::write_site_warc(&site, base.as_str().trim_end_matches('/'), &mut warc)
        .unwrap();
    let records = suti_data::warc::read_warc(&warc, 64 << 20).unwrap();
    let (warc_pages, _) = mine_warc(&records, &settings).await;
    let (warc_clusters, _) = cluster_pages(&warc_pages, &tower, &settings).unwrap();
    let ids = |cs: &[crawler_clusterer::engine::MinedCluster]| {
        let mut v: Vec<(String, String)> = cs
            .iter()
            .map(|c| (c.group_key.clone(), c.id.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&warc_clusters), ids(&clusters));
}
