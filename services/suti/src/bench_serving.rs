//! `suti bench serving`: the serving API under sustained concurrent load, then past its capacity.
//! `suti serving` runs as a second process (started here, on local storage holding an apprentice
//! release of the chosen preset with random weights: speed does not depend on their values); this
//! process is the load generator. Prints requests, statuses, latency percentiles, throughput and
//! the server's resident memory sampled from /proc.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use candle_nn::VarMap;
use clap::Args;
use suti_models::{Builders, Dit, DitConfig, ModelPreset, Params};
use suti_queue::{AmqpBroker, AmqpOptions, Broker, Topology};
use suti_runtime::process::resident_kib;
use suti_storage::{LocalStore, SharedStore};

/// Options of `suti bench serving`.
#[derive(Debug, Args)]
pub struct ServingBenchArgs {
    /// Model preset of the served apprentice (test, tiny, small, base).
    #[arg(long, default_value = "tiny")]
    preset: ModelPreset,
    /// Clients sending requests back to back during the sustained phase.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds of sustained load.
    #[arg(long, default_value_t = 180)]
    duration: u64,
    /// Clients during the overload phase, far past what the server holds (0 skips the phase).
    #[arg(long, default_value_t = 48)]
    overload_concurrency: usize,
    /// Seconds of overload.
    #[arg(long, default_value_t = 30)]
    overload_duration: u64,
    /// Denoising steps per request.
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Images per request.
    #[arg(long, default_value_t = 1)]
    images: usize,
    /// Demonstrations per request.
    #[arg(long, default_value_t = 2)]
    demos: usize,
    /// The server's queue cap (serving.max_queued): requests past it are refused with 429.
    #[arg(long, default_value_t = 8)]
    max_queued: usize,
    /// Write the figures as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Instead of the load phases, time one client's requests with a new reference set each,
    /// then with the same set again and again (served from the demonstration cache), and print
    /// both latencies, their ratio and the server's cache metrics.
    #[arg(long)]
    repeated_reference: bool,
    /// Requests per reference-set mode of --repeated-reference.
    #[arg(long, default_value_t = 12)]
    reference_requests: usize,
    /// Side of the demonstration images sent, pixels (0: the model's side); users upload photos
    /// far larger than the model's 32 pixels.
    #[arg(long, default_value_t = 0)]
    demo_side: u32,
    /// Only start the server on its random-weight release and keep it up until SIGTERM or Ctrl-C,
    /// printing `serving at URL` (to point other load or API-testing tools at it).
    #[arg(long)]
    hold: bool,
}

/// One answered (or failed) request.
#[derive(Debug, Clone, Copy)]
struct Answer {
    /// HTTP status, or 0 when no response came.
    status: u16,
    latency: Duration,
}

/// A random-weight apprentice release of `preset`, published to `store` as the trainer would.
async fn publish_random_release(store: &SharedStore, preset: ModelPreset) -> Result<()> {
    let config = DitConfig::of(preset);
    let varmap = VarMap::new();
    Dit::new(
        &config,
        &Builders::base(Params::train(
            &varmap,
            7,
            &crate::bench_models::bench_device()?,
        )),
    )?;
    let tensors = crate::bench_models::frozen_weights(&varmap)?;
    let bundle = suti_factory::BaseModel { config, tensors };
    let (config_json, weights) = bundle.to_bytes()?;
    let version = format!("bench-{}", &suti_factory::bundle::version_of(&weights)[..8]);
    suti_stage::publish_model_version(
        store,
        suti_storage::layout::APPRENTICE_MODEL,
        &version,
        vec![
            (suti_factory::bundle::CONFIG_FILE, config_json),
            (suti_factory::bundle::WEIGHTS_FILE, weights),
        ],
    )
    .await?;
    Ok(())
}

