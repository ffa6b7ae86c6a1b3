//! The spec's `mounts`, one at a time: plan (pure: destination, kind, options, checks), then
//! mount onto the destination resolved inside the rootfs (see `in_root`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;

use super::cgroupfs_mounts;
use super::error::InitError;
use super::in_root::{RootDir, clean_path};
use super::mount_options::MountOptions;
use super::namespaces::{IdMappings, IdRange};
use super::sys::{MOUNT_ATTR_IDMAP, fd_path, mount_setattr, move_mount_onto, open_tree_clone};

/// How a spec mount is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A bind (or rbind) of a host path.
    Bind,
    /// `type: cgroup`: the container's own cgroups (see `cgroupfs_mounts`).
    Cgroup,
    /// A fresh filesystem of this type (proc, sysfs, tmpfs, devpts, mqueue, ...).
    Fresh(String),
}

/// One spec mount, checked and ready to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Absolute and lexically clean container path.
    pub destination: PathBuf,
    pub kind: MountKind,
    /// The host path of a bind, the device or name of a fresh filesystem.
    pub source: Option<PathBuf>,
    pub options: MountOptions,
    /// An idmapped bind: the mount's own `uidMappings`/`gidMappings`.
    pub idmap: Option<IdMapPlan>,
}

/// How an idmapped bind mount maps ids: the user namespace made with `maps` is attached to the
/// mount (MOUNT_ATTR_IDMAP), so a file owned by id `n` on disk is seen as the id that `n`
/// maps to (`containerID` `hostID` `size`, as in a user namespace's map), as runc does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMapPlan {
    pub maps: IdMappings,
    /// `ridmap`: every mount of an rbind is idmapped, not only its top.
    pub recursive: bool,
}

/// Files under /proc that may be mounted over (by lxcfs-style emulations), as runc allows.
const PROC_FILES_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Checks one spec mount and decides how to make it. Relative bind sources are taken relative
/// to `bundle` (the directory holding `config.json`), as the runtime spec says.
pub fn plan_mount(m: &Mount, bundle: &Path) -> Result<MountPlan, InitError> {
    let destination = clean_path(m.destination());
    if destination == Path::new("/") {
        return Err(InitError::InvalidSpec(
            "a mount cannot have / as destination".into(),
        ));
    }
    let options = MountOptions::parse(m.options().as_deref().unwrap_or_default());
    if let Some(option) = options.unsupported.first() {
        return Err(InitError::MountOption {
            destination,
            option: option.clone(),
        });
    }
    let kind = match m.typ().as_deref() {
        _ if options.is_bind() => MountKind::Bind,
        Some("bind") => MountKind::Bind,
        Some("cgroup") => MountKind::Cgroup,
        Some(fstype) if !fstype.is_empty() => MountKind::Fresh(fstype.to_owned()),
        _ => {
            let what = format!("mount on {} has no type", destination.display());
            return Err(InitError::InvalidSpec(what));
        }
    };
    let source = match (&kind, m.source()) {
        (MountKind::Bind, Some(source)) => Some(bundle.join(source)),
        (MountKind::Bind, None) => {
            let what = format!("bind mount on {} has no source", destination.display());
            return Err(InitError::InvalidSpec(what));
        }
        (_, source) => source.clone(),
    };
    check_proc_destination(&destination, &kind)?;
    let idmap = plan_idmap(m, &destination, &kind, &options)?;
    Ok(MountPlan {
        destination,
        kind,
        source,
        options,
        idmap,
    })
}

/// The idmap of a mount with `uidMappings`/`gidMappings`: bind mounts only (as runc), both maps
/// given. `idmap`/`ridmap` without maps (runc 1.2 then uses the container's user namespace)
/// is refused rather than done differently.
fn plan_idmap(
    m: &Mount,
    destination: &Path,
    kind: &MountKind,
    options: &MountOptions,
) -> Result<Option<IdMapPlan>, InitError> {
    let ranges = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<IdRange> {
        maps.iter()
            .flatten()
            .map(|m| IdRange {
                container: m.container_id(),
                host: m.host_id(),
                size: m.size(),
            })
            .collect()
    };
    let maps = IdMappings {
        uids: ranges(m.uid_mappings()),
        gids: ranges(m.gid_mappings()),
    };
    let where_ = destination.display();
    if maps.uids.is_empty() && maps.gids.is_empty() {
        if let Some(recursive) = options.idmap {
            return Err(InitError::MountOption {
                destination: destination.to_owned(),
                option: format!(
                    "{} without uidMappings/gidMappings",
                    if recursive { "ridmap" } else { "idmap" }
                ),
            });
        }
        return Ok(None);
    }
    if *kind != MountKind::Bind {
        let what = format!(
            "the mount on {where_} has uidMappings/gidMappings but is not a bind mount (idmapped mounts are bind mounts)"
        );
        return Err(InitError::InvalidSpec(what));
    }
    if maps.uids.is_empty() || maps.gids.is_empty() {
        let what = format!("the idmapped mount on {where_} needs both uidMappings and gidMappings");
        return Err(InitError::InvalidSpec(what));
    }
    Ok(Some(IdMapPlan {
        maps,
        recursive: options.idmap.unwrap_or(false),
    }))
}

