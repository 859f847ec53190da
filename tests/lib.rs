//! Helpers of the end-to-end tests (the tests themselves are this package's test targets): the
//! `suti` binary cargo built, starting and stopping service processes with their logs, and reading
//! a metrics exposition.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use suti_storage::{ObjectKey, ObjectStore, layout};

/// The six services, each started as a process of its own.
pub const SERVICES: [&str; 6] = [
    "crawler-clusterer",
    "expert-finetuner",
    "generator",
    "clip-filter",
    "apprentice-trainer",
    "serving",
];

/// The `suti` binary cargo built beside the running test.
pub fn suti_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let binary = dir.join("suti");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace",
        binary.display()
    );
    binary
}

/// Starts `suti <args>` with `env` (and no `SUTI_CONFIG`), its output going to `log`.
pub fn start(args: &[&str], env: &[(String, String)], log: &Path) -> Child {
    let file = std::fs::File::create(log).expect("a log file");
    Command::new(suti_binary())
        .args(args)
        .env_remove("SUTI_CONFIG")
        .envs(env.iter().cloned())
        .stdout(Stdio::from(file.try_clone().expect("a second log handle")))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("the suti binary starts")
}

/// Stops a service: SIGTERM, then SIGKILL if it has not exited within 10 s.
pub fn stop(mut child: Child) {
    signal(&child, "TERM");
    for _ in 0..100 {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `signal` (`TERM`, `KILL`) to `child`.
pub fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status();
}

/// The last 15 lines of every log in `dir`, for a failure message.
pub fn tails(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- {}\n", entry.file_name().to_string_lossy()));
        for line in &lines[lines.len().saturating_sub(15)..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The value of the first sample of `metric` whose labels contain `labels`, from a Prometheus
/// text exposition (0 when absent).
pub fn sample(metrics: &str, metric: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(metric) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .next()
        .unwrap_or(0.0)
}

/// The environment of every process of an end-to-end pipeline run: `backends` (where the
/// queue, state and storage are), the synthetic web allowed on loopback, and the minimal models
/// and counts that keep a run to a few minutes.
pub fn pipeline_env(backends: Vec<(String, String)>) -> Vec<(String, String)> {
    let settings = [
        ("SUTI__CRAWLER__ALLOW_PRIVATE", "127.0.0.0/8"),
        ("SUTI__CRAWLER__TIMEOUT_SECS", "3"),
        ("SUTI__CRAWLER__HOST_RATE_PER_SECOND", "100"),
        ("SUTI__CRAWLER__HOST_BURST", "50"),
        ("SUTI__MODELS__POLL_SECS", "1"),
        ("SUTI__EXPERT__STEPS", "10"),
        ("SUTI__GENERATOR__PROMPTS_PER_CLUSTER", "2"),
        ("SUTI__GENERATOR__IMAGES_PER_PROMPT", "1"),
        ("SUTI__GENERATOR__STEPS", "4"),
        // Minimal models cannot meet the production thresholds; the filter's judgement is
        // tested on constructed cases elsewhere. Here every candidate flows on.
        ("SUTI__CLIP_FILTER__DELTA_CLIP_MIN", "-1.0"),
        ("SUTI__CLIP_FILTER__SUBJECT_SIMILARITY_MIN", "-1.0"),
        ("SUTI__APPRENTICE__BATCH", "4"),
        ("SUTI__APPRENTICE__CHECKPOINT_EVERY", "10"),
        ("SUTI__APPRENTICE__RELEASE_EVERY", "20"),
        ("SUTI__APPRENTICE__REFRESH_SECS", "1"),
        ("RUST_LOG", "info"),
    ];
    let mut env = backends;
    env.extend(
        settings
            .into_iter()
            .map(|(name, value)| (name.to_string(), value.to_string())),
    );
    env
}

/// The training jobs of a pipeline run, at minimal sizes: (log name, arguments).
pub fn training_jobs() -> [(&'static str, Vec<&'static str>); 2] {
    [
        (
            "train-scorer",
            vec!["train", "scorer", "--steps", "40", "--batch", "8"],
        ),
        (
            "train-base",
            vec![
                "train", "base", "--preset", "test", "--steps", "20", "--batch", "8",
            ],
        ),
    ]
}

/// Publishes the crawl request that starts a pipeline run over the synthetic web at `site_url`.
pub async fn seed_crawl(
    broker: &dyn suti_queue::Broker,
    topology: &suti_queue::Topology,
    run_id: &str,
    site_url: &str,
) {
    let request = suti_messages::CrawlRequestV1 {
        run_id: run_id.into(),
        seed_urls: vec![format!("{site_url}/")],
        warc_keys: vec![],
        limits: suti_messages::CrawlLimits::default(),
    };
    let envelope =
        suti_queue::Envelope::encode(&request, format!("crawl-{run_id}"), Some(run_id.into()))
            .expect("a crawl request encodes");
    broker
        .publish(topology, &envelope)
        .await
        .expect("the crawl request is published");
}

/// Asks serving at `base` (`http://HOST:PORT`) for a generation with a multipart `form`: the
/// answer's status and its JSON body.
pub async fn post_generation(
    client: &reqwest::Client,
    base: &str,
    form: reqwest::multipart::Form,
) -> (reqwest::StatusCode, serde_json::Value) {
    let answer = client
        .post(format!("{base}/v1/generations"))
        .multipart(form)
        .send()
        .await
        .expect("serving answers");
    let status = answer.status();
    let body = answer.json().await.expect("a JSON answer");
    (status, body)
}

/// Whether `store` holds an apprentice release (its `LATEST` pointer); a failed read counts as
/// not yet.
pub async fn has_apprentice_release(store: &dyn ObjectStore) -> bool {
    let latest = ObjectKey::new(layout::model_latest(layout::APPRENTICE_MODEL))
        .expect("the layout's keys are valid");
    store.head(&latest).await.ok().flatten().is_some()
}

/// The synthetic web a pipeline run crawls: `subjects` planted subject pages among the
/// distractors and hostile resources, with the slow page (2 s) and the huge resource (1 MiB)
/// kept small enough for a run of minutes, served on a loopback port.
pub async fn serve_pipeline_web(
    assets: suti_data::Assets,
    subjects: usize,
) -> suti_data::synthweb::ServedSite {
    let site = suti_data::synthweb::Site::new(
        assets,
        suti_data::synthweb::SiteParams {
            subjects,
            slow_duration: Duration::from_secs(2),
            huge_bytes: 1 << 20,
            ..Default::default()
        },
    );
    suti_data::synthweb::serve(site, "127.0.0.1:0")
        .await
        .expect("the synthetic web serves on loopback")
}
