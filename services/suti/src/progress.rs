//! How the command line shows a library job's progress: a bar per phase on a terminal (none off
//! one, where indicatif draws nothing), and the job's notes as lines on standard error, above any
//! bars.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use suti_factory::jobs::{JobProgress, PhaseProgress};

/// Bars for a job's phases in one [`MultiProgress`] (the demo shares its own with its spinners).
#[derive(Clone)]
pub struct TerminalProgress {
    bars: MultiProgress,
}

impl TerminalProgress {
    /// Bars of their own.
    pub fn new() -> Self {
        Self::within(MultiProgress::new())
    }

    /// Bars among `bars`.
    pub fn within(bars: MultiProgress) -> Self {
        Self { bars }
    }
}

/// A bar for `len` units of `what`, with its rate, time left and a status.
pub fn phase_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what:>14} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

impl JobProgress for TerminalProgress {
    fn phase(&self, what: &str, len: u64) -> Box<dyn PhaseProgress> {
        Box::new(Phase(self.bars.add(phase_bar(len, what))))
    }

    fn note(&self, line: &str) {
        if self.bars.is_hidden() {
            eprintln!("{line}");
        } else {
            // Above the bars, so that neither overwrites the other.
            let _ = self.bars.println(line);
        }
    }
}

struct Phase(ProgressBar);

impl PhaseProgress for Phase {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }

    fn set_done(&self, done: u64) {
        self.0.set_position(done);
    }

    fn set_status(&self, status: String) {
        self.0.set_message(status);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
