//! The clone calls: `clone3` with `CLONE_PARENT` (and `CLONE_PIDFD` where the caller wants one).
//!
//! Every process the spawner makes is cloned with `CLONE_PARENT`, so its parent is the shim daemon,
//! not the spawner: the daemon reaps it and learns its exit status first-hand.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::libc;
use nix::unistd::Pid;

/// What `clone3` returned in the calling process.
pub enum Cloned {
    /// We are the new process.
    Child,
    /// We are the caller; the new process's pid, and its pidfd when one was asked for.
    Parent { pid: Pid, pidfd: Option<OwnedFd> },
}

/// From `<linux/sched.h>`; libc's constant is an i32 that overflows into the sign bit.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` from `<linux/sched.h>` (version 2, 88 bytes: up to `cgroup`); also the
/// hook runner's (`container::hooks`).
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub(crate) flags: u64,
    pub(crate) pidfd: u64,
    pub(crate) child_tid: u64,
    pub(crate) parent_tid: u64,
    pub(crate) exit_signal: u64,
    pub(crate) stack: u64,
    pub(crate) stack_size: u64,
    pub(crate) tls: u64,
    // Version 1 and 2 fields (88 bytes): set_tid, set_tid_size, cgroup.
    pub(crate) set_tid: u64,
    pub(crate) set_tid_size: u64,
    pub(crate) cgroup: u64,
}

/// Clones the calling process, fork-style (no shared memory, no new stack), with `flags`
/// (`CLONE_NEW*` bits allowed) plus `CLONE_PARENT`, and `CLONE_PIDFD` when `want_pidfd`.
///
/// `into_cgroup`, a cgroup2 directory, puts the child there as it is born (`CLONE_INTO_CGROUP`).
///
/// The caller must be single-threaded: the child is a copy of this one thread, and any lock held
/// by another thread would stay locked in it forever. The spawner, its helpers and the init are.
pub fn clone_sibling(
    flags: u64,
    want_pidfd: bool,
    into_cgroup: Option<&OwnedFd>,
) -> nix::Result<Cloned> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PARENT as u64,
        // With CLONE_PARENT the kernel ignores this and gives the child the caller's own exit
        // signal, which is SIGCHLD for every process in the spawner's line.
        exit_signal: 0,
        ..CloneArgs::default()
    };
    if let Some(cgroup) = into_cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cgroup.as_raw_fd() as u64;
    }
    if want_pidfd {
        args.flags |= libc::CLONE_PIDFD as u64;
        args.pidfd = &mut pidfd as *mut libc::c_int as u64;
    }
    // Raw because no crate wraps clone3 with CLONE_PARENT, CLONE_INTO_CGROUP and CLONE_PIDFD
    // together (nix has clone(2) with a caller-given stack only; rustix has no clone).
    // SAFETY: `args` is a valid clone_args of the size we pass, `pidfd` outlives the call, and no
    // stack is given, so the child continues on a private copy of this stack like after fork().
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(nix::Error::last()),
        0 => Ok(Cloned::Child),
        pid => Ok(Cloned::Parent {
            pid: Pid::from_raw(pid as i32),
            // SAFETY: with CLONE_PIDFD the kernel stored a fresh descriptor that only we own.
            pidfd: want_pidfd.then(|| unsafe { OwnedFd::from_raw_fd(pidfd) }),
        }),
    }
}

/// Sends `signal` through a pidfd: unlike kill(2) it can never reach a recycled pid.
pub fn pidfd_send_signal(pidfd: &impl std::os::fd::AsRawFd, signal: i32) -> nix::Result<()> {
    // SAFETY: plain syscall on a descriptor we own; no pointers are passed (info is NULL).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret == -1 {
        Err(nix::Error::last())
    } else {
        Ok(())
    }
}
