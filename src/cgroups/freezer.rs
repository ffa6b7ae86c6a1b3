//! Pause and Resume: the v1 freezer (`freezer.state`) or cgroup2's `cgroup.freeze`, waiting
//! until the kernel says the state settled.
//!
//! The v1 freezer passes through FREEZING before FROZEN and has no change notification, so the
//! wait re-reads the file with a short, bounded back-off (as runc does). cgroup2 reports the
//! settled state in `cgroup.events` ("frozen 1"), which wakes poll(2), so that wait sleeps on the
//! kernel instead.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::files::{Backoff, read_optional, write_file};
use super::{Cgroup, CgroupError};

/// How long a freeze or thaw may take to settle before it is reported as failed.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a cgroup's freezing is done.
enum Freezer {
    V1(PathBuf),
    V2(PathBuf),
}

impl Cgroup {
    /// Pause: stops every process of the cgroup and returns once all are stopped.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            Freezer::V1(dir) => set_v1(&dir, "FROZEN"),
            Freezer::V2(dir) => set_v2(&dir, true),
        }
    }

    /// Resume.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            Freezer::V1(dir) => set_v1(&dir, "THAWED"),
            Freezer::V2(dir) => set_v2(&dir, false),
        }
    }

    /// Whether the cgroup is frozen now (State reports PAUSED).
    pub fn is_frozen(&self) -> bool {
        match self.freezer() {
            Ok(Freezer::V1(dir)) => read_optional(&dir.join("freezer.state"))
                .ok()
                .flatten()
                .is_some_and(|s| s.trim() == "FROZEN"),
            Ok(Freezer::V2(dir)) => events_frozen(&dir.join("cgroup.events")) == Some(true),
            Err(_) => false,
        }
    }

    /// The v1 freezer hierarchy when mounted (hybrid hosts), else cgroup2.
    fn freezer(&self) -> Result<Freezer, CgroupError> {
        if let Some(dir) = self.v1_dir("freezer") {
            return Ok(Freezer::V1(dir.to_owned()));
        }
        match self.unified_dir() {
            Some(dir) if dir.join("cgroup.freeze").exists() => Ok(Freezer::V2(dir.to_owned())),
            _ => Err(CgroupError::ControllerMissing {
                controller: "freezer",
            }),
        }
    }
}

fn write_error(path: &Path, value: &str) -> impl FnOnce(io::Error) -> CgroupError {
    let path = path.to_owned();
    let value = value.to_owned();
    move |source| CgroupError::WriteResource {
        path,
        value,
        source,
    }
}

fn not_settled(path: &Path, value: &str) -> CgroupError {
    write_error(path, value)(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("state did not settle within {SETTLE_TIMEOUT:?}"),
    ))
}

fn set_v1(dir: &Path, state: &str) -> Result<(), CgroupError> {
    let file = dir.join("freezer.state");
    let mut backoff = Backoff::new(
        Duration::from_micros(100),
        Duration::from_millis(10),
        SETTLE_TIMEOUT,
    );
    loop {
        // Written again each round: a task forked while FREEZING can leave the cgroup stuck
        // there until the write is repeated (runc does the same).
        write_file(&file, state).map_err(write_error(&file, state))?;
        let now = read_optional(&file).map_err(write_error(&file, state))?;
        if now.as_deref().map(str::trim) == Some(state) {
            return Ok(());
        }
        if !backoff.sleep() {
            return Err(not_settled(&file, state));
        }
    }
}

fn set_v2(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.freeze");
    let value = if frozen { "1" } else { "0" };
    write_file(&file, value).map_err(write_error(&file, value))?;
    let events = dir.join("cgroup.events");
    let opened = std::fs::File::open(&events).map_err(write_error(&events, value))?;
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        if events_frozen(&events) == Some(frozen) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(not_settled(&file, value));
        }
        // cgroup.events signals a change as POLLPRI (and POLLERR).
        let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(opened.as_fd(), PollFlags::POLLPRI)];
        poll(&mut fds, PollTimeout::from(millis))
            .map_err(|e| write_error(&events, value)(e.into()))?;
    }
}

/// The `frozen` line of cgroup.events.
fn events_frozen(events: &Path) -> Option<bool> {
    let text = read_optional(events).ok().flatten()?;
    text.lines()
        .find_map(|line| line.strip_prefix("frozen "))
        .map(|v| v.trim() == "1")
}
