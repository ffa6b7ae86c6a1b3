//! Logging to containerd's per-shim log FIFO (`log` in the bundle), which containerd copies into
//! its own log. Lines use logrus's text format, the one containerd's other shims write.
//!
//! Every line names the container it is about: code working for one container holds a
//! [`scope`] (each Task RPC does), and its lines carry that container's id, go to that
//! container's FIFO and obey that container's log level (a Create's `log_level` option), so
//! one container's options never change another's. Lines about no container in particular
//! carry the daemon's id (the container `start` ran for) and go to the newest container's FIFO.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc;

struct FifoLogger {
    id: String,
    namespace: String,
}

/// One container's log FIFO and level.
struct Sink {
    id: String,
    file: File,
    /// The container's own level; None: the daemon's.
    level: Option<LevelFilter>,
}

struct Sinks {
    /// Newest last: containerd reads the FIFO of every bundle it ran `start` in, for as long as
    /// that container's connection lasts, so the daemon's own lines go to the newest.
    sinks: Vec<Sink>,
    daemon_level: LevelFilter,
}

static SINKS: Mutex<Sinks> = Mutex::new(Sinks {
    sinks: Vec::new(),
    daemon_level: LevelFilter::Info,
});

thread_local! {
    /// The container the current thread works for.
    static SCOPE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Names the container this thread works for until the guard is dropped.
pub struct Scope {
    previous: Option<String>,
}

pub fn scope(id: &str) -> Scope {
    let previous = SCOPE.with(|s| s.replace(Some(id.to_owned())));
    Scope { previous }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        SCOPE.with(|s| *s.borrow_mut() = previous);
    }
}

fn scoped() -> Option<String> {
    SCOPE.with(|s| s.borrow().clone())
}

impl Sinks {
    fn level_of(&self, id: Option<&str>) -> LevelFilter {
        id.and_then(|id| self.sinks.iter().find(|s| s.id == id))
            .and_then(|s| s.level)
            .unwrap_or(self.daemon_level)
    }

    /// The most verbose level any container or the daemon wants: `log`'s global filter.
    fn max_level(&self) -> LevelFilter {
        self.sinks
            .iter()
            .filter_map(|s| s.level)
            .fold(self.daemon_level, Ord::max)
    }
}

fn sinks() -> std::sync::MutexGuard<'static, Sinks> {
    SINKS.lock().unwrap_or_else(|e| e.into_inner())
}

impl Log for FifoLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= sinks().level_of(scoped().as_deref())
    }

    fn log(&self, record: &Record) {
        let scope = scoped();
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let mut sinks = sinks();
        if record.level() > sinks.level_of(scope.as_deref()) {
            return;
        }
        let id = scope.as_deref().unwrap_or(&self.id);
        let msg = record.args().to_string().replace('"', "\\\"");
        let line = format!(
            "time=\"{}\" level={level} msg=\"{msg}\" id={id} namespace={} runtime=io.containerd.sibling.v2\n",
            crate::shim::time::rfc3339_now(),
            self.namespace
        );
        let own = sinks.sinks.iter().position(|s| s.id == id);
        let sink = match own {
            Some(at) => sinks.sinks.get_mut(at),
            None => sinks.sinks.last_mut(),
        };
        if let Some(sink) = sink {
            // Nothing sensible to do if containerd stopped reading: drop the line.
            let _ = sink.file.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Opens `log` in the current directory (the bundle of container `id`) and installs the logger
/// and a panic hook that logs panics, so a panic in any thread reaches containerd's log instead
/// of /dev/null. The daemon's level: `level` (the runtime options'), else debug with
/// containerd's `-debug`, else info.
pub fn init(debug: bool, level: Option<&str>, namespace: &str, id: &str) {
    let daemon_level = level
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(if debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    sinks().daemon_level = daemon_level;
    if let Ok(cwd) = std::env::current_dir() {
        follow(id, &cwd, None);
    }
    let logger = FifoLogger {
        id: id.to_owned(),
        namespace: namespace.to_owned(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(sinks().max_level());
    }
    std::panic::set_hook(Box::new(|info| {
        log::error!("panic: {info}");
    }));
}

/// Container `id` lives in `bundle`: its lines go to the `log` FIFO there, at `level` (None:
/// the daemon's). Nothing changes if the FIFO cannot be opened.
pub fn follow(id: &str, bundle: &Path, level: Option<LevelFilter>) {
    let path = bundle.join("log");
    // Non-blocking open: a FIFO with no reader would block forever; a missing one is no error.
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path);
    let Ok(file) = opened else { return };
    // Blocking writes from here on: a slow reader must not lose lines.
    if fcntl(&file, FcntlArg::F_SETFL(OFlag::empty())).is_err() {
        return;
    }
    let mut sinks = sinks();
    sinks.sinks.retain(|s| s.id != id);
    sinks.sinks.push(Sink {
        id: id.to_owned(),
        file,
        level,
    });
    log::set_max_level(sinks.max_level());
}

/// Container `id` is gone (containerd stops reading its FIFO): its FIFO is closed, unless it is
/// the last one (where the daemon's final lines go).
pub fn leave(id: &str) {
    let mut sinks = sinks();
    if sinks.sinks.len() > 1 {
        sinks.sinks.retain(|s| s.id != id);
    }
    log::set_max_level(sinks.max_level());
}
