//! A process's terminal, created inside the container (`process.terminal: true`).
//!
//! The pty comes from the container's own devpts instance (`/dev/ptmx` there points to
//! `pts/ptmx`), so the slave's name and permissions are the container's. The slave becomes the
//! process's stdio and controlling terminal; the master travels to the daemon with "ready",
//! and the daemon copies between it and containerd's FIFOs.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::libc;
use nix::sys::stat::{SFlag, fstat};
use nix::sys::statfs::{DEVPTS_SUPER_MAGIC, fstatfs};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout};
use rustix::pty::{self, OpenptFlags};

use super::error::InitError;
use super::in_root::RootDir;
use super::sys::{
    RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS, bind_fd_onto, from_rustix, openat2,
    set_controlling_terminal,
};

/// Creates the pty, installs its slave as stdio and controlling terminal, binds it over
/// `/dev/console` when asked (the init), and returns the master.
///
/// Runs after pivot_root, so every path here is the container's.
pub fn create_console(bind_dev_console: bool) -> Result<OwnedFd, InitError> {
    let master = open_master()?;
    let slave = open_slave(&master)?;
    if bind_dev_console {
        bind_over_dev_console(&slave)?;
    }
    install_slave(&slave)?;
    Ok(master)
}

fn open_master() -> Result<OwnedFd, InitError> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    pty::openpt(flags).map_err(|errno| console_error("open /dev/ptmx".into(), from_rustix(errno)))
}

/// The slave, straight from the master (TIOCGPTPEER), never by its path: the image controls
/// the container's /dev, and a path could be swapped for another file between the lookup and
/// the bind over /dev/console (CVE-2025-52565). Checked to be on a devpts.
fn open_slave(master: &OwnedFd) -> Result<OwnedFd, InitError> {
    pty::unlockpt(master).map_err(|errno| console_error("unlockpt".into(), from_rustix(errno)))?;
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let slave = pty::ioctl_tiocgptpeer(master, flags).map_err(|errno| {
        console_error(
            "open the terminal's slave (TIOCGPTPEER)".into(),
            from_rustix(errno),
        )
    })?;
    let on_devpts = fstatfs(&slave)
        .map_err(|errno| console_error("statfs the terminal's slave".into(), errno))?
        .filesystem_type()
        == DEVPTS_SUPER_MAGIC;
    if !on_devpts {
        return Err(console_error(
            "the terminal's slave is not on a devpts filesystem".into(),
            Errno::EXDEV,
        ));
    }
    Ok(slave)
}

/// Binds the slave over /dev/console (created as an empty file if missing), fd to fd. The
/// target must be a plain file or a device: a symlink there could point the bind at any file
/// of the container, such as one under /proc/sys (CVE-2025-52565).
fn bind_over_dev_console(slave: &OwnedFd) -> Result<(), InitError> {
    let console = Path::new("/dev/console");
    let error = |step: &str, errno| console_error(format!("{step} /dev/console"), errno);
    let root = RootDir::open(Path::new("/")).map_err(|errno| error("open / for", errno))?;
    let (dev, name) = root
        .create_parent(console)
        .map_err(|errno| error("open the directory of", errno))?;
    let name = Path::new(&name);
    let no_symlinks = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
    let create = libc::O_CREAT | libc::O_EXCL | libc::O_RDONLY;
    match openat2(dev.as_fd(), name, create, 0o600, no_symlinks) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(errno) => return Err(error("create", errno)),
    }
    let target =
        openat2(dev.as_fd(), name, libc::O_PATH, 0, no_symlinks).map_err(|errno| match errno {
            Errno::ELOOP => {
                console_error("/dev/console is a symlink: refusing to bind".into(), errno)
            }
            errno => error("open", errno),
        })?;
    let kind = SFlag::from_bits_truncate(
        fstat(&target)
            .map_err(|errno| error("stat", errno))?
            .st_mode,
    ) & SFlag::S_IFMT;
    if kind != SFlag::S_IFREG && kind != SFlag::S_IFCHR {
        return Err(console_error(
            "/dev/console is neither a file nor a device: refusing to bind".into(),
            Errno::EINVAL,
        ));
    }
    bind_fd_onto(slave.as_fd(), target.as_fd())
        .map_err(|errno| error("bind the terminal over", errno))
}

/// The slave on 0, 1 and 2, as the controlling terminal of this session (the process became a
/// session leader when its stdio was installed).
fn install_slave(slave: &OwnedFd) -> Result<(), InitError> {
    dup2_stdin(slave).map_err(|errno| console_error("dup2 terminal to stdin".into(), errno))?;
    dup2_stdout(slave).map_err(|errno| console_error("dup2 terminal to fd 1".into(), errno))?;
    dup2_stderr(slave).map_err(|errno| console_error("dup2 terminal to fd 2".into(), errno))?;
    // TIOCSCTTY with 0: never steal the terminal from another session.
    set_controlling_terminal(std::io::stdin().as_fd())
        .map_err(|errno| console_error("make the terminal controlling (TIOCSCTTY)".into(), errno))
}

fn console_error(step: String, errno: Errno) -> InitError {
    InitError::Stdio { step, errno }
}
