//! The spawner's wire protocol.
//!
//! Two kinds of channel, both `SOCK_SEQPACKET` so every `send` is one record and a record is never
//! split or merged:
//! - the spawner channel (daemon → spawner), carrying one [`SpawnRequest`] per record with its fds
//!   (`SCM_RIGHTS`); the spawner never answers on it: everything about a request travels on the
//!   request's own sync socket, so concurrent requests never need ids;
//! - one sync socket per container process (daemon ↔ helper and init), carrying [`SyncMessage`]s.
//!
//! The sync sequence, numbered the same way where each side implements it:
//! 0. daemon → helper, for an init only: `Go { cgroup }` with the init's stdin, stdout and
//!    stderr. The `Init` request goes out as soon as the spec is checked, so that the
//!    spawner's decoding of it and the helper's fork run while the daemon mounts the rootfs,
//!    makes the cgroup and opens stdio; the helper waits for `Go` before it joins anything.
//!    If one of those steps fails the daemon closes its end instead, and the helper exits.
//! 1. helper → daemon: `Spawned { pid, helper }` with the init's pidfd (or `Failed`); the helper
//!    exits right after, and the daemon waits for its reap so no helper outlives a Create.
//! 2. init → daemon: `RuntimeHooks`, only when the spec has `prestart` or `createRuntime`
//!    hooks: the mounts are done, pivot_root is not; the daemon runs those hooks through a
//!    spawner `Hooks` request (in the runtime's namespaces).
//! 3. daemon → init: `HooksRan`; on a failed hook the daemon closes its end instead (and fails
//!    Create), and the init exits. The init then runs `createContainer` and pivots.
//! 4. init → daemon: `Ready` once every setup step is done (or `Failed`).
//! 5. daemon → init: `Start`. An exec without a terminal does not wait for it (see
//!    [`SpawnRequest::waits_for_start`]): it goes on to 6 right after sending `Ready`.
//! 6. init: runs `startContainer`, then `execve`. The init's end is close-on-exec, so
//!    end-of-file on the daemon's end means `execve` succeeded; otherwise the init sends
//!    `Failed` first.
//!
//! Sync 1 and 2 (or 4) come from two processes racing on one socket: the daemon accepts
//! `RuntimeHooks`, `Ready` (or `Failed`) before `Spawned`.
//!
//! A `Hooks` request (a hook runner, for `prestart`/`createRuntime` at sync 2, `poststart`
//! after Start, `poststop` at Delete) has one sync message: runner → daemon `HooksDone`.
//!
//! A `HoldScope` request (the systemd cgroup driver) makes a *scope holder*: it answers
//! `Holding` with its pid, which the daemon gives systemd as the new scope's first process,
//! and exits when the daemon closes its end (or after [`SCOPE_HOLDER_LIMIT`]).
//!
//! Records are JSON: the spec already has a serde form, and a record is decoded once per container.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::container::hooks::HookKind;
use crate::container::namespaces::NamespacePlan;
use crate::container::{ExecConfig, InitConfig};

/// The largest record either side accepts. A spec with a large seccomp profile stays far below it;
/// the socket buffers are raised to match (see `spawn::client`).
pub const MAX_RECORD: usize = 1 << 20;

/// Most fds one record may carry.
const MAX_FDS: usize = 8;

/// A request for a new container process. Its fds travel with it, in this order: the sync socket,
/// then (for `Exec`) stdin, stdout and stderr of the new process and the init's pidfd. An
/// `Init` carries only the sync socket: its cgroup and stdio come with sync 0 (`Go`).
#[derive(Debug, Serialize, Deserialize)]
pub enum SpawnRequest {
    /// A container's init: new or joined namespaces, its cgroup (from `Go`), then the full
    /// setup.
    Init {
        config: Box<InitConfig>,
        namespaces: NamespacePlan,
    },
    /// A process in a running container: its cgroup, every namespace of the init (joined
    /// through the init's pidfd, so never a recycled pid's), then the process-level setup.
    Exec {
        config: Box<ExecConfig>,
        cgroup: Option<Cgroup>,
        /// `CLONE_NEWUSER` and/or `CLONE_NEWTIME` when the init has such a namespace of its
        /// own, which the exec then joins too (joining one's own user namespace is an error).
        join_also: u64,
    },
    /// Run hooks of one kind in the runtime's namespaces: the spawner clones a hook runner
    /// (`CLONE_PARENT`, so the daemon reaps it) that runs them in order and answers
    /// `HooksDone`. Only the sync socket travels with it.
    Hooks {
        kind: HookKind,
        hooks: Vec<oci_spec::runtime::Hook>,
        /// The state JSON for the hooks' stdin.
        state: String,
    },
    /// A scope holder for a new systemd scope (the systemd cgroup driver): a clone of the
    /// spawner (`CLONE_PARENT`) that answers `Holding` and waits until its sync socket
    /// closes. Only the sync socket travels with it.
    HoldScope,
}

