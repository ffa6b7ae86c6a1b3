//! Paths inside the container's root filesystem, resolved by the kernel so that no symlink or
//! `..` can lead out of it.
//!
//! The rootfs is controlled by the image: a destination like `/proc` may be a symlink to
//! `/host/etc` in a hostile image, and a naive `mount(..., rootfs + dest)` follows it on the host
//! (CVE-2019-19921, CVE-2023-27561 class). So every destination is opened with
//! `openat2(RESOLVE_IN_ROOT)`, which resolves symlinks and `..` as if the rootfs were `/`; missing
//! components are created one at a time below an fd with `RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS`;
//! and the mount goes onto `/proc/self/fd/N` of the resulting `O_PATH` fd, the exact inode
//! resolved, never onto a path string the kernel would walk again.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, readlink};
use nix::libc;
use nix::sys::stat::{Mode, mkdirat};

use super::sys::{
    RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, fd_path, openat2,
};

/// Mode of directories created for mount points (runc uses the same).
const DIR_MODE: u32 = 0o755;
/// Mode of empty files created as bind mount targets.
const FILE_MODE: u32 = 0o644;

/// An open root directory (the rootfs before pivot_root, `/` after it).
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    /// As given, for messages.
    path: PathBuf,
    /// As the kernel names it (symlinks resolved), to map fds back to container paths.
    canonical: PathBuf,
}

impl RootDir {
    /// Opens `path` as the root. It must already be the final mount (open it after binding the
    /// rootfs onto itself: an fd opened before would keep pointing at the covered directory).
    pub fn open(path: &Path) -> Result<Self, Errno> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = open(path, flags, Mode::empty())?;
        let canonical = PathBuf::from(readlink(&fd_path(&fd))?);
        Ok(Self {
            fd,
            path: path.to_owned(),
            canonical,
        })
    }

    /// The root as given to [`RootDir::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `dest` (a container path) with `flags`, resolved inside the root.
    pub fn open_in_root(&self, dest: &Path, flags: libc::c_int) -> Result<OwnedFd, Errno> {
        let relative = relative_in_root(dest);
        let resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
        openat2(self.fd.as_fd(), &relative, flags, 0, resolve)
    }

    /// An `O_PATH` fd of `dest`, resolved inside the root; it must exist.
    pub fn open_path(&self, dest: &Path) -> Result<OwnedFd, Errno> {
        self.open_in_root(dest, libc::O_PATH)
    }

    /// An `O_PATH` fd of directory `dest`, creating it and its missing parents (mode 0755).
    pub fn create_dir_all(&self, dest: &Path) -> Result<OwnedFd, Errno> {
        let dir_flags = libc::O_PATH | libc::O_DIRECTORY;
        match self.open_in_root(dest, dir_flags) {
            Err(Errno::ENOENT) => {}
            found => return found,
        }
        let relative = relative_in_root(dest);
        let components: Vec<_> = relative.iter().collect();
        // The longest prefix that exists, resolved like any path inside the root (it may go
        // through in-root symlinks); everything after it is created below its fd.
        let mut dir = self.open_in_root(Path::new("."), dir_flags)?;
        let mut existing = 0;
        for end in 1..components.len() {
            let prefix: PathBuf = components[..end].iter().collect();
            match self.open_in_root(&prefix, dir_flags) {
                Ok(fd) => (dir, existing) = (fd, end),
                Err(Errno::ENOENT) => break,
                Err(errno) => return Err(errno),
            }
        }
        for name in &components[existing..] {
            dir = create_child_dir(&dir, Path::new(name))?;
        }
        Ok(dir)
    }

    /// An `O_PATH` fd of `dest`; when it does not exist, creates an empty file there (and its
    /// parent directories): the target of a file bind mount or a bind-mounted device.
    pub fn create_file(&self, dest: &Path) -> Result<OwnedFd, Errno> {
        match self.open_path(dest) {
            Err(Errno::ENOENT) => {}
            found => return found,
        }
        let (parent, name) = self.create_parent(dest)?;
        let name = Path::new(&name);
        let create = libc::O_CREAT | libc::O_EXCL | libc::O_RDONLY;
        match openat2(parent.as_fd(), name, create, FILE_MODE, beneath()) {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(errno),
        }
        openat2(parent.as_fd(), name, libc::O_PATH, 0, beneath())
    }

    /// The parent directory of `dest` (created if missing) and the last component's name, for
    /// the `*at` calls that create the last component themselves (mknodat, symlinkat).
    pub fn create_parent(&self, dest: &Path) -> Result<(OwnedFd, OsString), Errno> {
        let relative = relative_in_root(dest);
        let name = relative.file_name().ok_or(Errno::EINVAL)?.to_owned();
        let parent = relative.parent().unwrap_or(Path::new("."));
        Ok((self.create_dir_all(parent)?, name))
    }

    /// The container path an fd (opened through this root) refers to, from the kernel's own
    /// record of it; `None` if it is not below the root any more.
    pub fn container_path_of(&self, fd: &OwnedFd) -> Option<PathBuf> {
        let host = PathBuf::from(readlink(&fd_path(fd)).ok()?);
        let inside = host.strip_prefix(&self.canonical).ok()?;
        Some(Path::new("/").join(inside))
    }
}

