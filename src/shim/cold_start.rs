//! The cold start of a daemon, broken down and logged at debug level (issue 17): how long the
//! `start` action ran before spawning the daemon, how long the daemon's exec took to reach
//! `main`, the spawner's fork, and the time until the daemon serves.
//!
//! Only when containerd runs the shim with `-debug` does `start` hand its two timestamps to the
//! daemon (one environment variable); otherwise nothing is passed and nothing is logged. The
//! clock is the wall clock (the only one two processes can compare without a syscall of their
//! own); reading it is a vDSO call.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// `<start's main>,<daemon spawn>` in nanoseconds since the epoch, from `start` to the daemon.
pub const COLD_START_ENV: &str = "SIBLING_COLD_START";

static MAIN_ENTERED: OnceLock<SystemTime> = OnceLock::new();

/// Called first thing in `main`: when this process began to run Rust code.
pub fn mark_main() {
    let _ = MAIN_ENTERED.set(SystemTime::now());
}

/// When `main` began (now, if `mark_main` was never called).
pub fn main_entered() -> SystemTime {
    MAIN_ENTERED.get().copied().unwrap_or_else(SystemTime::now)
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// The variable `start` gives the daemon it spawns now.
pub fn env_for_daemon() -> (&'static str, String) {
    let value = format!("{},{}", nanos(main_entered()), nanos(SystemTime::now()));
    (COLD_START_ENV, value)
}

/// What the daemon saw: when its `main` ran, when the spawner was forked, when it served.
pub struct DaemonMarks {
    pub main: SystemTime,
    pub forked: SystemTime,
    pub serving: SystemTime,
}

/// The breakdown as one log line, or None without `start`'s timestamps.
pub fn breakdown(from_start: Option<&str>, marks: &DaemonMarks) -> Option<String> {
    let (main, spawn) = from_start?.split_once(',')?;
    let at = |n: &str| -> Option<SystemTime> {
        let n: u64 = n.parse().ok()?;
        Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(n))
    };
    let (start_main, spawn) = (at(main)?, at(spawn)?);
    let ms = |from: SystemTime, to: SystemTime| {
        to.duration_since(from).unwrap_or_default().as_secs_f64() * 1e3
    };
    Some(format!(
        "cold start: start action {:.3} ms (main to daemon spawn), daemon spawn+exec to main \
         {:.3} ms, spawner fork {:.3} ms, ttrpc server and the rest {:.3} ms; {:.3} ms from \
         start's main to serving",
        ms(start_main, spawn),
        ms(spawn, marks.main),
        ms(marks.main, marks.forked),
        ms(marks.forked, marks.serving),
        ms(start_main, marks.serving),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakdown_in_milliseconds() {
        let t = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + ms);
        let marks = DaemonMarks {
            main: t(3),
            forked: t(4),
            serving: t(6),
        };
        let env = format!("{},{}", nanos(t(0)), nanos(t(1)));
        let line = breakdown(Some(&env), &marks).unwrap();
        assert!(line.contains("start action 1.000 ms"), "{line}");
        assert!(line.contains("to main 2.000 ms"), "{line}");
        assert!(line.contains("spawner fork 1.000 ms"), "{line}");
        assert!(line.contains("the rest 2.000 ms"), "{line}");
        assert!(line.contains("6.000 ms from"), "{line}");
        assert_eq!(breakdown(None, &marks), None);
        assert_eq!(breakdown(Some("garbage"), &marks), None);
    }
}
