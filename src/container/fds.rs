//! The init's file descriptors: stdio installed on 0, 1 and 2 at the start, re-pointed at the
//! container's /dev/null after pivot_root, and every other fd made close-on-exec just before
//! execve.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, SFlag, fstat, makedev};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, getpid, getsid, setsid};

use super::error::InitError;
use super::sys::{close_range_cloexec, set_cloexec_raw, set_controlling_terminal};

const STDIO_NAMES: [&str; 3] = ["stdin", "stdout", "stderr"];

/// Moves the received stdio onto 0, 1 and 2 and closes the originals. The init becomes a
/// session leader (as runc's init) and, for `terminal: true`, takes its stdin, the pty slave,
/// as controlling terminal.
pub fn install_stdio(stdio: [OwnedFd; 3], terminal: bool) -> Result<(), InitError> {
    // A received fd below 3 would be overwritten by the dup2 of an earlier stream.
    for (fd, name) in stdio.iter().zip(STDIO_NAMES) {
        if fd.as_raw_fd() < 3 {
            let step = format!(
                "received {name} as fd {}, expected 3 or above",
                fd.as_raw_fd()
            );
            return Err(InitError::Stdio {
                step,
                errno: Errno::EBADF,
            });
        }
    }
    let [stdin, stdout, stderr] = stdio;
    let dup = |result: nix::Result<()>, name: &str| {
        result.map_err(|errno| InitError::Stdio {
            step: format!("dup2 {name}"),
            errno,
        })
    };
    dup(dup2_stdin(&stdin), "stdin")?;
    dup(dup2_stdout(&stdout), "stdout")?;
    dup(dup2_stderr(&stderr), "stderr")?;
    drop((stdin, stdout, stderr));
    become_session_leader()?;
    if terminal {
        set_controlling_terminal(io::stdin().as_fd()).map_err(|errno| InitError::Stdio {
            step: "make the terminal on stdin controlling (TIOCSCTTY)".into(),
            errno,
        })?;
    }
    Ok(())
}

fn become_session_leader() -> Result<(), InitError> {
    if getsid(None).is_ok_and(|sid| sid == getpid()) {
        return Ok(());
    }
    setsid().map(drop).map_err(|errno| InitError::Stdio {
        step: "setsid".into(),
        errno,
    })
}

/// Stdio that is the host's /dev/null is re-pointed at the container's, so that
/// /proc/self/fd/0 does not lead to a host path (runc's reOpenDevNull). Call after pivot_root.
pub fn reopen_dev_null() -> Result<(), InitError> {
    let error = |step: &str, errno| InitError::Stdio {
        step: step.to_owned(),
        errno,
    };
    let flags = OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let null = open("/dev/null", flags, Mode::empty())
        .map_err(|errno| error("open the container's /dev/null", errno))?;
    if !is_null_device(null.as_fd()) {
        return Ok(()); // not ours to trust; stdio stays as it is
    }
    let (stdin, stdout, stderr) = (io::stdin(), io::stdout(), io::stderr());
    let streams = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    for (index, stream) in streams.into_iter().enumerate() {
        if !is_null_device(stream) {
            continue;
        }
        let result = match index {
            0 => dup2_stdin(&null),
            1 => dup2_stdout(&null),
            _ => dup2_stderr(&null),
        };
        let step = format!("re-open {} on /dev/null", STDIO_NAMES[index]);
        result.map_err(|errno| error(&step, errno))?;
    }
    Ok(())
}

fn is_null_device(fd: BorrowedFd<'_>) -> bool {
    fstat(fd).is_ok_and(|stat| {
        SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
            && stat.st_rdev == makedev(1, 3)
    })
}

/// Marks every fd from 3 up close-on-exec. The CVE-2024-21626 fix (no runtime fd, such as a
/// handle on a host directory, may survive into the container), and how the daemon learns that
/// execve succeeded: the sync socket's end closes with it.
pub fn mark_inherited_fds_cloexec() -> Result<(), Errno> {
    match close_range_cloexec(3) {
        // close_range with CLOSE_RANGE_CLOEXEC needs Linux 5.11.
        Err(Errno::ENOSYS | Errno::EINVAL) => mark_cloexec_by_listing(),
        other => other,
    }
}

fn mark_cloexec_by_listing() -> Result<(), Errno> {
    let to_errno = |e: io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32));
    // Collected first: the listing's own fd is among the entries and is gone afterwards.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(to_errno)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|fd| *fd >= 3) {
        match set_cloexec_raw(fd) {
            Ok(()) | Err(Errno::EBADF) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}
