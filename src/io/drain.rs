//! Waiting until containerd has read a finished process's output from its FIFO.
//!
//! The process writes straight into the FIFO, and a fast one can exit before containerd's
//! client has even finished opening its read end (ctr opens it in a goroutine). If Delete then
//! returned at once, the client would cancel that open and the output still in the FIFO would
//! be lost. So Delete waits, bounded like runc's shim waits for its copies, until the FIFO is
//! empty: it checks the unread byte count on the daemon's own read end (FIONREAD) and sleeps
//! on inotify for the reader's reads (IN_ACCESS) in between, never polling on a timer.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Bytes written to the FIFO that no reader has taken yet.
fn unread_bytes(keeper: &File) -> usize {
    rustix::io::ioctl_fionread(keeper).map_or(0, |count| count as usize)
}

/// Waits until the FIFO at `path` (whose read end `keeper` the daemon holds) is empty, or
/// until `deadline`. Returns false when output was still unread at the deadline.
pub fn wait_drained(path: &Path, keeper: &File, deadline: Instant) -> bool {
    if unread_bytes(keeper) == 0 {
        return true;
    }
    let Ok(inotify) = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK) else {
        return false;
    };
    let watched = AddWatchFlags::IN_ACCESS | AddWatchFlags::IN_CLOSE_NOWRITE;
    if inotify.add_watch(path, watched).is_err() {
        return false;
    }
    loop {
        // Checked after the watch exists, so a read between the two cannot be missed.
        if unread_bytes(keeper) == 0 {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(millis)).is_err() {
            return false;
        }
        // Drain the events; only the byte count matters.
        while inotify.read_events().is_ok_and(|events| !events.is_empty()) {}
    }
}

/// How long Delete waits for readers, as runc's shim waits for its I/O copies.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
