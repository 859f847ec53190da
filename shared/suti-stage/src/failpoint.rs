//! Fault injection for chaos tests: `SUTI_FAILPOINT=<point>:<n>` makes the process kill itself
//! with SIGKILL (as the kernel's OOM killer or a lost node would: no unwinding, no flush, no ack)
//! the n-th time it reaches `<point>`. Unset, as in production, a failpoint is one atomic load.
//!
//! Points of the stage harness, in the order a delivery reaches them:
//! - `artifacts_partly_written`: after the first of two or more artifact writes;
//! - `artifacts_written`: after every artifact write, before publishing downstream;
//! - `published`: after the confirmed publish, before the done mark and the ack.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the armed failpoint.
pub const FAILPOINT_ENV: &str = "SUTI_FAILPOINT";

struct Armed {
    point: String,
    nth: u64,
    reached: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(FAILPOINT_ENV).ok()?;
            let (point, nth) = value.split_once(':').unwrap_or((value.as_str(), "1"));
            let nth = nth.parse().ok().filter(|n| *n >= 1).unwrap_or(1);
            tracing::warn!(
                point,
                nth,
                "failpoint armed: this process will kill itself there"
            );
            Some(Armed {
                point: point.to_string(),
                nth,
                reached: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Kills the process if `point` is armed and this is its n-th arrival.
pub fn failpoint(point: &str) {
    let Some(armed) = armed() else {
        return;
    };
    if armed.point != point || armed.reached.fetch_add(1, Ordering::SeqCst) + 1 != armed.nth {
        return;
    }
    tracing::warn!(point, "failpoint reached: killing this process");
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();
    // `kill` should not return; if it could not run, die anyway without unwinding.
    std::process::abort();
}
