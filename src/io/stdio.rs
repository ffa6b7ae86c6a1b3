//! A container process's stdio from the paths containerd passes in the Create request.
//!
//! stdout and stderr: the container gets the FIFO's write end itself, so its output reaches
//! containerd with no copy and no thread in the shim. The daemon also holds a read end of each
//! output FIFO that it never reads: while containerd is away (restarting), the container's
//! writes then block once the FIFO is full instead of failing with EPIPE, and nothing is lost.
//!
//! stdin: a pipe (or, for a terminal, the pty master), fed by a small thread that copies from
//! the FIFO. The FIFO is opened `O_RDONLY | O_NONBLOCK`, so no open ever blocks (the Go shim
//! opens it the same way); poll(2) on it reports nothing until containerd's writer came, so the
//! container can never read a premature end-of-file. The thread also polls the process's pidfd:
//! it ends when the process exits, so no copier outlives its process. CloseIO can close the
//! pipe while containerd keeps the FIFO open.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

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

/// A terminal process's output until the pty master arrives, then its copier.
struct TerminalIo {
    out: Arc<OutputSink>,
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

/// The stdin copy of one process: the FIFO and the process's end until the copier takes them.
struct StdinPipe {
    /// The FIFO (read end, non-blocking) and, once known, the process's stdin (a pipe's write
    /// end, or the pty master); the copier thread takes both when it starts.
    ends: Mutex<(Option<File>, Option<File>)>,
    /// CloseIO came: copy what the FIFO holds now, then close the process's stdin.
    closing: AtomicBool,
    /// The process is gone: stop at once.
    stopping: AtomicBool,
    /// Wakes the copier out of its poll for CloseIO or the release (read end, write end).
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
            // The pty master, the copy's destination, comes with the process's "ready".
            let stdin = match paths.stdin.as_str() {
                "" => None,
                path => Some(StdinPipe::new(path, None)?),
            };
            let terminal = TerminalIo {
                out,
                console: OnceLock::new(),
            };
            let io = ProcessIo {
                keepers,
                sinks,
                stdin,
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

    /// The process is set up (sync 2): starts the copies that need it. `pidfd` is the
    /// process's, whose exit ends the stdin copy; `console` the pty master of a terminal.
    pub fn attach(&self, pidfd: &OwnedFd, console: Option<OwnedFd>) -> Result<(), IoError> {
        let copy_error = |source| IoError {
            what: "start terminal copy",
            path: String::new(),
            source,
        };
        match (&self.terminal, console) {
            (Some(terminal), Some(master)) => {
                let console = Console::start(master, &terminal.out).map_err(copy_error)?;
                if let Some(stdin) = &self.stdin {
                    stdin.set_destination(console.input().map_err(copy_error)?);
                }
                let _ = terminal.console.set(console);
            }
            (Some(_), None) => {
                return Err(copy_error(std::io::Error::other(
                    "a terminal was asked for but the process sent no pty master",
                )));
            }
            // Not asked for: dropping the master hangs up nothing we use.
            (None, _) => {}
        }
        if let Some(stdin) = &self.stdin {
            let exited = pidfd.try_clone().map_err(io_error("duplicate pidfd", ""))?;
            StdinPipe::start(stdin, exited).map_err(io_error("start stdin copier", ""))?;
        }
        Ok(())
    }

    /// ResizePty. A process without a terminal has nothing to resize: as runc's shim, that is
    /// no error (containerd's clients resize whatever they attach to).
    pub fn resize(&self, width: u32, height: u32) -> Result<(), IoError> {
        let console = self.terminal.as_ref().and_then(|t| t.console.get());
        let Some(console) = console else {
            return Ok(());
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
    /// Opens the FIFO without blocking: a read-only, non-blocking open of a FIFO succeeds at
    /// once, and poll(2) reports it neither readable nor hung up until a writer has come.
    fn new(fifo: &str, destination: Option<File>) -> Result<Arc<StdinPipe>, IoError> {
        let wake = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| io_error("create wake-up pipe for", fifo)(std::io::Error::from(e)))?;
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(fifo)
            .map_err(io_error("open", fifo))?;
        Ok(Arc::new(StdinPipe {
            ends: Mutex::new((Some(reader), destination)),
            closing: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            wake,
        }))
    }

    /// The pty master, for a terminal: it comes with the process's "ready".
    fn set_destination(&self, destination: File) {
        if let Ok(mut ends) = self.ends.lock() {
            ends.1 = Some(destination);
        }
    }

    /// Starts the copier thread, which ends when the process behind `exited` (its pidfd)
    /// exits, at end of file, after CloseIO, or when the process's stdio is released.
    fn start(pipe: &Arc<StdinPipe>, exited: OwnedFd) -> std::io::Result<()> {
        let (fifo, destination) = match pipe.ends.lock() {
            Ok(mut ends) => (ends.0.take(), ends.1.take()),
            Err(_) => (None, None),
        };
        let (Some(fifo), Some(destination)) = (fifo, destination) else {
            return Ok(());
        };
        let copier = Arc::clone(pipe);
        std::thread::Builder::new()
            .name("stdin".into())
            .stack_size(64 * 1024)
            .spawn(move || copier.copy(fifo, destination, exited))
            .map(drop)
    }

    /// CloseIO: the process reads end-of-file once what containerd already wrote is copied.
    /// Closing the pipe at once would lose input still in the FIFO (seen: 56 KiB of 1 MiB, when
    /// ctr wrote its stdin and sent CloseIO right after).
    fn close_after_drain(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = nix::unistd::write(&self.wake.1, &[1]);
    }

    /// The process's stdio is released: stop now (a copier not started yet never starts).
    fn close(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = nix::unistd::write(&self.wake.1, &[1]);
        if let Ok(mut ends) = self.ends.lock() {
            *ends = (None, None);
        }
    }

    /// Copies until end of file or the process's exit; after CloseIO, only what the FIFO
    /// holds at that moment. Returning drops the FIFO and the process's end (its EOF).
    fn copy(&self, mut fifo: File, mut destination: File, exited: OwnedFd) {
        let mut buffer = [0u8; 8192];
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            if self.closing.load(Ordering::SeqCst) {
                // Drain without blocking: containerd may keep its writer open.
                while let Ok(n) = fifo.read(&mut buffer) {
                    if n == 0 || !self.forward(&mut destination, &buffer[..n], &exited) {
                        return;
                    }
                }
                return; // EAGAIN: drained
            }
            let mut fds = [
                PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.wake.0.as_fd(), PollFlags::POLLIN),
                PollFd::new(exited.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
            let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
            if ready(&fds[2]) {
                return; // the process is gone: nobody reads its stdin any more
            }
            if !ready(&fds[0]) {
                continue; // woken for CloseIO or the release: the loop decides
            }
            match fifo.read(&mut buffer) {
                Ok(0) => return, // every writer came and went: end of file
                Ok(n) if self.forward(&mut destination, &buffer[..n], &exited) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                    ) => {}
                _ => return,
            }
        }
    }

    /// Writes to the process's stdin; false once it is closed or broken, or the process or
    /// its stdio is gone. Waits for room in poll(2), so an exit ends even a full pipe's wait.
    fn forward(&self, destination: &mut File, mut data: &[u8], exited: &OwnedFd) -> bool {
        while !data.is_empty() {
            let mut fds = [
                PollFd::new(destination.as_fd(), PollFlags::POLLOUT),
                PollFd::new(self.wake.0.as_fd(), PollFlags::POLLIN),
                PollFd::new(exited.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return false,
            }
            let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
            if ready(&fds[2]) || self.stopping.load(Ordering::SeqCst) {
                return false;
            }
            if !ready(&fds[0]) {
                // Woken for CloseIO: the data still goes; wait again without a busy loop.
                let _ = nix::unistd::read(&self.wake.0, &mut [0u8; 16]);
                continue;
            }
            match destination.write(data) {
                Ok(0) => return false,
                Ok(n) => data = &data[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                    ) => {}
                Err(_) => return false,
            }
        }
        true
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
    // Our end only (the process's is another open file description): the copier waits for
    // room in poll(2), never in a write that an exit could not end.
    fcntl(&writer, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| IoError {
        what: "set non-blocking",
        path: path.to_owned(),
        source: e.into(),
    })?;
    // The copier starts once the process exists (`attach`): its exit ends the copy.
    let stdin = StdinPipe::new(path, Some(File::from(writer)))?;
    Ok((Some(stdin), reader))
}
