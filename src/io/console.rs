//! The daemon's side of a process's terminal: copying between the pty master (created in the
//! container, handed over with "ready") and containerd's FIFOs, and resizing it.
//!
//! Two small blocking threads per terminal: master → stdout FIFO, and stdin FIFO → master.
//! A blocking read costs no CPU while the terminal is idle. The output thread ends when every
//! slave is closed (the master then reads EIO), closing the stdout writer so containerd sees
//! end-of-file.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

use nix::libc;

/// A running terminal copy.
pub struct Console {
    master: File,
    output_done: Receiver<()>,
}

impl Console {
    /// Starts copying: the master's output into `out` (or nowhere), `stdin_fifo` into the master.
    pub fn start(
        master: OwnedFd,
        out: Option<File>,
        stdin_fifo: Option<PathBuf>,
    ) -> std::io::Result<Console> {
        let master = File::from(master);
        let (done, output_done) = mpsc::channel();
        let reader = master.try_clone()?;
        spawn_copier("console-out", move || {
            copy_output(reader, out);
            let _ = done.send(());
        })?;
        if let Some(fifo) = stdin_fifo {
            let writer = master.try_clone()?;
            spawn_copier("console-in", move || copy_input(&fifo, writer))?;
        }
        Ok(Console {
            master,
            output_done,
        })
    }

    /// ResizePty.
    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<()> {
        let size = libc::winsize {
            ws_row: height.min(u32::from(u16::MAX)) as u16,
            ws_col: width.min(u32::from(u16::MAX)) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize through the pointer, valid for the call.
        let ret = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if ret == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits (until `deadline`) for the output copy to reach the end of the terminal's output.
    pub fn wait_output(&self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        self.output_done.recv_timeout(left).is_ok()
    }
}

fn spawn_copier(name: &str, body: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(64 * 1024)
        .spawn(body)
        .map(drop)
}

fn copy_output(mut master: File, mut out: Option<File>) {
    let mut buffer = [0u8; 8192];
    loop {
        let n = match master.read(&mut buffer) {
            // EIO: the last slave closed; the process and its children are gone.
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(writer) = out.as_mut()
            && writer.write_all(&buffer[..n]).is_err()
        {
            out = None; // Nobody reads any more: keep draining so the process never blocks.
        }
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
