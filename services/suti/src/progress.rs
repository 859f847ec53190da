//! How long commands (`demo`, `train *`, `eval`, `bench`) show their progress, on a terminal and
//! off one, from the same `tracing` events.
//!
//! A [`Phase`] emits an event on every update (target `suti::progress::tick`, level TRACE) and a
//! line-worthy one (target `suti::progress`, level INFO) when it starts, at every tenth of the
//! way, after 25 s without a line (a heartbeat thread sees to that even when nothing advances),
//! and when it ends. [`init_cli_logging`] installs the subscriber that consumes them: on a
//! terminal a layer turns them into indicatif bars and the plain lines are held back; off a
//! terminal (CI, `nohup`, a container's log) the INFO ones print as plain lines with their rate
//! and time left. A job's notes are INFO events of the same target without a phase.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use suti_factory::jobs::{JobProgress, PhaseProgress};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, time::FormatTime};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, filter::filter_fn};

/// Target of the line-worthy progress events and of notes.
pub const PROGRESS_TARGET: &str = "suti::progress";
/// Target of the per-update events that only the terminal's bars follow.
const TICK_TARGET: &str = "suti::progress::tick";
/// The `state` field of a running phase's events.
const STATE_RUNNING: &str = "running";
/// The `state` field of a phase's last event.
const STATE_DONE: &str = "done";
/// Longest silence of a running phase off a terminal: 25 s, so that with the heartbeat's own
/// one-second tick a line comes at least every 30 s.
pub const HEARTBEAT: Duration = Duration::from_secs(25);

/// Installs the command line's subscriber: bars on a terminal, plain lines off one, and the
/// services' own logs (filtered by `RUST_LOG`, else `base_filter`) either way. Safe to call twice
/// (the second call changes nothing).
pub fn init_cli_logging(base_filter: &str) {
    let terminal = std::io::stderr().is_terminal();
    let filter = |progress: &str| {
        let base = std::env::var("RUST_LOG").unwrap_or_else(|_| base_filter.to_string());
        EnvFilter::try_new(format!(
            "{base},{PROGRESS_TARGET}={progress},{TICK_TARGET}=off"
        ))
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,{PROGRESS_TARGET}={progress}")))
    };
    let result = if terminal {
        let bars = BarLayer::default();
        let println = bars.bars.clone();
        tracing_subscriber::registry()
            .with(bars.with_filter(filter_fn(|m| m.target().starts_with(PROGRESS_TARGET))))
            // Log lines go above the bars so that neither overwrites the other.
            .with(
                line_layer(terminal)
                    .with_writer(move || BarWriter(println.clone()))
                    .with_filter(filter("off")),
            )
            .try_init()
    } else {
        tracing_subscriber::registry()
            .with(
                line_layer(terminal)
                    .with_writer(std::io::stderr)
                    .with_filter(filter("info")),
            )
            .try_init()
    };
    let _ = result;
}

/// The plain-line layer (its writer is the caller's).
fn line_layer<S>(ansi: bool) -> tracing_subscriber::fmt::Layer<S, DefaultFields, CliFormat>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .event_format(CliFormat)
        .with_ansi(ansi)
}

/// Writes log lines above the bars.
struct BarWriter(MultiProgress);

impl std::io::Write for BarWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let _ = self.0.println(text.trim_end_matches('\n'));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One line per event: the time, then the progress line as it is, or the level, target, message
/// and fields of any other event.
struct CliFormat;

impl<S, N> FormatEvent<S, N> for CliFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut writer)?;
        let meta = event.metadata();
        if meta.target() == PROGRESS_TARGET {
            let mut fields = ProgressFields::default();
            event.record(&mut fields);
            return writeln!(writer, " {}", fields.message);
        }
        write!(writer, " {:>5} {}: ", meta.level(), meta.target())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The fields of a progress event.
#[derive(Default)]
struct ProgressFields {
    message: String,
    phase: Option<u64>,
    what: String,
    done: u64,
    total: u64,
    status: String,
    state: String,
}

