//! The daemon's side of a process's terminal: copying between the pty master (created in the
//! container, handed over with "ready") and containerd's FIFOs, and resizing it.
//!
//! Two small blocking threads per terminal: master → stdout FIFO (see `copy`), and stdin FIFO
//! → master. A blocking read costs no CPU while the terminal is idle. The output copy ends when
//! every slave is closed (the master then reads EIO), closing the stdout FIFO so containerd
//! sees end-of-file.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use super::copy::{OutputSink, start_copy};

/// A running terminal copy.
pub struct Console {
    master: File,
}

impl Console {
    /// Starts copying: the master's output into `out`, `stdin_fifo` into the master.
    pub fn start(
        master: OwnedFd,
        out: &Arc<OutputSink>,
        stdin_fifo: Option<PathBuf>,
    ) -> std::io::Result<Console> {
        let master = File::from(master);
        start_copy("console-out", master.try_clone()?, out)?;
        if let Some(fifo) = stdin_fifo {
            let writer = master.try_clone()?;
            std::thread::Builder::new()
                .name("console-in".into())
                .stack_size(64 * 1024)
                .spawn(move || copy_input(&fifo, writer))?;
        }
        Ok(Console { master })
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

fn copy_input(fifo: &PathBuf, mut master: File) {
    // Blocks until containerd's writer is there, as for a pipe's stdin.
    let Ok(mut input) = File::open(fifo) else {
        return;
    };
    let mut buffer = [0u8; 8192];
    loop {
        match input.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if master.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
