//! Which cgroup hierarchies exist and where: read from the mount table, never guessed from
//! directories (on the build machines `/sys/fs/cgroup` is a writable tmpfs, so a directory there
//! proves nothing).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use log::debug;
use serde::{Deserialize, Serialize};

use super::CgroupError;

/// The mount table of this process.
pub const MOUNTINFO_PATH: &str = "/proc/self/mountinfo";
/// This process's cgroup in each hierarchy (needed for relative `cgroupsPath`).
pub const PROC_CGROUP_PATH: &str = "/proc/self/cgroup";

/// Mount options of a v1 cgroup mount that are not controllers.
const NON_CONTROLLER_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
    "all",
    "none",
];

/// How the host's cgroups are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupMode {
    /// Controllers on cgroup v1 hierarchies, no cgroup2 mount.
    Legacy,
    /// Controllers on cgroup v1 hierarchies plus a cgroup2 mount (systemd's hybrid layout,
    /// cgroup2 at `/sys/fs/cgroup/unified`). The build machines are this.
    Hybrid,
    /// Pure cgroup v2: no v1 hierarchy with a real controller (named v1 hierarchies such as
    /// `name=systemd` may still be mounted; they carry no resource control).
    Unified,
}

/// One mounted cgroup hierarchy: a v1 hierarchy (one or more controllers, or a named one) or the
/// cgroup2 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// v1 controllers in mount-option order (`["cpu", "cpuacct"]`, `["name=systemd"]`); empty
    /// for cgroup2.
    controllers: Vec<String>,
    unified: bool,
    mount_point: PathBuf,
    /// The mountinfo `root` field: the cgroup shown at `mount_point`. Not `/` when the mount
    /// exposes only a subtree (inside a container without its own cgroup namespace).
    mount_root: PathBuf,
    /// This process's cgroup in this hierarchy as the kernel names it (`/proc/self/cgroup`).
    own_cgroup: Option<PathBuf>,
}

impl Hierarchy {
    /// The v1 controllers of this hierarchy; empty for cgroup2.
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// Whether this is the cgroup2 hierarchy.
    pub fn is_unified(&self) -> bool {
        self.unified
    }

    /// Whether this v1 hierarchy carries `controller` (`"memory"`, `"name=systemd"`).
    pub fn has_controller(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    pub fn mount_root(&self) -> &Path {
        &self.mount_root
    }

    /// The directory of this process's own cgroup, where a relative `cgroupsPath` starts (as in
    /// runc). Falls back to the mount point when the own cgroup is unknown or lies outside the
    /// mounted subtree (a nested setup that cannot see its own cgroup).
    pub fn own_dir(&self) -> PathBuf {
        let relative = self
            .own_cgroup
            .as_deref()
            .and_then(|own| own.strip_prefix(&self.mount_root).ok());
        match relative {
            Some(rel) if !rel.as_os_str().is_empty() => self.mount_point.join(rel),
            _ => self.mount_point.clone(),
        }
    }
}

/// Every cgroup hierarchy this process can use, and the resulting mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchies {
    mode: CgroupMode,
    v1: Vec<Hierarchy>,
    unified: Option<Hierarchy>,
}

impl Hierarchies {
    /// Reads this process's mount table and cgroup membership.
    pub fn detect() -> Result<Hierarchies, CgroupError> {
        Self::from_files(Path::new(MOUNTINFO_PATH), Path::new(PROC_CGROUP_PATH))
    }

    /// Like [`Hierarchies::detect`] with injected files (tests, another process's view).
    pub fn from_files(mountinfo: &Path, proc_cgroup: &Path) -> Result<Hierarchies, CgroupError> {
        let mounts =
            fs::read_to_string(mountinfo).map_err(|source| CgroupError::ReadMountinfo {
                path: mountinfo.to_path_buf(),
                source,
            })?;
        let own = fs::read_to_string(proc_cgroup).map_err(|source| CgroupError::ReadOwnCgroup {
            path: proc_cgroup.to_path_buf(),
            source,
        })?;
        Self::parse(&mounts, &own)
    }