impl Visit for ProgressFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "phase" => self.phase = Some(value),
            "done" => self.done = value,
            "total" => self.total = value,
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "what" => self.what = value.to_string(),
            "status" => self.status = value.to_string(),
            "state" => self.state = value.to_string(),
            "message" => self.message = value.to_string(),
            _ => {}
        }
    }

    // `%value` fields (Display) arrive here too, printed without quotes.
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "what" => self.what = format!("{value:?}"),
            "status" => self.status = format!("{value:?}"),
            _ => {}
        }
    }
}

/// Draws the progress events as indicatif bars (a spinner when the length is unknown).
#[derive(Default)]
struct BarLayer {
    bars: MultiProgress,
    live: Mutex<HashMap<u64, ProgressBar>>,
}

impl<S: Subscriber> Layer<S> for BarLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = ProgressFields::default();
        event.record(&mut fields);
        let Some(id) = fields.phase else {
            // A note.
            let _ = self.bars.println(&fields.message);
            return;
        };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if fields.state == STATE_DONE {
            // The finished phase stays on screen as a line, above the bar it replaces.
            let _ = self.bars.println(&fields.message);
            if let Some(bar) = live.remove(&id) {
                bar.finish_and_clear();
            }
            return;
        }
        let bar = live.entry(id).or_insert_with(|| {
            let bar = self.bars.add(phase_bar(fields.total, &fields.what));
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        if bar.length() != Some(fields.total) && fields.total > 0 {
            bar.set_length(fields.total);
        }
        bar.set_position(fields.done);
        bar.set_message(fields.status);
    }
}

/// A bar for `len` units of `what` (a spinner when `len` is 0), with its rate, time left and a
/// status.
fn phase_bar(len: u64, what: &str) -> ProgressBar {
    let template = if len == 0 {
        format!("{what:>16} {{spinner}} {{pos}} [{{elapsed}}] {{msg}}")
    } else {
        format!("{what:>16} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}")
    };
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// A phase's counters and when it last printed a line.
struct PhaseState {
    id: u64,
    what: String,
    unit: String,
    total: u64,
    done: u64,
    status: String,
    started: Instant,
    /// When the count first moved, and to what: the rate is measured from there, so that a
    /// phase that waits before its work starts (the apprentice waiting for every shard) or
    /// resumes part-way does not report a rate its work never had.
    first_move: Option<(Instant, u64)>,
    last_line: Instant,
    /// Tenths of the way already announced.
    tenths: u64,
    finished: bool,
}

impl PhaseState {
    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The plain line for where the phase stands.
    fn line(&self) -> String {
        let elapsed = self.elapsed().as_secs_f64();
        let mut line = format!("{}: ", self.what);
        let rate = match self.first_move {
            Some((at, from)) if self.done > from && at.elapsed() > Duration::ZERO => {
                (self.done - from) as f64 / at.elapsed().as_secs_f64()
            }
            _ if elapsed > 0.0 => self.done as f64 / elapsed,
            _ => 0.0,
        };
        if self.finished && self.done == 0 && self.total == 0 {
            let _ = write!(line, "done in {}", clock(elapsed));
        } else if self.finished {
            let _ = write!(
                line,
                "done, {} {} in {}",
                self.done,
                self.unit,
                clock(elapsed)
            );
            if self.done > 0 {
                let _ = write!(line, " ({})", per(rate, &self.unit));
            }
        } else if self.total > 0 {
            let _ = write!(
                line,
                "{}/{} {} ({:.0} %), {}",
                self.done,
                self.total,
                self.unit,
                100.0 * self.done as f64 / self.total as f64,
                per(rate, &self.unit),
            );
            if self.done > 0 {
                let left = (self.total.saturating_sub(self.done)) as f64 / rate.max(1e-9);
                let _ = write!(line, ", {} left", clock(left));
            }
            let _ = write!(line, ", {} so far", clock(elapsed));
        } else {
            let _ = write!(
                line,
                "{} {}, {} so far",
                self.done,
                self.unit,
                clock(elapsed)
            );
        }
        if !self.status.is_empty() {
            let _ = write!(line, " — {}", self.status);
        }
        line
    }

    /// Emits the per-update event, and the line when one is due (or `force`d).
    fn emit(&mut self, force: bool) {
        let tenths = (self.done * 10).checked_div(self.total).unwrap_or(0);
        let due = force || tenths > self.tenths || self.last_line.elapsed() >= HEARTBEAT;
        let state = if self.finished {
            STATE_DONE
        } else {
            STATE_RUNNING
        };
        if due {
            self.tenths = tenths;
            self.last_line = Instant::now();
            tracing::info!(target: "suti::progress", phase = self.id, what = %self.what,
                done = self.done, total = self.total, status = %self.status, state, "{}",
                self.line());
        } else {
            tracing::trace!(target: "suti::progress::tick", phase = self.id, what = %self.what,
                done = self.done, total = self.total, status = %self.status, state);
        }
    }
}

/// Rate as units per second, or seconds per unit when slower than one a second.
fn per(rate: f64, unit: &str) -> String {
    if rate >= 1.0 || rate == 0.0 {
        format!("{rate:.1} {unit}/s")
    } else {
        format!("{:.1} s per {}", 1.0 / rate, unit.trim_end_matches('s'))
    }
}

/// `1h02m`, `3m05s` or `12s`.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The running phases the heartbeat looks after.
fn live_phases() -> &'static Mutex<Vec<Weak<Mutex<PhaseState>>>> {
    static LIVE: OnceLock<Mutex<Vec<Weak<Mutex<PhaseState>>>>> = OnceLock::new();
    LIVE.get_or_init(|| {
        // A phase whose units take longer than the heartbeat (an evaluation subject, a
        // service's work counted by polling) still prints a line every 25–26 s.
        std::thread::Builder::new()
            .name("progress-heartbeat".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    let mut live = live_phases().lock().unwrap_or_else(|e| e.into_inner());
                    live.retain(|phase| match phase.upgrade() {
                        Some(phase) => {
                            let mut state = phase.lock().unwrap_or_else(|e| e.into_inner());
                            if !state.finished && state.last_line.elapsed() >= HEARTBEAT {
                                state.emit(true);
                            }
                            !state.finished
                        }
                        None => false,
                    });
                }
            })
            .expect("spawning the progress heartbeat");
        Mutex::new(Vec::new())
    })
}

