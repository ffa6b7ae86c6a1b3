//! Device nodes and the `/dev` symlinks, made in the container's `/dev` before pivot_root (only
//! when `/dev` is not a bind of a host directory, which brings its own nodes).

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag, makedev, mknodat, umask};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, symlinkat, unlinkat};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::error::InitError;
use super::in_root::{RootDir, clean_path};
use super::mounts::mount_on;

/// The nodes every container gets (the OCI runtime spec's default devices), all `0666`.
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/tty", 5, 0),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
];

/// A node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Clean container path.
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The default devices plus `linux.devices`; a spec entry replaces a default at the same path.
pub fn plan_devices(spec_devices: &[LinuxDevice]) -> Result<Vec<DeviceNode>, InitError> {
    let from_spec = spec_devices
        .iter()
        .map(device_from_spec)
        .collect::<Result<Vec<_>, _>>()?;
    let defaults = DEFAULT_DEVICES
        .iter()
        .map(|&(path, major, minor)| DeviceNode {
            path: PathBuf::from(path),
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        });
    let mut nodes: Vec<DeviceNode> = defaults
        .filter(|d| !from_spec.iter().any(|s| s.path == d.path))
        .collect();
    nodes.extend(from_spec);
    Ok(nodes)
}

fn device_from_spec(device: &LinuxDevice) -> Result<DeviceNode, InitError> {
    let path = clean_path(device.path());
    let invalid = |why: &str| InitError::InvalidSpec(format!("device {}: {why}", path.display()));
    let kind = match device.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => return Err(invalid("type \"a\" is only valid in cgroup rules")),
    };
    let number = |n: i64| u64::try_from(n).map_err(|_| invalid("negative major or minor"));
    Ok(DeviceNode {
        major: number(device.major())?,
        minor: number(device.minor())?,
        // fileMode may carry the type bits too (0o20666); only the permissions are ours.
        mode: device.file_mode().unwrap_or(0o666) & 0o7777,
        uid: device.uid().unwrap_or(0),
        gid: device.gid().unwrap_or(0),
        kind,
        path,
    })
}

/// Creates every node, with exactly its spec mode (umask 0 meanwhile).
pub fn create_devices(root: &RootDir, devices: &[DeviceNode]) -> Result<(), InitError> {
    let old_umask = umask(Mode::empty());
    let result = devices
        .iter()
        .try_for_each(|device| create_device(root, device));
    umask(old_umask);
    result
}

fn create_device(root: &RootDir, device: &DeviceNode) -> Result<(), InitError> {
    let error = |action, errno| device_error(root, action, &device.path, errno);
    let (parent, name) = root
        .create_parent(&device.path)
        .map_err(|errno| error("create parent directory of", errno))?;
    let name = Path::new(&name);
    let mode = Mode::from_bits_truncate(device.mode);
    let dev = makedev(device.major, device.minor);
    match mknodat(&parent, name, device.kind, mode, dev) {
        Ok(()) => {}
        // Already there (an image's own node): left as it is, as runc does.
        Err(Errno::EEXIST) => return Ok(()),
        // No CAP_MKNOD (or a nodev mount): the host's node, bound over an empty file.
        Err(Errno::EPERM) => return bind_host_device(root, device),
        Err(errno) => return Err(error("mknod", errno)),
    }
    let owner = (
        Some(Uid::from_raw(device.uid)),
        Some(Gid::from_raw(device.gid)),
    );
    fchownat(
        &parent,
        name,
        owner.0,
        owner.1,
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|errno| error("chown", errno))
}

fn bind_host_device(root: &RootDir, device: &DeviceNode) -> Result<(), InitError> {
    let target = root
        .create_file(&device.path)
        .map_err(|errno| device_error(root, "create bind target", &device.path, errno))?;
    mount_on(&target, Some(&device.path), None, MsFlags::MS_BIND, "").map_err(|errno| {
        InitError::Mount {
            action: format!("bind host device {}", device.path.display()),
            destination: device.path.clone(),
            rootfs: root.path().to_owned(),
            errno,
        }
    })
}

