//! `suti bench train` and `suti bench sample`: denoiser training throughput and sampling latency
//! for each preset on this machine, with random data (speed does not depend on the pixels).

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use clap::Args;
use serde_json::json;
use suti_models::diffusion::{Conditioning, SamplerConfig, SamplerKind, sample, v_loss};
use suti_models::train::{AdamW, AdamWConfig};
use suti_models::{Builders, Demos, Dit, DitConfig, ModelPreset, Params, TextCond};
use suti_rng::SplitMix64;

use crate::bench_report::{BenchReport, rayon_threads};

/// Options of `suti bench train`.
#[derive(Debug, Args)]
pub struct TrainBenchArgs {
    /// Presets to measure.
    #[arg(long, value_delimiter = ',', default_value = "test,tiny")]
    presets: Vec<ModelPreset>,
    /// Batch size (default: 32 for tiny and test, 16 otherwise).
    #[arg(long)]
    batch: Option<usize>,
    /// In-context demonstrations per example (0: the text-to-image denoiser).
    #[arg(long, default_value_t = 0)]
    demos: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Options of `suti bench sample`.
#[derive(Debug, Args)]
pub struct SampleBenchArgs {
    /// Presets to measure.
    #[arg(long, value_delimiter = ',', default_value = "test,tiny")]
    presets: Vec<ModelPreset>,
    /// Denoising steps.
    #[arg(long, default_value_t = 25)]
    steps: usize,
    /// Images per request.
    #[arg(long, default_value_t = 4)]
    images: usize,
    /// Demonstrations for the apprentice rows.
    #[arg(long, default_value_t = 3)]
    demos: usize,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

const TEXT_TOKENS: usize = 12;

fn random(shape: &[usize], rng: &mut SplitMix64, dev: &Device) -> candle_core::Result<Tensor> {
    Tensor::from_vec(rng.normals(shape.iter().product()), shape, dev)
}

fn text(
    b: usize,
    cfg: &DitConfig,
    rng: &mut SplitMix64,
    dev: &Device,
) -> candle_core::Result<TextCond> {
    Ok(TextCond {
        tokens: random(&[b, TEXT_TOKENS, cfg.text_dim], rng, dev)?,
        mask: Tensor::ones((b, TEXT_TOKENS), DType::F32, dev)?,
        pooled: (random(&[b, cfg.text_dim], rng, dev)? * 0.05)?,
    })
}

fn demos(
    b: usize,
    d: usize,
    cfg: &DitConfig,
    rng: &mut SplitMix64,
    dev: &Device,
) -> candle_core::Result<Demos> {
    let s = cfg.image_size;
    Ok(Demos {
        images: random(&[b, d, cfg.channels, s, s], rng, dev)?.tanh()?,
        pooled: (random(&[b, d, cfg.text_dim], rng, dev)? * 0.05)?,
        mask: Tensor::ones((b, d), DType::F32, dev)?,
    })
}

/// Measures training steps per preset and prints images per second.
pub fn train(args: TrainBenchArgs) -> anyhow::Result<()> {
    let dev = bench_device()?;
    let mut report = BenchReport::start(
        "train",
        args.json,
        format!(
            "suti bench train: f32 on {}, {} threads, {} demos, AdamW, random data",
            device_name(&dev),
            rayon_threads(),
            args.demos
        ),
    );
    for &name in &args.presets {
        let mut cfg = DitConfig::of(name);
        if args.demos == 0 {
            cfg.max_demos = 0;
        }
        let batch =
            args.batch
                .unwrap_or(if matches!(name, ModelPreset::Test | ModelPreset::Tiny) {
                    32
                } else {
                    16
                });
        let varmap = VarMap::new();
        let model = Dit::new(&cfg, &Builders::base(Params::train(&varmap, 1, &dev)))?;
        let mut opt = AdamW::new(&varmap, AdamWConfig::default())?;
        let params: usize = opt.vars().iter().map(|(_, v)| v.elem_count()).sum();
        let mut rng = SplitMix64::new(2);
        let s = cfg.image_size;
        let (mut forward_s, mut backward_s, mut optim_s) = (0.0, 0.0, 0.0);
        let phase = crate::progress::Phase::start(
            &format!("bench train {name}"),
            args.steps as u64 + 1,
            "steps",
        );
        for step in 0..=args.steps {
            let x0 = random(&[batch, cfg.channels, s, s], &mut rng, &dev)?.tanh()?;
            let cond = text(batch, &cfg, &mut rng, &dev)?;
            let demo_batch = if args.demos > 0 {
                Some(demos(batch, args.demos, &cfg, &mut rng, &dev)?)
            } else {
                None
            };
            // One training step on a rayon worker, as the trainers run it.
            let (t0, t1, t2, t3) = suti_models::ops::on_worker(|| -> anyhow::Result<_> {
                let t0 = Instant::now();
                let cache = demo_batch
                    .as_ref()
                    .map(|d| model.encode_demos(d))
                    .transpose()?;
                let loss = v_loss(&model, &x0, &cond, cache.as_ref(), &mut rng)?;
                let _ = loss.to_scalar::<f32>()?;
                let t1 = Instant::now();
                let grads = loss.backward()?;
                let t2 = Instant::now();
                opt.step(&grads, 1e-4)?;
                Ok((t0, t1, t2, Instant::now()))
            })?;
            if step > 0 {
                forward_s += (t1 - t0).as_secs_f64();
                backward_s += (t2 - t1).as_secs_f64();
                optim_s += (t3 - t2).as_secs_f64();
            }
            phase.advance(1);
        }
        phase.finish();
        let total = forward_s + backward_s + optim_s;
        let steps = args.steps.max(1) as f64;
        let images_per_second = batch as f64 * steps / total;
        let ms = |seconds: f64| 1000.0 * seconds / steps;
        report.result(
            format!(
                "{name:<5} {s}×{s} patch {} width {} depth {} ({:.1}M params), batch {batch}: {images_per_second:>6.2} img/s, {:>7.1} ms/step (forward {:.0}, backward {:.0}, optimiser {:.0})",
                cfg.patch,
                cfg.width,
                cfg.depth,
                params as f64 / 1e6,
                ms(total),
                ms(forward_s),
                ms(backward_s),
                ms(optim_s),
            ),
            json!({
                "preset": name.to_string(),
                "batch": batch,
                "params": params,
                "images_per_second": images_per_second,
                "ms_per_step": ms(total),
                "forward_ms": ms(forward_s),
                "backward_ms": ms(backward_s),
                "optimiser_ms": ms(optim_s),
            }),
        );
    }
    report.finish()
}

/// The weights of `varmap` as plain tensors, the way a published release holds them.
pub(crate) fn frozen_weights(varmap: &VarMap) -> anyhow::Result<HashMap<String, Tensor>> {
    Ok(varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("the variable map's lock is poisoned"))?
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect())
}

/// Measures sampling per preset: text only, and the apprentice with cached and uncached demos.
pub fn sample_bench(args: SampleBenchArgs) -> anyhow::Result<()> {
    let dev = bench_device()?;
    let mut report = BenchReport::start(
        "sample",
        args.json,
        format!(
            "suti bench sample: {} images per request, {} DPM-Solver++ steps, guidance 15 (both branches batched), on {}, {} threads",
            args.images,
            args.steps,
            device_name(&dev),
            rayon_threads()
        ),
    );
    for &name in &args.presets {
        // Lines off a terminal while it runs; the phase ends with the iteration.
        let _phase = crate::progress::Phase::start(&format!("bench sample {name}"), 0, "runs");
        let cfg = DitConfig::of(name);
        let varmap = VarMap::new();
        Dit::new(&cfg, &Builders::base(Params::train(&varmap, 1, &dev)))?;
        // Sampled as serving, the generator and the evaluation sample: from a loaded release's
        // plain tensors. Through variables, every op would record its backward graph, kept alive
        // across the steps (the PyTorch twin samples under `no_grad`).
        let model = Dit::new(
            &cfg,
            &Builders::base(Params::frozen(frozen_weights(&varmap)?, &dev)),
        )?;
        let mut rng = SplitMix64::new(3);
        let b = args.images;
        let cond_text = text(b, &cfg, &mut rng, &dev)?;
        let null = TextCond::null(b, cfg.text_dim, &dev)?;
        let config = SamplerConfig {
            steps: args.steps,
            guidance: 15.0,
            kind: SamplerKind::DpmSolver2m,
            seed: 1,
            ..SamplerConfig::default()
        };
        let t0 = Instant::now();
        sample(
            &model,
            &Conditioning {
                text: &cond_text,
                demos: None,
                null_text: &null,
            },
            &config,
        )?;
        let text_only = t0.elapsed().as_secs_f64();

        let demo_batch = demos(1, args.demos, &cfg, &mut rng, &dev)?;
        let t0 = Instant::now();
        let cache = model.encode_demos(&demo_batch)?.repeat(b)?;
        sample(
            &model,
            &Conditioning {
                text: &cond_text,
                demos: Some(&cache),
                null_text: &null,
            },
            &config,
        )?;
        let cached = t0.elapsed().as_secs_f64();

        // Without the cache every step would encode the demonstrations again.
        let t0 = Instant::now();
        let x = random(
            &[b, cfg.channels, cfg.image_size, cfg.image_size],
            &mut rng,
            &dev,
        )?;
        let t = Tensor::full(0.5f32, b, &dev)?;
        let repeated = Demos {
            images: demo_batch.images.repeat((b, 1, 1, 1, 1))?,
            pooled: demo_batch.pooled.repeat((b, 1, 1))?,
            mask: demo_batch.mask.repeat((b, 1))?,
        };
        let reps = 3;
        for _ in 0..reps {
            model.forward_uncached(&x, &t, &cond_text, &repeated)?;
            model.forward(&x, &t, &null, None)?;
        }
        let uncached_step = t0.elapsed().as_secs_f64() / reps as f64;
        let uncached = uncached_step * args.steps as f64;
        report.result(
            format!(
                "{name:<5} {0}×{0}: text only {1:>7.0} ms/request ({2:.1} ms/image); apprentice with {3} demos: cached {4:>7.0} ms/request, uncached ≈{5:>7.0} ms/request (cache saves {6:.0}%)",
                cfg.image_size,
                1000.0 * text_only,
                1000.0 * text_only / b as f64,
                args.demos,
                1000.0 * cached,
                1000.0 * uncached,
                100.0 * (1.0 - cached / uncached),
            ),
            json!({
                "preset": name.to_string(),
                "images": b,
                "steps": args.steps,
                "text_only_ms": 1000.0 * text_only,
                "apprentice_cached_ms": 1000.0 * cached,
                "apprentice_uncached_ms": 1000.0 * uncached,
            }),
        );
    }
    report.finish()
}

/// Where the benchmarks run: the configuration's `models.device` (defaults, then the
/// environment: `SUTI__MODELS__DEVICE=cuda suti bench train`).
pub fn bench_device() -> anyhow::Result<Device> {
    let config = suti_runtime::SutiConfig::load_file(None)?;
    Ok(suti_factory::device::model_device(config.models.device)?)
}

/// The device's name as the benchmarks print it.
fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "the CPU".into(),
        other => format!("{other:?}"),
    }
}

