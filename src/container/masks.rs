//! `linux.readonlyPaths` and `linux.maskedPaths`, applied after pivot_root (the paths are
//! container paths, mostly in the container's /proc and /sys). A path that does not exist is
//! skipped: the spec's defaults name files not every kernel has.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::{SFlag, fstat, major, makedev, minor};
use nix::sys::statfs::{PROC_SUPER_MAGIC, statfs};
use nix::sys::statvfs::fstatvfs;

use super::error::InitError;
use super::in_root::RootDir;
use super::mounts::{mount_on, resolve_error};
use super::sys::fd_path;

/// Bind-mounts each path onto itself and remounts it read-only, keeping the nosuid, nodev and
/// noexec it already had (a remount may not clear them), as runc does.
pub fn make_paths_readonly(root: &RootDir, paths: &[String]) -> Result<(), InitError> {
    for path in paths {
        make_path_readonly(root, Path::new(path))?;
    }
    Ok(())
}

fn make_path_readonly(root: &RootDir, path: &Path) -> Result<(), InitError> {
    let Some(target) = open_existing(root, path)? else {
        return Ok(());
    };
    let error = |action: &str, errno| mask_error(root, action, path, errno);
    let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount_on(&target, Some(&fd_path(&target)), None, bind, "")
        .map_err(|errno| error("bind onto itself", errno))?;
    // The remount must name the new mount, not the directory the first fd still refers to.
    let top = root
        .open_path(path)
        .map_err(|errno| resolve_error(root, "open", path, errno))?;
    let stat = fstatvfs(&top).map_err(|errno| error("statfs", errno))?;
    let kept = MsFlags::from_bits_truncate(stat.flags().bits())
        & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
    mount_on(&top, None, None, remount | kept, "")
        .map_err(|errno| error("remount read-only", errno))
}

/// Hides each path: a file under the container's /dev/null, a directory under an empty
/// read-only tmpfs.
pub fn mask_paths(root: &RootDir, paths: &[String]) -> Result<(), InitError> {
    let mut dev_null = None;
    for path in paths {
        let path = Path::new(path);
        let Some(target) = open_existing(root, path)? else {
            continue;
        };
        let stat = fstat(&target).map_err(|errno| mask_error(root, "stat", path, errno))?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            mount_on(
                &target,
                Some(Path::new("tmpfs")),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                "",
            )
            .map_err(|errno| mask_error(root, "mask with a read-only tmpfs", path, errno))?;
            continue;
        }
        if dev_null.is_none() {
            dev_null = Some(open_dev_null(root)?);
        }
        if let Some(null) = &dev_null {
            mount_on(&target, Some(&fd_path(null)), None, MsFlags::MS_BIND, "")
                .map_err(|errno| mask_error(root, "mask with /dev/null", path, errno))?;
        }
    }
    Ok(())
}

/// The container's /dev/null, checked through the opened fd to be the null device: the image
/// controls /dev when it is not a fresh tmpfs, and a /dev/null that is really, say, a symlink
/// to /proc/sys/kernel/core_pattern would turn "mask" into "expose" (CVE-2025-31133).
fn open_dev_null(root: &RootDir) -> Result<OwnedFd, InitError> {
    let path = Path::new("/dev/null");
    let fd = root
        .open_path(path)
        .map_err(|errno| resolve_error(root, "open", path, errno))?;
    let stat = fstat(&fd).map_err(|errno| mask_error(root, "stat", path, errno))?;
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFCHR || stat.st_rdev != makedev(1, 3) {
        let found = format!(
            "file type {:o}, device {}:{}",
            kind.bits(),
            major(stat.st_rdev),
            minor(stat.st_rdev)
        );
        return Err(InitError::MaskDevNull { found });
    }
    Ok(fd)
}

/// The path to mask or make read-only, `None` if it does not exist. Checks that the
/// /proc/self/fd paths the mounts go through are a real procfs: after pivot_root, /proc is the
/// container's, and without a proc mount it would be whatever directory the image ships.
fn open_existing(root: &RootDir, path: &Path) -> Result<Option<OwnedFd>, InitError> {
    let fd = match root.open_path(path) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(errno) => return Err(resolve_error(root, "open", path, errno)),
    };
    let fd_dir = Path::new("/proc/self/fd");
    match statfs(fd_dir) {
        Ok(stat) if stat.filesystem_type() == PROC_SUPER_MAGIC => Ok(Some(fd)),
        Ok(_) => Err(mask_error(
            root,
            "mount through /proc/self/fd",
            path,
            Errno::EXDEV,
        )),
        Err(errno) => Err(mask_error(root, "mount through /proc/self/fd", path, errno)),
    }
}

fn mask_error(root: &RootDir, action: &str, path: &Path, errno: Errno) -> InitError {
    InitError::Mount {
        action: action.to_owned(),
        destination: path.to_owned(),
        rootfs: root.path().to_owned(),
        errno,
    }
}