/// Makes the detached, idmapped copy of an idmapped bind's source (run by the helper, outside
/// the container's user namespace, where attaching an idmap to a host filesystem is allowed):
/// open_tree(OPEN_TREE_CLONE) of the source, recursively for an rbind, then
/// mount_setattr(MOUNT_ATTR_IDMAP) with `userns`, a user namespace holding the mount's maps.
/// The init attaches it in place of the bind ([`mount_entry`]).
pub fn open_idmapped_tree(plan: &MountPlan, userns: BorrowedFd<'_>) -> Result<OwnedFd, String> {
    let source = plan.source.as_deref().unwrap_or(Path::new(""));
    let recursive_bind = plan.options.flags.contains(MsFlags::MS_REC);
    let recursive_idmap = plan.idmap.as_ref().is_some_and(|i| i.recursive);
    let name = |step: &str, errno: Errno| {
        format!(
            "idmapped mount of {} on {}: {step}: {errno}",
            source.display(),
            plan.destination.display()
        )
    };
    let tree = open_tree_clone(source, recursive_bind).map_err(|e| name("open_tree", e))?;
    mount_setattr(tree.as_fd(), recursive_idmap, MOUNT_ATTR_IDMAP, 0, Some(userns)).map_err(
        |errno| {
            let why = match errno {
                Errno::EINVAL => " (the kernel or this filesystem does not support idmapped mounts, or the mount is already idmapped)",
                Errno::EPERM => " (idmapping needs CAP_SYS_ADMIN over the filesystem's user namespace)",
                _ => "",
            };
            name(&format!("mount_setattr(MOUNT_ATTR_IDMAP){why}"), errno)
        },
    )?;
    Ok(tree)
}

/// Refuses mounts over /proc or inside it (they could hide or redirect the files the kernel's
/// protections rely on, e.g. CVE-2019-16884), except procfs on /proc and a few emulated files.
pub fn check_proc_destination(destination: &Path, kind: &MountKind) -> Result<(), InitError> {
    if destination == Path::new("/proc") {
        if *kind == MountKind::Fresh("proc".into()) {
            return Ok(());
        }
        let what = "only a proc filesystem can be mounted on /proc".to_owned();
        return Err(InitError::InvalidSpec(what));
    }
    if destination.starts_with("/proc")
        && !PROC_FILES_ALLOWED
            .iter()
            .any(|p| destination == Path::new(p))
    {
        let what = format!(
            "{} cannot be mounted: it is inside /proc",
            destination.display()
        );
        return Err(InitError::InvalidSpec(what));
    }
    Ok(())
}

/// Performs one planned mount. `cgroupns` says whether the container has its own cgroup
/// namespace; `keep_writable` leaves MS_RDONLY out (for /dev, remounted read-only once the
/// device nodes exist); `idmapped` is the detached idmapped tree the helper made for an
/// idmapped bind ([`open_idmapped_tree`]). Recursive attributes (`rro`, ...) come last.
pub fn mount_entry(
    root: &RootDir,
    plan: &MountPlan,
    cgroupns: bool,
    keep_writable: bool,
    idmapped: Option<OwnedFd>,
) -> Result<(), InitError> {
    mount_kind(root, plan, cgroupns, keep_writable, idmapped)?;
    apply_recursive_attrs(root, plan)
}

