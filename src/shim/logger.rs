//! Logging to containerd's per-shim log FIFO (`log` in the bundle), which containerd copies into
//! its own log. Lines use logrus's text format, the one containerd's other shims write.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::libc;

struct FifoLogger {
    id: String,
    namespace: String,
}

/// Where log lines go: the `log` FIFO of a live container's bundle (containerd reads the FIFO
/// of every bundle it ran `start` in, for as long as that container's connection lasts). A
/// shared daemon outlives the container that started it, so it follows the containers it
/// serves: see [`follow`].
static OUT: Mutex<Option<(PathBuf, File)>> = Mutex::new(None);

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
        if let Ok(mut out) = OUT.lock()
            && let Some((_, file)) = out.as_mut()
        {
            // Nothing sensible to do if containerd stopped reading: drop the line.
            let _ = file.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Opens `log` in the current directory (the bundle) and installs the logger and a panic hook
/// that logs panics, so a panic in any thread reaches containerd's log instead of /dev/null.
pub fn init(debug: bool, namespace: &str, id: &str) {
    if let Ok(cwd) = std::env::current_dir() {
        follow(&cwd);
    }
    let logger = FifoLogger {
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

/// From now on, logs to the `log` FIFO in `bundle` (a container just created there); nothing
/// changes if it cannot be opened.
pub fn follow(bundle: &Path) {
    let path = bundle.join("log");
    // Non-blocking open: a FIFO with no reader would block forever; a missing one is no error.
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path);
    let Ok(file) = opened else { return };
    // Blocking writes from here on: a slow reader must not lose lines.
    // SAFETY: F_SETFL on a descriptor we own.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_SETFL, 0) };
    if let Ok(mut out) = OUT.lock() {
        *out = Some((bundle.to_owned(), file));
    }
}

/// The container in `bundle` is gone (containerd stops reading its FIFO): log to `next`, a
/// container still served, if `bundle` was where the logs went.
pub fn leave(bundle: &Path, next: Option<&Path>) {
    let current = OUT
        .lock()
        .is_ok_and(|out| out.as_ref().is_some_and(|(at, _)| at == bundle));
    if current && let Some(next) = next {
        follow(next);
    }
}