    /// Builds the hierarchies from the text of a mountinfo file and of a `/proc/<pid>/cgroup`
    /// file. Only `cgroup` and `cgroup2` mounts matter; a hierarchy mounted twice (bind mounts)
    /// is kept once, at its first mount.
    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Result<Hierarchies, CgroupError> {
        let own = parse_proc_cgroup(proc_cgroup);
        let mut v1: Vec<Hierarchy> = Vec::new();
        let mut unified: Option<Hierarchy> = None;
        for line in mountinfo.lines().filter(|l| !l.trim().is_empty()) {
            let Some(mut hierarchy) = parse_mountinfo_line(line)? else {
                continue;
            };
            hierarchy.own_cgroup = find_own_cgroup(&own, &hierarchy);
            if hierarchy.unified {
                unified.get_or_insert(hierarchy);
            } else if !v1.iter().any(|h| same_controllers(h, &hierarchy)) {
                v1.push(hierarchy);
            }
        }
        let mode = select_mode(&v1, unified.is_some())?;
        debug!(
            "cgroups: mode {mode:?}, {} v1 hierarchies, cgroup2 at {:?}",
            v1.len(),
            unified.as_ref().map(|h| &h.mount_point)
        );
        Ok(Hierarchies { mode, v1, unified })
    }

    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// The v1 hierarchies, named ones included.
    pub fn v1(&self) -> &[Hierarchy] {
        &self.v1
    }

    /// The cgroup2 mount, in hybrid and unified modes.
    pub fn unified(&self) -> Option<&Hierarchy> {
        self.unified.as_ref()
    }

    /// The v1 hierarchy carrying `controller`, if one is mounted.
    pub fn v1_controller(&self, controller: &str) -> Option<&Hierarchy> {
        self.v1.iter().find(|h| h.has_controller(controller))
    }

    /// Every hierarchy a container cgroup gets a directory in: all v1 hierarchies (named ones
    /// too: runc joins `name=systemd`, and so do we) and the cgroup2 one (in hybrid mode too,
    /// as runc does: it gives `cgroup.kill` and `cgroup.events` for the whole container).
    pub fn all(&self) -> impl Iterator<Item = &Hierarchy> {
        self.v1.iter().chain(self.unified.as_ref())
    }
}

/// Pure v2 when no v1 hierarchy carries a real (non-named) controller; otherwise hybrid or
/// legacy depending on whether cgroup2 is mounted next to the v1 hierarchies.
fn select_mode(v1: &[Hierarchy], has_unified: bool) -> Result<CgroupMode, CgroupError> {
    let has_v1_controller = v1
        .iter()
        .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
    match (has_v1_controller, has_unified) {
        (true, true) => Ok(CgroupMode::Hybrid),
        (true, false) => Ok(CgroupMode::Legacy),
        (false, true) => Ok(CgroupMode::Unified),
        (false, false) => Err(CgroupError::NoHierarchy),
    }
}

/// Parses one mountinfo line (proc(5)); `None` for mounts other than cgroup and cgroup2.
/// `id parent major:minor root mount_point options [optional...] - fstype source super_options`
fn parse_mountinfo_line(line: &str) -> Result<Option<Hierarchy>, CgroupError> {
    let info = crate::mountinfo::parse_line(line).ok_or_else(|| CgroupError::ParseMountinfo {
        line: line.to_string(),
    })?;
    let unified = match info.fstype.as_str() {
        "cgroup2" => true,
        "cgroup" => false,
        _ => return Ok(None),
    };
    let controllers = if unified {
        Vec::new()
    } else {
        parse_v1_controllers(&info.super_options)
    };
    if !unified && controllers.is_empty() {
        return Ok(None);
    }
    Ok(Some(Hierarchy {
        controllers,
        unified,
        mount_point: info.mount_point,
        mount_root: info.root,
        own_cgroup: None,
    }))
}

