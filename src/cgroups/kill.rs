//! The processes of a container's cgroup: list them, signal them all, wait for them to go.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::warn;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::cgroup::read_subdirs;
use super::files::{Backoff, read_optional, write_file};
use super::{Cgroup, CgroupDir, CgroupError, CgroupMode};

/// Rounds of "read the pids, signal the new ones" before `kill_all` gives up on a cgroup
/// whose processes keep forking.
const KILL_ROUNDS: usize = 32;
/// How long `remove` waits for SIGKILLed processes to leave the cgroup. Killed processes
/// normally go within milliseconds; one stuck in uninterruptible sleep must not hang Delete.
const EMPTY_WAIT: Duration = Duration::from_secs(5);

impl Cgroup {
    /// Every pid in the cgroup, child cgroups included (the union over all hierarchies), sorted.
    /// A directory already removed counts as empty.
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = BTreeSet::new();
        for dir in &self.dirs {
            collect_procs(&dir.path, &mut pids)?;
        }
        Ok(pids.into_iter().collect())
    }

    /// Sends `signal` to every process of the cgroup. SIGKILL on cgroup2 uses `cgroup.kill`,
    /// which the kernel applies atomically, forks included. Otherwise (v1, other signals) the
    /// pids are signalled and re-read until a round finds no new one. Without a freezer a pid
    /// could be reused between reading and signalling; the window is that of runc without
    /// `--freeze`. The calling process is never signalled, even if it is in the cgroup.
    pub fn kill_all(&self, signal: Signal) -> Result<(), CgroupError> {
        if signal == Signal::SIGKILL
            && self.write_cgroup_kill()?
            && self.mode == CgroupMode::Unified
        {
            return Ok(());
        }
        // Hybrid: cgroup.kill covered the processes that joined cgroup2 too; the loop also
        // catches any that are only in v1 hierarchies.
        self.signal_until_settled(signal)
    }

    /// Writes `cgroup.kill` if the cgroup2 directory has one (Linux 5.14+); `false` if not.
    fn write_cgroup_kill(&self) -> Result<bool, CgroupError> {
        let Some(dir) = self.unified_dir() else {
            return Ok(false);
        };
        let file = dir.join("cgroup.kill");
        match write_file(&file, "1") {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(CgroupError::Kill { path: file, source }),
        }
    }

    fn signal_until_settled(&self, signal: Signal) -> Result<(), CgroupError> {
        let me = Pid::this().as_raw();
        let mut signalled = BTreeSet::new();
        for _ in 0..KILL_ROUNDS {
            let fresh: Vec<i32> = self
                .procs()?
                .into_iter()
                .filter(|pid| *pid != me && !signalled.contains(pid))
                .collect();
            if fresh.is_empty() {
                return Ok(());
            }
            for pid in fresh {
                signal_pid(pid, signal)?;
                signalled.insert(pid);
            }
        }
        Err(CgroupError::KillIncomplete {
            path: self.first_dir(),
            rounds: KILL_ROUNDS,
        })
    }

    /// Waits with a bounded back-off until no process is left; `false` on timeout (the
    /// following `rmdir` then fails with an error naming the directory).
    ///
    /// On cgroup2 `cgroup.events` says `populated 0` for the whole subtree in one read. It is
    /// re-read rather than watched with inotify: nix's `inotify`/`poll` features are not
    /// enabled in this crate, and raw libc calls would need `unsafe` for a wait of a few ms.
    pub(super) fn wait_until_empty(&self) -> bool {
        let mut backoff = Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(100),
            EMPTY_WAIT,
        );
        loop {
            match self.is_populated() {
                Ok(false) => return true,
                Ok(true) => {}
                Err(e) => {
                    warn!("cgroups: waiting for an empty cgroup: {e}");
                    return false;
                }
            }
            if !backoff.sleep() {
                warn!(
                    "cgroups: {} still has processes after {EMPTY_WAIT:?}",
                    self.first_dir().display()
                );
                return false;
            }
        }
    }

    fn is_populated(&self) -> Result<bool, CgroupError> {
        for dir in &self.dirs {
            if is_dir_populated(dir)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A directory to name in errors about the whole cgroup.
    fn first_dir(&self) -> PathBuf {
        self.dirs
            .first()
            .map(|d| d.path.clone())
            .unwrap_or_default()
    }
}

fn is_dir_populated(dir: &CgroupDir) -> Result<bool, CgroupError> {
    if dir.unified {
        let events = dir.path.join("cgroup.events");
        let text = read_optional(&events)
            .map_err(|source| CgroupError::ReadProcs {
                path: events.clone(),
                source,
            })?
            .unwrap_or_default();
        if let Some(populated) = parse_populated(&text) {
            return Ok(populated);
        }
    }
    let mut pids = BTreeSet::new();
    collect_procs(&dir.path, &mut pids)?;
    Ok(!pids.is_empty())
}

/// `populated 1` / `populated 0` from `cgroup.events`.
fn parse_populated(events: &str) -> Option<bool> {
    events
        .lines()
        .find_map(|line| line.strip_prefix("populated "))
        .map(|value| value.trim() != "0")
}

/// Adds the pids of `root` and every cgroup below it. Pids not visible in this process's pid
/// namespace read as 0 and are skipped: `kill(0, ...)` would signal our own process group.
fn collect_procs(root: &Path, pids: &mut BTreeSet<i32>) -> Result<(), CgroupError> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let file = dir.join("cgroup.procs");
        let text = read_optional(&file)
            .map_err(|source| CgroupError::ReadProcs { path: file, source })?
            .unwrap_or_default();
        pids.extend(
            text.lines()
                .filter_map(|line| line.trim().parse::<i32>().ok())
                .filter(|pid| *pid > 0),
        );
        pending.extend(read_subdirs(&dir)?);
    }
    Ok(())
}

/// `kill(2)`; a process that already exited is not an error.
fn signal_pid(pid: i32, signal: Signal) -> Result<(), CgroupError> {
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(errno) => Err(CgroupError::Signal {
            pid,
            source: io::Error::from(errno),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cgroup_events() {
        assert_eq!(parse_populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(parse_populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(parse_populated("frozen 0\n"), None);
    }
}
