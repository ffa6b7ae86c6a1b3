//! A container process's stdio from the paths containerd passes in the Create request.
//!
//! stdout and stderr: the container gets the FIFO's write end itself, so its output reaches
//! containerd with no copy and no thread in the shim. The daemon also holds a read end of each
//! output FIFO that it never reads: while containerd is away (restarting), the container's
//! writes then block once the FIFO is full instead of failing with EPIPE, and nothing is lost.
//!
//! stdin: a pipe, fed by a small thread that copies from the FIFO. The thread's blocking open
//! waits for containerd's writer, so the container can never read a premature end-of-file, and
//! CloseIO can close the pipe while containerd keeps the FIFO open.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc;

use super::binary_log::{LogOwner, parse_binary_uri, start_logger};
use super::copy::{OutputSink, pipe_into};
use super::drain::{DRAIN_TIMEOUT, wait_drained};
use super::pty_copy::Console;

/// The stdio paths of a Create request.
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Why stdio could not be set up.
#[derive(Debug)]
pub struct IoError {
    what: &'static str,
    path: String,
    source: std::io::Error,
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.what, self.path, self.source)
    }
}

impl std::error::Error for IoError {}

fn io_error<'a>(what: &'static str, path: &'a str) -> impl FnOnce(std::io::Error) -> IoError + 'a {
    move |source| IoError {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The daemon's side of a process's stdio; dropping it releases everything.
pub struct ProcessIo {
    /// Read ends of the output FIFOs (never read), with their paths.
    keepers: Vec<(PathBuf, File)>,
    /// FIFO ends the daemon writes itself (copied output), closed at the latest on Delete.
    sinks: Vec<Arc<OutputSink>>,
    stdin: Option<Arc<StdinPipe>>,
    terminal: Option<TerminalIo>,
}

/// A terminal process's output and stdin until the pty master arrives, then its copier.
struct TerminalIo {
    out: Arc<OutputSink>,
    stdin: Mutex<Option<PathBuf>>,
    console: OnceLock<Console>,
}

/// Whether output goes to the process directly or through a copy the daemon can cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// The process gets the FIFO itself: no copy, no thread. For an init with its own PID
    /// namespace (or whose leftovers are killed with it), whose every writer dies with it.
    Direct,
    /// Through a pipe and a copy thread, so Delete can end the stream even while an orphan
    /// the process left still holds its end (execs, as with runc's shim).
    Copied,
}

struct StdinPipe {
    /// The FIFO, held by an `O_PATH` fd (neither reader nor writer) and opened through
    /// `/proc/self/fd`: containerd may unlink the path while the copier still waits in its
    /// open, and the release has to reach that same FIFO.
    fifo: OwnedFd,
    writer: Mutex<Option<File>>,
    /// CloseIO came: copy what the FIFO holds now, then close the process's stdin.
    closing: AtomicBool,
    /// Wakes the copier out of its poll for CloseIO (read end, write end).
    wake: (OwnedFd, OwnedFd),
}

impl ProcessIo {
    /// Opens stdio for a new process; returns the daemon's side and the three fds the process
    /// gets as 0, 1 and 2.
    ///
    /// With a terminal the process gets /dev/null until it replaces stdio with its pty, whose
    /// master then comes to [`ProcessIo::attach_console`].
    pub fn open(
        paths: &StdioPaths,
        owner: &LogOwner<'_>,
        mode: OutputMode,
    ) -> Result<(ProcessIo, [OwnedFd; 3]), IoError> {
        let mut keepers = Vec::new();
        let mut sinks = Vec::new();
        if paths.terminal {
            let out = OutputSink::new(File::from(open_output(&paths.stdout, &mut keepers)?));
            sinks.push(Arc::clone(&out));
            let stdin = (!paths.stdin.is_empty()).then(|| PathBuf::from(&paths.stdin));
            let terminal = TerminalIo {
                out,
                stdin: Mutex::new(stdin),
                console: OnceLock::new(),
            };
            let io = ProcessIo {
                keepers,
                sinks,
                stdin: None,
                terminal: Some(terminal),
            };
            return Ok((io, [open_null()?, open_null()?, open_null()?]));
        }
        let (stdout, stderr) = match parse_binary_uri(&paths.stdout) {
            // One logger reads both streams (containerd passes the same URI for stderr).
            Some(logger) => start_logger(&logger, owner).map_err(|source| IoError {
                what: "start logging binary",
                path: paths.stdout.clone(),
                source,
            })?,
            None => (
                open_stream(&paths.stdout, mode, &mut keepers, &mut sinks)?,
                open_stream(&paths.stderr, mode, &mut keepers, &mut sinks)?,
            ),
        };
        let (stdin, container_stdin) = open_input(&paths.stdin)?;
        let io = ProcessIo {
            keepers,
            sinks,
            stdin,
            terminal: None,
        };
        Ok((io, [container_stdin, stdout, stderr]))
    }

    /// The pty master of a terminal process: starts copying between it and the FIFOs.
    pub fn attach_console(&self, master: OwnedFd) -> Result<(), IoError> {
        let Some(terminal) = &self.terminal else {
            return Ok(()); // Not asked for: dropping the master hangs up nothing we use.
        };
        let stdin = terminal.stdin.lock().map(|mut s| s.take()).ok().flatten();
        let console = Console::start(master, &terminal.out, stdin).map_err(|source| IoError {
            what: "start terminal copy",
            path: String::new(),
            source,
        })?;
        let _ = terminal.console.set(console);
        Ok(())
    }

    /// ResizePty.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), IoError> {
        let console = self.terminal.as_ref().and_then(|t| t.console.get());
        let Some(console) = console else {
            return Err(IoError {
                what: "resize",
                path: "(no terminal)".into(),
                source: std::io::Error::from_raw_os_error(libc::ENOTTY),
            });
        };
        console.resize(width, height).map_err(|source| IoError {
            what: "resize",
            path: "terminal".into(),
            source,
        })
    }

    /// Before Delete releases the FIFOs: waits (bounded) until containerd has read what the
    /// process wrote. See `drain`.
    pub fn wait_output_read(&self) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        // Copies first (they move output into the FIFOs), then the FIFOs themselves.
        for sink in &self.sinks {
            if !sink.finish(deadline) {
                log::warn!("output still open at Delete (an orphan holds it?): closed it");
            }
        }
        for (path, keeper) in &self.keepers {
            if !wait_drained(path, keeper, deadline) {
                log::warn!("output in {} was not read before Delete", path.display());
            }
        }
    }

    /// CloseIO: the process reads end-of-file on stdin after what containerd already wrote.
    pub fn close_stdin(&self) {
        if let Some(stdin) = &self.stdin {
            stdin.close_after_drain();
        }
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        if let Some(stdin) = &self.stdin {
            stdin.close();
        }
    }
}

