//! Logging to containerd's per-shim log FIFO (`log` in the bundle), which containerd copies into
//! its own log. Lines use logrus's text format, the one containerd's other shims write.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::libc;

struct FifoLogger {
    out: Mutex<File>,
    id: String,
    namespace: String,
}

impl Log for FifoLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let msg = record.args().to_string().replace('"', "\\\"");
        let line = format!(
            "time=\"{}\" level={level} msg=\"{msg}\" id={} namespace={} runtime=io.containerd.sibling.v2\n",
            crate::shim::time::rfc3339_now(),
            self.id,
            self.namespace
        );
        if let Ok(mut out) = self.out.lock() {
            // Nothing sensible to do if containerd stopped reading: drop the line.
            let _ = out.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Opens `log` in the current directory (the bundle) and installs the logger and a panic hook
/// that logs panics, so a panic in any thread reaches containerd's log instead of /dev/null.
pub fn init(debug: bool, namespace: &str, id: &str) {
    // Non-blocking open: a FIFO with no reader would block forever; a missing one is no error.
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("log");
    let Ok(file) = opened else { return };
    // Blocking writes from here on: a slow reader must not lose lines.
    // SAFETY: F_SETFL on a descriptor we own.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_SETFL, 0) };
    let logger = FifoLogger {
        out: Mutex::new(file),
        id: id.to_owned(),
        namespace: namespace.to_owned(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(if debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    }
    std::panic::set_hook(Box::new(|info| {
        log::error!("panic: {info}");
    }));
}