/// The longest a scope holder waits for the daemon to let it go.
pub const SCOPE_HOLDER_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

impl SpawnRequest {
    /// Whether the new process waits for `Start` (sync 5) before its `execve`. An init does:
    /// it must not run before Start. An exec's Start is the request that made it, so nothing
    /// is left to wait for, but for a terminal: the daemon sets the terminal's size
    /// (`consoleSize`) between sync 4 and 5, before the program can read it. Not waiting saves
    /// a round trip between the daemon and the process on every other exec; the daemon holds
    /// back the exec's exit until TaskExecStarted went out, as for an exit during Start.
    pub fn waits_for_start(&self) -> bool {
        match self {
            SpawnRequest::Exec { config, .. } => config.process.terminal() == Some(true),
            SpawnRequest::Init { .. } | SpawnRequest::Hooks { .. } | SpawnRequest::HoldScope => {
                true
            }
        }
    }

    /// How many fds travel with this request.
    pub fn fd_count(&self) -> usize {
        match self {
            SpawnRequest::Exec { .. } => 5,
            SpawnRequest::Init { .. } | SpawnRequest::Hooks { .. } | SpawnRequest::HoldScope => 1,
        }
    }
}

/// Messages on a process's sync socket (see the module docs for their order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMessage {
    /// Sync 0, for an init: the rootfs is mounted and the cgroup made; join it and clone the
    /// init (its stdin, stdout and stderr travel with this record).
    Go { cgroup: Option<Cgroup> },
    /// Sync 1: the init exists; its host pid (its pidfd travels with this record) and the pid of
    /// the helper that sent this and is exiting.
    Spawned { pid: i32, helper: i32 },
    /// Sync 2: the init's mounts are done; run the `prestart` and `createRuntime` hooks.
    RuntimeHooks,
    /// Sync 3: they ran; go on (`createContainer`, pivot_root, the rest of the setup).
    HooksRan,
    /// Sync 4: setup finished; the init waits for `Start` (an exec without a terminal does
    /// not: it execs right after). The warnings name what the setup
    /// skipped, for the daemon's log (the init has no logger).
    Ready { warnings: Vec<String> },
    /// 5. Go ahead and `execve` (after the `startContainer` hooks).
    Start,
    /// A hook runner's answer: its pid (the daemon waits for its reap) and the first failed
    /// hook's error, if any.
    HooksDone { runner: i32, error: Option<String> },
    /// A scope holder's answer: its pid.
    Holding { pid: i32 },
    /// A step failed; the text names the step, the path or value and the errno.
    Failed { error: String },
}