/// One stage or loop of a long command: `total` units (0 when unknown) of `unit`.
pub struct Phase(Arc<Mutex<PhaseState>>);

impl Phase {
    /// Starts a phase called `what` and prints its first line.
    pub fn start(what: &str, total: u64, unit: &str) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let state = Arc::new(Mutex::new(PhaseState {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            what: what.to_string(),
            unit: unit.to_string(),
            total,
            done: 0,
            status: String::new(),
            started: Instant::now(),
            first_move: None,
            last_line: Instant::now(),
            tenths: 0,
            finished: false,
        }));
        live_phases()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&state));
        let phase = Self(state);
        phase.update(|_| {}, true);
        phase
    }

    fn update(&self, change: impl FnOnce(&mut PhaseState), force: bool) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if state.finished {
            return;
        }
        let before = state.done;
        change(&mut state);
        if state.first_move.is_none() && state.done != before {
            state.first_move = Some((Instant::now(), state.done));
        }
        state.emit(force);
    }

    /// `n` more units are done.
    pub fn advance(&self, n: u64) {
        self.update(|s| s.done += n, false);
    }

    /// `done` units are done in all.
    pub fn set_done(&self, done: u64) {
        self.update(|s| s.done = done, false);
    }

    /// The phase turns out to have `total` units.
    pub fn set_total(&self, total: u64) {
        self.update(|s| s.total = total, false);
    }

    /// A short status beside the counts (the smoothed loss, what is being done).
    pub fn set_status(&self, status: impl Into<String>) {
        let status = status.into();
        self.update(|s| s.status = status, false);
    }

    /// The phase is over: its last line says how long it took.
    pub fn finish(&self) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !state.finished {
            state.finished = true;
            state.emit(true);
        }
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A line for the log (and above any bars).
pub fn note(line: &str) {
    tracing::info!(target: "suti::progress", "{line}");
}