impl StdinPipe {
    fn new(fifo: &Path, writer: File) -> std::io::Result<StdinPipe> {
        let wake = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let fifo = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(fifo)?
            .into();
        Ok(StdinPipe {
            fifo,
            writer: Mutex::new(Some(writer)),
            closing: AtomicBool::new(false),
            wake,
        })
    }

    /// CloseIO: the process reads end-of-file once what containerd already wrote is copied.
    /// Closing the pipe at once would lose input still in the FIFO (seen: 56 KiB of 1 MiB, when
    /// ctr wrote its stdin and sent CloseIO right after).
    fn close_after_drain(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = nix::unistd::write(&self.wake.1, &[1]);
        self.release_open();
    }

    /// The process is gone: close its stdin now.
    fn close(&self) {
        let writer = self.writer.lock().map(|mut w| w.take());
        if let Ok(Some(_)) = writer {
            self.closing.store(true, Ordering::SeqCst);
            let _ = nix::unistd::write(&self.wake.1, &[1]);
            self.release_open();
        }
    }

    /// The copier may still sit in its blocking open() of the FIFO, waiting for a writer that
    /// will never come (containerd gone): a writer of our own releases it. ENXIO just means the
    /// copier is not waiting there.
    fn release_open(&self) {
        let _ = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(self.fifo_path());
    }

    /// The FIFO by its fd: reachable even after containerd unlinked its path.
    fn fifo_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.fifo.as_raw_fd()))
    }

    fn copy_from_fifo(&self) {
        if let Ok(fifo) = File::open(self.fifo_path()) {
            self.copy(fifo);
        }
        let _ = self.writer.lock().map(|mut w| w.take());
    }

    /// Copies until end of file; after CloseIO, only what the FIFO holds at that moment.
    fn copy(&self, mut fifo: File) {
        use std::os::fd::AsFd;
        let mut buffer = [0u8; 8192];
        loop {
            if self.closing.load(Ordering::SeqCst) {
                // Drain without blocking: containerd may keep its writer open.
                if fcntl(&fifo, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).is_err() {
                    return;
                }
                while let Ok(n) = fifo.read(&mut buffer) {
                    if n == 0 || !self.forward(&buffer[..n]) {
                        return;
                    }
                }
                return; // EAGAIN: drained
            }
            let mut fds = [
                nix::poll::PollFd::new(fifo.as_fd(), nix::poll::PollFlags::POLLIN),
                nix::poll::PollFd::new(self.wake.0.as_fd(), nix::poll::PollFlags::POLLIN),
            ];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
            let fifo_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
            if !fifo_ready {
                continue; // woken for CloseIO: the loop drains
            }
            match fifo.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) if self.forward(&buffer[..n]) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                _ => return,
            }
        }
    }

    /// Writes to the process's stdin; false once it is closed or broken.
    fn forward(&self, data: &[u8]) -> bool {
        let Ok(mut writer) = self.writer.lock() else {
            return false;
        };
        matches!(
            writer.as_mut().map(|pipe| pipe.write_all(data)),
            Some(Ok(()))
        )
    }
}