/// A demonstration image: a coloured gradient, different per index.
fn demonstration(index: usize, size: u32) -> Vec<u8> {
    let mut image = suti_data::RgbaImage::new(size, size);
    for y in 0..size {
        for x in 0..size {
            let at = ((y * size + x) * 4) as usize;
            image.pixels[at] = (x * 255 / size) as u8;
            image.pixels[at + 1] = (y * 255 / size) as u8;
            image.pixels[at + 2] = (index * 70 % 256) as u8;
            image.pixels[at + 3] = 255;
        }
    }
    image.to_png()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `p`-quantile (0–1) of sorted `values`.
fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Starts `suti serving` on `dir`'s storage and waits until it serves the release.
async fn start_server(
    dir: &Path,
    args: &ServingBenchArgs,
    namespace: &str,
) -> Result<(Child, String, String)> {
    let port = free_port()?;
    let admin_port = free_port()?;
    let config = format!(
        "queue:\n  namespace: {namespace}\nstate:\n  namespace: {namespace}\nstorage:\n  backend: local\n  local_root: {}\nadmin:\n  listen: 127.0.0.1:{}\nserving:\n  listen: 127.0.0.1:{port}\n  max_queued: {}\nmodels:\n  poll_secs: 1\n",
        dir.join("data").display(),
        admin_port,
        args.max_queued,
    );
    let config_path = dir.join("serving.yaml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.join("serving.log"))?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("serving")
        .arg("--config")
        .arg(&config_path)
        .env_remove("SUTI_CONFIG")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting suti serving")?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if client
            .get(format!("{base}/v1/models"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok((child, base, format!("http://127.0.0.1:{admin_port}")));
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.join("serving.log")).unwrap_or_default();
            bail!("serving did not load the release within 180 s; its log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `clients` loops posting `body` back to back until `duration` has passed.
async fn load(
    base: &str,
    body: Arc<serde_json::Value>,
    clients: usize,
    duration: Duration,
) -> Vec<Answer> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap_or_default();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, body, answers) = (client.clone(), body.clone(), answers.clone());
        let url = format!("{base}/v1/generations");
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let sent = Instant::now();
                let status = match client.post(&url).json(body.as_ref()).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // Read the whole answer: latency includes the images' transfer.
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                let answer = Answer {
                    status,
                    latency: sent.elapsed(),
                };
                answers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(answer);
                if status == 429 {
                    // A refused client backs off briefly, as Retry-After asks.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    answers.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Figures of one phase.
#[derive(Debug, serde::Serialize)]
struct PhaseFigures {
    phase: &'static str,
    clients: usize,
    seconds: f64,
    requests: usize,
    ok: usize,
    refused_429: usize,
    server_errors: usize,
    transport_errors: usize,
    other: usize,
    requests_per_second: f64,
    images_per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    refused_p99_ms: f64,
    rss_start_mib: f64,
    rss_peak_mib: f64,
    rss_end_mib: f64,
}

fn figures(
    phase: &'static str,
    clients: usize,
    seconds: f64,
    answers: &[Answer],
    images: usize,
    rss: (u64, u64, u64),
) -> PhaseFigures {
    let mut ok: Vec<Duration> = answers
        .iter()
        .filter(|a| a.status == 200)
        .map(|a| a.latency)
        .collect();
    ok.sort();
    let mut refused: Vec<Duration> = answers
        .iter()
        .filter(|a| a.status == 429)
        .map(|a| a.latency)
        .collect();
    refused.sort();
    let count = |f: &dyn Fn(u16) -> bool| answers.iter().filter(|a| f(a.status)).count();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mib = |kib: u64| kib as f64 / 1024.0;
    PhaseFigures {
        phase,
        clients,
        seconds,
        requests: answers.len(),
        ok: ok.len(),
        refused_429: refused.len(),
        server_errors: count(&|s| s >= 500),
        transport_errors: count(&|s| s == 0),
        other: count(&|s| s != 0 && s != 200 && s != 429 && s < 500),
        requests_per_second: ok.len() as f64 / seconds,
        images_per_second: (ok.len() * images) as f64 / seconds,
        p50_ms: ms(quantile(&ok, 0.50)),
        p90_ms: ms(quantile(&ok, 0.90)),
        p99_ms: ms(quantile(&ok, 0.99)),
        max_ms: ms(ok.last().copied().unwrap_or_default()),
        refused_p99_ms: ms(quantile(&refused, 0.99)),
        rss_start_mib: mib(rss.0),
        rss_peak_mib: mib(rss.1),
        rss_end_mib: mib(rss.2),
    }
}

/// A generation request with `args.demos` demonstrations, the `set`-th reference set (each set's
/// images differ from every other's).
fn generation_body(args: &ServingBenchArgs, set: usize) -> serde_json::Value {
    let side = match args.demo_side {
        0 => DitConfig::of(args.preset).image_size as u32,
        side => side,
    };
    let demonstrations: Vec<serde_json::Value> = (0..args.demos)
        .map(|i| {
            serde_json::json!({
                "image": base64::engine::general_purpose::STANDARD
                    .encode(demonstration(set * args.demos + i, side)),
                "caption": format!("my teapot, photo {i}"),
            })
        })
        .collect();
    serde_json::json!({
        "prompt": "a teapot on the beach",
        "demonstrations": demonstrations,
        "num_images": args.images,
        "steps": args.steps,
    })
}

/// `suti bench serving --repeated-reference`: one client, a new reference set per request, then
/// one set over and over.
async fn repeated_reference(
    args: &ServingBenchArgs,
    base: &str,
    admin: &str,
    pid: u32,
) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let post = |body: serde_json::Value| {
        let client = client.clone();
        let url = format!("{base}/v1/generations");
        async move {
            let sent = Instant::now();
            let response = client.post(&url).json(&body).send().await?;
            let status = response.status();
            response.bytes().await?;
            if !status.is_success() {
                bail!("serving answered {status}");
            }
            Ok::<f64, anyhow::Error>(sent.elapsed().as_secs_f64() * 1000.0)
        }
    };
    println!(
        "serving (pid {pid}, preset {}) at {base}: {} demonstrations of {} px, {} image(s), {} steps per request, {} requests per mode, one client",
        args.preset,
        args.demos,
        match args.demo_side {
            0 => DitConfig::of(args.preset).image_size as u32,
            side => side,
        },
        args.images,
        args.steps,
        args.reference_requests
    );
    // Warm-up on a set neither mode uses.
    post(generation_body(args, 10_000)).await?;
    let mut fresh = Vec::new();
    let mut repeated = Vec::new();
    // Interleaved, so that both modes see the same machine load; the repeated set is sent once
    // before timing so that every timed request of it is a hit.
    post(generation_body(args, 0)).await?;
    for i in 0..args.reference_requests {
        fresh.push(post(generation_body(args, i + 1)).await?);
        repeated.push(post(generation_body(args, 0)).await?);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let (fresh_mean, repeated_mean) = (mean(&fresh), mean(&repeated));
    println!(
        "  new reference set each request: mean {fresh_mean:.0} ms, median {:.0} ms",
        median(&mut fresh)
    );
    println!(
        "  the same reference set again:   mean {repeated_mean:.0} ms, median {:.0} ms",
        median(&mut repeated)
    );
    println!(
        "  repeated / new: {:.2}× faster",
        fresh_mean / repeated_mean
    );
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await?
        .text()
        .await?;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("suti_serving_demo_cache"))
    {
        println!("  {line}");
    }
    Ok(())
}

/// Runs `phase` while sampling the server's RSS every 200 ms: (start, peak, end) KiB.
async fn with_rss<F: std::future::Future<Output = Vec<Answer>>>(
    pid: u32,
    phase: F,
) -> (Vec<Answer>, (u64, u64, u64)) {
    let start = resident_kib(pid).unwrap_or(0);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(start));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = resident_kib(pid) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let answers = phase.await;
    sampler.abort();
    let end = resident_kib(pid).unwrap_or(0);
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed).max(end);
    (answers, (start, peak, end))
}

/// `suti bench serving`.
pub async fn serving_load(args: ServingBenchArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store: SharedStore = Arc::new(LocalStore::open(dir.path().join("data")).await?);
    publish_random_release(&store, args.preset).await?;
    let namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (mut child, base, admin) = start_server(dir.path(), &args, &namespace).await?;
    let pid = child.id();
    if args.repeated_reference {
        let result = repeated_reference(&args, &base, &admin, pid).await;
        stop_server(&mut child, &namespace).await?;
        result
    } else if args.hold {
        println!("serving at {base} (pid {pid}); stop with SIGTERM or Ctrl-C");
        suti_runtime::shutdown_on_signal().cancelled().await;
        stop_server(&mut child, &namespace).await
    } else {
        let result = load_server(&args, &base, pid).await;
        stop_server(&mut child, &namespace).await?;
        result
    }
}

/// Stops the server and deletes its broker topology.
async fn stop_server(child: &mut Child, namespace: &str) -> Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    if let Ok(broker) = AmqpBroker::connect(AmqpOptions::new(
        suti_runtime::SutiConfig::load_file(None)?
            .queue
            .url
            .expose()
            .to_string(),
    ))
    .await
    {
        let _ = broker.delete(&Topology::pipeline(namespace, 5)).await;
        broker.close().await;
    }
    Ok(())
}

/// The two load phases against the server at `base` (process `pid`), then the report.
async fn load_server(args: &ServingBenchArgs, base: &str, pid: u32) -> Result<()> {
    let body = Arc::new(generation_body(args, 0));
    println!(
        "serving (pid {pid}, preset {}, max_queued {}) at {base}; {} demonstrations, {} image(s), {} steps per request",
        args.preset, args.max_queued, args.demos, args.images, args.steps
    );
    // A short warm-up so that the first requests do not time the model's first allocation.
    let _ = load(base, body.clone(), 1, Duration::from_secs(3)).await;

    let phase = |name: &'static str, clients: usize, seconds: u64| {
        let body = body.clone();
        async move {
            let started = Instant::now();
            let (answers, rss) =
                with_rss(pid, load(base, body, clients, Duration::from_secs(seconds))).await;
            let elapsed = started.elapsed().as_secs_f64();
            figures(name, clients, elapsed, &answers, args.images, rss)
        }
    };
    let mut phases = vec![phase("sustained", args.concurrency, args.duration).await];
    if args.overload_concurrency > 0 {
        phases.push(
            phase(
                "overload",
                args.overload_concurrency,
                args.overload_duration,
            )
            .await,
        );
    }
    // The server must still answer normally after the overload.
    let after = load(base, body.clone(), 1, Duration::from_secs(3)).await;
    let after_ok = after.iter().all(|a| a.status == 200) && !after.is_empty();

    println!(
        "{:<10} {:>7} {:>7} {:>8} {:>6} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "phase",
        "clients",
        "requests",
        "ok",
        "429",
        "5xx",
        "failed",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "429 p99",
        "RSS MiB",
    );
    for p in &phases {
        println!(
            "{:<10} {:>7} {:>7} {:>8} {:>6} {:>5} {:>6} {:>8.2} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>9.1} {:>4.0}→{:.0} (peak {:.0})",
            p.phase,
            p.clients,
            p.requests,
            p.ok,
            p.refused_429,
            p.server_errors,
            p.transport_errors + p.other,
            p.requests_per_second,
            p.p50_ms,
            p.p90_ms,
            p.p99_ms,
            p.max_ms,
            p.refused_p99_ms,
            p.rss_start_mib,
            p.rss_end_mib,
            p.rss_peak_mib,
        );
    }
    println!(
        "after the overload: {}",
        if after_ok {
            "answers normally"
        } else {
            "NOT answering normally"
        }
    );
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&serde_json::json!({
                "preset": args.preset.name(),
                "steps": args.steps,
                "images": args.images,
                "demos": args.demos,
                "max_queued": args.max_queued,
                "phases": phases,
                "answers_after_overload": after_ok,
            }))?,
        )?;
    }
    let sustained = &phases[0];
    if sustained.server_errors + sustained.transport_errors + sustained.other > 0 {
        bail!("the sustained phase had failed requests");
    }
    if phases
        .iter()
        .any(|p| p.server_errors + p.transport_errors > 0)
    {
        bail!("a phase had server errors or failed connections");
    }
    if !after_ok {
        bail!("serving did not answer normally after the overload");
    }
    Ok(())
}