/// A library job's phases and notes as [`Phase`]s and [`note`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct CliProgress;

impl JobProgress for CliProgress {
    fn phase(&self, what: &str, unit: &str, len: u64) -> Box<dyn PhaseProgress> {
        Box::new(Phase::start(what, len, unit))
    }

    fn note(&self, line: &str) {
        note(line);
    }
}

impl PhaseProgress for Phase {
    fn advance(&self, n: u64) {
        Phase::advance(self, n);
    }

    fn set_done(&self, done: u64) {
        Phase::set_done(self, done);
    }

    fn set_status(&self, status: String) {
        Phase::set_status(self, status);
    }

    fn finish(&self) {
        Phase::finish(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(total: u64) -> PhaseState {
        PhaseState {
            id: 1,
            what: "train base".into(),
            unit: "steps".into(),
            total,
            done: 0,
            status: String::new(),
            started: Instant::now() - Duration::from_secs(100),
            first_move: None,
            last_line: Instant::now(),
            tenths: 0,
            finished: false,
        }
    }

    #[test]
    fn a_line_has_the_counts_the_rate_and_the_time_left() {
        let mut s = state(1000);
        s.done = 250;
        s.status = "loss 0.1234".into();
        let line = s.line();
        assert!(
            line.starts_with("train base: 250/1000 steps (25 %), 2.5 steps/s"),
            "{line}"
        );
        assert!(line.contains("5m00s left"), "{line}");
        assert!(line.ends_with("— loss 0.1234"), "{line}");
        s.finished = true;
        assert!(
            s.line().starts_with("train base: done, 250 steps in 1m40s"),
            "{}",
            s.line()
        );
    }

    /// Keeps the fields of every progress event.
    #[derive(Default, Clone)]
    struct Recorder(Arc<Mutex<Vec<ProgressFields>>>);

    impl<S: Subscriber> Layer<S> for Recorder {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut fields = ProgressFields::default();
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields);
        }
    }

    #[test]
    fn a_phase_emits_what_the_bars_and_the_lines_need() {
        let recorder = Recorder::default();
        let subscriber = tracing_subscriber::registry().with(recorder.clone());
        tracing::subscriber::with_default(subscriber, || {
            let phase = Phase::start("train base", 20, "steps");
            for _ in 0..20 {
                phase.set_status("loss 0.5");
                phase.advance(1);
            }
        });
        let events = recorder.0.lock().unwrap();
        let first = &events[0];
        assert_eq!(
            (first.what.as_str(), first.total, first.state.as_str()),
            ("train base", 20, STATE_RUNNING)
        );
        let last = events.last().unwrap();
        assert_eq!((last.done, last.state.as_str()), (20, STATE_DONE));
        assert_eq!(last.status, "loss 0.5");
        assert!(
            last.message.starts_with("train base: done, 20 steps in"),
            "{}",
            last.message
        );
        // Every update reaches the bars; a line goes out at each tenth, not at each update.
        let lines = events.iter().filter(|e| !e.message.is_empty()).count();
        assert!(
            events.len() > 20 && lines == 12,
            "{} events, {lines} lines",
            events.len()
        );
    }

    #[test]
    fn slow_units_read_as_seconds_each_and_unknown_totals_as_counts() {
        let mut s = state(0);
        s.unit = "subjects".into();
        s.done = 2;
        assert_eq!(s.line(), "train base: 2 subjects, 1m40s so far");
        s.total = 8;
        assert!(s.line().contains("50.0 s per subject"), "{}", s.line());
        let mut setup = state(0);
        setup.finished = true;
        assert_eq!(setup.line(), "train base: done in 1m40s");
        assert_eq!(clock(3725.0), "1h02m");
        // A phase that waited 80 s, then did 100 units in 20 s, runs at 5 a second.
        let mut waited = state(400);
        waited.first_move = Some((Instant::now() - Duration::from_secs(20), 100));
        waited.done = 200;
        assert!(
            waited.line().contains("5.0 steps/s, 40s left"),
            "{}",
            waited.line()
        );
    }
}