/// Opens the process's write end only once containerd's reader is there, then the daemon's own
/// read end (the keeper).
///
/// The order matters: containerd's client opens its read end with a blocking open(2), which
/// only returns while a writer exists. With our keeper opened first, a fast process could
/// write, exit and close the last writer before the client's open even started; that open
/// would then wait for a writer that never comes, and the output would be lost. A write-only
/// open succeeds only while a reader is present (or blocked in its open), so it proves the
/// client's reader will see this writer.
fn open_fifo_writer(uri: &str) -> Result<(File, File), IoError> {
    let nonblocking_write = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(uri);
    let (writer, keeper) = match nonblocking_write {
        Ok(writer) => (writer, open_keeper(uri)?),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => wait_for_reader(uri)?,
        Err(e) => return Err(io_error("open", uri)(e)),
    };
    Ok((writer, keeper))
}

/// How long a Create or Start waits for containerd to open an output FIFO it passed.
const READER_TIMEOUT: Duration = Duration::from_secs(2);

/// No reader yet: a thread blocks in the write-only open, which returns the moment one comes.
/// If none comes in time, our keeper becomes the reader (releasing that open), so the process
/// still runs and its output waits in the FIFO for a reader.
fn wait_for_reader(uri: &str) -> Result<(File, File), IoError> {
    let (tx, rx) = mpsc::channel();
    let path = uri.to_owned();
    std::thread::Builder::new()
        .name("fifo-open".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = tx.send(OpenOptions::new().write(true).open(path));
        })
        .map_err(io_error("start FIFO opener for", uri))?;
    let early = rx.recv_timeout(READER_TIMEOUT).ok();
    let keeper = open_keeper(uri)?;
    if early.is_none() {
        log::warn!("no reader on {uri} after {READER_TIMEOUT:?}; output waits in the FIFO");
    }
    let opened = match early {
        Some(opened) => opened,
        // The keeper is a reader: the blocked open returns now.
        None => rx
            .recv()
            .map_err(|_| io_error("open", uri)(std::io::Error::from_raw_os_error(libc::EIO)))?,
    };
    Ok((opened.map_err(io_error("open", uri))?, keeper))
}

fn open_keeper(uri: &str) -> Result<File, IoError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(uri)
        .map_err(io_error("open", uri))
}

/// stdout/stderr in `mode`: only a FIFO is ever copied (a file or /dev/null needs no EOF).
fn open_stream(
    uri: &str,
    mode: OutputMode,
    keepers: &mut Vec<(PathBuf, File)>,
    sinks: &mut Vec<Arc<OutputSink>>,
) -> Result<OwnedFd, IoError> {
    let fifo = !uri.is_empty() && !uri.contains("://");
    let fd = open_output(uri, keepers)?;
    if mode == OutputMode::Direct || !fifo {
        return Ok(fd);
    }
    let sink = OutputSink::new(File::from(fd));
    let pipe = pipe_into("output-copy", &sink).map_err(io_error("copy output to", uri))?;
    sinks.push(sink);
    Ok(pipe)
}

fn open_null() -> Result<OwnedFd, IoError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(io_error("open", "/dev/null"))?;
    Ok(file.into())
}

/// stdout/stderr: a FIFO path (what containerd's cio uses), `file://` (append), or nothing.
fn open_output(uri: &str, keepers: &mut Vec<(PathBuf, File)>) -> Result<OwnedFd, IoError> {
    if uri.is_empty() {
        return open_null();
    }
    if let Some(path) = uri.strip_prefix("file://") {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_error("open log file", path))?;
        return Ok(file.into());
    }
    if uri.contains("://") {
        return Err(IoError {
            what: "unsupported output URI scheme",
            path: uri.to_owned(),
            source: std::io::Error::from_raw_os_error(libc::ENOTSUP),
        });
    }
    let (writer, keeper) = open_fifo_writer(uri)?;
    // The container must block on a full FIFO, not get EAGAIN.
    fcntl(&writer, FcntlArg::F_SETFL(OFlag::empty())).map_err(|e| IoError {
        what: "set blocking",
        path: uri.to_owned(),
        source: e.into(),
    })?;
    keepers.push((PathBuf::from(uri), keeper));
    Ok(writer.into())
}

fn open_input(path: &str) -> Result<(Option<Arc<StdinPipe>>, OwnedFd), IoError> {
    if path.is_empty() {
        return Ok((None, open_null()?));
    }
    if !Path::new(path).exists() {
        return Err(io_error("open", path)(std::io::Error::from_raw_os_error(
            libc::ENOENT,
        )));
    }
    let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| IoError {
        what: "create stdin pipe for",
        path: path.to_owned(),
        source: e.into(),
    })?;
    let stdin = Arc::new(
        StdinPipe::new(Path::new(path), File::from(writer))
            .map_err(io_error("start stdin copier for", path))?,
    );
    let copier = Arc::clone(&stdin);
    std::thread::Builder::new()
        .name("stdin".into())
        .stack_size(64 * 1024)
        .spawn(move || copier.copy_from_fifo())
        .map_err(io_error("start stdin copier for", path))?;
    Ok((Some(stdin), reader))
}