/// The controllers named in a v1 mount's super options (`rw,cpu,cpuacct` → `cpu`, `cpuacct`),
/// named hierarchies kept as `name=...`.
fn parse_v1_controllers(super_options: &[String]) -> Vec<String> {
    super_options
        .iter()
        .filter(|option| is_controller_option(option))
        .cloned()
        .collect()
}

fn is_controller_option(option: &str) -> bool {
    if let Some(name) = option.strip_prefix("name=") {
        return !name.is_empty();
    }
    !option.is_empty() && !option.contains('=') && !NON_CONTROLLER_OPTIONS.contains(&option)
}

/// One line of `/proc/<pid>/cgroup`: `id:controllers:path`; controllers sorted, empty for
/// cgroup2 (`0::/path`).
struct OwnCgroup {
    controllers: BTreeSet<String>,
    path: PathBuf,
}

fn parse_proc_cgroup(text: &str) -> Vec<OwnCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(OwnCgroup {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: PathBuf::from(path),
            })
        })
        .collect()
}

/// The kernel lists a v1 hierarchy by the same controller set as its mount options, in its
/// own order, so compare sets.
fn find_own_cgroup(own: &[OwnCgroup], hierarchy: &Hierarchy) -> Option<PathBuf> {
    let wanted: BTreeSet<String> = hierarchy.controllers.iter().cloned().collect();
    own.iter()
        .find(|o| o.controllers == wanted)
        .map(|o| o.path.clone())
}