/// Why a record could not be sent or received.
#[derive(Debug)]
pub enum ProtocolError {
    Encode(serde_json::Error),
    Decode(serde_json::Error),
    Send(nix::Error),
    Receive(nix::Error),
    /// The peer closed its end (every process holding it exited or exec'd).
    Closed,
    /// A record carried more fds than the protocol allows or fewer than the request needs.
    BadFds {
        expected: usize,
        got: usize,
    },
    /// A record filled the whole buffer: it may have been cut.
    Truncated,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Encode(e) => write!(f, "encode record: {e}"),
            Self::Decode(e) => write!(f, "decode record: {e}"),
            Self::Send(e) => write!(f, "send record: {e}"),
            Self::Receive(e) => write!(f, "receive record: {e}"),
            Self::Closed => write!(f, "peer closed the channel"),
            Self::BadFds { expected, got } => {
                write!(f, "record carried {got} fds, expected {expected}")
            }
            Self::Truncated => write!(f, "record truncated (over {MAX_RECORD} bytes)"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Sends one record with `fds` attached.
pub fn send<T: Serialize>(socket: RawFd, message: &T, fds: &[RawFd]) -> Result<(), ProtocolError> {
    let bytes = serde_json::to_vec(message).map_err(ProtocolError::Encode)?;
    let iov = [IoSlice::new(&bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(socket, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(ProtocolError::Send(e)),
            Ok(_) => return Ok(()),
        }
    }
}

/// Receives one record and the fds that came with it. End-of-file is [`ProtocolError::Closed`].
pub fn receive<T: for<'de> Deserialize<'de>>(
    socket: RawFd,
) -> Result<(T, Vec<OwnedFd>), ProtocolError> {
    // A buffer the size of the record, not of the largest one: glibc keeps a freed megabyte
    // around (touched) in every thread's arena and in the spawner, about 1 MiB of dirty memory
    // per process, per container. One byte more than the record, so a full buffer means
    // truncation (see `receive_raw`).
    let size = next_record_len(socket)?.min(MAX_RECORD);
    let mut buffer = vec![0u8; size + 1];
    let (len, fds) = receive_raw(socket, &mut buffer)?;
    let message = serde_json::from_slice(&buffer[..len]).map_err(ProtocolError::Decode)?;
    Ok((message, fds))
}

/// The length of the next record without consuming it (0 at end of file): on a unix SEQPACKET
/// socket, a peek with MSG_TRUNC returns the record's whole length.
fn next_record_len(socket: RawFd) -> Result<usize, ProtocolError> {
    loop {
        match nix::sys::socket::recv(socket, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(ProtocolError::Receive(e)),
            Ok(len) => return Ok(len),
        }
    }
}

fn receive_raw(socket: RawFd, buffer: &mut [u8]) -> Result<(usize, Vec<OwnedFd>), ProtocolError> {
    let mut cmsg_buffer = nix::cmsg_space!([RawFd; MAX_FDS]);
    let capacity = buffer.len();
    let mut iov = [IoSliceMut::new(buffer)];
    let msg = loop {
        match recvmsg::<()>(
            socket,
            &mut iov,
            Some(&mut cmsg_buffer),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(ProtocolError::Receive(e)),
            Ok(msg) => break msg,
        }
    };
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs().map_err(ProtocolError::Receive)? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: the kernel just installed these descriptors in our table for us alone.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let len = msg.bytes;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) || len == capacity {
        return Err(ProtocolError::Truncated);
    }
    if len == 0 && fds.is_empty() {
        return Err(ProtocolError::Closed);
    }
    Ok((len, fds))
}

/// Receives a record that must carry exactly `expected` fds.
pub fn receive_with_fds<T: for<'de> Deserialize<'de>>(
    socket: RawFd,
    expected: usize,
) -> Result<(T, Vec<OwnedFd>), ProtocolError> {
    let (message, fds) = receive(socket)?;
    if fds.len() != expected {
        return Err(ProtocolError::BadFds {
            expected,
            got: fds.len(),
        });
    }
    Ok((message, fds))
}

/// Sends a sync message without fds.
pub fn send_sync(socket: &impl AsRawFd, message: &SyncMessage) -> Result<(), ProtocolError> {
    send(socket.as_raw_fd(), message, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair")
    }

    #[test]
    fn records_of_any_size_arrive_whole_and_end_of_file_is_closed() {
        let (a, b) = pair();
        for len in [1, 4095, 4096, 100_000] {
            let message = SyncMessage::Failed {
                error: "x".repeat(len),
            };
            send_sync(&a, &message).unwrap();
            let (got, fds): (SyncMessage, _) = receive(b.as_raw_fd()).unwrap();
            assert_eq!(got, message);
            assert!(fds.is_empty());
        }
        drop(a);
        assert!(matches!(
            receive::<SyncMessage>(b.as_raw_fd()),
            Err(ProtocolError::Closed)
        ));
    }

    #[test]
    fn sync_messages_round_trip_one_record_each() {
        let (a, b) = pair();
        send_sync(&a, &SyncMessage::Ready { warnings: vec![] }).unwrap();
        send_sync(&a, &SyncMessage::Failed { error: "x".into() }).unwrap();
        let (first, _): (SyncMessage, _) = receive(b.as_raw_fd()).unwrap();
        let (second, _): (SyncMessage, _) = receive(b.as_raw_fd()).unwrap();
        assert_eq!(first, SyncMessage::Ready { warnings: vec![] });
        assert_eq!(second, SyncMessage::Failed { error: "x".into() });
    }

    #[test]
    fn fds_travel_with_their_record() {
        let (a, b) = pair();
        let (x, _y) = pair();
        send(
            a.as_raw_fd(),
            &SyncMessage::Spawned {
                pid: 42,
                helper: 41,
            },
            &[x.as_raw_fd()],
        )
        .unwrap();
        let (msg, fds): (SyncMessage, _) = receive_with_fds(b.as_raw_fd(), 1).unwrap();
        assert_eq!(
            msg,
            SyncMessage::Spawned {
                pid: 42,
                helper: 41
            }
        );
        assert_eq!(fds.len(), 1);
    }

    #[test]
    fn closed_peer_is_reported_as_closed() {
        let (a, b) = pair();
        drop(a);
        let err = receive::<SyncMessage>(b.as_raw_fd()).unwrap_err();
        assert!(matches!(err, ProtocolError::Closed));
    }

    #[test]
    fn wrong_fd_count_is_an_error() {
        let (a, b) = pair();
        send_sync(&a, &SyncMessage::Ready { warnings: vec![] }).unwrap();
        let err = receive_with_fds::<SyncMessage>(b.as_raw_fd(), 1).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::BadFds {
                expected: 1,
                got: 0
            }
        ));
    }
}