fn mount_kind(
    root: &RootDir,
    plan: &MountPlan,
    cgroupns: bool,
    keep_writable: bool,
    idmapped: Option<OwnedFd>,
) -> Result<(), InitError> {
    if plan.idmap.is_some() != idmapped.is_some() {
        let what = format!(
            "the idmapped mount on {} was not prepared",
            plan.destination.display()
        );
        return Err(InitError::InvalidSpec(what));
    }
    match &plan.kind {
        MountKind::Bind => mount_bind(root, plan, idmapped),
        MountKind::Cgroup => cgroupfs_mounts::mount_cgroups(root, plan, cgroupns),
        MountKind::Fresh(fstype) => {
            let mut flags = plan.options.flags;
            if keep_writable {
                flags.remove(MsFlags::MS_RDONLY);
            }
            let target = create_mount_dir(root, &plan.destination)?;
            check_resolved_destination(root, &target, plan)?;
            let source = plan.source.as_deref().unwrap_or(Path::new(fstype));
            let data = plan.options.data_string();
            mount_on(&target, Some(source), Some(fstype), flags, &data)
                .map_err(|errno| mount_error(root, format!("mount {fstype}"), plan, errno))?;
            apply_propagation(root, &plan.destination, &plan.options.propagation)
        }
    }
}

/// A bind mount: the target is created as a file when the source is not a directory; options
/// other than bind/rbind need a second, remount call because the first ignores them.
fn mount_bind(
    root: &RootDir,
    plan: &MountPlan,
    idmapped: Option<OwnedFd>,
) -> Result<(), InitError> {
    let source = plan.source.as_deref().unwrap_or(Path::new(""));
    let metadata = std::fs::metadata(source).map_err(|error| InitError::MountSource {
        source: source.to_owned(),
        destination: plan.destination.clone(),
        error,
    })?;
    let target = if metadata.is_dir() {
        create_mount_dir(root, &plan.destination)?
    } else {
        root.create_file(&plan.destination)
            .map_err(|errno| resolve_error(root, "create mount point", &plan.destination, errno))?
    };
    check_resolved_destination(root, &target, plan)?;
    match idmapped {
        Some(tree) => {
            let action = format!("attach the idmapped mount of {}", source.display());
            move_mount_onto(tree.as_fd(), target.as_fd())
                .map_err(|errno| mount_error(root, action, plan, errno))?;
        }
        None => {
            let flags = MsFlags::MS_BIND | (plan.options.flags & MsFlags::MS_REC);
            let action = format!("bind {}", source.display());
            mount_on(&target, Some(source), None, flags, "")
                .map_err(|errno| mount_error(root, action, plan, errno))?;
        }
    }
    let extra = plan.options.bind_remount_flags();
    if !extra.is_empty() {
        remount_bind(root, &plan.destination, extra)?;
    }
    apply_propagation(root, &plan.destination, &plan.options.propagation)
}

/// Changes the per-mount flags of the mount now on `destination` (MS_REMOUNT|MS_BIND).
pub fn remount_bind(root: &RootDir, destination: &Path, flags: MsFlags) -> Result<(), InitError> {
    // Re-resolve: the fd used for the mount refers to the covered directory, and a remount must
    // name the root of the new mount.
    let top = open_mount_point(root, destination)?;
    let flags = flags | MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    mount_on(&top, None, None, flags, "").map_err(|errno| InitError::Mount {
        action: format!("remount ({})", describe_flags(flags)),
        destination: destination.to_owned(),
        rootfs: root.path().to_owned(),
        errno,
    })
}

/// `rro`, `rnosuid`, ...: one mount_setattr(AT_RECURSIVE) on the mount now at the destination,
/// so every mount below it (an rbind's submounts) gets them too.
fn apply_recursive_attrs(root: &RootDir, plan: &MountPlan) -> Result<(), InitError> {
    let attrs = plan.options.recursive;
    if attrs.is_empty() {
        return Ok(());
    }
    let top = open_mount_point(root, &plan.destination)?;
    mount_setattr(top.as_fd(), true, attrs.set, attrs.clear, None).map_err(|errno| {
        InitError::Mount {
            action: format!(
                "set recursive mount attributes (set {:#x}, clear {:#x})",
                attrs.set, attrs.clear
            ),
            destination: plan.destination.clone(),
            rootfs: root.path().to_owned(),
            errno,
        }
    })
}

/// One mount(2) call per propagation option, on the mount now at `destination`.
pub fn apply_propagation(
    root: &RootDir,
    destination: &Path,
    propagation: &[MsFlags],
) -> Result<(), InitError> {
    for &flags in propagation {
        let top = open_mount_point(root, destination)?;
        mount_on(&top, None, None, flags, "").map_err(|errno| InitError::Mount {
            action: format!("set propagation ({})", describe_flags(flags)),
            destination: destination.to_owned(),
            rootfs: root.path().to_owned(),
            errno,
        })?;
    }
    Ok(())
}

