//! The daemon's side of a process's terminal: copying the pty master (created in the
//! container, handed over with "ready") to containerd's stdout FIFO, and resizing it.
//!
//! One small blocking thread per terminal copies master → stdout FIFO (see `copy`); a blocking
//! read costs no CPU while the terminal is idle. It ends when every slave is closed (the
//! master then reads EIO), closing the stdout FIFO so containerd sees end-of-file. The stdin
//! FIFO → master copy is the same copier a pipe's stdin has (`stdio`), which ends with the
//! process.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::copy::{OutputSink, start_copy};

/// A running terminal copy.
pub struct Console {
    master: File,
}

impl Console {
    /// Starts copying the master's output into `out`.
    pub fn start(master: OwnedFd, out: &Arc<OutputSink>) -> std::io::Result<Console> {
        let master = File::from(master);
        start_copy("console-out", master.try_clone()?, out)?;
        Ok(Console { master })
    }

    /// The master again, for the stdin copy to write into.
    pub fn input(&self) -> std::io::Result<File> {
        self.master.try_clone()
    }

    /// ResizePty.
    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<()> {
        let size = rustix::termios::Winsize {
            ws_row: height.min(u32::from(u16::MAX)) as u16,
            ws_col: width.min(u32::from(u16::MAX)) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // TIOCSWINSZ.
        rustix::termios::tcsetwinsize(&self.master, size).map_err(std::io::Error::from)
    }
}
