//! The daemon's side of the spawner: send a request, then follow the new process's sync socket.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socketpair, sockopt};
use nix::unistd::Pid;

use super::protocol::{self, MAX_RECORD, ProtocolError, SpawnRequest, SyncMessage};
use super::spawner;
use crate::container::hooks::HookKind;

/// Why a container process could not be made or started.
#[derive(Debug)]
pub enum SpawnError {
    /// Making the sync socket failed.
    Socket(nix::Error),
    /// The request could not be handed to the spawner.
    Request(ProtocolError),
    /// The sync socket broke: the spawner, helper or init died without saying why.
    Sync {
        step: &'static str,
        source: ProtocolError,
    },
    /// The process reported a failed step; the text names it.
    Failed(String),
    /// The process said something out of order.
    Unexpected {
        step: &'static str,
        got: SyncMessage,
    },
    /// The spawner did not make a pidfd for the new process.
    NoPidfd,
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Socket(e) => write!(f, "create sync socket: {e}"),
            Self::Request(e) => write!(f, "send request to spawner: {e}"),
            Self::Sync { step, source } => write!(f, "{step}: {source}"),
            Self::Failed(error) => f.write_str(error),
            Self::Unexpected { step, got } => write!(f, "{step}: unexpected message {got:?}"),
            Self::NoPidfd => write!(f, "spawner sent no pidfd for the new process"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// The running daemon's own executable (the same inode even if the file was replaced since).
const SELF_EXE: &str = "/proc/self/exe";

/// The daemon's handle on its spawner.
pub struct Spawner {
    channel: OwnedFd,
    pid: Pid,
}

impl Spawner {
    /// Creates the channel and forks the spawner.
    ///
    /// # Safety
    /// The calling process must have exactly one thread.
    pub unsafe fn fork() -> nix::Result<Spawner> {
        let (daemon_end, spawner_end) = seqpacket_pair()?;
        // Records can be large (a spec with a seccomp profile): let the socket hold one whole.
        let _ = setsockopt(&daemon_end, sockopt::SndBuf, &(MAX_RECORD * 2));
        // SAFETY: forwarded from our own contract.
        let pid = unsafe { spawner::fork_spawner(&spawner_end, &daemon_end) }?;
        drop(spawner_end);
        Ok(Spawner {
            channel: daemon_end,
            pid,
        })
    }

    /// Starts a replacement spawner from the running (threaded) daemon: this binary again, with
    /// the `spawner` action and its end of a new channel. A fork of a threaded process may only
    /// exec, which is what `Command` does; the new spawner is single-threaded like the first.
    ///
    /// `args` are the flags that come before the action (`-namespace`, `-id`, `-address`).
    pub fn exec(args: &[&str]) -> std::io::Result<Spawner> {
        let (daemon_end, spawner_end) = seqpacket_pair()?;
        let _ = setsockopt(&daemon_end, sockopt::SndBuf, &(MAX_RECORD * 2));
        let inherited = spawner_end.as_raw_fd();
        let mut command = Command::new(SELF_EXE);
        command
            .args(args)
            .arg(spawner::SPAWNER_ACTION)
            .env(spawner::CHANNEL_FD_ENV, inherited.to_string())
            .env(spawner::DAEMON_PID_ENV, nix::unistd::getpid().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: runs in the forked child before exec; fcntl is async-signal-safe and only
        // clears close-on-exec on the one descriptor the new spawner must inherit.
        unsafe {
            command.pre_exec(move || {
                if nix::libc::fcntl(inherited, nix::libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The daemon's reaper collects it (waitpid(-1)); the Child handle is not needed.
        let child = command.spawn()?;
        drop(spawner_end);
        Ok(Spawner {
            channel: daemon_end,
            pid: Pid::from_raw(child.id() as i32),
        })
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Whether the spawner's end of the channel is closed: it died (or is dying).
    pub fn is_gone(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.channel.as_fd(),
            nix::poll::PollFlags::empty(),
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|r| r.intersects(nix::poll::PollFlags::POLLHUP)),
            Err(_) => false,
        }
    }

    /// Asks for a new process and waits for sync 1; returns it with its pidfd.
    ///
    /// Several threads may call this at once: every `sendmsg` on a SEQPACKET socket is one whole
    /// record, and the answers come back on per-request sync sockets.
    ///
    /// `init_pidfd` is the container init's pidfd, for an exec request.
    pub fn spawn(
        &self,
        request: &SpawnRequest,
        stdio: [&OwnedFd; 3],
        init_pidfd: Option<&OwnedFd>,
    ) -> Result<(PendingProcess, OwnedFd), SpawnError> {
        let (sync, child_end) = seqpacket_pair().map_err(SpawnError::Socket)?;
        let mut fds: Vec<RawFd> = vec![
            child_end.as_raw_fd(),
            stdio[0].as_raw_fd(),
            stdio[1].as_raw_fd(),
            stdio[2].as_raw_fd(),
        ];
        fds.extend(init_pidfd.map(|fd| fd.as_raw_fd()));
        protocol::send(self.channel.as_raw_fd(), request, &fds).map_err(SpawnError::Request)?;
        // Only the helper and the init may hold the other end now, so end-of-file means they
        // are gone.
        drop(child_end);
        wait_spawned(sync)
    }

    /// Sends an `Init` request ahead of its cgroup and stdio: the spawner decodes it and
    /// forks its helper while the caller mounts the rootfs, makes the cgroup and opens stdio,
    /// then hands those over with [`EarlyInit::go`] (sync 0).
    pub fn request_init(&self, request: &SpawnRequest) -> Result<EarlyInit, SpawnError> {
        let (sync, child_end) = seqpacket_pair().map_err(SpawnError::Socket)?;
        protocol::send(self.channel.as_raw_fd(), request, &[child_end.as_raw_fd()])
            .map_err(SpawnError::Request)?;
        Ok(EarlyInit { sync: Some(sync) })
    }
}

/// Sync 1: waits for the helper's `Spawned` and returns the process with its pidfd.
fn wait_spawned(sync: OwnedFd) -> Result<(PendingProcess, OwnedFd), SpawnError> {
    const STEP: &str = "wait for the spawned process";
    // Sync 1 comes from the helper, sync 2 (or 4) from the init: two processes racing on
    // one socket, so a fast init's RuntimeHooks or Ready can arrive first. It is kept for
    // `wait_setup`.
    let mut early = None;
    loop {
        let (message, mut fds) = protocol::receive::<SyncMessage>(sync.as_raw_fd())
            .map_err(|source| SpawnError::Sync { step: STEP, source })?;
        match message {
            SyncMessage::Spawned { pid, helper } => {
                let pidfd = fds.pop().ok_or(SpawnError::NoPidfd)?;
                let pid = Pid::from_raw(pid);
                let pending = PendingProcess {
                    pid,
                    helper: Pid::from_raw(helper),
                    sync,
                    early,
                };
                return Ok((pending, pidfd));
            }
            SyncMessage::Ready { warnings } if early.is_none() => {
                early = Some(Setup::Ready(Ready {
                    warnings,
                    console: fds.pop(),
                }));
            }
            SyncMessage::RuntimeHooks if early.is_none() => early = Some(Setup::RuntimeHooks),
            SyncMessage::Failed { error } => return Err(SpawnError::Failed(error)),
            got => return Err(SpawnError::Unexpected { step: STEP, got }),
        }
    }
}

/// An `Init` request the spawner has, waiting for sync 0. Dropped without [`EarlyInit::go`]
/// (a step before it failed), it closes its end and waits, bounded, until the helper's end is
/// closed too: the helper then exits without having joined or cloned anything.
pub struct EarlyInit {
    sync: Option<OwnedFd>,
}

/// How long a dropped [`EarlyInit`] waits for its helper to let go of the sync socket.
const ABANDON_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

impl EarlyInit {
    /// Sync 0: the cgroup to join and the init's stdio; then waits for sync 1 like
    /// [`Spawner::spawn`].
    pub fn go(
        mut self,
        cgroup: Option<&crate::cgroups::Cgroup>,
        stdio: [&OwnedFd; 3],
    ) -> Result<(PendingProcess, OwnedFd), SpawnError> {
        let Some(sync) = self.sync.take() else {
            unreachable!("only go and drop take the socket, and both consume self")
        };
        let go = SyncMessage::Go {
            cgroup: cgroup.cloned(),
        };
        let fds = stdio.map(AsRawFd::as_raw_fd);
        if let Err(source) = protocol::send(sync.as_raw_fd(), &go, &fds) {
            // The spawner may have said why there is no helper (it could not clone one).
            return match protocol::receive::<SyncMessage>(sync.as_raw_fd()) {
                Ok((SyncMessage::Failed { error }, _)) => Err(SpawnError::Failed(error)),
                _ => Err(SpawnError::Sync {
                    step: "hand the init its cgroup and stdio",
                    source,
                }),
            };
        }
        wait_spawned(sync)
    }
}

impl Drop for EarlyInit {
    fn drop(&mut self) {
        let Some(sync) = self.sync.take() else {
            return;
        };
        // The helper reads end-of-file and exits; its end closes with it (or with the spawner,
        // should that die first).
        let _ = nix::sys::socket::shutdown(sync.as_raw_fd(), nix::sys::socket::Shutdown::Write);
        let deadline = std::time::Instant::now() + ABANDON_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let timeout =
                nix::poll::PollTimeout::try_from(left).unwrap_or(nix::poll::PollTimeout::MAX);
            let mut fds = [nix::poll::PollFd::new(
                sync.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, timeout) {
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // A Failed record may come before the end; end-of-file means the helper is gone.
            match protocol::receive::<SyncMessage>(sync.as_raw_fd()) {
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        if std::time::Instant::now() >= deadline {
            log::warn!(
                "spawn helper kept its sync socket open {ABANDON_LIMIT:?} after Create gave up"
            );
        }
    }
}

impl Spawner {
    /// Runs `hooks` through a hook runner the spawner clones (in the runtime's namespaces,
    /// never a fork of the threaded daemon) and waits for its answer. The runner bounds each
    /// hook by its timeout; if it dies, the sync socket closes. Returns the runner's pid (for
    /// the reaper) and the first failure.
    pub fn run_hooks(
        &self,
        kind: HookKind,
        hooks: &[oci_spec::runtime::Hook],
        state: String,
    ) -> Result<(Pid, Option<String>), SpawnError> {
        const STEP: &str = "run hooks";
        let (sync, child_end) = seqpacket_pair().map_err(SpawnError::Socket)?;
        let request = SpawnRequest::Hooks {
            kind,
            hooks: hooks.to_vec(),
            state,
        };
        protocol::send(self.channel.as_raw_fd(), &request, &[child_end.as_raw_fd()])
            .map_err(SpawnError::Request)?;
        drop(child_end);
        match protocol::receive::<SyncMessage>(sync.as_raw_fd()) {
            Ok((SyncMessage::HooksDone { runner, error }, _)) => Ok((Pid::from_raw(runner), error)),
            Ok((SyncMessage::Failed { error }, _)) => Err(SpawnError::Failed(error)),
            Ok((got, _)) => Err(SpawnError::Unexpected { step: STEP, got }),
            Err(source) => Err(SpawnError::Sync { step: STEP, source }),
        }
    }
}

impl Spawner {
    /// A scope holder for a new systemd scope (see `spawner::run_scope_holder`): its pid
    /// and the socket whose closing lets it exit.
    pub fn hold_scope(&self) -> Result<ScopeHolder, SpawnError> {
        const STEP: &str = "start a scope holder";
        let (sync, child_end) = seqpacket_pair().map_err(SpawnError::Socket)?;
        protocol::send(
            self.channel.as_raw_fd(),
            &SpawnRequest::HoldScope,
            &[child_end.as_raw_fd()],
        )
        .map_err(SpawnError::Request)?;
        drop(child_end);
        match protocol::receive::<SyncMessage>(sync.as_raw_fd()) {
            Ok((SyncMessage::Holding { pid }, _)) => Ok(ScopeHolder {
                pid: Pid::from_raw(pid),
                sync,
            }),
            Ok((SyncMessage::Failed { error }, _)) => Err(SpawnError::Failed(error)),
            Ok((got, _)) => Err(SpawnError::Unexpected { step: STEP, got }),
            Err(source) => Err(SpawnError::Sync { step: STEP, source }),
        }
    }
}

/// A scope holder that waits; dropping `sync` lets it exit.
pub struct ScopeHolder {
    pub pid: Pid,
    pub sync: OwnedFd,
}

/// Where an init's setup stopped: at sync 2 (it waits until the runtime's hooks ran) or at
/// sync 4 (done).
pub enum Setup {
    RuntimeHooks,
    Ready(Ready),
}

/// What sync 4 brings: the setup's warnings and, for a terminal, the pty master.
pub struct Ready {
    pub warnings: Vec<String>,
    pub console: Option<OwnedFd>,
}

/// A process that exists but has not yet exec'd its program: its sync socket.
pub struct PendingProcess {
    pub pid: Pid,
    /// The helper that cloned it; it exits right after sync 1.
    pub helper: Pid,
    sync: OwnedFd,
    /// Sync 2 or 4, when it overtook sync 1.
    early: Option<Setup>,
}

impl PendingProcess {
    /// Sync 2 or 4: waits until the process asks for the runtime's hooks or finished its
    /// setup (or reports why it failed).
    pub fn wait_setup(&mut self) -> Result<Setup, SpawnError> {
        const STEP: &str = "wait for container setup";
        if let Some(setup) = self.early.take() {
            return Ok(setup);
        }
        match protocol::receive::<SyncMessage>(self.sync.as_raw_fd()) {
            Ok((SyncMessage::Ready { warnings }, mut fds)) => Ok(Setup::Ready(Ready {
                warnings,
                console: fds.pop(),
            })),
            Ok((SyncMessage::RuntimeHooks, _)) => Ok(Setup::RuntimeHooks),
            Ok((SyncMessage::Failed { error }, _)) => Err(SpawnError::Failed(error)),
            Ok((got, _)) => Err(SpawnError::Unexpected { step: STEP, got }),
            Err(source) => Err(SpawnError::Sync { step: STEP, source }),
        }
    }

    /// Sync 3: the runtime's hooks ran; the init goes on with its setup.
    pub fn hooks_ran(&self) -> Result<(), SpawnError> {
        protocol::send_sync(&self.sync, &SyncMessage::HooksRan).map_err(|source| SpawnError::Sync {
            step: "resume the container setup after its hooks",
            source,
        })
    }

    /// sync 5 and 6: tells the process to exec, and returns once `execve` succeeded.
    pub fn start(self) -> Result<(), SpawnError> {
        const STEP: &str = "start the container process";
        protocol::send_sync(&self.sync, &SyncMessage::Start)
            .map_err(|source| SpawnError::Sync { step: STEP, source })?;
        self.wait_exec()
    }

    /// Sync 6 alone, for a process that did not wait for `Start` (see
    /// `SpawnRequest::waits_for_start`): returns once `execve` succeeded.
    pub fn wait_exec(self) -> Result<(), SpawnError> {
        const STEP: &str = "start the container process";
        match protocol::receive::<SyncMessage>(self.sync.as_raw_fd()) {
            // The close-on-exec end closed: execve succeeded.
            Err(ProtocolError::Closed) => Ok(()),
            Ok((SyncMessage::Failed { error }, _)) => Err(SpawnError::Failed(error)),
            Ok((got, _)) => Err(SpawnError::Unexpected { step: STEP, got }),
            Err(source) => Err(SpawnError::Sync { step: STEP, source }),
        }
    }
}

fn seqpacket_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}
