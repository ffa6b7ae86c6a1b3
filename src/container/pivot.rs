//! pivot_root into the rootfs, runc's way: `pivot_root(".", ".")` stacks the old root on top of
//! the new one, where it is detached; no directory for the old root is needed in the image.

use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, fchdir, pivot_root};

use super::error::InitError;

/// Makes `rootfs` (a mount point: bound onto itself earlier) the root, and detaches the old one.
pub fn pivot_into(rootfs: &Path) -> Result<(), InitError> {
    let error = |step, errno| InitError::PivotRoot {
        step,
        rootfs: rootfs.to_owned(),
        errno,
    };
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let old_root = open("/", flags, Mode::empty()).map_err(|e| error("open old root /", e))?;
    let new_root = open(rootfs, flags, Mode::empty()).map_err(|e| error("open new root", e))?;
    fchdir(&new_root).map_err(|e| error("fchdir to the new root", e))?;
    pivot_root(".", ".").map_err(|e| error("pivot_root(\".\", \".\")", e))?;
    // The cwd is now the old root (stacked over the new one); fchdir makes sure of it rather
    // than rely on what the kernel leaves as cwd.
    fchdir(&old_root).map_err(|e| error("fchdir to the old root", e))?;
    // Slave, so the unmount below cannot propagate to the host's mounts.
    let slave = MsFlags::MS_SLAVE | MsFlags::MS_REC;
    mount(None::<&str>, ".", None::<&str>, slave, None::<&str>)
        .map_err(|e| error("make the old root rslave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| error("detach the old root", e))?;
    chdir("/").map_err(|e: Errno| error("chdir to the new /", e))
}
