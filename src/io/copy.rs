//! Output the daemon copies itself (an exec's pipes, a terminal's master) into a FIFO it owns,
//! so that Delete can end containerd's stream even while an orphan still holds the process's
//! end: as runc's shim does, Delete waits a little for the copy to finish, then closes the FIFO.
//!
//! The FIFO end is closed by replacing its descriptor with /dev/null (dup2), never by closing
//! it: the copy thread may be using that descriptor, and a closed number could be reused by an
//! unrelated open in the meantime.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::libc;

/// The daemon's write end of an output FIFO, shared by its copy thread and Delete.
pub struct OutputSink {
    file: File,
    /// Signalled when the copy reached end-of-file.
    done: Mutex<Option<Receiver<()>>>,
}

impl OutputSink {
    pub fn new(file: File) -> Arc<OutputSink> {
        Arc::new(OutputSink {
            file,
            done: Mutex::new(None),
        })
    }

    /// Closes the FIFO for its reader (end-of-file), keeping the descriptor number ours.
    pub fn release(&self) {
        if let Ok(null) = File::options().write(true).open("/dev/null") {
            // Raw because the safe dup2s (nix, rustix) want the target as `&mut OwnedFd`, and
            // the sink is shared with its copy thread.
            // SAFETY: dup2 onto a descriptor this sink owns for as long as it lives; the
            // open file description it held is released once no write uses it any more.
            unsafe { libc::dup2(null.as_raw_fd(), self.file.as_raw_fd()) };
        }
    }

    /// Waits until the copy reached end-of-file or `deadline`; closes the FIFO either way.
    pub fn finish(&self, deadline: Instant) -> bool {
        let done = self.done.lock().map(|mut d| d.take()).ok().flatten();
        let finished = match done {
            Some(rx) => rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_ok(),
            None => true,
        };
        self.release();
        finished
    }

    fn write_all(&self, bytes: &[u8]) -> std::io::Result<()> {
        (&self.file).write_all(bytes)
    }
}

/// Starts a thread copying `source` into `sink` until end-of-file (or EIO from a pty master
/// whose last slave closed), then closing the FIFO so its reader sees end-of-file.
pub fn start_copy(name: &str, source: File, sink: &Arc<OutputSink>) -> std::io::Result<()> {
    let (tx, rx) = mpsc::channel();
    if let Ok(mut done) = sink.done.lock() {
        *done = Some(rx);
    }
    let sink = Arc::clone(sink);
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(64 * 1024)
        .spawn(move || {
            copy(source, &sink);
            sink.release();
            let _ = tx.send(());
        })
        .map(drop)
}

fn copy(mut source: File, sink: &OutputSink) {
    let mut buffer = [0u8; 8192];
    let mut sink_open = true;
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => return,
            // A pty master whose last slave closed: its end of file.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Nothing else should end a copy; say so, output may have been cut short.
                log::warn!("output copy ended early: read: {e}");
                return;
            }
            Ok(n) => n,
        };
        // Once nobody reads, keep draining the source so the process never blocks on it.
        if sink_open && let Err(e) = sink.write_all(&buffer[..n]) {
            if e.raw_os_error() != Some(libc::EPIPE) {
                log::warn!("output copy: write: {e}; the rest is drained unread");
            }
            sink_open = false;
        }
    }
}

/// A pipe whose write end a process gets and whose read end is copied into `sink`.
pub fn pipe_into(name: &str, sink: &Arc<OutputSink>) -> std::io::Result<OwnedFd> {
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    start_copy(name, File::from(reader), sink)?;
    Ok(writer)
}
