//! Two crawler-clusterer workers over the real RabbitMQ, Redis and an S3 server (s3s-fs) on
//! loopback, crawling the synthetic web for one run: every planted subject becomes exactly one
//! cluster, no URL is fetched twice (the frontier is shared through Redis), the disallowed area
//! and a link to a private address are never fetched, and the artifacts are in S3.

mod common;
mod crawl_stage;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{image_tower, loopback_fetcher, serve_synthetic_web};
use crawl_stage::{crawl_handler, crawl_settings, exported, planted_nouns};
use prometheus::Registry;
use suti_messages::{ClusterMinedV1, CrawlLimits, CrawlRequestV1};
use suti_queue::{AmqpBroker, AmqpOptions, Broker, Envelope, Topology};
use suti_stage::{StageBackends, StageMetrics, run_stage};
use suti_state::{RedisState, SharedState, TokenBucket};
use suti_storage::{ObjectKey, SharedStore};
use suti_testkit::{S3Server, TopologyGuard, amqp_url, redis_url, unique, wait_until};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_two_crawler_replicas_share_the_frontier_over_real_backends() {
    suti_testkit::init_tracing();
    let (site, served) = serve_synthetic_web(6).await;
    let namespace = unique("t");
    let topology = Topology::pipeline(&namespace, 3);
    let _cleanup = TopologyGuard::new(&topology);
    let s3 = S3Server::start().await.unwrap();
    let storage: SharedStore = Arc::new(s3.store().await.unwrap());
    let tower = Arc::new(image_tower());

    let crawl_registry = Registry::new();
    let crawler_metrics =
        crawler_clusterer::metrics::CrawlerMetrics::register(&crawl_registry).unwrap();
    let mut workers = Vec::new();
    let shutdown = CancellationToken::new();
    let mut metrics = Vec::new();
    for replica in 0..2 {
        let broker = Arc::new(
            AmqpBroker::connect(AmqpOptions::new(amqp_url()))
                .await
                .unwrap(),
        );
        broker.declare(&topology).await.unwrap();
        let state: SharedState = Arc::new(
            RedisState::connect(&redis_url(), &namespace, Duration::from_secs(5))
                .await
                .unwrap(),
        );
        let handler = crawl_handler(
            state.clone(),
            loopback_fetcher(),
            TokenBucket {
                capacity: 5.0,
                refill_per_second: 25.0,
            },
            tower.clone(),
            crawler_metrics.clone(),
        );
        let m = StageMetrics::register(&Registry::new(), "crawler_clusterer").unwrap();
        metrics.push(m.clone());
        let settings = crawl_settings(&format!("crawler_clusterer_{replica}"), &topology);
        let backends = StageBackends {
            broker,
            storage: storage.clone(),
            state,
            topology: topology.clone(),
        };
        workers.push(tokio::spawn(run_stage(
            handler,
            settings,
            backends,
            m,
            shutdown.clone(),
        )));
    }

    // Two requests of one run, one per replica (prefetch 1): both crawl the same site at once.
    let publisher = AmqpBroker::connect(AmqpOptions::new(amqp_url()))
        .await
        .unwrap();
    for part in 0..2 {
        let request = CrawlRequestV1 {
            run_id: namespace.clone(),
            seed_urls: vec![
                format!("{}/", served.base_url()),
                "http://10.20.30.40/private-link.html".into(),
            ],
            warc_keys: vec![],
            limits: CrawlLimits::default(),
        };
        let envelope = Envelope::encode(
            &request,
            format!("crawl-{namespace}-{part}"),
            Some(namespace.clone()),
        )
        .unwrap();
        publisher.publish(&topology, &envelope).await.unwrap();
    }
    wait_until(Duration::from_secs(300), "both crawls", || async {
        metrics.iter().map(|m| m.processed("done")).sum::<u64>() == 2
    })
    .await
    .unwrap();
    assert!(
        metrics.iter().all(|m| m.processed("done") == 1),
        "each replica took one request"
    );

    // No URL fetched twice across the replicas (robots.txt is read once per replica).
    let mut counts: HashMap<String, usize> = HashMap::new();
    for path in served.requested() {
        *counts.entry(path).or_default() += 1;
    }
    let repeated: Vec<_> = counts
        .iter()
        .filter(|(p, n)| **n > 1 && p.as_str() != "/robots.txt")
        .collect();
    assert!(repeated.is_empty(), "fetched more than once: {repeated:?}");
    assert!(counts.keys().all(|p| !p.starts_with("/private/")));
    // The host's rate holds across both replicas: at most burst + rate·window in any window
    // (separate buckets would let through about twice as many).
    let peak = served.peak_requests(Duration::from_secs(1));
    assert!(peak <= 5 + 25 + 3, "{peak} requests within one second");
    // The private link among the seeds was refused, not fetched.
    let text = exported(&crawl_registry);
    assert!(
        text.contains("suti_crawler_clusterer_skips_total{reason=\"private_address\"} 1"),
        "{text}"
    );
    // The hostile resources were skipped, each with its reason.
    for reason in [
        "too_large",
        "image_too_large",
        "redirect_loop",
        "timeout",
        "robots_disallowed",
    ] {
        let line = format!("suti_crawler_clusterer_skips_total{{reason=\"{reason}\"}}");
        assert!(text.contains(&line), "no {reason} skip in\n{text}");
    }

    // Every planted subject is exactly one cluster, its artifacts in S3.
    let clusters_queue = topology.queue_name("clusters");
    let mut consumer = publisher.consume(&clusters_queue, 20).await.unwrap();
    let mut nouns = Vec::new();
    for _ in 0..site.pages().len() {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap()
            .unwrap();
        let mined: ClusterMinedV1 = delivery.envelope.decode().unwrap();
        // Members are the page's subject (the synthetic web's ground truth is in the image URL).
        let manifest: suti_messages::ClusterManifest = rmp_serde::from_slice(
            &storage
                .get(&ObjectKey::new(mined.manifest_key.clone()).unwrap())
                .await
                .unwrap(),
        )
        .unwrap();
        let page = site
            .pages()
            .iter()
            .find(|p| manifest.group_key.ends_with(&p.path()))
            .unwrap();
        let prefix = format!("/img/{}/", page.subject.id());
        let right = manifest
            .members
            .iter()
            .filter(|m| m.source_url.contains(&prefix))
            .count();
        assert!(
            right * 100 >= manifest.members.len() * 95,
            "{right}/{}",
            manifest.members.len()
        );
        for key in mined.image_keys.iter().chain([&mined.manifest_key]) {
            assert!(
                storage
                    .head(&ObjectKey::new(key.clone()).unwrap())
                    .await
                    .unwrap()
                    .is_some(),
                "{key}"
            );
        }
        nouns.push(mined.subject_noun);
        delivery.ack().await.unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(2), consumer.next())
            .await
            .is_err(),
        "no extra clusters"
    );
    nouns.sort();
    assert_eq!(nouns, planted_nouns(&site));

    shutdown.cancel();
    for worker in workers {
        worker.await.unwrap().unwrap();
    }
    drop(consumer);
    publisher.close().await;
}
