//! What every `suti bench` prints: the machine it ran on (CPU, vector features, matmul backend,
//! threads), then its figures — as text lines as they arrive, or with `--json` as one JSON document
//! at the end, for scripts such as `benches/reference/compare.sh`.

use serde_json::{Value, json};

/// CPU flags that decide how fast the kernels can go, in the order printed.
const VECTOR_FEATURES: [&str; 9] = [
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
];

/// The machine a benchmark ran on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MachineInfo {
    /// The CPU's model name, from `/proc/cpuinfo`.
    pub cpu: String,
    /// Which of [`VECTOR_FEATURES`] the CPU has.
    pub vector_features: Vec<String>,
    /// The matrix-multiply implementation candle runs on the CPU in this build.
    pub matmul_backend: String,
    /// `RAYON_NUM_THREADS`, or `all`.
    pub threads: String,
}

impl MachineInfo {
    /// Reads this machine.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let flags: Vec<String> = field("flags")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        Self {
            cpu: field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            vector_features: VECTOR_FEATURES
                .iter()
                .filter(|f| flags.iter().any(|g| g == *f))
                .map(|f| f.to_string())
                .collect(),
            matmul_backend: matmul_backend().into(),
            threads: rayon_threads(),
        }
    }

    /// One line for the text output.
    pub fn line(&self) -> String {
        format!(
            "machine: {}; vector features: {}; matmul: {}; threads: {}",
            self.cpu,
            if self.vector_features.is_empty() {
                "none detected".into()
            } else {
                self.vector_features.join(" ")
            },
            self.matmul_backend,
            self.threads
        )
    }
}

/// `RAYON_NUM_THREADS`, or `all` when it is not set.
pub fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
}

/// The CPU matmul backend candle was built with.
fn matmul_backend() -> &'static str {
    if cfg!(feature = "mkl") {
        "Intel MKL (the mkl feature)"
    } else {
        // candle and the fused ops run their CPU matmuls through the `gemm` crate, built with its
        // AVX-512 kernels (the workspace's `x86-v4` feature); gemm picks them per CPU at run time,
        // by the same test as here.
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return "gemm (pure Rust, AVX-512 kernels)";
            }
            if std::arch::is_x86_feature_detected!("fma") {
                return "gemm (pure Rust, AVX2/FMA kernels)";
            }
        }
        "gemm (pure Rust)"
    }
}

/// A benchmark's output, as text or as JSON.
pub struct BenchReport {
    benchmark: &'static str,
    json: bool,
    machine: MachineInfo,
    title: String,
    results: Vec<Value>,
}

impl BenchReport {
    /// Starts a report; in text mode prints the title and the machine line at once.
    pub fn start(benchmark: &'static str, json: bool, title: String) -> Self {
        let machine = MachineInfo::detect();
        if !json {
            println!("{title}");
            println!("  {}", machine.line());
        }
        Self {
            benchmark,
            json,
            machine,
            title,
            results: Vec::new(),
        }
    }

    /// One measured result: `text` is printed (text mode), `figures` kept for the JSON document.
    pub fn result(&mut self, text: String, figures: Value) {
        if !self.json {
            println!("  {text}");
        }
        self.results.push(figures);
    }

    /// A line for the text output only (a table's header).
    pub fn line(&self, text: String) {
        if !self.json {
            println!("  {text}");
        }
    }

    /// Ends the report; in JSON mode prints the whole document.
    pub fn finish(self) -> anyhow::Result<()> {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "benchmark": self.benchmark,
                    "title": self.title,
                    "machine": self.machine,
                    "results": self.results,
                }))?
            );
        }
        Ok(())
    }
}
