//! `suti bench stage`: thousands of small work items through the real stage harness — RabbitMQ,
//! Redis and storage as configured (local storage in a temporary folder by default) — with a
//! handler that does almost nothing but the harness's own work: decode, idempotency check, one
//! artifact, one confirmed downstream publish, the done mark, the ack. Prints messages per second
//! and this process's resident memory as the work goes, to show the broker layer keeps up and
//! memory stays flat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_trait::async_trait;
use clap::Args;
use serde_json::json;
use suti_messages::{ClusterMinedV1, ExpertTrainedV1, LossSummary};
use suti_queue::{AmqpBroker, AmqpOptions, Broker, Envelope, Topology};
use suti_stage::{
    HandleContext, Handler, HandlerError, Outcome, StageBackends, StageMetrics, StageSettings,
    run_stage,
};
use suti_state::{RedisState, SharedState};
use suti_storage::{LocalStore, ObjectKey, SharedStore};
use tokio_util::sync::CancellationToken;

use crate::bench_report::BenchReport;

/// Options of `suti bench stage`.
#[derive(Debug, Args)]
pub struct StageBenchArgs {
    /// Work items.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Deliveries handled at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Unacknowledged deliveries the broker hands over at once.
    #[arg(long, default_value_t = 64)]
    prefetch: u16,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// The smallest stage: one artifact and one downstream message per input.
struct TinyStage;

#[async_trait]
impl Handler for TinyStage {
    type Input = ClusterMinedV1;

