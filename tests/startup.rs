//! Start-up with a backend away: a service whose S3 does not answer keeps trying instead of
//! exiting, and says on its admin port that it is not ready until S3 is back.

use std::net::SocketAddr;
use std::time::Duration;

use suti_e2e::{start, stop, tails};
use suti_queue::Topology;
use suti_storage::S3Store;
use suti_testkit::{
    S3Server, TopologyGuard, env_vars, free_port, http_get, loopback_backends_env, unique,
    wait_until,
};

/// S3 is away when a service starts: the process does not exit; it keeps trying, reports not ready
/// (check `backends`) on its admin port meanwhile, and its backends are ready once S3 answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_a_service_started_while_s3_is_away_waits_for_it_and_reports_not_ready() {
    let logs = tempfile::tempdir().unwrap();
    let mut s3 = S3Server::start().await.unwrap();
    let bucket = unique("b");
    // The bucket exists before the outage; the service only has to reach it.
    drop(S3Store::connect(&s3.options(&bucket), true).await.unwrap());
    s3.suspend();
    let namespace = unique("t");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut env = loopback_backends_env(&namespace);
    env.extend(s3.storage_env(&bucket));
    env.extend(env_vars([
        ("SUTI__ADMIN__LISTEN", admin.to_string().as_str()),
        ("RUST_LOG", "info"),
    ]));
    let topology = Topology::pipeline(&namespace, 5);
    let _cleanup = TopologyGuard::new(&topology);
    let mut child = start(
        &["apprentice-trainer"],
        &env,
        &logs.path().join("apprentice-trainer.log"),
    );
    let not_ready = wait_until(Duration::from_secs(60), "a not-ready answer", || async {
        http_get(admin, "/health/readyz")
            .await
            .is_ok_and(|(status, body)| status == 503 && body.contains("unreachable"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let exited = child.try_wait().unwrap();
    s3.resume().await.unwrap();
    // Its backends are then ready (the trainer itself still waits for a base model, and says so).
    let ready = wait_until(
        Duration::from_secs(60),
        "backends once S3 answers",
        || async {
            http_get(admin, "/health/readyz")
                .await
                .is_ok_and(|(_, body)| {
                    serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|report| {
                        report["checks"]["backends"] == "ok" && report["checks"]["storage"] == "ok"
                    })
                })
        },
    )
    .await;
    let log = tails(logs.path());
    stop(child);
    assert!(
        not_ready.is_ok(),
        "no not-ready answer while S3 was away\n{log}"
    );
    assert!(
        exited.is_none(),
        "the service exited while S3 was away\n{log}"
    );
    assert!(
        ready.is_ok(),
        "backends not ready after S3 came back\n{log}"
    );
    assert!(log.contains("retrying"), "{log}");
}
