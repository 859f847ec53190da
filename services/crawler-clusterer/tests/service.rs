//! `crawler_clusterer::service::run` from configuration alone, over the real RabbitMQ and Redis.

use std::time::Duration;

use suti_messages::{ClusterMinedV1, CrawlLimits, CrawlRequestV1};
use suti_queue::{AmqpBroker, AmqpOptions, Broker, Envelope, Topology};
use suti_runtime::{ConfigSources, SutiConfig};
use suti_testkit::{TopologyGuard, amqp_url, redis_url, unique, wait_until};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_the_service_runs_from_configuration_and_mines_clusters() {
    let assets = suti_data::Assets::open_default().expect("scripts/fetch-assets");
    let site = suti_data::synthweb::Site::new(
        assets,
        suti_data::synthweb::SiteParams {
            subjects: 3,
            ..Default::default()
        },
    );
    let served = suti_data::synthweb::serve(site, "127.0.0.1:0")
        .await
        .unwrap();
    let namespace = unique("t");
    let dir = tempfile::tempdir().unwrap();
    let mut config = SutiConfig::load(&ConfigSources {
        file: None,
        env: Some(vec![
            ("SUTI__QUEUE__URL".into(), amqp_url()),
            ("SUTI__QUEUE__NAMESPACE".into(), namespace.clone()),
            ("SUTI__STATE__URL".into(), redis_url()),
            ("SUTI__STATE__NAMESPACE".into(), namespace.clone()),
            ("SUTI__STORAGE__BACKEND".into(), "local".into()),
            ("SUTI__ADMIN__LISTEN".into(), "127.0.0.1:0".into()),
            ("SUTI__CRAWLER__ALLOW_PRIVATE".into(), "127.0.0.0/8".into()),
            ("SUTI__CRAWLER__TIMEOUT_SECS".into(), "3".into()),
        ]),
    })
    .unwrap();
    config.storage.local_root = dir.path().to_path_buf();
    // Logs go to the test's output, shown when it fails.
    suti_runtime::init_logging(&config.telemetry);
    let topology = Topology::pipeline(&namespace, config.queue.delivery_limit);
    let _cleanup = TopologyGuard::new(&topology);
    let shutdown = CancellationToken::new();

    // Declaring is idempotent: the test declares too, so it can publish before the service is up.
    let broker = AmqpBroker::connect(AmqpOptions::new(amqp_url()))
        .await
        .unwrap();
    broker.declare(&topology).await.unwrap();
    let service = tokio::spawn(crawler_clusterer::service::run(config, shutdown.clone()));
    let request = CrawlRequestV1 {
        run_id: "r".into(),
        seed_urls: vec![format!("{}/", served.base_url())],
        warc_keys: vec![],
        limits: CrawlLimits::default(),
    };
    broker
        .publish(
            &topology,
            &Envelope::encode(&request, "crawl-r", Some("r".into())).unwrap(),
        )
        .await
        .unwrap();
    let clusters = topology.queue_name("clusters");
    wait_until(Duration::from_secs(180), "three clusters", || async {
        broker.ready_count(&clusters).await.unwrap_or(0) == 3
    })
    .await
    .unwrap();
    let mut consumer = broker.consume(&clusters, 5).await.unwrap();
    let d = consumer.next().await.unwrap();
    let mined: ClusterMinedV1 = d.envelope.decode().unwrap();
    assert!(
        dir.path().join(&mined.manifest_key).exists(),
        "the manifest is in local storage"
    );
    d.ack().await.unwrap();
    drop(consumer);
    // Shutdown: in-flight work is done, so the stage, the admin port and the broker connection
    // all stop well within their deadlines.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), service)
        .await
        .expect("the service stops after shutdown is asked")
        .unwrap()
        .unwrap();
    broker.close().await;
}
