//! A copy of this binary that nothing can write to: what the daemon is exec'd from
//! (CVE-2019-5736 class).
//!
//! Every container process starts as a clone of the spawner, so until its execve its
//! `/proc/self/exe` is this binary. A container that gets hold of it (an entrypoint of
//! `#!/proc/self/exe`, or `/proc/<pid>/exe` of a process still being set up) could write to
//! the host's shim binary and so run code as root on the host. The daemon is therefore never
//! exec'd from the file on disk but from:
//! - a private, detached, read-only overlayfs whose only layers are the binary's directory and
//!   an empty one: no upper layer means writes fail with EROFS whatever the caller's
//!   privileges, there is no mount to undo (it is in no mount namespace), and the page cache
//!   is the original file's, so it costs no memory (runc 1.2's approach);
//! - where overlayfs or the new mount API is missing, a sealed memfd copy (write, grow, shrink
//!   and seal sealed): as safe, but one copy of the binary per shim.
//!
//! The spawner also makes itself non-dumpable (see `spawn::spawner`), so a container process
//! cannot open `/proc/<pid>/exe` or the memory of a process that is still this binary.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, SealFlag, fcntl, openat};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::stat::Mode;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

use crate::container::sys::from_rustix;

/// How the executable was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    Overlay,
    Memfd,
}

/// A sealed copy of `exe` (close-on-exec), and how it was made. Exec it through
/// `/proc/self/fd/<fd>`: the path is resolved before execve closes the fd.
pub fn seal(exe: &Path) -> Result<(OwnedFd, Sealing), String> {
    match overlay_view(exe) {
        Ok(fd) => Ok((fd, Sealing::Overlay)),
        Err(overlay_error) => memfd_copy(exe).map(|fd| (fd, Sealing::Memfd)).map_err(|e| {
            format!(
                "seal {}: overlayfs view failed ({overlay_error}), memfd copy failed ({e})",
                exe.display()
            )
        }),
    }
}

/// `exe` opened (O_PATH) through a detached, read-only, upper-less overlayfs of its directory.
pub fn overlay_view(exe: &Path) -> Result<OwnedFd, String> {
    let (dir, name) = match (exe.parent(), exe.file_name()) {
        (Some(dir), Some(name)) => (dir, name),
        _ => return Err(format!("{} has no directory", exe.display())),
    };
    // overlayfs needs two lower layers to run without an upper one. The empty one is removed
    // again right after the superblock exists (which holds on to it): nothing is left behind.
    let empty = empty_dir()?;
    let mounted = mount_overlay(dir, &empty);
    let _ = std::fs::remove_dir(&empty);
    let mount = mounted?;
    if name.as_bytes().contains(&0) {
        return Err("NUL in the binary's name".to_string());
    }
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(&mount, name, flags, Mode::empty())
        .map_err(|errno| format!("open the binary on the overlay: {errno}"))
}

fn empty_dir() -> Result<PathBuf, String> {
    let path = std::env::temp_dir().join(format!(".sibling-seal-{}", std::process::id()));
    std::fs::create_dir(&path)
        .map(|()| path.clone())
        .map_err(|e| format!("create {}: {e}", path.display()))
}

/// The overlay as a detached mount (fsopen, fsconfig, fsmount): no namespace ever sees it.
fn mount_overlay(dir: &Path, empty: &Path) -> Result<OwnedFd, String> {
    let context = rustix::mount::fsopen(c"overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|errno| format!("fsopen overlay: {}", from_rustix(errno)))?;
    // The binary's directory on top, so a file of the same name in the other layer cannot
    // hide it.
    let lower = format!("{}:{}", escape_layer(dir), escape_layer(empty));
    set_string(&context, c"lowerdir", &lower)?;
    // Only to keep overlayfs from logging about inode numbers across filesystems.
    let _ = set_string(&context, c"xino", "off");
    rustix::mount::fsconfig_create(&context)
        .map_err(|errno| format!("create overlay (lowerdir={lower}): {}", from_rustix(errno)))?;
    let attrs = MountAttrFlags::MOUNT_ATTR_RDONLY
        | MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV;
    rustix::mount::fsmount(&context, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|errno| format!("fsmount overlay: {}", from_rustix(errno)))
}

fn set_string(context: &OwnedFd, key: &std::ffi::CStr, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err("NUL in an overlay option".to_string());
    }
    rustix::mount::fsconfig_set_string(context, key, value).map_err(|errno| {
        let key = key.to_string_lossy();
        format!("fsconfig {key}={value}: {}", from_rustix(errno))
    })
}

/// A path as one overlayfs layer: `\` and `:` escaped.
fn escape_layer(path: &Path) -> String {
    path.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
}

/// A copy of `exe` in a memfd, sealed against every change.
pub fn memfd_copy(exe: &Path) -> Result<OwnedFd, String> {
    let fd = memfd_create(
        c"containerd-shim-sibling-v2",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|errno| format!("memfd_create: {errno}"))?;
    let mut copy = File::from(fd);
    let mut source = File::open(exe).map_err(|e| format!("open {}: {e}", exe.display()))?;
    std::io::copy(&mut source, &mut copy).map_err(|e| format!("copy into the memfd: {e}"))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(&copy, FcntlArg::F_ADD_SEALS(seals))
        .map_err(|errno| format!("seal the memfd: {errno}"))?;
    Ok(copy.into())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use nix::libc;

    use super::*;

    /// What an attacker does with /proc/<pid>/exe: reopen the magic link for writing.
    fn reopen_for_write(fd: &OwnedFd) -> std::io::Result<File> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }

    fn sample_binary(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sealed-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("tool");
        std::fs::write(&exe, b"\x7fELF not really").unwrap();
        exe
    }

    #[test]
    fn the_overlay_view_cannot_be_written_even_by_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root for fsmount");
            return;
        }
        let exe = sample_binary("overlay");
        let fd = overlay_view(&exe).expect("overlay view");
        let err = reopen_for_write(&fd).expect_err("written through the overlay");
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        let read = std::fs::read(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(read, b"\x7fELF not really");
        assert!(
            !std::env::temp_dir()
                .join(format!(".sibling-seal-{}", std::process::id()))
                .exists(),
            "the empty layer is removed at once"
        );
        std::fs::remove_dir_all(exe.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_memfd_copy_is_sealed() {
        let exe = sample_binary("memfd");
        let fd = memfd_copy(&exe).expect("memfd copy");
        // A sealed memfd opens for writing, but no write goes through.
        let mut file = reopen_for_write(&fd).expect("reopen");
        let err = std::io::Write::write_all(&mut file, b"x").expect_err("written to the memfd");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        let read = std::fs::read(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(read, b"\x7fELF not really");
        std::fs::remove_dir_all(exe.parent().unwrap()).unwrap();
    }

    #[test]
    fn layer_paths_are_escaped() {
        assert_eq!(escape_layer(Path::new("/a:b\\c")), "/a\\:b\\\\c");
    }
}