/// mount(2) onto the inode `target` refers to, through its /proc/self/fd path.
pub fn mount_on(
    target: &OwnedFd,
    source: Option<&Path>,
    fstype: Option<&str>,
    flags: MsFlags,
    data: &str,
) -> Result<(), Errno> {
    let data = (!data.is_empty()).then_some(data);
    mount(source, &fd_path(target), fstype, flags, data)
}

/// A directory mount point, created inside the root if missing.
pub fn create_mount_dir(root: &RootDir, destination: &Path) -> Result<OwnedFd, InitError> {
    root.create_dir_all(destination)
        .map_err(|errno| resolve_error(root, "create mount point", destination, errno))
}

fn open_mount_point(root: &RootDir, destination: &Path) -> Result<OwnedFd, InitError> {
    root.open_path(destination)
        .map_err(|errno| resolve_error(root, "open mount point", destination, errno))
}

/// Repeats the /proc check on the path the kernel actually resolved, which may differ from
/// the spec's through in-root symlinks (`/foo -> /proc/sys`).
fn check_resolved_destination(
    root: &RootDir,
    target: &OwnedFd,
    plan: &MountPlan,
) -> Result<(), InitError> {
    match root.container_path_of(target) {
        Some(resolved) => check_proc_destination(&resolved, &plan.kind),
        None => Err(resolve_error(
            root,
            "resolve",
            &plan.destination,
            Errno::EXDEV,
        )),
    }
}

pub fn resolve_error(root: &RootDir, action: &'static str, path: &Path, errno: Errno) -> InitError {
    InitError::Resolve {
        action,
        path: path.to_owned(),
        rootfs: root.path().to_owned(),
        errno,
    }
}

fn mount_error(root: &RootDir, action: String, plan: &MountPlan, errno: Errno) -> InitError {
    InitError::Mount {
        action,
        destination: plan.destination.clone(),
        rootfs: root.path().to_owned(),
        errno,
    }
}

