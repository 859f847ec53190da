//! `crawler_clusterer::service::run` from configuration alone, over the real RabbitMQ and Redis.

use std::time::Duration;

use suti_messages::{ClusterMinedV1, CrawlLimits, CrawlRequestV1};
use suti_queue::{Broker, Envelope};
use suti_runtime::{ConfigSources, SutiConfig};
use suti_testkit::{declare_pipeline, env_vars, loopback_backends_env, unique, wait_until};
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
    let mut env = loopback_backends_env(&namespace);
    env.extend(env_vars([
        ("SUTI__STORAGE__BACKEND", "local"),
        ("SUTI__ADMIN__LISTEN", "127.0.0.1:0"),
        ("SUTI__CRAWLER__ALLOW_PRIVATE", "127.0.0.0/8"),
        ("SUTI__CRAWLER__TIMEOUT_SECS", "3"),
    ]));
    let mut config = SutiConfig::load(&ConfigSources {
        file: None,
        env: Some(env),
    })
    .unwrap();
    config.storage.local_root = dir.path().to_path_buf();
    // Logs go to the test's output, shown when it fails.
    suti_runtime::init_logging(&config.telemetry);
    let shutdown = CancellationToken::new();

    // Declaring is idempotent: the test declares too, so it can publish before the service is up.
    let (broker, topology, _cleanup) = declare_pipeline(&namespace, config.queue.delivery_limit)
        .await
        .unwrap();
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
