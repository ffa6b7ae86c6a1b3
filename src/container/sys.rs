//! Thin wrappers over the system calls nix does not cover (openat2, capget/capset, the
//! capability prctls, close_range, setdomainname, TIOCSCTTY, raw sigaction, open_tree,
//! move_mount, mount_setattr). Most go through rustix's safe wrappers; the few raw calls left
//! (rt_sigaction, close_range, fcntl on a bare fd number, mount_setattr) are the only `unsafe`
//! of the container setup, each with the reason no crate serves. Callers see plain
//! `Result<_, Errno>` functions.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{MoveMountFlags, OpenTreeFlags};
use rustix::thread::{CapabilitySet, CapabilitySets};

/// A rustix error as nix's `Errno` (both are the raw errno value).
pub fn from_rustix(errno: rustix::io::Errno) -> Errno {
    Errno::from_raw(errno.raw_os_error())
}

/// `RESOLVE_*` flags of openat2(2) (`<linux/openat2.h>`).
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_NO_XDEV: u64 = 0x01;

/// openat2(2), always with `O_CLOEXEC`. `mode` is only passed along with `O_CREAT` (the kernel
/// rejects a mode without it).
pub fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    mode: u32,
    resolve: u64,
) -> Result<OwnedFd, Errno> {
    let flags = flags | libc::O_CLOEXEC;
    let mode = if flags & libc::O_CREAT != 0 {
        Mode::from_bits_retain(mode)
    } else {
        Mode::empty()
    };
    let oflags = OFlags::from_bits_retain(flags as u32);
    let resolve = ResolveFlags::from_bits_retain(resolve);
    // openat2 returns EAGAIN when a concurrent rename may have fooled a ".." lookup under
    // RESOLVE_IN_ROOT/RESOLVE_BENEATH; retrying a few times is what the man page advises.
    let mut attempts = 0;
    loop {
        match rustix::fs::openat2(dirfd, path, oflags, mode, resolve) {
            Ok(fd) => return Ok(fd),
            Err(errno) => {
                let errno = from_rustix(errno);
                attempts += 1;
                if errno != Errno::EAGAIN || attempts >= 16 {
                    return Err(errno);
                }
            }
        }
    }
}

/// The path through which mount(2) and friends reach exactly the file an fd refers to.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The three capability sets of a thread, as bit masks (bit n = capability n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// capget(2) (version 3) for the calling thread.
pub fn capget() -> Result<CapSets, Errno> {
    let sets = rustix::thread::capabilities(None).map_err(from_rustix)?;
    Ok(CapSets {
        effective: sets.effective.bits(),
        permitted: sets.permitted.bits(),
        inheritable: sets.inheritable.bits(),
    })
}

/// capset(2) (version 3) for the calling thread.
pub fn capset(sets: &CapSets) -> Result<(), Errno> {
    let sets = CapabilitySets {
        effective: CapabilitySet::from_bits_retain(sets.effective),
        permitted: CapabilitySet::from_bits_retain(sets.permitted),
        inheritable: CapabilitySet::from_bits_retain(sets.inheritable),
    };
    rustix::thread::set_capabilities(None, sets).map_err(from_rustix)
}

/// Capability number `cap` as rustix's one-bit set, kept as is when rustix has no name for it
/// (a newer kernel's capability); EINVAL past 63, as the kernel answers for an unknown one.
fn one_capability(cap: u32) -> Result<CapabilitySet, Errno> {
    1u64.checked_shl(cap)
        .map(CapabilitySet::from_bits_retain)
        .ok_or(Errno::EINVAL)
}

/// Whether `cap` is in the bounding set; EINVAL when the kernel does not know `cap`.
pub fn capbset_read(cap: u32) -> Result<bool, Errno> {
    rustix::thread::capability_is_in_bounding_set(one_capability(cap)?).map_err(from_rustix)
}

/// Drops `cap` from the bounding set (needs CAP_SETPCAP in the effective set).
pub fn capbset_drop(cap: u32) -> Result<(), Errno> {
    rustix::thread::remove_capability_from_bounding_set(one_capability(cap)?).map_err(from_rustix)
}

/// Empties the ambient set.
pub fn ambient_clear_all() -> Result<(), Errno> {
    rustix::thread::clear_ambient_capability_set().map_err(from_rustix)
}

/// Raises `cap` in the ambient set (it must be permitted and inheritable already).
pub fn ambient_raise(cap: u32) -> Result<(), Errno> {
    rustix::thread::configure_capability_in_ambient_set(one_capability(cap)?, true)
        .map_err(from_rustix)
}

