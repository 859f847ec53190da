//! `suti bench queue`: broker throughput on this machine — publish with confirms and consume with
//! acks, in messages per second, on a private topology that is deleted afterwards.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;
use suti_queue::{AmqpBroker, AmqpOptions, Broker, Envelope, InProcessBroker, Topology};

use crate::bench_report::BenchReport;

/// Options of the queue benchmark.
#[derive(Debug, Args)]
pub struct QueueBenchArgs {
    /// Broker backend to measure.
    #[arg(long, value_enum, default_value_t = BenchBackend::Amqp)]
    backend: BenchBackend,
    /// Messages to publish and consume.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Messages per confirmed batch when publishing.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Consumer prefetch.
    #[arg(long, default_value_t = 500)]
    prefetch: u16,
    /// Messages published one at a time, each awaiting its own confirm (0 to skip).
    #[arg(long, default_value_t = 1_000)]
    single: usize,
    /// AMQP URL; defaults to the configuration's queue.url.
    #[arg(long, env = "SUTI__QUEUE__URL")]
    url: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BenchBackend {
    /// RabbitMQ through lapin.
    Amqp,
    /// The in-process broker of the embedded mode.
    InProcess,
}

const KIND: &str = "bench.message.v1";

fn rate(count: usize, seconds: f64) -> f64 {
    count as f64 / seconds.max(1e-9)
}

/// Runs the benchmark and prints its figures.
pub async fn queue(args: QueueBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.messages > 0, "--messages must be positive");
    anyhow::ensure!(args.batch > 0, "--batch must be positive");
    let broker: Arc<dyn Broker> = match args.backend {
        BenchBackend::Amqp => {
            let url = match args.url.clone() {
                Some(url) => url,
                None => suti_runtime::SutiConfig::load_file(None)?
                    .queue
                    .url
                    .expose()
                    .to_string(),
            };
            let mut options = AmqpOptions::new(url);
            options.connection_name = "suti-bench".into();
            Arc::new(
                AmqpBroker::connect(options)
                    .await
                    .context("connecting to the broker")?,
            )
        }
        BenchBackend::InProcess => Arc::new(InProcessBroker::new()),
    };
    let namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let topology = Topology::single(&namespace, "bench", &["bench.message.*"], 5);
    broker.declare(&topology).await?;
    let queue = topology.queues[0].name.clone();
    let result = measure(&args, broker.as_ref(), &topology, &queue).await;
    broker.delete(&topology).await?;
    broker.close().await;
    result
}

async fn measure(
    args: &QueueBenchArgs,
    broker: &dyn Broker,
    topology: &Topology,
    queue: &str,
) -> anyhow::Result<()> {
    let body = vec![0x5au8; args.size];
    let envelope = |i: usize| Envelope {
        message_id: format!("m{i}"),
        kind: KIND.into(),
        correlation_id: Some("bench".into()),
        traceparent: None,
        headers: Default::default(),
        body: body.clone(),
    };
    let mut report = BenchReport::start(
        "queue",
        args.json,
        format!(
            "suti bench queue: backend {}, {} messages of {} B into one queue",
            broker.backend(),
            args.messages,
            args.size
        ),
    );

    if args.single > 0 {
        let started = Instant::now();
        for i in 0..args.single {
            broker.publish(topology, &envelope(i)).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        report.result(
            format!(
                "publish, one confirm per message : {:>8} msgs in {:>7.3} s = {:>9.0} msg/s",
                args.single,
                seconds,
                rate(args.single, seconds)
            ),
            json!({"part": "publish_single", "messages": args.single, "seconds": seconds,
                "messages_per_second": rate(args.single, seconds)}),
        );
    }

    let envelopes: Vec<Envelope> = (0..args.messages)
        .map(|i| envelope(args.single + i))
        .collect();
    let started = Instant::now();
    for chunk in envelopes.chunks(args.batch) {
        broker.publish_batch(topology, chunk).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    report.result(
        format!(
            "publish, confirmed batches of {:<4}: {:>8} msgs in {:>7.3} s = {:>9.0} msg/s ({:.1} MiB/s)",
            args.batch,
            args.messages,
            seconds,
            rate(args.messages, seconds),
            rate(args.messages * args.size, seconds) / (1024.0 * 1024.0)
        ),
        json!({"part": "publish_batches", "batch": args.batch, "messages": args.messages,
            "seconds": seconds, "messages_per_second": rate(args.messages, seconds)}),
    );

    let total = args.messages + args.single;
    let mut consumer = broker.consume(queue, args.prefetch).await?;
    let started = Instant::now();
    for _ in 0..total {
        let delivery = consumer
            .next()
            .await
            .context("the consumer ended before every message arrived")?;
        delivery.ack().await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    report.result(
        format!(
            "consume + ack, prefetch {:<5}    : {:>8} msgs in {:>7.3} s = {:>9.0} msg/s",
            args.prefetch,
            total,
            seconds,
            rate(total, seconds)
        ),
        json!({"part": "consume_ack", "prefetch": args.prefetch, "messages": total,
            "seconds": seconds, "messages_per_second": rate(total, seconds)}),
    );
    report.finish()
}

/// Options of the render benchmark.
#[derive(Debug, Args)]
pub struct RenderBenchArgs {
    /// Image sides to measure.
    #[arg(long, value_delimiter = ',', default_value = "32,64")]
    sizes: Vec<u32>,
    /// Images rendered per size.
    #[arg(long, default_value_t = 2000)]
    images: usize,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Renders random (subject, prompt) pairs on one thread and prints images per second, with and
/// without PNG encoding.
pub fn render(args: RenderBenchArgs) -> anyhow::Result<()> {
    let assets = suti_data::Assets::open_default()?;
    let subjects = assets.catalog().subjects(suti_data::Split::Train);
    anyhow::ensure!(!subjects.is_empty(), "no subjects in the catalog");
    let sprites = subjects
        .iter()
        .take(64)
        .map(|s| Ok((assets.sprite(s)?, suti_data::prompts_for(s.class.kind))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut report = BenchReport::start(
        "render",
        args.json,
        format!(
            "suti bench render: {} images per size, one thread, {} subjects × their 25 prompts",
            args.images,
            sprites.len()
        ),
    );
    for size in args.sizes {
        let started = Instant::now();
        let mut checksum = 0u64;
        for i in 0..args.images {
            let (sprite, prompts) = &sprites[i % sprites.len()];
            let img = suti_data::render(sprite, &prompts[i % prompts.len()], i as u64, size);
            checksum = checksum.wrapping_add(u64::from(img.pixels[img.pixels.len() / 2]));
        }
        let render_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut png_bytes = 0usize;
        for i in 0..args.images {
            let (sprite, prompts) = &sprites[i % sprites.len()];
            png_bytes += suti_data::render(sprite, &prompts[i % prompts.len()], i as u64, size)
                .to_png()
                .len();
        }
        let png_s = started.elapsed().as_secs_f64();
        report.result(
            format!(
                "{size:>3}×{size:<3}: render {:>8.0} images/s   render + PNG {:>8.0} images/s   ({} B/PNG, checksum {checksum})",
                rate(args.images, render_s),
                rate(args.images, png_s),
                png_bytes / args.images.max(1)
            ),
            json!({"size": size, "render_images_per_second": rate(args.images, render_s),
                "render_png_images_per_second": rate(args.images, png_s),
                "png_bytes": png_bytes / args.images.max(1), "checksum": checksum}),
        );
    }
    report.finish()
}
