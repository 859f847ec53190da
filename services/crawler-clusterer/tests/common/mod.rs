//! What every crawl test starts from: the synthetic web served on loopback with its hostile
//! resources, a fetcher allowed on loopback, and the image tower from the assets.

use std::time::Duration;

use candle_core::Device;
use crawler_clusterer::fetch::{FetchLimits, Fetcher};
use crawler_clusterer::url_policy::UrlPolicy;
use suti_data::synthweb::{ServedSite, Site, SiteParams, serve};
use suti_models::image_tower::ImageTower;

/// A synthetic web of `subjects` planted subject pages, served on a loopback port; its slow page
/// takes 30 s and its huge resource is 16 MiB, both past the fetcher's limits.
pub async fn serve_synthetic_web(subjects: usize) -> (Site, ServedSite) {
    let assets = suti_data::Assets::open_default().expect("scripts/fetch-assets");
    let site = Site::new(
        assets,
        SiteParams {
            subjects,
            slow_duration: Duration::from_secs(30),
            huge_bytes: 16 << 20,
            ..SiteParams::default()
        },
    );
    let served = serve(site.clone(), "127.0.0.1:0").await.unwrap();
    (site, served)
}

/// A fetcher allowed on loopback (where the synthetic web is), reading at most 4 MiB within 3 s.
pub fn loopback_fetcher() -> Fetcher {
    let limits = FetchLimits {
        max_bytes: 4 << 20,
        timeout: Duration::from_secs(3),
        ..FetchLimits::default()
    };
    Fetcher::new(UrlPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]), limits).unwrap()
}

/// The image tower (EfficientNet-Lite0) from the assets.
pub fn image_tower() -> ImageTower {
    let bytes =
        std::fs::read(suti_data::Assets::default_dir().join("efficientnet/efficientnet-lite0.pth"))
            .unwrap();
    ImageTower::from_pth_bytes(&bytes, &Device::Cpu).unwrap()
}