/// Mount flags as option names, for messages.
pub fn describe_flags(flags: MsFlags) -> String {
    let names = [
        (MsFlags::MS_RDONLY, "ro"),
        (MsFlags::MS_NOSUID, "nosuid"),
        (MsFlags::MS_NODEV, "nodev"),
        (MsFlags::MS_NOEXEC, "noexec"),
        (MsFlags::MS_BIND, "bind"),
        (MsFlags::MS_REC, "rec"),
        (MsFlags::MS_PRIVATE, "private"),
        (MsFlags::MS_SLAVE, "slave"),
        (MsFlags::MS_SHARED, "shared"),
        (MsFlags::MS_UNBINDABLE, "unbindable"),
    ];
    let known: Vec<&str> = names
        .iter()
        .filter(|(flag, _)| flags.contains(*flag))
        .map(|(_, name)| *name)
        .collect();
    known.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(json: serde_json::Value) -> Mount {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn fresh_mounts_keep_type_source_and_data() {
        let m = mount(serde_json::json!({
            "destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
        }));
        let plan = plan_mount(&m, Path::new("/b")).unwrap();
        assert_eq!(plan.destination, Path::new("/dev/pts"));
        assert_eq!(plan.kind, MountKind::Fresh("devpts".into()));
        assert_eq!(plan.source.as_deref(), Some(Path::new("devpts")));
        assert_eq!(
            plan.options.data_string(),
            "newinstance,ptmxmode=0666,mode=0620,gid=5"
        );
    }

    #[test]
    fn bind_is_recognised_by_type_or_option_and_sources_are_bundle_relative() {
        let by_option = mount(serde_json::json!({
            "destination": "/etc/hosts", "type": "none", "source": "hosts", "options": ["rbind", "ro"]
        }));
        let plan = plan_mount(&by_option, Path::new("/run/bundle")).unwrap();
        assert_eq!(plan.kind, MountKind::Bind);
        assert_eq!(plan.source.as_deref(), Some(Path::new("/run/bundle/hosts")));
        let by_type = mount(serde_json::json!({
            "destination": "data", "type": "bind", "source": "/srv/data"
        }));
        let plan = plan_mount(&by_type, Path::new("/run/bundle")).unwrap();
        assert_eq!(plan.kind, MountKind::Bind);
        assert_eq!(plan.destination, Path::new("/data"));
        assert_eq!(plan.source.as_deref(), Some(Path::new("/srv/data")));
    }

    #[test]
    fn destinations_are_cleaned() {
        let m = mount(serde_json::json!({"destination": "/a/../../tmp/./x", "type": "tmpfs"}));
        assert_eq!(
            plan_mount(&m, Path::new("/b")).unwrap().destination,
            Path::new("/tmp/x")
        );
        let root = mount(serde_json::json!({"destination": "/..", "type": "tmpfs"}));
        assert!(plan_mount(&root, Path::new("/b")).is_err());
    }

    #[test]
    fn proc_is_protected() {
        let proc_ok = mount(serde_json::json!({"destination": "/proc", "type": "proc"}));
        assert!(plan_mount(&proc_ok, Path::new("/b")).is_ok());
        let tmpfs_on_proc = mount(serde_json::json!({"destination": "/proc", "type": "tmpfs"}));
        assert!(plan_mount(&tmpfs_on_proc, Path::new("/b")).is_err());
        let inside = mount(serde_json::json!({
            "destination": "/proc/sys/kernel/core_pattern", "type": "bind", "source": "/x"
        }));
        let err = plan_mount(&inside, Path::new("/b")).unwrap_err();
        assert!(err.to_string().contains("inside /proc"), "{err}");
        let emulated = mount(serde_json::json!({
            "destination": "/proc/meminfo", "type": "bind", "source": "/var/lib/lxcfs/proc/meminfo"
        }));
        assert!(plan_mount(&emulated, Path::new("/b")).is_ok());
        assert!(check_proc_destination(Path::new("/procfoo"), &MountKind::Bind).is_ok());
    }

    #[test]
    fn unsupported_and_incomplete_mounts_are_rejected() {
        let ratime = mount(
            serde_json::json!({"destination": "/x", "type": "bind", "source": "/y", "options": ["ratime"]}),
        );
        assert_eq!(
            plan_mount(&ratime, Path::new("/b"))
                .unwrap_err()
                .to_string(),
            "mount option \"ratime\" on /x is not supported yet"
        );
        let no_type = mount(serde_json::json!({"destination": "/x"}));
        assert!(plan_mount(&no_type, Path::new("/b")).is_err());
        let no_source = mount(serde_json::json!({"destination": "/x", "type": "bind"}));
        assert!(plan_mount(&no_source, Path::new("/b")).is_err());
    }

    #[test]
    fn idmapped_mounts_are_binds_with_both_maps() {
        let maps = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        let ok = mount(serde_json::json!({
            "destination": "/x", "type": "bind", "source": "/y", "options": ["rbind", "ridmap"],
            "uidMappings": maps, "gidMappings": maps
        }));
        let plan = plan_mount(&ok, Path::new("/b")).unwrap();
        let idmap = plan.idmap.unwrap();
        assert!(idmap.recursive);
        let range = IdRange {
            container: 0,
            host: 1000,
            size: 1,
        };
        assert_eq!(idmap.maps.uids, [range]);
        assert_eq!(idmap.maps.gids, [range]);
        let tmpfs = mount(serde_json::json!({
            "destination": "/x", "type": "tmpfs", "uidMappings": maps, "gidMappings": maps
        }));
        let err = plan_mount(&tmpfs, Path::new("/b")).unwrap_err().to_string();
        assert!(err.contains("not a bind mount"), "{err}");
        let uids_only = mount(serde_json::json!({
            "destination": "/x", "type": "bind", "source": "/y", "uidMappings": maps
        }));
        let err = plan_mount(&uids_only, Path::new("/b"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("both uidMappings and gidMappings"), "{err}");
        let no_maps = mount(serde_json::json!({
            "destination": "/x", "type": "bind", "source": "/y", "options": ["idmap"]
        }));
        let err = plan_mount(&no_maps, Path::new("/b"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("idmap without uidMappings/gidMappings"),
            "{err}"
        );
        let plain = mount(serde_json::json!({"destination": "/x", "type": "bind", "source": "/y"}));
        assert_eq!(plan_mount(&plain, Path::new("/b")).unwrap().idmap, None);
    }

    #[test]
    fn cgroup_type_is_its_own_kind() {
        let m = mount(serde_json::json!({
            "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
        }));
        let plan = plan_mount(&m, Path::new("/b")).unwrap();
        assert_eq!(plan.kind, MountKind::Cgroup);
        assert!(plan.options.flags.contains(MsFlags::MS_RDONLY));
    }
}
