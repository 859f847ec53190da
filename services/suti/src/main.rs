//! `suti`: the umbrella command. Every service and every one-off job of the pipeline is a
//! subcommand (architecture.md §2); container images run `suti <service>`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod all;
mod bench;
mod bench_models;
mod bench_report;
mod bench_serving;
mod bench_stage;
mod bench_tower;
mod config_cmd;
mod crawl_cmd;
mod demo;
mod eval;
mod generate_cmd;
mod progress;
mod synthweb_cmd;
mod train_cmd;

/// Subject-driven text-to-image generation by apprenticeship learning.
#[derive(Debug, Parser)]
#[command(name = "suti", version = suti_runtime::VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole pipeline in one process on EmojiWorld: crawl, train, fine-tune, generate,
    /// filter, train the apprentice, render held-out subjects, write a report, serve the UI.
    Demo(demo::DemoArgs),
    /// The DreamBench protocol over held-out subjects: base, experts, the apprentice with 1/3/5
    /// demonstrations and two controls, scored with 95 % intervals and timed; writes JSON,
    /// markdown, contact sheets and HTML. `suti eval sanity` checks the subject metric itself.
    Eval(Box<eval::EvalArgs>),
    /// Every service in one process against the configured RabbitMQ, S3 and Redis (a single box),
    /// or against in-process backends when the configuration says so.
    All {
        /// A YAML file layered over the compiled-in defaults.
        #[arg(long, short, env = "SUTI_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the crawler-clusterer service: consume crawl requests, publish subject clusters.
    CrawlerClusterer {
        /// A YAML file layered over the compiled-in defaults.
        #[arg(long, short, env = "SUTI_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the expert-finetuner service: consume clusters, publish LoRA experts.
    ExpertFinetuner {
        /// A YAML file layered over the compiled-in defaults.
        #[arg(long, short, env = "SUTI_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the generator service: consume experts, publish candidate images.
    Generator {
        /// A YAML file layered over the compiled-in defaults.
        #[arg(long, short, env = "SUTI_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the clip-filter service: consume candidates, publish accepted training triplets.
    ClipFilter {
        /// A YAML file layered over the compiled-in defaults.
        #[arg(long, short, env = "SUTI_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the apprentice-trainer service: index accepted triplets, train the apprentice
    /// continuously, checkpoint and publish releases.
    ApprenticeTrainer {
        /// A YAML file layered over the compiled-in defaults.
        #[arg(long, short, env = "SUTI_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run serving: the HTTP API and web page over the latest apprentice release.
    Serving {
        /// A YAML file layered over the compiled-in defaults.
        #[arg(long, short, env = "SUTI_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Render a subject from demonstrations with an apprentice model folder or the latest release;
    /// writes PNGs and a contact sheet.
    Generate(generate_cmd::GenerateArgs),
    /// Start a crawl in a running pipeline: publish one crawl request (seed URLs, WARC files in
    /// storage) for the crawler-clusterer.
    Crawl(crawl_cmd::CrawlArgs),
    /// Train the base model or the scorer from the crawled pairs and publish it.
    Train {
        #[command(subcommand)]
        command: train_cmd::TrainCommand,
    },
    /// Print the version and build of this binary.
    Version {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inspect and validate configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// EmojiWorld: subjects, contexts, the synthetic web and the benchmark set.
    Synthweb {
        #[command(subcommand)]
        command: synthweb_cmd::SynthwebCommand,
    },
    /// Measure parts of the system on this machine.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load a service's configuration (defaults → --config file → SUTI__… environment), validate
    /// it, and print the effective values with secrets redacted. Exits 1 if it is invalid.
    Check {
        /// The service: crawler-clusterer, expert-finetuner, generator, clip-filter,
        /// apprentice-trainer or serving.
        service: suti_runtime::ServiceName,
        /// A YAML file layered over the compiled-in defaults.
        #[arg(long, short, env = "SUTI_CONFIG")]
        config: Option<PathBuf>,
        /// Only validate; print nothing on success.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print the compiled-in defaults, with comments.
    Defaults,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Publish (with confirms) and consume (with acks) messages through the configured broker and
    /// print messages per second.
    Queue(bench::QueueBenchArgs),
    /// Render EmojiWorld images and print images per second at each size.
    Render(bench::RenderBenchArgs),
    /// Train the denoiser on random data and print images per second for each preset.
    Train(bench_models::TrainBenchArgs),
    /// Sample from the denoiser and the apprentice (cached and uncached demonstrations).
    Sample(bench_models::SampleBenchArgs),
    /// Run the image tower (EfficientNet-Lite0) on random images; print images/s for the
    /// channels-last kernels and for candle's own convolutions.
    Tower(bench_tower::TowerBenchArgs),
    /// Crawl and cluster the synthetic web on loopback; print pages/s and images/s.
    Crawl(bench_models::CrawlBenchArgs),
    /// Fine-tune an expert and generate with it; print fine-tune steps/s and images/s.
    Factory(bench_models::FactoryBenchArgs),
    /// Start `suti serving` as a second process and load it: sustained concurrent clients, then
    /// far more than it holds; print statuses, latency percentiles, throughput and its memory.
    Serving(bench_serving::ServingBenchArgs),
    /// Thousands of small work items through the stage harness over the configured RabbitMQ and
    /// Redis; print messages per second and this process's memory as they go.
    Stage(bench_stage::StageBenchArgs),
}

fn main() -> ExitCode {
    suti_models::tune_threads();
    let cli = Cli::parse();
    // The long one-off commands show progress on a terminal and as lines off one; the services
    // and `suti all` log through their configured telemetry instead.
    if matches!(
        cli.command,
        Command::Eval(_) | Command::Generate(_) | Command::Train { .. } | Command::Bench { .. }
    ) {
        progress::init_cli_logging("warn");
    }
    match cli.command {
        Command::CrawlerClusterer { config } => {
            run_service("crawler-clusterer", config, |config, shutdown| async move {
                crawler_clusterer::service::run(config, shutdown).await?;
                Ok(())
            })
        }
        Command::ExpertFinetuner { config } => {
            run_service("expert-finetuner", config, |config, shutdown| async move {
                expert_finetuner::run(config, shutdown).await?;
                Ok(())
            })
        }
        Command::Generator { config } => {
            run_service("generator", config, |config, shutdown| async move {
                generator::run(config, shutdown).await?;
                Ok(())
            })
        }
        Command::ClipFilter { config } => {
            run_service("clip-filter", config, |config, shutdown| async move {
                clip_filter::run(config, shutdown).await?;
                Ok(())
            })
        }
        Command::ApprenticeTrainer { config } => run_service(
            "apprentice-trainer",
            config,
            |config, shutdown| async move {
                apprentice_trainer::run(config, shutdown).await?;
                Ok(())
            },
        ),
        Command::Serving { config } => {
            run_service("serving", config, |config, shutdown| async move {
                serving::run(config, shutdown).await?;
                Ok(())
            })
        }
        Command::All { config } => run_service("suti", config, all::run),
        Command::Demo(args) => {
            suti_models::tune_allocator();
            run_async(demo::run(args))
        }
        Command::Eval(args) => {
            suti_models::tune_allocator();
            run_async(eval::run(*args))
        }
        Command::Generate(args) => {
            suti_models::tune_allocator();
            run_async(generate_cmd::run(args))
        }
        Command::Crawl(args) => run_async(crawl_cmd::run(args)),
        Command::Train { command } => {
            suti_models::tune_allocator();
            run_async(train_cmd::run(command))
        }
        Command::Version { json } => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "name": "suti",
                        "version": suti_runtime::VERSION,
                        "git_sha": suti_runtime::GIT_SHA,
                    })
                );
            } else {
                println!("suti {} ({})", suti_runtime::VERSION, suti_runtime::GIT_SHA);
            }
            ExitCode::SUCCESS
        }
        Command::Config { command } => match command {
            ConfigCommand::Check {
                service,
                config,
                quiet,
            } => config_cmd::check(service, config.as_deref(), quiet),
            ConfigCommand::Defaults => {
                print!("{}", suti_runtime::config::DEFAULT_CONFIG_YAML);
                ExitCode::SUCCESS
            }
        },
        Command::Synthweb { command } => run_async(synthweb_cmd::run(command)),
        Command::Bench { command } => match command {
            BenchCommand::Queue(args) => run_async(bench::queue(args)),
            BenchCommand::Render(args) => report(bench::render(args)),
            BenchCommand::Train(args) => {
                suti_models::tune_allocator();
                report(bench_models::train(args))
            }
            BenchCommand::Sample(args) => {
                suti_models::tune_allocator();
                report(bench_models::sample_bench(args))
            }
            BenchCommand::Tower(args) => {
                suti_models::tune_allocator();
                report(bench_tower::tower(args))
            }
            BenchCommand::Crawl(args) => {
                suti_models::tune_allocator();
                run_async(bench_models::crawl(args))
            }
            BenchCommand::Factory(args) => {
                suti_models::tune_allocator();
                report(bench_models::factory(args))
            }
            BenchCommand::Serving(args) => run_async(bench_serving::serving_load(args)),
            BenchCommand::Stage(args) => run_async(bench_stage::stage(args)),
        },
    }
}

/// Runs a service: its configuration, logging and traces (as `name`), the allocator tuning, and
/// SIGTERM/SIGINT as the shutdown signal; the spans still buffered are sent before it exits.
fn run_service<F, Fut>(name: &str, config: Option<PathBuf>, service: F) -> ExitCode
where
    F: FnOnce(suti_runtime::SutiConfig, tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let name = name.to_string();
    let code = run_async(async move {
        let config = suti_runtime::SutiConfig::load_file(config.as_deref())?;
        suti_runtime::init_telemetry(&config.telemetry, &name);
        suti_models::tune_allocator();
        service(config, suti_runtime::shutdown_on_signal()).await
    });
    suti_runtime::flush_traces();
    code
}

/// Turns a command's result into an exit code, printing the error.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an async command on a multi-threaded runtime and turns its error into exit code 1.
fn run_async(future: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