fn same_controllers(a: &Hierarchy, b: &Hierarchy) -> bool {
    let a: BTreeSet<&String> = a.controllers.iter().collect();
    let b: BTreeSet<&String> = b.controllers.iter().collect();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's shape (`grep cgroup /proc/self/mountinfo`), with a few unrelated lines.
    const HYBRID_MOUNTINFO: &str = "\
22 27 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const HYBRID_PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/f9d44d7eb94b271a495e15c58d45ee8a
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

    const PURE_V2_MOUNTINFO: &str = "\
25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
26 25 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:3 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn parse_this_machines_mountinfo() {
        let h = Hierarchies::parse(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUP).unwrap();
        assert_eq!(h.mode(), CgroupMode::Hybrid);
        let names: Vec<&str> = h.v1().iter().map(|h| h.controllers()[0].as_str()).collect();
        assert_eq!(
            names,
            [
                "cpu",
                "cpuacct",
                "cpuset",
                "memory",
                "devices",
                "freezer",
                "blkio",
                "pids",
                "name=systemd"
            ]
        );
        assert!(h.v1().iter().all(|h| h.controllers().len() == 1));
        let unified = h.unified().unwrap();
        assert!(unified.is_unified());
        assert_eq!(unified.mount_point(), Path::new("/sys/fs/cgroup/unified"));
        let memory = h.v1_controller("memory").unwrap();
        assert_eq!(memory.mount_point(), Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(
            memory.own_dir(),
            Path::new("/sys/fs/cgroup/memory/process_api/f9d44d7eb94b271a495e15c58d45ee8a")
        );
        assert_eq!(
            h.v1_controller("pids").unwrap().own_dir(),
            Path::new("/sys/fs/cgroup/pids")
        );
        assert_eq!(h.all().count(), 10);
    }

    #[test]
    fn parse_real_mountinfo_of_this_process() {
        // Whatever this host is, detection must succeed and agree with the mount table.
        let h = Hierarchies::detect().unwrap();
        let text = fs::read_to_string(MOUNTINFO_PATH).unwrap();
        assert_eq!(h.unified().is_some(), text.contains(" - cgroup2 "));
    }

    #[test]
    fn parse_pure_v2() {
        let h = Hierarchies::parse(PURE_V2_MOUNTINFO, "0::/init.scope\n").unwrap();
        assert_eq!(h.mode(), CgroupMode::Unified);
        assert!(h.v1().is_empty());
        let unified = h.unified().unwrap();
        assert_eq!(unified.mount_point(), Path::new("/sys/fs/cgroup"));
        assert_eq!(unified.own_dir(), Path::new("/sys/fs/cgroup/init.scope"));
    }

    #[test]
    fn parse_legacy_with_combined_controllers() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
32 25 0:28 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset,clone_children
33 25 0:29 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
";
        let own =
            "4:name=systemd:/user.slice\n3:cpuset:/\n2:net_prio,net_cls:/a\n1:cpuacct,cpu:/b\n";
        let h = Hierarchies::parse(mountinfo, own).unwrap();
        assert_eq!(h.mode(), CgroupMode::Legacy);
        assert_eq!(h.v1().len(), 4);
        let cpu = h.v1_controller("cpu").unwrap();
        assert_eq!(cpu, h.v1_controller("cpuacct").unwrap());
        assert_eq!(cpu.controllers(), ["cpu", "cpuacct"]);
        assert_eq!(cpu.own_dir(), Path::new("/sys/fs/cgroup/cpu,cpuacct/b"));
        assert_eq!(
            h.v1_controller("net_prio").unwrap().own_dir(),
            Path::new("/sys/fs/cgroup/net_cls,net_prio/a")
        );
        assert_eq!(h.v1_controller("cpuset").unwrap().controllers(), ["cpuset"]);
        let systemd = h.v1_controller("name=systemd").unwrap();
        assert_eq!(systemd.controllers(), ["name=systemd"]);
        assert_eq!(
            systemd.own_dir(),
            Path::new("/sys/fs/cgroup/systemd/user.slice")
        );
    }

    #[test]
    fn parse_nested_mount_root() {
        // Inside a container without its own cgroup namespace: the mount shows a subtree.
        let mountinfo = "\
700 690 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
701 690 0:36 /docker/abc /sys/fs/cgroup/pids ro,nosuid - cgroup cgroup rw,pids
702 690 0:38 /docker/abc /sys/fs/cgroup/unified ro,nosuid - cgroup2 cgroup2 rw
";
        let own = "2:memory:/docker/abc/shim\n1:pids:/elsewhere\n0::/docker/abc\n";
        let h = Hierarchies::parse(mountinfo, own).unwrap();
        let memory = h.v1_controller("memory").unwrap();
        assert_eq!(memory.mount_root(), Path::new("/docker/abc"));
        assert_eq!(memory.own_dir(), Path::new("/sys/fs/cgroup/memory/shim"));
        // Own cgroup outside the visible subtree: fall back to the mount point.
        let pids = h.v1_controller("pids").unwrap();
        assert_eq!(pids.own_dir(), Path::new("/sys/fs/cgroup/pids"));
        // Own cgroup is the mount root itself.
        assert_eq!(
            h.unified().unwrap().own_dir(),
            Path::new("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn parse_keeps_first_of_duplicate_mounts_and_unescapes() {
        let mountinfo = "\
40 31 0:35 / /sys/fs/cgroup/my\\040pids rw shared:1 master:2 - cgroup cgroup rw,pids
41 31 0:35 / /other/pids rw - cgroup cgroup rw,pids
";
        let h = Hierarchies::parse(mountinfo, "").unwrap();
        assert_eq!(h.v1().len(), 1);
        assert_eq!(h.v1()[0].mount_point(), Path::new("/sys/fs/cgroup/my pids"));
        assert_eq!(h.v1()[0].own_dir(), Path::new("/sys/fs/cgroup/my pids"));
    }

    #[test]
    fn parse_rejects_no_cgroups_and_malformed_lines() {
        let no_cgroups = "22 27 0:20 / /sys rw - sysfs sysfs rw\n";
        assert!(matches!(
            Hierarchies::parse(no_cgroups, ""),
            Err(CgroupError::NoHierarchy)
        ));
        assert!(matches!(
            Hierarchies::parse("22 27 0:20 / /sys rw sysfs\n", ""),
            Err(CgroupError::ParseMountinfo { .. })
        ));
    }
}
