//! Helpers of the end-to-end tests (the tests themselves are this package's test targets): the
//! `suti` binary cargo built, starting and stopping service processes with their logs, and reading
//! a metrics exposition.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