/// `/dev/fd`, `/dev/stdin`, `/dev/stdout`, `/dev/stderr` and (if the kernel has it)
/// `/dev/core`, pointing into the container's /proc.
pub fn create_dev_symlinks(root: &RootDir) -> Result<(), InitError> {
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    // CONFIG_PROC_KCORE may be off: no dangling /dev/core then (this is still the host's /proc).
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    let dev = open_dev(root)?;
    for (target, name) in links {
        match symlinkat(target, &dev, name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(device_error(root, "symlink", &dev_path(name), errno)),
        }
    }
    Ok(())
}

/// `/dev/ptmx -> pts/ptmx`, so that opening it allocates from the container's devpts instance
/// (mounted with newinstance), not the host's.
pub fn link_ptmx(root: &RootDir) -> Result<(), InitError> {
    let dev = open_dev(root)?;
    match unlinkat(&dev, "ptmx", UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(errno) => return Err(device_error(root, "remove", &dev_path("ptmx"), errno)),
    }
    symlinkat("pts/ptmx", &dev, "ptmx")
        .map_err(|errno| device_error(root, "symlink", &dev_path("ptmx"), errno))
}

fn open_dev(root: &RootDir) -> Result<std::os::fd::OwnedFd, InitError> {
    root.create_dir_all(Path::new("/dev"))
        .map_err(|errno| device_error(root, "open", Path::new("/dev"), errno))
}

fn dev_path(name: &str) -> PathBuf {
    Path::new("/dev").join(name)
}

fn device_error(root: &RootDir, action: &'static str, path: &Path, errno: Errno) -> InitError {
    InitError::Device {
        action,
        path: path.to_owned(),
        rootfs: root.path().to_owned(),
        errno,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(json: serde_json::Value) -> Vec<LinuxDevice> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_are_the_six_standard_nodes() {
        let nodes = plan_devices(&[]).unwrap();
        let names: Vec<_> = nodes.iter().map(|n| n.path.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/tty",
                "/dev/random",
                "/dev/urandom"
            ]
        );
        assert!(
            nodes
                .iter()
                .all(|n| n.kind == SFlag::S_IFCHR && n.mode == 0o666)
        );
        assert_eq!((nodes[3].major, nodes[3].minor), (5, 0));
    }

    #[test]
    fn spec_devices_are_added_and_override_defaults() {
        let spec = devices(serde_json::json!([
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 8630, "uid": 0, "gid": 0},
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600},
            {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
            {"path": "/dev/fifo", "type": "p", "major": 0, "minor": 0}
        ]));
        let nodes = plan_devices(&spec).unwrap();
        assert_eq!(nodes.len(), 9);
        let null: Vec<_> = nodes
            .iter()
            .filter(|n| n.path == Path::new("/dev/null"))
            .collect();
        assert_eq!(null.len(), 1);
        assert_eq!(null[0].mode, 0o600);
        let fuse = nodes
            .iter()
            .find(|n| n.path == Path::new("/dev/fuse"))
            .unwrap();
        assert_eq!((fuse.major, fuse.minor, fuse.mode), (10, 229, 0o666));
        let sda = nodes
            .iter()
            .find(|n| n.path == Path::new("/dev/sda"))
            .unwrap();
        assert_eq!(sda.kind, SFlag::S_IFBLK);
        let fifo = nodes
            .iter()
            .find(|n| n.path == Path::new("/dev/fifo"))
            .unwrap();
        assert_eq!(fifo.kind, SFlag::S_IFIFO);
    }

    #[test]
    fn type_a_and_negative_numbers_are_rejected() {
        let all = devices(serde_json::json!([{"path": "/dev/x", "type": "a"}]));
        assert!(plan_devices(&all).is_err());
        let negative = devices(serde_json::json!([{"path": "/dev/x", "type": "c", "major": -1}]));
        assert!(plan_devices(&negative).is_err());
    }
}
