//! The container's root filesystem before pivot_root: propagation of `/`, the rootfs bound onto
//! itself, the spec's mounts in order; and `root.readonly` after pivot_root.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;

use super::error::InitError;
use super::in_root::RootDir;
use super::mounts::{MountKind, MountPlan, mount_entry, plan_mount, remount_bind};
use super::namespaces::{NamespaceKind, NamespacePlan};
use crate::mountinfo::{MountInfo, parse_mountinfo};

/// What the mounts decided about `/dev` for the device step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevSetup {
    /// `/dev` is not a bind of a host directory: create the device nodes and symlinks.
    pub create_devices: bool,
    /// `/dev` was asked read-only: it was mounted writable and must be remounted with these
    /// flags once the device nodes exist.
    pub remount_flags: Option<MsFlags>,
}

/// The propagation `/` gets before anything is mounted: `linux.rootfsPropagation`, or
/// MS_SLAVE|MS_REC as runc (host mounts still propagate in, none of ours leak out).
pub fn root_propagation(spec_value: Option<&str>) -> Result<MsFlags, InitError> {
    let rec = MsFlags::MS_REC;
    let flags = match spec_value.unwrap_or("rslave") {
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | rec,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | rec,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | rec,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | rec,
        other => {
            let what = format!("unknown linux.rootfsPropagation {other:?}");
            return Err(InitError::InvalidSpec(what));
        }
    };
    Ok(flags)
}

/// Sets the propagation of `/`, makes the rootfs's parent mount private when it is shared, and
/// binds the rootfs onto itself so that it is a mount point (pivot_root needs one).
pub fn prepare_root(rootfs: &Path, propagation: MsFlags) -> Result<(), InitError> {
    let error = |step: &str, errno| InitError::PrepareRoot {
        step: step.to_owned(),
        rootfs: rootfs.to_owned(),
        errno,
    };
    mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .map_err(|errno| error("set propagation of /", errno))?;
    make_parent_mount_private(rootfs)?;
    let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(rootfs), rootfs, None::<&str>, bind, None::<&str>)
        .map_err(|errno| error("bind the rootfs onto itself", errno))
}

/// pivot_root refuses a new root whose parent mount is shared, and a bind below a shared mount
/// would propagate to the host: so a shared parent (possible with rootfsPropagation "shared")
/// is made private, as runc does.
fn make_parent_mount_private(rootfs: &Path) -> Result<(), InitError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|error| {
        InitError::ReadHostFile {
            path: PathBuf::from("/proc/self/mountinfo"),
            error,
        }
    })?;
    let mounts = parse_mountinfo(&text);
    let Some(parent) = parent_mount(&mounts, rootfs).filter(|m| m.is_shared()) else {
        return Ok(());
    };
    let private = MsFlags::MS_PRIVATE;
    mount(
        None::<&str>,
        &parent.mount_point,
        None::<&str>,
        private,
        None::<&str>,
    )
    .map_err(|errno| InitError::PrepareRoot {
        step: format!("make parent mount {} private", parent.mount_point.display()),
        rootfs: rootfs.to_owned(),
        errno,
    })
}

/// The mount `path` is on: the last-mounted entry whose mount point is `path` or its nearest
/// ancestor (a later mount on the same point hides the earlier ones).
pub fn parent_mount<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(index, m)| (m.mount_point.components().count(), *index))
        .map(|(_, m)| m)
}

/// Performs the spec's mounts in order, each resolved inside `root`. `idmapped` holds the
/// detached idmapped trees the helper made, by index in `mounts`.
pub fn mount_all(
    root: &RootDir,
    mounts: &[Mount],
    bundle: &Path,
    namespaces: &NamespacePlan,
    mut idmapped: IdmappedTrees,
) -> Result<DevSetup, InitError> {
    let plans = mounts
        .iter()
        .map(|m| plan_mount(m, bundle).map(|plan| sysfs_in_user_namespace(plan, namespaces)))
        .collect::<Result<Vec<_>, _>>()?;
    let cgroupns = namespaces.is_private(NamespaceKind::Cgroup);
    let mut dev = DevSetup {
        create_devices: true,
        remount_flags: None,
    };
    for (index, plan) in plans.iter().enumerate() {
        let is_dev = plan.destination == Path::new("/dev");
        let is_bind = plan.kind == MountKind::Bind;
        let keep_writable = is_dev && !is_bind && plan.options.flags.contains(MsFlags::MS_RDONLY);
        if is_dev {
            // runc's needsSetupDev: a bind on /dev brings its own nodes (privileged setups).
            dev.create_devices = !is_bind;
            dev.remount_flags = keep_writable.then(|| plan.options.bind_remount_flags());
        }
        mount_entry(root, plan, cgroupns, keep_writable, idmapped.take(index))?;
    }
    Ok(dev)
}

