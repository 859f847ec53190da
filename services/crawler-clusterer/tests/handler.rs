//! The crawler-clusterer stage on the embedded mode's in-process backends: a crawl request in,
//! one `cluster.mined.v1` per planted subject out, with every artifact it names in storage; a
//! redelivered request changes nothing.

mod common;
mod crawl_stage;

use std::sync::Arc;
use std::time::Duration;

use common::{image_tower, loopback_fetcher, serve_synthetic_web};
use crawl_stage::{crawl_handler, crawl_settings, exported, planted_nouns};
use prometheus::Registry;
use suti_messages::{ClusterManifest, ClusterMinedV1, CrawlLimits, CrawlRequestV1};
use suti_queue::{Broker, Envelope, InProcessBroker, Topology};
use suti_stage::{StageBackends, StageMetrics, run_stage};
use suti_state::{InProcessState, SharedState, TokenBucket};
use suti_storage::{LocalStore, ObjectKey, SharedStore};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_request_becomes_one_cluster_message_per_planted_subject() {
    let (site, served) = serve_synthetic_web(5).await;

    let broker = InProcessBroker::new();
    let topology = Topology::pipeline("t", 3);
    broker.declare(&topology).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage: SharedStore = Arc::new(LocalStore::open(dir.path()).await.unwrap());
    let state: SharedState = Arc::new(InProcessState::new());
    let registry = Registry::new();
    let handler = crawl_handler(
        state.clone(),
        loopback_fetcher(),
        TokenBucket {
            capacity: 50.0,
            refill_per_second: 500.0,
        },
        Arc::new(image_tower()),
        crawler_clusterer::metrics::CrawlerMetrics::register(&registry).unwrap(),
    );
    let metrics = StageMetrics::register(&registry, "crawler_clusterer").unwrap();
    let shutdown = CancellationToken::new();
    let settings = crawl_settings("crawler_clusterer", &topology);
    let backends = StageBackends {
        broker: Arc::new(broker.clone()),
        storage: storage.clone(),
        state: state.clone(),
        topology: topology.clone(),
    };
    let stage = tokio::spawn(run_stage(
        handler,
        settings,
        backends,
        metrics.clone(),
        shutdown.clone(),
    ));

    let request = CrawlRequestV1 {
        run_id: "run-1".into(),
        seed_urls: vec![format!("{}/", served.base_url())],
        warc_keys: vec![],
        limits: CrawlLimits::default(),
    };
    let envelope = Envelope::encode(&request, "crawl-run-1", Some("run-1".into())).unwrap();
    broker.publish(&topology, &envelope).await.unwrap();
    let clusters_queue = topology.queue_name("clusters");
    suti_testkit::wait_until(Duration::from_secs(240), "the crawl to finish", || async {
        metrics.processed("done") == 1
    })
    .await
    .unwrap();
    // Redelivered (the same message id): skipped, nothing new published.
    broker.publish(&topology, &envelope).await.unwrap();
    suti_testkit::wait_until(Duration::from_secs(30), "the duplicate", || async {
        metrics.processed("duplicate") == 1
    })
    .await
    .unwrap();
    assert_eq!(broker.ready_count(&clusters_queue).await.unwrap(), 5);
    // A worker that died after its writes but before marking the request done: the redelivery
    // crawls again (the frontier gives the request back its own URLs) and mines the same clusters
    // under the same message ids, which the next stage then takes as duplicates.
    state
        .unmark("crawler_clusterer:done:crawl-run-1")
        .await
        .unwrap();
    broker.publish(&topology, &envelope).await.unwrap();
    suti_testkit::wait_until(
        Duration::from_secs(240),
        "the redelivered crawl",
        || async { metrics.processed("done") == 2 },
    )
    .await
    .unwrap();
    assert_eq!(broker.ready_count(&clusters_queue).await.unwrap(), 10);

    let mut consumer = broker.consume(&clusters_queue, 10).await.unwrap();
    let mut nouns = Vec::new();
    for _ in 0..5 {
        let delivery = consumer.next().await.unwrap();
        let mined: ClusterMinedV1 = delivery.envelope.decode().unwrap();
        assert_eq!(
            delivery.envelope.message_id,
            format!("cluster-{}", mined.cluster_id)
        );
        assert_eq!(delivery.envelope.correlation_id.as_deref(), Some("run-1"));
        let manifest: ClusterManifest = rmp_serde::from_slice(
            &storage
                .get(&ObjectKey::new(mined.manifest_key.clone()).unwrap())
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(manifest.subject_noun, mined.subject_noun);
        assert!(
            manifest
                .title
                .to_lowercase()
                .contains(&manifest.subject_noun),
            "{}",
            manifest.title
        );
        assert!((3..=10).contains(&manifest.members.len()));
        for member in &manifest.members {
            let img = storage
                .get(&ObjectKey::new(member.image_key.clone()).unwrap())
                .await
                .unwrap();
            assert_eq!(suti_data::RgbaImage::from_png(&img).unwrap().width, 64);
            assert!(
                storage
                    .head(&ObjectKey::new(member.raw_key.clone()).unwrap())
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        nouns.push(mined.subject_noun);
        delivery.ack().await.unwrap();
    }
    // The crawl's counts, as the admin port exports them.
    let text = exported(&registry);
    // Two crawls of the site: the first and its redelivery.
    for line in [
        "suti_crawler_clusterer_clusters_total 10",
        "suti_crawler_clusterer_skips_total{reason=\"robots_disallowed\"} 2",
        "suti_crawler_clusterer_skips_total{reason=\"redirect_loop\"} 2",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    nouns.sort();
    assert_eq!(nouns, planted_nouns(&site));
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}