/// setdomainname(2) (nix only wraps sethostname).
pub fn setdomainname(name: &str) -> Result<(), Errno> {
    rustix::system::setdomainname(name.as_bytes()).map_err(from_rustix)
}

/// Makes the terminal on `fd` the controlling terminal of this session (TIOCSCTTY with 0: do
/// not steal it from another session).
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::process::ioctl_tiocsctty(fd).map_err(from_rustix)
}

/// The kernel's `struct sigaction` for rt_sigaction(2). All-zero is SIG_DFL with no flags and
/// an empty mask on every architecture (only the field order differs, and zero is zero).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Sets the disposition of `signal` to SIG_DFL with the raw rt_sigaction system call: the C
/// library's sigaction refuses the real-time signals it reserves (32 and 33 in glibc, 32 to 34
/// in musl), and a process that inherited them ignored (containerd's children do) would pass
/// that on across execve. Async-signal-safe: usable between fork and exec. Raw because no
/// crate offers it safely: nix goes through the C library's sigaction, rustix's is unstable
/// and unsafe.
pub fn reset_signal_disposition(signal: libc::c_int) -> Result<(), Errno> {
    let action = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: `action` is a valid kernel sigaction the kernel only reads; no old action is
    // wanted; the last argument is the size of the kernel's sigset_t (64 signals).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            &action as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        )
    };
    Errno::result(ret).map(drop)
}

/// Every signal back to SIG_DFL (SIGKILL and SIGSTOP cannot be changed and are skipped).
/// Async-signal-safe.
pub fn reset_all_signal_dispositions() -> Result<(), Errno> {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        reset_signal_disposition(signal)?;
    }
    Ok(())
}

/// close_range(first, ~0, CLOSE_RANGE_CLOEXEC): marks every fd from `first` up close-on-exec.
/// Raw because neither nix nor rustix wraps close_range.
pub fn close_range_cloexec(first: u32) -> Result<(), Errno> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags; no pointers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(ret).map(drop)
}

/// Sets FD_CLOEXEC on a raw fd number that may already be closed (EBADF then). Raw because the
/// safe wrappers take a borrowed fd, which a number that may be closed is not.
pub fn set_cloexec_raw(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: fcntl on a plain number; no memory is involved, a stale number gives EBADF.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Errno::result(ret).map(drop)
}

/// Bind-mounts what `source` refers to onto what `target` refers to, through the fds alone
/// (open_tree + move_mount): no path is looked up again, and no /proc is needed.
pub fn bind_fd_onto(source: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
    let flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_EMPTY_PATH;
    let tree = rustix::mount::open_tree(source, c"", flags).map_err(from_rustix)?;
    move_mount_onto(tree.as_fd(), target)
}

/// `MOUNT_ATTR_*` of mount_setattr(2) (`<linux/mount.h>`).
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_IDMAP: u64 = 0x10_0000;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x20_0000;

/// `AT_RECURSIVE` of mount_setattr (`<linux/fcntl.h>`).
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// `struct mount_attr` (`MOUNT_ATTR_SIZE_VER0`). mount_setattr stays a raw call: neither nix
/// nor rustix wraps it.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on the mount `fd` refers to (the root of a mount, or a detached tree from
/// open_tree), and with `recursive` on every mount below it. `userns` goes with
/// `MOUNT_ATTR_IDMAP`.
pub fn mount_setattr(
    fd: BorrowedFd<'_>,
    recursive: bool,
    set: u64,
    clear: u64,
    userns: Option<BorrowedFd<'_>>,
) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: `attr` is a valid mount_attr whose size we pass and which outlives the call (the
    // kernel only reads it); the path is an empty C string with AT_EMPTY_PATH on our own fd.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// open_tree(OPEN_TREE_CLONE) of `path`: a detached copy of the mount there (with `recursive`,
/// of every mount below it too), close-on-exec, to be changed with [`mount_setattr`] and
/// attached with [`move_mount_onto`].
pub fn open_tree_clone(path: &Path, recursive: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    rustix::mount::open_tree(rustix::fs::CWD, path, flags).map_err(from_rustix)
}

/// Attaches the detached mount `tree` (from [`open_tree_clone`]) onto what `target` refers to.
pub fn move_mount_onto(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
    let flags = MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH;
    rustix::mount::move_mount(tree, c"", target, c"", flags).map_err(from_rustix)
}