/// The detached idmapped mount trees of a container's idmapped binds, made by the helper
/// before it cloned the init (which inherits them), by index in the spec's `mounts`.
#[derive(Debug, Default)]
pub struct IdmappedTrees(Vec<(usize, OwnedFd)>);

impl IdmappedTrees {
    pub fn new(trees: Vec<(usize, OwnedFd)>) -> Self {
        Self(trees)
    }

    fn take(&mut self, index: usize) -> Option<OwnedFd> {
        let position = self.0.iter().position(|(i, _)| *i == index)?;
        Some(self.0.swap_remove(position).1)
    }
}

/// sysfs belongs to a network namespace: a user namespace may mount it only with a network
/// namespace of its own. Otherwise the host's /sys is bound instead (recursively, with the
/// spec's flags applied by the remount), as runc does.
fn sysfs_in_user_namespace(mut plan: MountPlan, namespaces: &NamespacePlan) -> MountPlan {
    let user = namespaces.is_private(NamespaceKind::User);
    if user
        && !namespaces.is_new(NamespaceKind::Net)
        && plan.kind == MountKind::Fresh("sysfs".into())
    {
        plan.kind = MountKind::Bind;
        plan.source = Some(PathBuf::from("/sys"));
        plan.options.flags |= MsFlags::MS_REC;
    }
    plan
}

/// Remounts `/dev` read-only (asked by the spec, deferred until the nodes were created).
pub fn remount_dev_readonly(root: &RootDir, flags: MsFlags) -> Result<(), InitError> {
    remount_bind(root, Path::new("/dev"), flags | MsFlags::MS_RDONLY)
}

/// `root.readonly`: remounts the new `/` read-only (after pivot_root, so the mounts below it
/// keep their own flags).
pub fn make_root_readonly() -> Result<(), InitError> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let remount = |flags| mount(None::<&str>, "/", None::<&str>, flags, None::<&str>);
    let result = match remount(flags) {
        // A mount with locked nosuid/nodev/noexec refuses a remount that would clear them.
        Err(Errno::EPERM) => remount(flags | locked_flags_of_root()),
        other => other,
    };
    result.map_err(|errno| InitError::Mount {
        action: "remount read-only (root.readonly)".into(),
        destination: PathBuf::from("/"),
        rootfs: PathBuf::from("/"),
        errno,
    })
}

fn locked_flags_of_root() -> MsFlags {
    let Ok(stat) = nix::sys::statvfs::statvfs("/") else {
        return MsFlags::empty();
    };
    // statvfs's ST_NOSUID/ST_NODEV/ST_NOEXEC have the values of the MS_ flags.
    MsFlags::from_bits_truncate(stat.flags().bits())
        & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_propagation_defaults_to_rslave() {
        assert_eq!(
            root_propagation(None).unwrap(),
            MsFlags::MS_SLAVE | MsFlags::MS_REC
        );
        assert_eq!(
            root_propagation(Some("private")).unwrap(),
            MsFlags::MS_PRIVATE
        );
        assert_eq!(
            root_propagation(Some("rshared")).unwrap(),
            MsFlags::MS_SHARED | MsFlags::MS_REC
        );
        assert!(root_propagation(Some("bogus")).is_err());
    }

    #[test]
    fn parent_mount_is_the_nearest_and_latest() {
        let text = "\
22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /run rw shared:5 - tmpfs tmpfs rw
31 30 0:41 / /run/c1/rootfs rw - overlay overlay rw
32 30 0:42 / /run rw - tmpfs tmpfs rw
";
        let mounts = parse_mountinfo(text);
        let m = parent_mount(&mounts, Path::new("/run/c1/rootfs")).unwrap();
        assert_eq!(m.fstype, "overlay");
        let m = parent_mount(&mounts, Path::new("/run/c2/rootfs")).unwrap();
        assert_eq!(
            m.optional_fields,
            Vec::<String>::new(),
            "the later /run mount hides the first"
        );
        let m = parent_mount(&mounts, Path::new("/var/lib/x")).unwrap();
        assert!(m.is_shared());
        assert!(
            parent_mount(&mounts, Path::new("/runx"))
                .unwrap()
                .mount_point
                == Path::new("/")
        );
    }
}
