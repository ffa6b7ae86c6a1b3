//! A process's terminal, created inside the container (`process.terminal: true`).
//!
//! The pty comes from the container's own devpts instance (`/dev/ptmx` there points to
//! `pts/ptmx`), so the slave's name and permissions are the container's. The slave becomes the
//! process's stdio and controlling terminal; the master travels to the daemon with "ready",
//! and the daemon copies between it and containerd's FIFOs.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::libc;
use nix::mount::{MsFlags, mount};
use nix::sys::stat::Mode;
use nix::unistd::dup2_stdin;

use super::error::InitError;

/// Creates the pty, installs its slave as stdio and controlling terminal, binds it over
/// `/dev/console` when asked (the init), and returns the master.
///
/// Runs after pivot_root, so every path here is the container's.
pub fn create_console(bind_dev_console: bool) -> Result<OwnedFd, InitError> {
    let master = open_master()?;
    let slave_path = unlock_and_name(&master)?;
    let slave = open(
        &slave_path,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| console_error(format!("open {}", slave_path.display()), errno))?;
    if bind_dev_console {
        bind_over_dev_console(&slave_path)?;
    }
    install_slave(&slave)?;
    Ok(master)
}

fn open_master() -> Result<OwnedFd, InitError> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: posix_openpt takes flags only and returns a new descriptor or -1.
    let fd = unsafe { libc::posix_openpt(flags) };
    if fd == -1 {
        return Err(console_error("open /dev/ptmx".into(), Errno::last()));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn unlock_and_name(master: &OwnedFd) -> Result<PathBuf, InitError> {
    // SAFETY: unlockpt on a pty master we own.
    if unsafe { libc::unlockpt(master.as_raw_fd()) } == -1 {
        return Err(console_error("unlockpt".into(), Errno::last()));
    }
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r writes a NUL-terminated name of at most `name.len()` bytes.
    let ret = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    if ret != 0 {
        return Err(console_error("ptsname".into(), Errno::from_raw(ret)));
    }
    // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    Ok(PathBuf::from(name.to_string_lossy().into_owned()))
}

fn bind_over_dev_console(slave: &Path) -> Result<(), InitError> {
    let console = Path::new("/dev/console");
    if !console.exists() {
        std::fs::File::create(console).map_err(|e| {
            console_error(
                "create /dev/console".into(),
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
    }
    mount(
        Some(slave),
        console,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|errno| console_error(format!("bind {} on /dev/console", slave.display()), errno))
}

/// The slave on 0, 1 and 2, as the controlling terminal of this session (the process became a
/// session leader when its stdio was installed).
fn install_slave(slave: &OwnedFd) -> Result<(), InitError> {
    dup2_stdin(slave).map_err(|errno| console_error("dup2 terminal to stdin".into(), errno))?;
    for target in [1, 2] {
        // SAFETY: dup2 onto stdout/stderr of this single-threaded process.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } == -1 {
            return Err(console_error(
                format!("dup2 terminal to fd {target}"),
                Errno::last(),
            ));
        }
    }
    let stdin = std::io::stdin();
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal) on a tty we hold.
    if unsafe { libc::ioctl(stdin.as_fd().as_raw_fd(), libc::TIOCSCTTY, 0) } == -1 {
        return Err(console_error(
            "make the terminal controlling (TIOCSCTTY)".into(),
            Errno::last(),
        ));
    }
    Ok(())
}

fn console_error(step: String, errno: Errno) -> InitError {
    InitError::Stdio { step, errno }
}