fn beneath() -> u64 {
    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
}

/// Creates directory `name` below `dir` (a race with another creator is fine) and opens it,
/// refusing a symlink planted there in the meantime.
fn create_child_dir(dir: &OwnedFd, name: &Path) -> Result<OwnedFd, Errno> {
    match mkdirat(dir, name, Mode::from_bits_truncate(DIR_MODE)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(errno) => return Err(errno),
    }
    openat2(
        dir.as_fd(),
        name,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        beneath(),
    )
}

/// `dest` lexically cleaned and made absolute: `.` dropped, `..` applied (never above `/`).
/// Resolving `..` lexically is safe here because the kernel keeps every lookup inside the root
/// anyway; it only decides which in-root path is meant, as runc's `filepath.Clean` does.
pub fn clean_path(dest: &Path) -> PathBuf {
    let mut clean = PathBuf::from("/");
    for component in dest.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::ParentDir => {
                clean.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    clean
}

/// `dest` as a path relative to the root (`.` for the root itself), for openat2.
pub fn relative_in_root(dest: &Path) -> PathBuf {
    let clean = clean_path(dest);
    match clean.strip_prefix("/") {
        Ok(relative) if !relative.as_os_str().is_empty() => relative.to_owned(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_stays_inside_the_root() {
        assert_eq!(clean_path(Path::new("/proc")), Path::new("/proc"));
        assert_eq!(clean_path(Path::new("dev//shm/")), Path::new("/dev/shm"));
        assert_eq!(clean_path(Path::new("/a/./b/../c")), Path::new("/a/c"));
        assert_eq!(clean_path(Path::new("/../../etc")), Path::new("/etc"));
        assert_eq!(clean_path(Path::new("/")), Path::new("/"));
    }

    #[test]
    fn relative_in_root_is_never_empty_or_absolute() {
        assert_eq!(relative_in_root(Path::new("/")), Path::new("."));
        assert_eq!(relative_in_root(Path::new("/..")), Path::new("."));
        assert_eq!(
            relative_in_root(Path::new("/sys/fs/cgroup")),
            Path::new("sys/fs/cgroup")
        );
    }

    fn temp_root(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("in-root-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn created_dirs_follow_symlinks_only_inside_the_root() {
        let base = temp_root("symlink");
        let root = base.join("rootfs");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // An absolute symlink that would escape if followed on the host; RESOLVE_IN_ROOT reads
        // its target relative to the root, where the same path exists.
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        let in_root_target = root.join(outside.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&in_root_target).unwrap();
        let dir = RootDir::open(&root).unwrap();
        let made = dir.create_dir_all(Path::new("/escape/sub")).unwrap();
        assert_eq!(dir.container_path_of(&made).unwrap(), outside.join("sub"));
        assert!(in_root_target.join("sub").is_dir());
        assert!(!outside.join("sub").exists());
        // A dangling in-root symlink is not followed to create its target.
        std::os::unix::fs::symlink("/nowhere", root.join("dangling")).unwrap();
        assert_eq!(
            dir.create_dir_all(Path::new("/dangling/sub")).unwrap_err(),
            Errno::ELOOP
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn dotdot_cannot_leave_the_root() {
        let base = temp_root("dotdot");
        let root = base.join("rootfs");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("a/up")).unwrap();
        let dir = RootDir::open(&root).unwrap();
        let fd = dir.create_dir_all(Path::new("/a/up/target")).unwrap();
        assert_eq!(dir.container_path_of(&fd).unwrap(), Path::new("/target"));
        assert!(root.join("target").is_dir());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn files_are_created_with_their_parents() {
        let base = temp_root("file");
        let dir = RootDir::open(&base).unwrap();
        let fd = dir.create_file(Path::new("/etc/deep/hosts")).unwrap();
        assert_eq!(
            dir.container_path_of(&fd).unwrap(),
            Path::new("/etc/deep/hosts")
        );
        assert!(base.join("etc/deep/hosts").is_file());
        // Existing files are opened, not recreated.
        assert!(dir.create_file(Path::new("/etc/deep/hosts")).is_ok());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_file_in_the_middle_of_a_path_is_an_error() {
        let base = temp_root("notdir");
        std::fs::write(base.join("file"), b"").unwrap();
        let dir = RootDir::open(&base).unwrap();
        assert_eq!(
            dir.create_dir_all(Path::new("/file/sub")).unwrap_err(),
            Errno::ENOTDIR
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
