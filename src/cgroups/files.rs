//! Small file helpers with cgroupfs semantics, and the bounded back-off used while waiting.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Writes `value` to an existing cgroup file in one `write(2)`. Never creates the file: on
/// cgroupfs it cannot be created anyway, and on anything else (a tmpfs standing in for
/// `/sys/fs/cgroup`) creating it would hide a missing controller.
pub(super) fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
    file.write_all(value.as_bytes())
}

/// Reads a cgroup file; `None` when it (or its directory) does not exist.
pub(super) fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Exponential back-off with a deadline, so every wait in this module is bounded.
pub(super) struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Instant,
}

impl Backoff {
    pub(super) fn new(first: Duration, max: Duration, budget: Duration) -> Backoff {
        Backoff {
            next: first,
            max,
            deadline: Instant::now() + budget,
        }
    }

    /// Sleeps for the next interval; `false` (without sleeping) once the budget is spent.
    pub(super) fn sleep(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        thread::sleep(self.next.min(self.deadline - now));
        self.next = (self.next * 2).min(self.max);
        true
    }
}
