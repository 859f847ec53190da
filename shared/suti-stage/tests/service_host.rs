//! A whole service process in miniature: configuration → admin port → backends → stage, against
//! the real RabbitMQ and Redis, observed through the admin port as an operator would.

use std::time::Duration;

use async_trait::async_trait;
use suti_messages::{ExamplesAcceptedV1, FilterThresholds};
use suti_queue::Envelope;
use suti_runtime::{ConfigSources, ServiceName, SutiConfig};
use suti_stage::{HandleContext, Handler, HandlerError, Outcome, ServiceHost};
use suti_testkit::{env_vars, http_get, loopback_backends_env, unique, wait_until};
use tokio_util::sync::CancellationToken;

struct CountingTrainer;

#[async_trait]
impl Handler for CountingTrainer {
    type Input = ExamplesAcceptedV1;

    async fn handle(
        &self,
        input: ExamplesAcceptedV1,
        ctx: &HandleContext,
    ) -> Result<Outcome, HandlerError> {
        ctx.state
            .incr("examples", i64::from(input.accepted))
            .await?;
        Ok(Outcome::none())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_a_service_host_runs_its_stage_and_reports_through_the_admin_port() {
    let namespace = unique("t");
    let storage = tempfile::tempdir().unwrap();
    let mut env = loopback_backends_env(&namespace);
    env.extend(env_vars([
        ("SUTI__STORAGE__BACKEND", "local"),
        ("SUTI__ADMIN__LISTEN", "127.0.0.1:0"),
    ]));
    let mut config = SutiConfig::load(&ConfigSources {
        file: None,
        env: Some(env),
    })
    .unwrap();
    config.storage.local_root = storage.path().to_path_buf();

    let shutdown = CancellationToken::new();
    let host = ServiceHost::start(ServiceName::ApprenticeTrainer, config, shutdown.clone())
        .await
        .unwrap();
    let admin = host.admin.addr;
    let broker = host.backends.broker.clone();
    let state = host.backends.state.clone();
    let topology = host.backends.topology.clone();
    let _cleanup = suti_testkit::TopologyGuard::new(&topology);
    let running = tokio::spawn(host.run_stage(CountingTrainer));

    let (status, body) = http_get(admin, "/health/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    for i in 0..10u32 {
        let payload = ExamplesAcceptedV1 {
            run_id: "run".into(),
            cluster_id: format!("c{i}"),
            shard_key: format!("datasets/apprentice/c{i}.msgpack"),
            accepted: i,
            rejected: 1,
            scorer_version: "s1".into(),
            thresholds: FilterThresholds {
                delta_clip_min: 0.02,
                subject_similarity_min: 0.5,
            },
        };
        let envelope =
            Envelope::encode(&payload, format!("examples-c{i}"), Some("run".into())).unwrap();
        broker.publish(&topology, &envelope).await.unwrap();
    }
    wait_until(Duration::from_secs(30), "ten examples messages", || async {
        state.counter("examples").await.unwrap() == 45
    })
    .await
    .unwrap();
    // The handler's effect lands before the harness settles the delivery and counts it.
    wait_until(
        Duration::from_secs(10),
        "ten deliveries settled",
        || async {
            http_get(admin, "/metrics").await.is_ok_and(|(_, metrics)| {
                metrics.contains("suti_apprentice_trainer_processed_total{outcome=\"done\"} 10")
            })
        },
    )
    .await
    .unwrap();
    let (_, metrics) = http_get(admin, "/metrics").await.unwrap();
    assert!(
        metrics.contains("suti_apprentice_trainer_processed_total{outcome=\"done\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("suti_apprentice_trainer_received_total 10"),
        "{metrics}"
    );
    assert!(metrics.contains("suti_build_info"), "{metrics}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        http_get(admin, "/health/livez").await.is_err(),
        "the admin port closes at shutdown"
    );

    state.clear_namespace().await.unwrap();
}
