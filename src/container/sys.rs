//! Thin wrappers over the system calls nix does not cover (openat2, capget/capset, the
//! capability prctls, close_range, setdomainname, TIOCSCTTY, raw sigaction, open_tree,
//! move_mount, mount_setattr).
//!
//! Every `unsafe` block of the container setup lives here; callers see
//! plain `Result<_, Errno>` functions.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc;

/// `RESOLVE_*` flags of openat2(2) (`<linux/openat2.h>`).
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_NO_XDEV: u64 = 0x01;

/// `struct open_how` (libc's is `#[non_exhaustive]`, so it cannot be built here).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2), always with `O_CLOEXEC`. `mode` is only passed along with `O_CREAT` (the kernel
/// rejects a mode without it).
pub fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    mode: u32,
    resolve: u64,
) -> Result<OwnedFd, Errno> {
    let c_path = path_to_cstring(path)?;
    let flags = flags | libc::O_CLOEXEC;
    let how = OpenHow {
        flags: flags as u64,
        mode: if flags & libc::O_CREAT != 0 {
            u64::from(mode)
        } else {
            0
        },
        resolve,
    };
    // openat2 returns EAGAIN when a concurrent rename may have fooled a ".." lookup under
    // RESOLVE_IN_ROOT/RESOLVE_BENEATH; retrying a few times is what the man page advises.
    let mut attempts = 0;
    loop {
        // SAFETY: `c_path` is a NUL-terminated string and `how` a valid open_how whose size we
        // pass; both outlive the call. The kernel only reads them.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                c_path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if ret >= 0 {
            // SAFETY: on success openat2 returns a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) });
        }
        let errno = Errno::last();
        attempts += 1;
        if errno != Errno::EAGAIN || attempts >= 16 {
            return Err(errno);
        }
    }
}

/// The path through which mount(2) and friends reach exactly the file an fd refers to.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn path_to_cstring(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets split in two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The three capability sets of a thread, as bit masks (bit n = capability n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// capget(2) for the calling thread.
pub fn capget() -> Result<CapSets, Errno> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array (the v3 layout) are valid for writes.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    Errno::result(ret)?;
    let join = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// capset(2) for the calling thread.
pub fn capset(sets: &CapSets) -> Result<(), Errno> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |set: u64, index: u32| (set >> (32 * index)) as u32;
    let data: [CapData; 2] = std::array::from_fn(|i| CapData {
        effective: word(sets.effective, i as u32),
        permitted: word(sets.permitted, i as u32),
        inheritable: word(sets.inheritable, i as u32),
    });
    // SAFETY: header and the two-element v3 data array are valid; the kernel only reads data.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    Errno::result(ret).map(drop)
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<i32, Errno> {
    // SAFETY: the capability prctls used here take integer arguments only, no pointers.
    let ret = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    Errno::result(ret)
}

/// Whether `cap` is in the bounding set; EINVAL when the kernel does not know `cap`.
pub fn capbset_read(cap: u32) -> Result<bool, Errno> {
    prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0).map(|v| v == 1)
}

/// Drops `cap` from the bounding set (needs CAP_SETPCAP in the effective set).
pub fn capbset_drop(cap: u32) -> Result<(), Errno> {
    prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0).map(drop)
}

/// Empties the ambient set.
pub fn ambient_clear_all() -> Result<(), Errno> {
    let clear = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
    prctl(libc::PR_CAP_AMBIENT, clear, 0).map(drop)
}

/// Raises `cap` in the ambient set (it must be permitted and inheritable already).
pub fn ambient_raise(cap: u32) -> Result<(), Errno> {
    let raise = libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong;
    prctl(libc::PR_CAP_AMBIENT, raise, libc::c_ulong::from(cap)).map(drop)
}

/// setdomainname(2) (nix only wraps sethostname).
pub fn setdomainname(name: &str) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `name`'s bytes, which the kernel only reads.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(ret).map(drop)
}

/// Makes the terminal on `fd` the controlling terminal of this session (TIOCSCTTY).
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal from another session).
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0 as libc::c_int) };
    Errno::result(ret).map(drop)
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
/// library's sigaction refuses the real-time signals it reserves (32 and 33 in glibc), and a
/// process that inherited them ignored (containerd's children do) would pass that on across
/// execve. Async-signal-safe: usable between fork and exec.
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

/// Sets FD_CLOEXEC on a raw fd number that may already be closed (EBADF then).
pub fn set_cloexec_raw(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: fcntl on a plain number; no memory is involved, a stale number gives EBADF.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Errno::result(ret).map(drop)
}

/// `<linux/mount.h>` flags of open_tree and move_mount.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// Bind-mounts what `source` refers to onto what `target` refers to, through the fds alone
/// (open_tree + move_mount): no path is looked up again, and no /proc is needed.
pub fn bind_fd_onto(source: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
    let flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: open_tree on a descriptor we hold, with an empty C string; the result is checked.
    let tree =
        unsafe { libc::syscall(libc::SYS_open_tree, source.as_raw_fd(), c"".as_ptr(), flags) };
    if tree < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a fresh descriptor that only we own.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    // SAFETY: move_mount between two descriptors we hold, with empty C strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// `MOUNT_ATTR_*` of mount_setattr(2) (`<linux/mount.h>`).
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_IDMAP: u64 = 0x10_0000;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x20_0000;

/// `struct mount_attr` (`MOUNT_ATTR_SIZE_VER0`).
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
    let c_path = path_to_cstring(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call; the result is checked.
    let tree =
        unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c_path.as_ptr(), flags) };
    if tree < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a fresh descriptor that only we own.
    Ok(unsafe { OwnedFd::from_raw_fd(tree as RawFd) })
}

/// Attaches the detached mount `tree` (from [`open_tree_clone`]) onto what `target` refers to.
pub fn move_mount_onto(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: move_mount between two descriptors we hold, with empty C strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(ret).map(drop)
}