    async fn handle(
        &self,
        input: ClusterMinedV1,
        _ctx: &HandleContext,
    ) -> Result<Outcome, HandlerError> {
        let expert = ExpertTrainedV1 {
            run_id: input.run_id.clone(),
            cluster_id: input.cluster_id.clone(),
            manifest_key: input.manifest_key.clone(),
            base_version: "bench".into(),
            adapter_key: format!("bench/{}.bin", input.cluster_id),
            identifier_token: "sks".into(),
            subject_noun: input.subject_noun.clone(),
            rank: 4,
            loss: LossSummary {
                first: 1.0,
                last: 0.5,
                min: 0.5,
                steps: 1,
            },
        };
        Outcome::none()
            .with_artifact(
                ObjectKey::new(format!("bench/{}.bin", input.cluster_id))?,
                input.cluster_id.clone(),
            )
            .with_message(&expert, format!("expert-{}", input.cluster_id))
    }
}

/// This process's resident memory, MiB.
fn rss_mib() -> f64 {
    suti_runtime::process::resident_kib(std::process::id()).map_or(0.0, |kib| kib as f64 / 1024.0)
}

/// `suti bench stage`.
pub async fn stage(args: StageBenchArgs) -> Result<()> {
    anyhow::ensure!(args.messages > 0, "--messages must be positive");
    let config = suti_runtime::SutiConfig::load_file(None)?;
    let namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let connect = || async {
        let mut options = AmqpOptions::new(config.queue.url.expose());
        options.connection_name = "suti-bench-stage".into();
        AmqpBroker::connect(options)
            .await
            .context("connecting to the broker")
    };
    let broker: Arc<dyn Broker> = Arc::new(connect().await?);
    let state: SharedState = Arc::new(
        RedisState::connect(
            config.state.url.expose(),
            &namespace,
            Duration::from_secs(config.state.timeout_secs),
        )
        .await
        .context("connecting to Redis")?,
    );
    let dir = tempfile::tempdir()?;
    let storage: SharedStore = Arc::new(LocalStore::open(dir.path()).await?);
    let topology = Topology::pipeline(&namespace, 5);
    broker.declare(&topology).await?;
    let result = measure(&args, broker.clone(), storage, state.clone(), &topology).await;
    broker.delete(&topology).await?;
    let _ = state.clear_namespace().await;
    broker.close().await;
    result
}

async fn measure(
    args: &StageBenchArgs,
    broker: Arc<dyn Broker>,
    storage: SharedStore,
    state: SharedState,
    topology: &Topology,
) -> Result<()> {
    let mut report = BenchReport::start(
        "stage",
        args.json,
        format!(
            "suti bench stage: {} work items through the stage harness (concurrency {}, prefetch {})",
            args.messages, args.concurrency, args.prefetch
        ),
    );
    let rss_before = rss_mib();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(500);
    for i in 0..args.messages {
        let payload = ClusterMinedV1 {
            run_id: "bench".into(),
            cluster_id: format!("c{i:07}"),
            manifest_key: format!("clusters/c{i:07}.msgpack"),
            subject_noun: "teapot".into(),
            image_keys: vec![format!("images/c{i:07}.png")],
        };
        batch.push(Envelope::encode(
            &payload,
            format!("cluster-c{i:07}"),
            Some("bench".into()),
        )?);
        if batch.len() == 500 || i + 1 == args.messages {
            broker.publish_batch(topology, &batch).await?;
            batch.clear();
        }
    }
    let published_s = started.elapsed().as_secs_f64();
    let rss_published = rss_mib();
    report.result(
        format!(
            "published {} in {published_s:.2} s ({:.0} msg/s); RSS {rss_before:.0} → {rss_published:.0} MiB",
            args.messages,
            args.messages as f64 / published_s,
        ),
        json!({"part": "publish", "messages": args.messages, "seconds": published_s,
            "messages_per_second": args.messages as f64 / published_s,
            "rss_before_mib": rss_before, "rss_after_mib": rss_published}),
    );

    let metrics = StageMetrics::register(&prometheus::Registry::new(), "bench_stage")?;
    let shutdown = CancellationToken::new();
    let settings = StageSettings {
        service: "bench_stage".into(),
        queue: topology.queue_name("clusters"),
        prefetch: args.prefetch,
        concurrency: args.concurrency,
        handler_timeout: Duration::from_secs(60),
        idempotency_ttl: Duration::from_secs(3600),
        shutdown_grace: Duration::from_secs(10),
        outage_patience: Duration::from_secs(60),
    };
    let backends = StageBackends {
        broker,
        storage,
        state,
        topology: topology.clone(),
    };
    let running = tokio::spawn(run_stage(
        TinyStage,
        settings,
        backends,
        metrics.clone(),
        shutdown.clone(),
    ));
    let started = Instant::now();
    let mut next_report = 1;
    let mut peak = rss_mib();
    report.line(format!(
        "{:>6} {:>9} {:>9} {:>9}",
        "done", "seconds", "msg/s", "RSS MiB"
    ));
    loop {
        let done = metrics.processed("done") as usize;
        peak = peak.max(rss_mib());
        if done * 10 >= next_report * args.messages {
            let seconds = started.elapsed().as_secs_f64();
            let rss = rss_mib();
            report.result(
                format!(
                    "{:>5}% {seconds:>9.2} {:>9.0} {rss:>9.1}",
                    next_report * 10,
                    done as f64 / seconds,
                ),
                json!({"part": "progress", "percent": next_report * 10, "seconds": seconds,
                    "messages_per_second": done as f64 / seconds, "rss_mib": rss}),
            );
            next_report += 1;
        }
        if done >= args.messages {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            anyhow::bail!("only {done} of {} handled in 30 minutes", args.messages);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    running.await??;
    let failures = metrics.processed("retried") + metrics.processed("dead_lettered");
    report.result(
        format!(
            "handled {} in {seconds:.2} s = {:.0} msg/s; failures {failures}; peak RSS {peak:.1} MiB",
            args.messages,
            args.messages as f64 / seconds,
        ),
        json!({"part": "handle", "messages": args.messages, "seconds": seconds,
            "messages_per_second": args.messages as f64 / seconds, "failures": failures,
            "peak_rss_mib": peak}),
    );
    report.finish()
}
