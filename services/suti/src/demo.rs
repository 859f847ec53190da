//! `suti demo`: the whole pipeline in one process on EmojiWorld, with embedded backends (the
//! in-process queue and state, local storage under the output folder). It serves the synthetic
//! web, starts the six services, crawls, trains the scorer and the base model, lets the experts,
//! generator and filter make the training set, trains the apprentice, renders held-out subjects
//! from their demonstrations with the `suti eval` protocol, writes a contact sheet and an HTML
//! report, and serves the web UI.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use suti_data::{Assets, RgbaImage};
use suti_eval::job::{
    EvalSetSource, ScorerChoice, SubjectEncoderChoice, encoders, eval_models, evaluation_set,
    expert_settings, load_models,
};
use suti_eval::plots::{LossCurve, LossPoint, PipelineFigures};
use suti_eval::protocol::{EvalReport, EvalSettings, Method, SubjectSheet};
use suti_factory::jobs::{BaseJob, BaseJobOutcome, BasePairs, ScorerJob, train_base, train_scorer};
use suti_factory::scorer::Degradations;
use suti_factory::training::LOSSES_FILE;
use suti_messages::{CrawlLimits, CrawlRequestV1};
use suti_models::{DitConfig, ModelPreset};
use suti_queue::Envelope;
use suti_runtime::{Backends, Health, SutiConfig};
use suti_storage::layout::{self, APPRENTICE_MODEL, BASE_MODEL};
use suti_storage::{ObjectKey, SharedStore};
use tokio_util::sync::CancellationToken;

use crate::progress::{CliProgress, Phase};

/// Options of `suti demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the report, the contact sheet and the run's data.
    #[arg(long, default_value = "suti-demo")]
    pub out: PathBuf,
    /// Model preset: test, tiny, small or base.
    #[arg(long, default_value = "tiny")]
    pub preset: ModelPreset,
    /// Subject pages on the synthetic web (each can become a cluster).
    #[arg(long, default_value_t = 16)]
    pub subjects: usize,
    /// Base model training steps.
    #[arg(long, default_value_t = 2200)]
    pub base_steps: u64,
    /// Scorer training steps.
    #[arg(long, default_value_t = 400)]
    pub scorer_steps: u64,
    /// Fine-tuning steps per expert (the paper: 500).
    #[arg(long, default_value_t = 150)]
    pub expert_steps: u64,
    /// Prompts each expert renders.
    #[arg(long, default_value_t = 4)]
    pub prompts: usize,
    /// Images per prompt.
    #[arg(long, default_value_t = 2)]
    pub images_per_prompt: usize,
    /// Guidance weight of the experts' generations and of the base model and experts in the
    /// evaluation. The `tiny` models render best with little guidance; the paper's 7.5–15 suit
    /// larger ones.
    #[arg(long, default_value_t = 1.5)]
    pub guidance: f32,
    /// Guidance weight of the apprentice's text (the evaluation and the web UI's default).
    #[arg(long, default_value_t = 1.0)]
    pub apprentice_guidance: f32,
    /// Guidance weight of the apprentice's demonstrations, pushed from the text alone (the
    /// evaluation and the web UI's default). It amplifies what the apprentice takes from its
    /// demonstrations; with the text unguided it costs no extra denoising pass.
    #[arg(long, default_value_t = 2.5)]
    pub demo_guidance: f32,
    /// Apprentice training steps before its release.
    #[arg(long, default_value_t = 400)]
    pub apprentice_steps: u64,
    /// Held-out subjects evaluated at the end (24: 12 classes × both drawings).
    #[arg(long, default_value_t = 24)]
    pub held_out: usize,
    /// Held-out subjects the expert baseline runs on (the first ones; each costs a fine-tune of
    /// about 75 s on two cores, so the default keeps the demo inside 30 minutes).
    #[arg(long, default_value_t = 4)]
    pub eval_expert_subjects: usize,
    /// Demonstration counts the apprentice is evaluated with (`1,3,5` for the paper's
    /// demonstration-count experiment, about 3 minutes more).
    #[arg(long, value_delimiter = ',', default_value = "3")]
    pub eval_demos: Vec<usize>,
    /// Fine-tuning steps of the evaluation's per-subject experts (the paper's 500, the
    /// configuration's default: the DreamBooth-style baseline the apprentice is timed against).
    #[arg(long, default_value_t = 500)]
    pub eval_expert_steps: u64,
    /// Prompts per held-out subject.
    #[arg(long, default_value_t = 4)]
    pub eval_prompts: usize,
    /// Port of the web UI served at the end.
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
    /// Exit after the report instead of serving the UI.
    #[arg(long)]
    pub no_serve: bool,
}

