//! The fetcher against the synthetic web's hostile resources, served on loopback.

use std::time::Duration;

use crawler_clusterer::fetch::{FetchLimits, Fetcher};
use crawler_clusterer::url_policy::UrlPolicy;
use suti_data::synthweb::{Site, SiteParams, hostile, serve};
use url::Url;

async fn site() -> (suti_data::synthweb::ServedSite, Site) {
    let assets = suti_data::Assets::open_default().expect("scripts/fetch-assets");
    let site = Site::new(
        assets,
        SiteParams {
            subjects: 6,
            huge_bytes: 16 << 20,
            slow_duration: Duration::from_secs(20),
            ..SiteParams::default()
        },
    );
    (serve(site.clone(), "127.0.0.1:0").await.unwrap(), site)
}

fn loopback_fetcher(limits: FetchLimits) -> Fetcher {
    Fetcher::new(UrlPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]), limits).unwrap()
}

#[tokio::test]
async fn pages_and_images_are_fetched_and_hostile_resources_skipped_with_the_right_reason() {
    let (served, site) = site().await;
    let base = Url::parse(&served.base_url()).unwrap();
    let limits = FetchLimits {
        max_bytes: 2 << 20,
        timeout: Duration::from_secs(2),
        ..FetchLimits::default()
    };
    let fetcher = loopback_fetcher(limits);
    let page = site.pages()[0].path();
    let fetched = fetcher
        .fetch(&base.join(&page).unwrap(), &["text/html"])
        .await
        .unwrap();
    assert_eq!(fetched.content_type, "text/html");
    assert!(String::from_utf8_lossy(&fetched.body).contains("<figure>"));
    let image = base
        .join(&format!("/img/{}/0.png", site.pages()[0].subject.id()))
        .unwrap();
    assert_eq!(
        fetcher
            .fetch(&image, &["image/"])
            .await
            .unwrap()
            .content_type,
        "image/png"
    );

    let skip = |path: &'static str, accept: &'static [&'static str]| {
        let fetcher = fetcher.clone();
        let url = base.join(path).unwrap();
        async move { fetcher.fetch(&url, accept).await.unwrap_err() }
    };
    assert_eq!(skip(hostile::HUGE, &["image/"]).await.reason(), "too_large");
    let started = std::time::Instant::now();
    assert_eq!(
        skip(hostile::SLOW, &["text/html"]).await.reason(),
        "timeout"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the slow response was cut off"
    );
    assert_eq!(
        skip(hostile::LOOP_A, &["text/html"]).await.reason(),
        "redirect_loop"
    );
    assert_eq!(
        skip("/s/no-such-page.html", &["text/html"]).await.reason(),
        "http_status"
    );
    assert_eq!(
        skip("/img/logo.png", &["text/html"]).await.reason(),
        "content_type"
    );
}

#[tokio::test]
async fn private_addresses_are_refused_before_any_connection() {
    let (served, _) = site().await;
    // Without the loopback allow-list, the synthetic web itself is a private address.
    let strict = Fetcher::new(UrlPolicy::default(), FetchLimits::default()).unwrap();
    let url = Url::parse(&served.base_url()).unwrap().join("/").unwrap();
    assert_eq!(
        strict
            .fetch(&url, &["text/html"])
            .await
            .unwrap_err()
            .reason(),
        "private_address"
    );
    let by_name = Url::parse(&format!("http://localhost:{}/", served.addr.port())).unwrap();
    assert_eq!(
        strict
            .fetch(&by_name, &["text/html"])
            .await
            .unwrap_err()
            .reason(),
        "private_address"
    );
    for path in ["/", "/robots.txt"] {
        assert!(
            !served.requested().iter().any(|p| p == path),
            "a refused URL reached the server"
        );
    }
    assert!(served.requested().is_empty());
}
