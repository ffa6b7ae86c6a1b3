//! `type: cgroup` mounts: the container sees its own cgroups, never the host's whole tree.
//!
//! - cgroup v1 (and hybrid) hosts: a tmpfs at the destination and, for each v1 hierarchy, the
//!   container's cgroup directory at `<destination>/<name>` (`cpu`, `memory`, `systemd`, ...),
//!   read-only when the mount says `ro`. With a cgroup namespace each hierarchy is mounted fresh,
//!   which the kernel roots at the namespace root (the container's cgroup): `/proc/self/cgroup`
//!   says `/` in there, so the host directory could not be computed anyway. Without one, the
//!   directory `/proc/self/cgroup` names is bind-mounted. As in runc, the v2 `unified` hierarchy
//!   of a hybrid host is not shown.
//! - pure cgroup v2 hosts: `cgroup2` mounted fresh (rooted at the cgroup namespace root), falling
//!   back to a bind of the container's directory when that is refused.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::unistd::symlinkat;

use super::error::InitError;
use super::in_root::RootDir;
use super::mount_options::MountOptions;
use super::mounts::{
    MountKind, MountPlan, apply_propagation, create_mount_dir, mount_entry, mount_on, remount_bind,
    resolve_error,
};
use crate::mountinfo::{MountInfo, parse_mountinfo};

/// Flags of every cgroup-related mount, whatever the spec says (runc's defaultMountFlags).
const CGROUP_MOUNT_FLAGS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NODEV);

/// One line of `/proc/self/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcCgroup {
    hierarchy: u32,
    controllers: String,
    path: String,
}

/// A cgroup v1 hierarchy as the container should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Directory name under the destination: the host mount point's name (`cpu,cpuacct`).
    pub name: String,
    /// The hierarchy's controllers as `/proc/self/cgroup` lists them (`cpu,cpuacct`,
    /// `name=systemd`): the data of a fresh mount.
    pub controllers: String,
    /// This process's cgroup directory in it, on the host (`None` if not below the mount root).
    pub host_dir: Option<PathBuf>,
}

/// The host's cgroup layout, reduced to what the container mount needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    V1(Vec<V1Hierarchy>),
    V2 { host_dir: Option<PathBuf> },
}

/// Decides the layout from `/proc/self/cgroup` and `/proc/self/mountinfo` (`/sys/fs/cgroup` may
/// be a plain tmpfs, so directories prove nothing). v1 as soon as a v1 hierarchy carries a real
/// controller; named-only ones (`name=systemd` on a v2 host) do not make a v1 host, the same
/// rule as `cgroups::Hierarchies`.
pub fn plan_cgroup_layout(proc_cgroup: &str, mountinfo: &str) -> CgroupLayout {
    let lines = parse_proc_cgroup(proc_cgroup);
    let mounts = parse_mountinfo(mountinfo);
    let hierarchies = plan_v1_hierarchies(&lines, &mounts);
    let has_controller =
        |h: &V1Hierarchy| h.controllers.split(',').any(|c| !c.starts_with("name="));
    if hierarchies.iter().any(has_controller) {
        return CgroupLayout::V1(hierarchies);
    }
    let unified = lines.iter().find(|l| l.hierarchy == 0);
    let mount = mounts.iter().find(|m| m.fstype == "cgroup2");
    let host_dir = unified.zip(mount).and_then(|(l, m)| host_dir(m, &l.path));
    CgroupLayout::V2 { host_dir }
}

fn plan_v1_hierarchies(lines: &[ProcCgroup], mounts: &[MountInfo]) -> Vec<V1Hierarchy> {
    let mut hierarchies: Vec<V1Hierarchy> = Vec::new();
    for mount in mounts.iter().filter(|m| m.fstype == "cgroup") {
        let Some(line) = lines.iter().find(|l| serves(mount, l)) else {
            continue;
        };
        if hierarchies
            .iter()
            .any(|h| h.controllers == line.controllers)
        {
            continue; // the same hierarchy mounted twice on the host
        }
        let Some(name) = mount.mount_point.file_name() else {
            continue;
        };
        hierarchies.push(V1Hierarchy {
            name: name.to_string_lossy().into_owned(),
            controllers: line.controllers.clone(),
            host_dir: host_dir(mount, &line.path),
        });
    }
    hierarchies
}

fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    let parse = |line: &str| {
        let mut parts = line.splitn(3, ':');
        let hierarchy = parts.next()?.parse().ok()?;
        let controllers = parts.next()?.to_owned();
        let path = parts.next()?.to_owned();
        Some(ProcCgroup {
            hierarchy,
            controllers,
            path,
        })
    };
    text.lines().filter_map(parse).collect()
}

/// Whether the v1 `mount` is the hierarchy of `line`: every controller of the line is among
/// the mount's superblock options.
fn serves(mount: &MountInfo, line: &ProcCgroup) -> bool {
    line.hierarchy != 0
        && !line.controllers.is_empty()
        && line
            .controllers
            .split(',')
            .all(|c| mount.super_options.iter().any(|o| o == c))
}

/// The host directory of cgroup `path` through `mount` (whose root may itself be a subdirectory).
fn host_dir(mount: &MountInfo, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path).strip_prefix(&mount.root).ok()?;
    Some(mount.mount_point.join(relative))
}

/// Performs a `type: cgroup` mount.
pub fn mount_cgroups(root: &RootDir, plan: &MountPlan, cgroupns: bool) -> Result<(), InitError> {
    let proc_cgroup = read_host_file("/proc/self/cgroup")?;
    let mountinfo = read_host_file("/proc/self/mountinfo")?;
    match plan_cgroup_layout(&proc_cgroup, &mountinfo) {
        CgroupLayout::V1(hierarchies) => mount_cgroup_v1(root, plan, &hierarchies, cgroupns),
        CgroupLayout::V2 { host_dir } => mount_cgroup_v2(root, plan, host_dir, cgroupns),
    }
}

fn mount_cgroup_v1(
    root: &RootDir,
    plan: &MountPlan,
    hierarchies: &[V1Hierarchy],
    cgroupns: bool,
) -> Result<(), InitError> {
    // The tmpfs stays writable until the hierarchy mount points exist in it.
    let tmpfs = MountPlan {
        destination: plan.destination.clone(),
        kind: MountKind::Fresh("tmpfs".into()),
        source: Some(PathBuf::from("tmpfs")),
        options: MountOptions {
            flags: CGROUP_MOUNT_FLAGS,
            propagation: plan.options.propagation.clone(),
            data: vec!["mode=755".into()],
            ..MountOptions::default()
        },
        idmap: None,
    };
    mount_entry(root, &tmpfs, cgroupns, false, None)?;
    for hierarchy in hierarchies {
        mount_hierarchy(root, plan, hierarchy, cgroupns)?;
    }
    link_comounted(root, &plan.destination, hierarchies)?;
    let readonly = plan.options.flags & MsFlags::MS_RDONLY;
    if !readonly.is_empty() {
        remount_bind(root, &plan.destination, CGROUP_MOUNT_FLAGS | readonly)?;
    }
    Ok(())
}

fn mount_hierarchy(
    root: &RootDir,
    plan: &MountPlan,
    hierarchy: &V1Hierarchy,
    cgroupns: bool,
) -> Result<(), InitError> {
    let destination = plan.destination.join(&hierarchy.name);
    let readonly = plan.options.flags & MsFlags::MS_RDONLY;
    if cgroupns {
        let target = create_mount_dir(root, &destination)?;
        let flags = CGROUP_MOUNT_FLAGS | readonly;
        let source = Some(Path::new("cgroup"));
        return mount_on(
            &target,
            source,
            Some("cgroup"),
            flags,
            &hierarchy.controllers,
        )
        .map_err(|errno| InitError::Mount {
            action: format!("mount cgroup ({})", hierarchy.controllers),
            destination,
            rootfs: root.path().to_owned(),
            errno,
        });
    }
    let Some(host_dir) = &hierarchy.host_dir else {
        let what = format!(
            "this process's cgroup is not below the {} mount",
            hierarchy.name
        );
        return Err(InitError::InvalidSpec(what));
    };
    let bind = MountPlan {
        destination,
        kind: MountKind::Bind,
        source: Some(host_dir.clone()),
        options: MountOptions {
            flags: MsFlags::MS_BIND | MsFlags::MS_REC | plan.options.flags,
            propagation: plan.options.propagation.clone(),
            ..MountOptions::default()
        },
        idmap: None,
    };
    mount_entry(root, &bind, cgroupns, false, None)
}