/// How long each stage of the run took.
struct Timings(Vec<(&'static str, Duration, String)>);

impl Timings {
    fn add(&mut self, stage: &'static str, since: Instant, detail: String) {
        self.0.push((stage, since.elapsed(), detail));
    }
}

async fn count(store: &SharedStore, prefix: &str, suffix: &str) -> usize {
    store
        .list(prefix)
        .await
        .map(|objects| {
            objects
                .iter()
                .filter(|o| o.key.as_str().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

/// The demo's configuration: embedded backends under `data`, the stages scaled by `args`.
fn demo_config(args: &DemoArgs, data: &Path) -> SutiConfig {
    let mut config = SutiConfig::embedded(data);
    config.admin.listen = "127.0.0.1:0".into();
    config.serving.listen = format!("127.0.0.1:{}", args.port);
    config.crawler.allow_private = vec!["127.0.0.0/8".into()];
    config.crawler.timeout_secs = 5;
    config.crawler.host_rate_per_second = 200.0;
    config.crawler.host_burst = 50.0;
    config.models.poll_secs = 1;
    config.expert.steps = args.expert_steps;
    config.generator.prompts_per_cluster = args.prompts;
    config.generator.images_per_prompt = args.images_per_prompt;
    config.generator.guidance = args.guidance;
    config.serving.default_guidance = args.apprentice_guidance;
    config.serving.default_demo_guidance = Some(args.demo_guidance);
    // The web page links the report this run writes.
    config.serving.report_dir = std::path::absolute(&args.out)
        .unwrap_or_else(|_| args.out.clone())
        .display()
        .to_string();
    // The tiny models' generations are far less crisp than the crawled photos, so the paper's
    // ΔCLIP-T (against the demonstrations' own CLIP-T) rejects nearly all of them for that alone;
    // comparing each generation with the demonstrations' captions cancels image quality out.
    config.clip_filter.delta_reference = suti_runtime::DeltaReference::Captions;
    config.apprentice.schedule_steps = args.apprentice_steps;
    config.apprentice.release_every = args.apprentice_steps;
    config.apprentice.checkpoint_every = (args.apprentice_steps / 4).max(1);
    config.apprentice.refresh_secs = 2;
    // The apprentice starts once every cluster's shard is in (the crawl makes one cluster per
    // subject page), not on the first: its 400 steps would be over before the last expert.
    config.apprentice.start_shards = args.subjects;
    config.apprentice.start_wait_secs = 900;
    // The gated reader (the default) trains only its readers, from zero: the rate that moved
    // its held-out loss gap in docs/results.md.
    config.apprentice.learning_rate = 1e-3;
    config.telemetry.log_filter = "warn".into();
    config
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let data = args.out.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("clearing {}", data.display()))?;
    }
    std::fs::create_dir_all(&data)?;
    let config = demo_config(&args, &data);
    crate::progress::init_cli_logging(&config.telemetry.log_filter);
    let shutdown = CancellationToken::new();

    // The synthetic web.
    let assets = Assets::open_default().context("EmojiWorld assets (run scripts/fetch-assets)")?;
    let site = suti_data::synthweb::Site::new(
        assets.clone(),
        suti_data::synthweb::SiteParams {
            subjects: args.subjects,
            // More photos per page give the base model more pairs at no cost to the experts.
            min_images: 5,
            // Both drawings of each class: the noun alone cannot tell which instance an example
            // shows, so the apprentice has to read its demonstrations.
            both_vendors: true,
            ..Default::default()
        },
    );
    let served = suti_data::synthweb::serve(site, "127.0.0.1:0").await?;

    // The six services, sharing this process's queue, state and storage.
    let backends = Backends::connect(
        &config,
        "demo",
        &prometheus::Registry::new(),
        &Health::new(),
    )
    .await?;
    // The apprentice-trainer keeps training after its first release; it is stopped before the
    // evaluation, which would otherwise share the cores with it.
    let trainer_shutdown = shutdown.child_token();
    let mut services = crate::all::spawn_services(&config, &shutdown, &trainer_shutdown);
    let result = run_stages(
        &args,
        &config,
        &served,
        &backends,
        (&mut services, &trainer_shutdown),
        started,
    )
    .await;
    if result.is_err() || args.no_serve {
        shutdown.cancel();
    } else {
        println!("\nweb UI: http://127.0.0.1:{}/ (Ctrl-C to stop)", args.port);
        tokio::signal::ctrl_c().await?;
        shutdown.cancel();
    }
    // Every service stops before the runtime does, also after a failure.
    while services.join_next().await.is_some() {}
    result
}

/// The demo's stages, in order; the caller stops the services afterwards.
#[allow(clippy::too_many_arguments)]
async fn run_stages(
    args: &DemoArgs,
    config: &SutiConfig,
    served: &suti_data::synthweb::ServedSite,
    backends: &Backends,
    (services, trainer_shutdown): (
        &mut tokio::task::JoinSet<anyhow::Result<()>>,
        &CancellationToken,
    ),
    started: Instant,
) -> anyhow::Result<()> {
    let store = backends.storage.clone();
    let mut timings = Timings(Vec::new());

    // 1. Crawl.
    let stage = Instant::now();
    let bar = Phase::start("crawl + cluster", 0, "pages");
    let request = CrawlRequestV1 {
        run_id: "demo".into(),
        seed_urls: vec![format!("{}/", served.base_url())],
        warc_keys: vec![],
        limits: CrawlLimits::default(),
    };
    backends
        .broker
        .publish(
            &backends.topology,
            &Envelope::encode(&request, "crawl-demo", Some("demo".into()))?,
        )
        .await?;
    while !backends
        .state
        .is_marked("crawler_clusterer:done:crawl-demo")
        .await
        .unwrap_or(false)
    {
        check_services(services)?;
        bar.set_status(format!(
            "{} clusters",
            count(&store, layout::CLUSTERS_PREFIX, layout::MSGPACK_SUFFIX).await
        ));
        bar.set_done(served.requested().len() as u64);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let clusters = count(&store, layout::CLUSTERS_PREFIX, layout::MSGPACK_SUFFIX).await;
    bar.set_status(format!("{clusters} clusters"));
    bar.finish();
    timings.add("crawl + cluster", stage, format!("{clusters} clusters"));
    if clusters == 0 {
        bail!("the crawl found no clusters");
    }

    // 2. Scorer and base model (the stages waiting for them start as soon as they appear).
    let job_progress = CliProgress;
    let stage = Instant::now();
    let scorer = train_scorer(
        &store,
        config,
        &ScorerJob {
            steps: args.scorer_steps,
            batch: 64,
            seed: 0,
            image_size: DitConfig::of(args.preset).image_size as u32,
            degradations: Degradations::default(),
        },
        &job_progress,
    )
    .await?;
    crate::train_cmd::report_scorer(&scorer);
    timings.add("train scorer", stage, format!("version {}", scorer.version));
    crate::progress::note("demo: scorer trained");
    let stage = Instant::now();
    let trained = train_base(
        &store,
        config,
        &BaseJob {
            pairs: BasePairs::Crawled,
            preset: args.preset,
            steps: args.base_steps,
            batch: 16,
            learning_rate: 1e-3,
            checkpoint_every: args.base_steps.max(1),
            fresh: true,
            stop_after: None,
            seed: 0,
        },
        &job_progress,
    )
    .await?;
    crate::train_cmd::report_base(&trained);
    let BaseJobOutcome::Published {
        version: base_version,
        loss_after: base_loss,
        ..
    } = trained
    else {
        bail!("the base model run stopped early");
    };
    crate::progress::note(&format!(
        "demo: base model trained (evaluation loss {base_loss:.4})"
    ));
    timings.add(
        "train base",
        stage,
        format!("version {base_version}, evaluation loss {base_loss:.4}"),
    );

    // 3. Experts, generations, the filter and the apprentice run as services; follow them.
    let stage = Instant::now();
    let experts = Phase::start("experts", clusters as u64, "experts");
    let candidates = Phase::start("generator", 0, "images");
    let filtered = Phase::start("clip-filter", clusters as u64, "shards");
    let apprentice = Phase::start("apprentice", args.apprentice_steps, "steps");
    let latest_release = ObjectKey::new(layout::model_latest(APPRENTICE_MODEL))?;
    loop {
        check_services(services)?;
        let e = count(&store, layout::EXPERTS_PREFIX, ".safetensors").await;
        let g = count(&store, layout::CANDIDATES_PREFIX, ".png").await;
        let f = count(
            &store,
            layout::APPRENTICE_SHARDS_PREFIX,
            layout::MSGPACK_SUFFIX,
        )
        .await;
        experts.set_done(e as u64);
        candidates.set_done(g as u64);
        filtered.set_done(f as u64);
        let step = suti_storage::read_pointer(
            store.as_ref(),
            &ObjectKey::new(layout::checkpoint_latest(APPRENTICE_MODEL))?,
        )
        .await
        .ok()
        .flatten()
        .and_then(|step| step.parse::<u64>().ok())
        .unwrap_or(0);
        // The trainer starts once every cluster's shard is in (`start_shards`).
        apprentice.set_status(if step == 0 && f < clusters {
            format!("waiting for the shards ({f}/{clusters})")
        } else {
            String::new()
        });
        apprentice.set_done(step);
        if store.head(&latest_release).await?.is_some() {
            break;
        }
        if f >= clusters && accepted_examples(&store).await == 0 {
            bail!(
                "the filter accepted none of the {g} candidates of {clusters} clusters, so the \
                 apprentice has nothing to learn from; train longer (--base-steps, --expert-steps) \
                 or use more subjects"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for bar in [&experts, &candidates, &filtered, &apprentice] {
        bar.finish();
    }
    trainer_shutdown.cancel();
    let release = suti_storage::read_pointer(store.as_ref(), &latest_release)
        .await?
        .context("the release pointer vanished")?;
    let shards = count(
        &store,
        layout::APPRENTICE_SHARDS_PREFIX,
        layout::MSGPACK_SUFFIX,
    )
    .await;
    let accepted = accepted_examples(&store).await;
    timings.add(
        "experts → apprentice",
        stage,
        format!(
            "{} experts, {} candidates, {shards} shards with {accepted} accepted, release {release}",
            count(&store, layout::EXPERTS_PREFIX, ".safetensors").await,
            count(&store, layout::CANDIDATES_PREFIX, ".png").await
        ),
    );

    // 4. Held-out subjects: the evaluation protocol, and the contact sheet from its images.
    let stage = Instant::now();
    let (mut report, sheets) = evaluate_held_out(args, config, &store).await?;
    report.pipeline = Some(pipeline_figures(&store, &base_version, &release).await);
    let primary = Method::Apprentice { demos: 3 };
    let sheet = suti_data::contact::contact_sheet(
        &sheets
            .iter()
            .map(|s| {
                let mut row: Vec<RgbaImage> = s.demos.iter().take(3).cloned().collect();
                // Demonstrations | the apprentice given them | the true images.
                for wanted in [primary, Method::RealImages] {
                    if let Some((_, images)) = s.methods.iter().find(|(m, _)| *m == wanted) {
                        row.extend(images.iter().cloned());
                    }
                }
                row
            })
            .collect::<Vec<_>>(),
        4,
    );
    let sheet_path = args.out.join("contact-sheet.png");
    std::fs::write(&sheet_path, sheet.to_png())?;
    let eval_dir = args.out.join("eval");
    suti_eval::report::write_outputs(&eval_dir, &report, &sheets)?;
    timings.add(
        "evaluate held-out",
        stage,
        format!(
            "{} subjects → {}",
            sheets.len(),
            eval_dir.join("eval.html").display()
        ),
    );
    let report_path = args.out.join("report.html");
    std::fs::write(
        &report_path,
        report_html(&timings, &report, started.elapsed()),
    )?;
    println!(
        "\nsuti demo — {:.1} min on this machine\n",
        started.elapsed().as_secs_f64() / 60.0
    );
    println!("| stage | time | result |\n|---|---|---|");
    for (stage, took, detail) in &timings.0 {
        println!("| {stage} | {:.0} s | {detail} |", took.as_secs_f64());
    }
    println!("\nHeld-out subjects (suti eval protocol):\n");
    println!("{}", suti_eval::report::markdown(&report));
    if let (Some(base), Some(expert), Some(apprentice)) = (
        report.row(Method::Base),
        report.row(Method::Expert {
            steps: args.eval_expert_steps,
        }),
        report.row(primary),
    ) {
        let margin =
            |r: &suti_eval::protocol::MethodRow| r.margin.map_or("—".into(), |m| m.format(3));
        println!(
            "The apprentice given 3 demonstrations: margin {} (base, text only: {}; expert: {}), \
             {:.1} s per subject against the expert's {:.1} s ({:.0}× faster).\n",
            margin(apprentice),
            margin(base),
            margin(expert),
            apprentice.seconds_per_subject,
            expert.seconds_per_subject,
            expert.seconds_per_subject / apprentice.seconds_per_subject.max(1e-9)
        );
    }
    println!(
        "contact sheet: {} (each row: 3 demonstrations | the apprentice given them | true images)\nreport: {}",
        sheet_path.display(),
        report_path.display()
    );
    Ok(())
}

/// Fails when a service stopped with an error.
fn check_services(services: &mut tokio::task::JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    match services.try_join_next() {
        None => Ok(()),
        Some(Ok(Ok(()))) => bail!("a service stopped early"),
        Some(Ok(Err(e))) => Err(e.context("a service failed")),
        Some(Err(e)) => bail!("a service panicked: {e}"),
    }
}

/// A stored loss curve (`losses.json`), empty when there is none.
async fn loss_points(store: &SharedStore, key: &str) -> Vec<LossPoint> {
    let Ok(key) = ObjectKey::new(key) else {
        return Vec::new();
    };
    match store.get(&key).await {
        Ok(body) => serde_json::from_slice(&body).unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// The pipeline's figures for the reports: the base, experts' (mean by step) and apprentice's
/// loss curves, and the filter's verdicts over every shard.
async fn pipeline_figures(
    store: &SharedStore,
    base_version: &str,
    release: &str,
) -> PipelineFigures {
    let base = loss_points(
        store,
        &layout::model_file(BASE_MODEL, base_version, LOSSES_FILE),
    )
    .await;
    let apprentice = loss_points(
        store,
        &layout::model_file(APPRENTICE_MODEL, release, LOSSES_FILE),
    )
    .await;
    // Every expert trains the same number of steps, so their curves line up point by point.
    let mut experts: Vec<Vec<LossPoint>> = Vec::new();
    for object in store
        .list(layout::EXPERT_LOSSES_PREFIX)
        .await
        .unwrap_or_default()
    {
        if object.key.as_str().ends_with(".json") {
            let points = loss_points(store, object.key.as_str()).await;
            if !points.is_empty() {
                experts.push(points);
            }
        }
    }
    let shortest = experts.iter().map(Vec::len).min().unwrap_or(0);
    let expert_mean: Vec<LossPoint> = (0..shortest)
        .map(|k| LossPoint {
            step: experts[0][k].step,
            loss: experts.iter().map(|c| c[k].loss).sum::<f32>() / experts.len() as f32,
        })
        .collect();
    let mut accepted = 0u64;
    let mut rejected = std::collections::BTreeMap::<String, u64>::new();
    for shard in shards(store).await {
        accepted += shard.examples.len() as u64;
        for (reason, n) in shard.rejected {
            *rejected.entry(reason).or_default() += u64::from(n);
        }
    }
    let mut filter_verdicts = vec![("accepted".to_string(), accepted)];
    filter_verdicts.extend(rejected);
    PipelineFigures {
        loss_curves: vec![
            LossCurve {
                label: "base model".into(),
                points: base,
            },
            LossCurve {
                label: format!("experts (mean of {})", experts.len()),
                points: expert_mean,
            },
            LossCurve {
                label: "apprentice".into(),
                points: apprentice,
            },
        ],
        filter_verdicts,
    }
}

/// Every readable dataset shard in storage.
async fn shards(store: &SharedStore) -> Vec<suti_messages::ExampleShard> {
    let mut shards = Vec::new();
    for object in store
        .list(layout::APPRENTICE_SHARDS_PREFIX)
        .await
        .unwrap_or_default()
    {
        if let Ok(body) = store.get(&object.key).await
            && let Ok(shard) = rmp_serde::from_slice::<suti_messages::ExampleShard>(&body)
        {
            shards.push(shard);
        }
    }
    shards
}

async fn accepted_examples(store: &SharedStore) -> usize {
    shards(store).await.iter().map(|s| s.examples.len()).sum()
}

/// Runs the evaluation protocol over the first `held_out` held-out subjects.
async fn evaluate_held_out(
    args: &DemoArgs,
    config: &SutiConfig,
    store: &SharedStore,
) -> anyhow::Result<(EvalReport, Vec<SubjectSheet>)> {
    let setup = Phase::start("eval set-up", 0, "steps");
    let stored = load_models(store, config).await?;
    let settings = EvalSettings {
        images: 2,
        demo_counts: args.eval_demos.clone(),
        expert: expert_settings(config, Some(args.eval_expert_steps)),
        expert_subjects: args.eval_expert_subjects,
        steps: 25,
        guidance: args.guidance,
        apprentice_guidance: args.apprentice_guidance,
        demo_guidance: Some(args.demo_guidance),
        seed: 0,
        controls: true,
        batch_subjects: 2,
    };
    let set = evaluation_set(
        &EvalSetSource::EmojiWorld { seed: 0 },
        args.held_out,
        &args.out,
        args.eval_prompts,
        &settings.expert.identifier_token,
    )?;
    let (subject, scorer) = encoders(
        &SubjectEncoderChoice::default(),
        &ScorerChoice::default(),
        &stored,
    )?;
    tokio::task::block_in_place(|| {
        let models = eval_models(stored, subject, scorer, &set)?;
        setup.finish();
        crate::eval::run_with_progress(&set.subjects, &models, &settings, &set.name)
    })
}

fn report_html(timings: &Timings, report: &EvalReport, total: Duration) -> String {
    let escape = suti_eval::report::html_escape;
    let mut html = suti_eval::report::html_head("suti demo");
    html.push_str(&format!(
        "<p>The whole pipeline on EmojiWorld in {:.1} minutes.</p><table><tr><th>stage</th><th>time</th><th>result</th></tr>",
        total.as_secs_f64() / 60.0
    ));
    for (stage, took, detail) in &timings.0 {
        html.push_str(&format!(
            "<tr><td>{stage}</td><td>{:.0} s</td><td>{}</td></tr>",
            took.as_secs_f64(),
            escape(detail)
        ));
    }
    html.push_str(&format!(
        "</table><h2>Held-out subjects</h2><p>The <code>suti eval</code> protocol over {} subjects \
         the pipeline never saw ({} prompts each, {} images per prompt); the full report with \
         every method's images is <a href=\"eval/eval.html\">eval/eval.html</a>.</p>",
        report.subjects.len(),
        report.prompts_per_subject,
        report.images_per_prompt
    ));
    html.push_str(&suti_eval::report::html_tables(report));
    html.push_str(&suti_eval::plots::plots_html(report));
    html.push_str("<p>Each row of the sheet: three demonstrations, the apprentice's images given them, the true images of the subject in the prompted places.</p><img src=\"contact-sheet.png\" alt=\"contact sheet\"></body></html>\n");
    html
}
