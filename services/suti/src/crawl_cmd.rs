//! `suti crawl`: starts a crawl in a running pipeline by publishing one crawl request (seed URLs
//! and WARC files in storage) to the configured broker, for the crawler-clusterer to take.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use suti_messages::{CrawlLimits, CrawlRequestV1};
use suti_queue::{Envelope, Topology};
use suti_runtime::SutiConfig;
use suti_runtime::config::QueueBackend;

/// Options of `suti crawl`.
#[derive(Debug, Args)]
pub struct CrawlArgs {
    /// A YAML file layered over the compiled-in defaults (the broker and its namespace).
    #[arg(long, short, env = "SUTI_CONFIG")]
    pub config: Option<PathBuf>,
    /// A page to start from (http or https; repeat for more).
    #[arg(long = "seed", value_name = "URL")]
    pub seeds: Vec<String>,
    /// A WARC file in storage to read instead of fetching (its key; repeat for more).
    #[arg(long = "warc", value_name = "KEY")]
    pub warcs: Vec<String>,
    /// The run's name: it labels the clusters, and a request published twice under one name is
    /// crawled once. Default: `crawl-` and the current time.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Most pages fetched.
    #[arg(long, default_value_t = CrawlLimits::default().max_pages)]
    pub max_pages: u32,
    /// Most link hops followed from a seed.
    #[arg(long, default_value_t = CrawlLimits::default().max_depth)]
    pub max_depth: u32,
    /// Most images taken from one page.
    #[arg(long, default_value_t = CrawlLimits::default().max_images_per_page)]
    pub max_images_per_page: u32,
    /// Most clusters published.
    #[arg(long, default_value_t = CrawlLimits::default().max_clusters)]
    pub max_clusters: u32,
}

/// Validates the request, publishes it with publisher confirms and prints its run and message ids.
pub async fn run(args: CrawlArgs) -> anyhow::Result<()> {
    let request = request(&args)?;
    let config = SutiConfig::load_file(args.config.as_deref())?;
    suti_runtime::init_telemetry(&config.telemetry, "suti-crawl");
    if config.queue.backend == QueueBackend::InProcess {
        bail!(
            "queue.backend is in_process: no other process can take the request; `suti crawl` \
             needs the broker the crawler-clusterer consumes from (queue.backend amqp)"
        );
    }
    let broker = suti_runtime::connect_broker(&config, "suti crawl")
        .await
        .context("connecting to the broker")?;
    let topology = Topology::pipeline(&config.queue.namespace, config.queue.delivery_limit);
    broker
        .declare(&topology)
        .await
        .context("declaring the pipeline's queues")?;
    let message_id = format!("crawl-{}", request.run_id);
    let mut envelope =
        Envelope::encode(&request, message_id.clone(), Some(request.run_id.clone()))?;
    // With OTLP export on, the run is one trace that starts here.
    let span = tracing::info_span!("crawl request", otel.kind = "producer", run = %request.run_id);
    envelope.traceparent = suti_runtime::traceparent_of(&span);
    broker
        .publish(&topology, &envelope)
        .await
        .context("publishing the crawl request")?;
    drop(span);
    broker.close().await;
    suti_runtime::flush_traces();
    println!(
        "crawl {} requested ({} seeds, {} WARC files; message {message_id})",
        request.run_id,
        request.seed_urls.len(),
        request.warc_keys.len()
    );
    Ok(())
}

/// The crawl request the options describe, refused with a reason when it could not be crawled.
fn request(args: &CrawlArgs) -> anyhow::Result<CrawlRequestV1> {
    if args.seeds.is_empty() && args.warcs.is_empty() {
        bail!("nothing to crawl: give at least one --seed URL or --warc KEY");
    }
    for seed in &args.seeds {
        let url = reqwest::Url::parse(seed).with_context(|| format!("--seed {seed:?}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            bail!("--seed {seed:?}: only http and https URLs with a host can be crawled");
        }
    }
    if args.max_pages == 0 || args.max_clusters == 0 {
        bail!("--max-pages and --max-clusters must be at least 1");
    }
    let run_id = match &args.run_id {
        Some(id)
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            bail!("--run-id {id:?}: use letters, digits, '-', '_' and '.' only")
        }
        Some(id) => id.clone(),
        None => format!(
            "crawl-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ),
    };
    Ok(CrawlRequestV1 {
        run_id,
        seed_urls: args.seeds.clone(),
        warc_keys: args.warcs.clone(),
        limits: CrawlLimits {
            max_pages: args.max_pages,
            max_depth: args.max_depth,
            max_images_per_page: args.max_images_per_page,
            max_clusters: args.max_clusters,
        },
    })
}