/// `cpu -> cpu,cpuacct` and `cpuacct -> cpu,cpuacct` for hierarchies with several controllers,
/// so both names work inside the container, as on the host.
fn link_comounted(
    root: &RootDir,
    destination: &Path,
    hierarchies: &[V1Hierarchy],
) -> Result<(), InitError> {
    let dir = create_mount_dir(root, destination)?;
    for hierarchy in hierarchies.iter().filter(|h| h.name.contains(',')) {
        for controller in hierarchy.name.split(',') {
            match symlinkat(hierarchy.name.as_str(), &dir, controller) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(errno) => {
                    let link = destination.join(controller);
                    return Err(resolve_error(root, "create symlink", &link, errno));
                }
            }
        }
    }
    Ok(())
}

fn mount_cgroup_v2(
    root: &RootDir,
    plan: &MountPlan,
    host_dir: Option<PathBuf>,
    cgroupns: bool,
) -> Result<(), InitError> {
    let target = create_mount_dir(root, &plan.destination)?;
    let flags = plan.options.flags;
    let data = plan.options.data_string();
    match mount_on(
        &target,
        Some(Path::new("cgroup2")),
        Some("cgroup2"),
        flags,
        &data,
    ) {
        Ok(()) => apply_propagation(root, &plan.destination, &plan.options.propagation),
        // Refused (no cgroup namespace, in some setups): show the container's directory instead.
        Err(Errno::EPERM | Errno::EBUSY) if !cgroupns && host_dir.is_some() => {
            let bind = MountPlan {
                kind: MountKind::Bind,
                source: host_dir,
                options: MountOptions {
                    flags: MsFlags::MS_BIND | MsFlags::MS_REC | flags,
                    ..plan.options.clone()
                },
                ..plan.clone()
            };
            mount_entry(root, &bind, cgroupns, false, None)
        }
        Err(errno) => Err(InitError::Mount {
            action: "mount cgroup2".into(),
            destination: plan.destination.clone(),
            rootfs: root.path().to_owned(),
            errno,
        }),
    }
}

fn read_host_file(path: &str) -> Result<String, InitError> {
    std::fs::read_to_string(path).map_err(|error| InitError::ReadHostFile {
        path: PathBuf::from(path),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
2:cpu,cpuacct:/kube/pod1
0::/
";

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 / /mnt/memory-again rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn v1_hierarchies_map_to_the_container_directories() {
        let CgroupLayout::V1(h) = plan_cgroup_layout(HYBRID_CGROUP, HYBRID_MOUNTINFO) else {
            panic!("expected v1");
        };
        let names: Vec<_> = h.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["cpu,cpuacct", "memory", "pids", "systemd"]);
        assert_eq!(h[0].controllers, "cpu,cpuacct");
        assert_eq!(
            h[0].host_dir.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/kube/pod1"))
        );
        assert_eq!(
            h[1].host_dir.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/process_api/abc"))
        );
        assert_eq!(h[3].controllers, "name=systemd");
    }

    #[test]
    fn a_mount_rooted_below_the_hierarchy_root_is_followed() {
        let cgroup = "4:memory:/outer/inner\n";
        let mountinfo = "35 31 0:32 /outer /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let CgroupLayout::V1(h) = plan_cgroup_layout(cgroup, mountinfo) else {
            panic!("expected v1");
        };
        assert_eq!(
            h[0].host_dir.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/inner"))
        );
    }

    #[test]
    fn a_named_v1_hierarchy_alone_does_not_make_a_v1_host() {
        let cgroup = "1:name=systemd:/\n0::/c1\n";
        let mountinfo = "\
30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
31 23 0:27 / /run/systemd-v1 rw - cgroup cgroup rw,name=systemd
";
        assert_eq!(
            plan_cgroup_layout(cgroup, mountinfo),
            CgroupLayout::V2 {
                host_dir: Some(PathBuf::from("/sys/fs/cgroup/c1"))
            }
        );
    }

    #[test]
    fn pure_v2_host() {
        let cgroup = "0::/system.slice/c1\n";
        let mountinfo = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            plan_cgroup_layout(cgroup, mountinfo),
            CgroupLayout::V2 {
                host_dir: Some(PathBuf::from("/sys/fs/cgroup/system.slice/c1"))
            }
        );
    }
}