/// Options of `suti bench crawl`.
#[derive(Debug, Args)]
pub struct CrawlBenchArgs {
    /// Subject pages on the synthetic web.
    #[arg(long, default_value_t = 40)]
    subjects: usize,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Crawls the synthetic web on loopback (robots, frontier, rate limit, fetch, decode, hashing)
/// and clusters the result with the image tower; prints pages/s and images/s for each part.
pub async fn crawl(args: CrawlBenchArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use suti_crawl::engine::{MineSettings, cluster_pages, crawl_web};
    use suti_crawl::fetch::{FetchLimits, Fetcher};
    use suti_crawl::politeness::Politeness;
    use suti_crawl::url_policy::UrlPolicy;
    use suti_data::synthweb::{Site, SiteParams, serve};

    let assets = suti_data::Assets::open_default()?;
    let site = Site::new(
        assets,
        SiteParams {
            subjects: args.subjects,
            slow_duration: std::time::Duration::from_secs(30),
            ..SiteParams::default()
        },
    );
    let served = serve(site, "127.0.0.1:0").await?;
    let limits = FetchLimits {
        max_bytes: 4 << 20,
        timeout: std::time::Duration::from_secs(2),
        ..FetchLimits::default()
    };
    let fetcher = Fetcher::new(
        UrlPolicy::new(vec!["127.0.0.0/8".parse().map_err(anyhow::Error::msg)?]),
        limits,
    )?;
    let politeness = Politeness::new(
        Arc::new(suti_state::InProcessState::new()),
        fetcher.clone(),
        suti_state::TokenBucket {
            capacity: 1000.0,
            refill_per_second: 10_000.0,
        },
    );
    let settings = MineSettings::default();
    let seed = url::Url::parse(&format!("{}/", served.base_url()))?;
    let started = Instant::now();
    let (pages, stats) = crawl_web(
        &[seed],
        "bench",
        "bench",
        10_000,
        6,
        &fetcher,
        &politeness,
        &settings,
    )
    .await;
    let crawl_s = started.elapsed().as_secs_f64();
    let tower_bytes = std::fs::read(
        suti_data::Assets::default_dir().join("efficientnet/efficientnet-lite0.pth"),
    )?;
    let tower =
        suti_models::image_tower::ImageTower::from_pth_bytes(&tower_bytes, &bench_device()?)?;
    let started = Instant::now();
    let (clusters, _) = cluster_pages(&pages, &tower, &settings)?;
    let cluster_s = started.elapsed().as_secs_f64();
    let distinct: std::collections::HashSet<&str> = pages
        .iter()
        .flat_map(|p| p.images.iter().map(|i| i.image.sha256.as_str()))
        .collect();
    let mut report = BenchReport::start(
        "crawl",
        args.json,
        format!(
            "suti bench crawl: synthetic web of {} subject pages on loopback, {} threads",
            args.subjects,
            rayon_threads()
        ),
    );
    report.result(
        format!(
            "crawl (fetch, robots, frontier, decode, hash): {} pages, {} images in {:.2} s = {:.1} pages/s, {:.1} images/s ({:.1} MiB)",
            stats.pages,
            stats.images,
            crawl_s,
            stats.pages as f64 / crawl_s,
            stats.images as f64 / crawl_s,
            stats.bytes as f64 / (1024.0 * 1024.0)
        ),
        json!({
            "part": "crawl",
            "pages": stats.pages,
            "images": stats.images,
            "seconds": crawl_s,
            "pages_per_second": stats.pages as f64 / crawl_s,
            "images_per_second": stats.images as f64 / crawl_s,
        }),
    );
    report.result(
        format!(
            "cluster (image tower on {} distinct images): {} clusters in {:.2} s = {:.1} images/s",
            distinct.len(),
            clusters.len(),
            cluster_s,
            distinct.len() as f64 / cluster_s
        ),
        json!({
            "part": "cluster",
            "images": distinct.len(),
            "clusters": clusters.len(),
            "seconds": cluster_s,
            "images_per_second": distinct.len() as f64 / cluster_s,
        }),
    );
    report.finish()
}

/// Options of `suti bench factory`.
#[derive(Debug, Args)]
pub struct FactoryBenchArgs {
    /// Model preset: test, tiny, small or base.
    #[arg(long, default_value = "tiny")]
    preset: ModelPreset,
    /// Timed expert fine-tuning steps (after one warm-up step).
    #[arg(long, default_value_t = 20)]
    expert_steps: u64,
    /// Images per step of the fine-tune.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// Prompts to generate for.
    #[arg(long, default_value_t = 4)]
    prompts: usize,
    /// Images per prompt.
    #[arg(long, default_value_t = 2)]
    images_per_prompt: usize,
    /// Denoising steps per image.
    #[arg(long, default_value_t = 25)]
    sample_steps: usize,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Times an expert fine-tune and the expert's generation on EmojiWorld renders and prints fine-tune
/// steps per second and generated images per second. The base is freshly initialised: speed does
/// not depend on what it learned.
pub fn factory(args: FactoryBenchArgs) -> anyhow::Result<()> {
    use suti_factory::expert::{expert_trainer, personalise};
    use suti_factory::generate::generate;
    use suti_factory::training::Pair;
    use suti_runtime::config::ExpertStageConfig;

    let dev = bench_device()?;
    let cfg = DitConfig::of(args.preset);
    let text =
        suti_factory::towers::load_text_encoder(&suti_factory::towers::text_encoder_dir(""), &dev)?;
    let assets = suti_data::Assets::open_default()?;
    let subject = assets
        .catalog()
        .subjects(suti_data::Split::Train)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no subjects in the catalogue"))?;
    let sprite = assets.sprite(&subject)?;
    let noun = subject.class.noun.clone();
    let pairs: Vec<Pair> = suti_data::Scene::RECONTEXTUALISATION[..5]
        .iter()
        .enumerate()
        .map(|(k, &scene)| {
            let image =
                suti_data::render::render_with_box(&sprite, scene, None, None, k as u64, 64).0;
            Pair {
                image: suti_factory::pixels::to_chw(&image, cfg.image_size),
                caption: personalise(&format!("my {noun} {}", scene.phrase()), &noun, "sks"),
            }
        })
        .collect();
    let base_cfg = DitConfig {
        max_demos: 0,
        ..cfg
    };
    let base = suti_factory::base::untrained_base_model(&base_cfg, 1, &dev)?;
    let expert_config = ExpertStageConfig {
        steps: args.expert_steps + 1,
        batch: args.batch,
        rank: args.rank,
        alpha: args.rank as f32,
        ..ExpertStageConfig::default()
    };
    let mut trainer = expert_trainer(&base, &expert_config, 1)?;
    let phase =
        crate::progress::Phase::start("bench factory: fine-tune", args.expert_steps + 1, "steps");
    trainer.step(&pairs, &text)?;
    phase.advance(1);
    let started = Instant::now();
    while !trainer.finished() {
        trainer.step(&pairs, &text)?;
        phase.advance(1);
    }
    let tune_s = started.elapsed().as_secs_f64();
    phase.finish();
    // Generation is one call; the phase prints a line at least every 30 s while it runs.
    let _generating = crate::progress::Phase::start("bench factory: generate", 0, "images");
    let expert = trainer.model().merged()?;
    let prompts: Vec<String> = suti_data::all_prompts()
        .iter()
        .take(args.prompts)
        .map(|p| p.text(&format!("sks {noun}")))
        .collect();
    let sampler = SamplerConfig {
        steps: args.sample_steps,
        guidance: 7.5,
        ..SamplerConfig::default()
    };
    // One warm-up image, then the timed run.
    generate(&expert, &text, &prompts[..1], 1, &sampler, 8)?;
    let started = Instant::now();
    let images = generate(
        &expert,
        &text,
        &prompts,
        args.images_per_prompt,
        &sampler,
        8,
    )?;
    let generate_s = started.elapsed().as_secs_f64();
    let mut report = BenchReport::start(
        "factory",
        args.json,
        format!(
            "suti bench factory: preset {}, {} threads",
            args.preset,
            rayon_threads()
        ),
    );
    report.result(
        format!(
            "expert fine-tune (LoRA rank {}, batch {}): {} steps in {:.2} s = {:.2} steps/s ({:.1} s for the paper's 500 steps)",
            args.rank,
            args.batch,
            args.expert_steps,
            tune_s,
            args.expert_steps as f64 / tune_s,
            500.0 * tune_s / args.expert_steps as f64
        ),
        json!({
            "part": "expert_finetune",
            "steps": args.expert_steps,
            "seconds": tune_s,
            "steps_per_second": args.expert_steps as f64 / tune_s,
        }),
    );
    report.result(
        format!(
            "generation ({} steps, guidance 7.5, batches of up to 8): {} images in {:.2} s = {:.2} images/s",
            args.sample_steps,
            images.len(),
            generate_s,
            images.len() as f64 / generate_s
        ),
        json!({
            "part": "generation",
            "images": images.len(),
            "seconds": generate_s,
            "images_per_second": images.len() as f64 / generate_s,
        }),
    );
    report.finish()
}
