//! Which namespaces a container gets: new ones (clone flags) and existing ones joined by path.
//!
//! The daemon computes the plan from the spec before any fork ([`NamespacePlan::from_spec`]); the
//! spawner's per-request helper calls [`NamespacePlan::join_all`] and then clones the init with
//! [`NamespacePlan::new_flags`]. A namespace type absent from the spec is shared with the host.

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::libc;
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

/// `CLONE_NEWTIME` (not in libc's Linux constants; only usable with clone3 or unshare).
const CLONE_NEWTIME: u64 = 0x80;

/// A kind of Linux namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NamespaceKind {
    Mount,
    Cgroup,
    Uts,
    Ipc,
    User,
    Pid,
    Net,
    Time,
}

impl NamespaceKind {
    /// The `CLONE_NEW*` flag for this kind (also the `nstype` setns expects).
    pub fn clone_flag(self) -> u64 {
        let flag = match self {
            Self::Mount => libc::CLONE_NEWNS,
            Self::Cgroup => libc::CLONE_NEWCGROUP,
            Self::Uts => libc::CLONE_NEWUTS,
            Self::Ipc => libc::CLONE_NEWIPC,
            Self::User => libc::CLONE_NEWUSER,
            Self::Pid => libc::CLONE_NEWPID,
            Self::Net => libc::CLONE_NEWNET,
            Self::Time => return CLONE_NEWTIME,
        };
        flag as u64
    }

    /// The name the kernel uses in `/proc/<pid>/ns/`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mount => "mnt",
            Self::Cgroup => "cgroup",
            Self::Uts => "uts",
            Self::Ipc => "ipc",
            Self::User => "user",
            Self::Pid => "pid",
            Self::Net => "net",
            Self::Time => "time",
        }
    }

    fn from_oci(typ: LinuxNamespaceType) -> Self {
        match typ {
            LinuxNamespaceType::Mount => Self::Mount,
            LinuxNamespaceType::Cgroup => Self::Cgroup,
            LinuxNamespaceType::Uts => Self::Uts,
            LinuxNamespaceType::Ipc => Self::Ipc,
            LinuxNamespaceType::User => Self::User,
            LinuxNamespaceType::Pid => Self::Pid,
            LinuxNamespaceType::Network => Self::Net,
            LinuxNamespaceType::Time => Self::Time,
        }
    }
}

/// Why the spec's namespaces cannot be honoured, or joining one failed.
#[derive(Debug)]
pub enum NamespaceError {
    /// The spec lists the same namespace type twice.
    Duplicate(NamespaceKind),
    /// A namespace type (or feature) this runtime does not support yet.
    Unsupported(&'static str),
    /// The spec's namespaces contradict each other.
    Invalid(&'static str),
    /// A namespace path that is not absolute.
    RelativePath { kind: NamespaceKind, path: PathBuf },
    /// Opening a namespace path.
    Open {
        kind: NamespaceKind,
        path: PathBuf,
        errno: Errno,
    },
    /// setns on an opened namespace path.
    Join {
        kind: NamespaceKind,
        path: PathBuf,
        errno: Errno,
    },
}

impl fmt::Display for NamespaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duplicate(kind) => {
                write!(f, "namespaces: {} is listed more than once", kind.name())
            }
            Self::Unsupported(what) => write!(f, "namespaces: {what} is not supported yet"),
            Self::Invalid(why) => write!(f, "namespaces: {why}"),
            Self::RelativePath { kind, path } => write!(
                f,
                "namespaces: {} namespace path {} is not absolute",
                kind.name(),
                path.display()
            ),
            Self::Open { kind, path, errno } => write!(
                f,
                "open {} namespace {}: {}",
                kind.name(),
                path.display(),
                errno.desc()
            ),
            Self::Join { kind, path, errno } => write!(
                f,
                "join {} namespace {}: {}",
                kind.name(),
                path.display(),
                errno.desc()
            ),
        }
    }
}

impl std::error::Error for NamespaceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Open { errno, .. } | Self::Join { errno, .. } => Some(errno),
            _ => None,
        }
    }
}

/// One line of a `uid_map` or `gid_map`: `size` ids from `container` up map to `host` up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// The id maps of a new user namespace, written by the helper (outside it) before the init
/// goes on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMappings {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

impl IdMappings {
    /// The text of a map file: one `container host size` line per range.
    pub fn map_text(ranges: &[IdRange]) -> String {
        ranges
            .iter()
            .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
            .collect()
    }

    /// The host id of container id `id`, if it is mapped.
    pub fn host_id(ranges: &[IdRange], id: u32) -> Option<u32> {
        ranges
            .iter()
            .find(|r| id >= r.container && id - r.container < r.size)
            .map(|r| r.host + (id - r.container))
    }
}

/// The namespaces of a new container: created at clone, or joined by path before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespacePlan {
    /// `CLONE_NEW*` flags for the clone of the init: spec namespaces without a path.
    pub new_flags: u64,
    /// Existing namespaces to join before that clone: the user namespace first (the others
    /// are owned by it), the mount namespace last.
    pub join: Vec<(NamespaceKind, PathBuf)>,
    /// The id maps when the container gets a new user namespace.
    pub id_mappings: Option<IdMappings>,
    /// `linux.timeOffsets` of a new time namespace, as lines of `timens_offsets`
    /// (`<clock> <secs> <nanosecs>`).
    pub time_offsets: Vec<String>,
}

impl NamespacePlan {
    /// Builds the plan from `linux.namespaces`. Rejects duplicates, relative paths, a new user
    /// namespace without id maps (or maps without one) and time offsets (not supported yet).
    pub fn from_spec(spec: &Spec) -> Result<Self, NamespaceError> {
        let Some(linux) = spec.linux() else {
            return Ok(Self::default());
        };
        let mut plan = Self::default();
        let mut seen = Vec::new();
        for namespace in linux.namespaces().iter().flatten() {
            let kind = NamespaceKind::from_oci(namespace.typ());
            if seen.contains(&kind) {
                return Err(NamespaceError::Duplicate(kind));
            }
            seen.push(kind);
            match namespace.path() {
                Some(path) if !path.is_absolute() => {
                    return Err(NamespaceError::RelativePath {
                        kind,
                        path: path.clone(),
                    });
                }
                Some(path) => plan.join.push((kind, path.clone())),
                None => plan.new_flags |= kind.clone_flag(),
            }
        }
        plan.id_mappings = id_mappings(linux, plan.is_new(NamespaceKind::User))?;
        plan.time_offsets = time_offsets(linux, plan.is_new(NamespaceKind::Time))?;
        plan.join.sort_by_key(|(kind, _)| join_order(*kind));
        Ok(plan)
    }

    /// Whether the container gets a new namespace of this kind at clone.
    pub fn is_new(&self, kind: NamespaceKind) -> bool {
        self.new_flags & kind.clone_flag() != 0
    }

    /// Whether the container joins an existing namespace of this kind.
    pub fn is_joined(&self, kind: NamespaceKind) -> bool {
        self.join.iter().any(|(k, _)| *k == kind)
    }

    /// Whether the container has its own namespace of this kind (new or joined), as opposed to
    /// sharing the host's.
    pub fn is_private(&self, kind: NamespaceKind) -> bool {
        self.is_new(kind) || self.is_joined(kind)
    }

    /// Joins every namespace of `join` (call in the process that then clones the init).
    ///
    /// Opens every path first and only then calls setns, as runc's nsexec does: once in another
    /// mount namespace (joined last) or another pid namespace's /proc, later paths may not
    /// resolve any more.
    pub fn join_all(&self) -> Result<(), NamespaceError> {
        let mut opened = Vec::with_capacity(self.join.len());
        for (kind, path) in &self.join {
            let fd = open_namespace(*kind, path)?;
            opened.push((*kind, path, fd));
        }
        opened.sort_by_key(|(kind, _, _)| join_order(*kind));
        for (kind, path, fd) in opened {
            let nstype = CloneFlags::from_bits_retain(kind.clone_flag() as libc::c_int);
            setns(&fd, nstype).map_err(|errno| NamespaceError::Join {
                kind,
                path: path.clone(),
                errno,
            })?;
        }
        Ok(())
    }
}

/// The user namespace first: the others belong to it, and joining them needs its
/// capabilities. The mount namespace last: after setns into it, the remaining paths would be
/// looked up in its tree.
fn join_order(kind: NamespaceKind) -> u8 {
    match kind {
        NamespaceKind::User => 0,
        NamespaceKind::Mount => 2,
        _ => 1,
    }
}

/// `linux.uidMappings`/`gidMappings`: required with a new user namespace, refused without one
/// (a joined namespace already has its maps).
fn id_mappings(
    linux: &oci_spec::runtime::Linux,
    new_user_namespace: bool,
) -> Result<Option<IdMappings>, NamespaceError> {
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
    let mappings = IdMappings {
        uids: ranges(linux.uid_mappings()),
        gids: ranges(linux.gid_mappings()),
    };
    let has_maps = !mappings.uids.is_empty() || !mappings.gids.is_empty();
    match (new_user_namespace, has_maps) {
        (true, true) if mappings.uids.is_empty() || mappings.gids.is_empty() => Err(
            NamespaceError::Invalid("a new user namespace needs both uidMappings and gidMappings"),
        ),
        (true, true) => Ok(Some(mappings)),
        (true, false) => Err(NamespaceError::Invalid(
            "a new user namespace needs uidMappings and gidMappings",
        )),
        (false, true) => Err(NamespaceError::Invalid(
            "uidMappings/gidMappings are given but the container gets no new user namespace",
        )),
        (false, false) => Ok(None),
    }
}

/// `linux.timeOffsets`: only with a new time namespace, only the clocks a time namespace
/// offsets (monotonic, boottime).
fn time_offsets(
    linux: &oci_spec::runtime::Linux,
    new_time_namespace: bool,
) -> Result<Vec<String>, NamespaceError> {
    let Some(offsets) = linux.time_offsets().as_ref().filter(|o| !o.is_empty()) else {
        return Ok(Vec::new());
    };
    if !new_time_namespace {
        return Err(NamespaceError::Invalid(
            "linux.timeOffsets are given but the container gets no new time namespace",
        ));
    }
    let mut lines = Vec::new();
    for (clock, offset) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(NamespaceError::Invalid(
                "linux.timeOffsets names a clock other than monotonic and boottime",
            ));
        }
        let secs = offset.secs().unwrap_or(0);
        let nanos = offset.nanosecs().unwrap_or(0);
        lines.push(format!("{clock} {secs} {nanos}"));
    }
    lines.sort();
    Ok(lines)
}

fn open_namespace(kind: NamespaceKind, path: &PathBuf) -> Result<OwnedFd, NamespaceError> {
    open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|errno| {
        NamespaceError::Open {
            kind,
            path: path.clone(),
            errno,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(namespaces: serde_json::Value) -> Spec {
        let json = serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": { "namespaces": namespaces },
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn new_namespaces_become_clone_flags() {
        let spec = spec_with(serde_json::json!([
            {"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"},
            {"type": "network"}, {"type": "cgroup"}, {"type": "time"}
        ]));
        let plan = NamespacePlan::from_spec(&spec).unwrap();
        let expected = libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWCGROUP;
        assert_eq!(plan.new_flags, expected as u64 | CLONE_NEWTIME);
        assert!(plan.join.is_empty());
        assert!(plan.is_new(NamespaceKind::Net) && plan.is_private(NamespaceKind::Net));
    }

    #[test]
    fn paths_are_joined_with_the_mount_namespace_last() {
        let spec = spec_with(serde_json::json!([
            {"type": "mount", "path": "/proc/42/ns/mnt"},
            {"type": "network", "path": "/var/run/netns/pod"},
            {"type": "pid"},
            {"type": "ipc", "path": "/proc/42/ns/ipc"}
        ]));
        let plan = NamespacePlan::from_spec(&spec).unwrap();
        assert_eq!(plan.new_flags, libc::CLONE_NEWPID as u64);
        let kinds: Vec<_> = plan.join.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [NamespaceKind::Net, NamespaceKind::Ipc, NamespaceKind::Mount]
        );
        assert!(plan.is_joined(NamespaceKind::Net) && !plan.is_new(NamespaceKind::Net));
    }

    #[test]
    fn absent_types_are_shared_with_the_host() {
        let plan =
            NamespacePlan::from_spec(&spec_with(serde_json::json!([{"type": "mount"}]))).unwrap();
        assert_eq!(plan.new_flags, libc::CLONE_NEWNS as u64);
        assert!(!plan.is_private(NamespaceKind::Uts));
        let no_linux: Spec = serde_json::from_str(r#"{"ociVersion": "1.0.2"}"#).unwrap();
        assert_eq!(
            NamespacePlan::from_spec(&no_linux).unwrap(),
            NamespacePlan::default()
        );
    }

    #[test]
    fn a_new_user_namespace_carries_its_id_maps() {
        let mut json = serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {
                "namespaces": [{"type": "user"}, {"type": "mount"}],
                "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 10}],
            },
        });
        let spec: Spec = serde_json::from_value(json.clone()).unwrap();
        let plan = NamespacePlan::from_spec(&spec).unwrap();
        assert!(plan.is_new(NamespaceKind::User));
        let maps = plan.id_mappings.unwrap();
        assert_eq!(IdMappings::map_text(&maps.uids), "0 100000 65536\n");
        assert_eq!(IdMappings::host_id(&maps.gids, 9), Some(200009));
        assert_eq!(IdMappings::host_id(&maps.gids, 10), None);
        json["linux"]["gidMappings"] = serde_json::json!([]);
        let spec: Spec = serde_json::from_value(json.clone()).unwrap();
        let err = NamespacePlan::from_spec(&spec).unwrap_err().to_string();
        assert!(err.contains("needs both"), "{err}");
        json["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}]);
        let spec: Spec = serde_json::from_value(json).unwrap();
        let err = NamespacePlan::from_spec(&spec).unwrap_err().to_string();
        assert!(err.contains("no new user namespace"), "{err}");
    }

    #[test]
    fn a_joined_user_namespace_comes_first() {
        let spec = spec_with(serde_json::json!([
            {"type": "mount", "path": "/proc/42/ns/mnt"},
            {"type": "network", "path": "/proc/42/ns/net"},
            {"type": "user", "path": "/proc/42/ns/user"},
        ]));
        let plan = NamespacePlan::from_spec(&spec).unwrap();
        let kinds: Vec<_> = plan.join.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                NamespaceKind::User,
                NamespaceKind::Net,
                NamespaceKind::Mount
            ]
        );
        assert_eq!(plan.id_mappings, None);
    }

    #[test]
    fn duplicates_and_relative_paths_are_rejected() {
        let dup = spec_with(serde_json::json!([{"type": "pid"}, {"type": "pid", "path": "/x"}]));
        assert!(matches!(
            NamespacePlan::from_spec(&dup),
            Err(NamespaceError::Duplicate(NamespaceKind::Pid))
        ));
        let relative = spec_with(serde_json::json!([{"type": "network", "path": "netns/x"}]));
        assert!(matches!(
            NamespacePlan::from_spec(&relative),
            Err(NamespaceError::RelativePath { .. })
        ));
    }

    #[test]
    fn plan_round_trips_through_serde() {
        let spec = spec_with(serde_json::json!([
            {"type": "pid"}, {"type": "network", "path": "/var/run/netns/pod"}
        ]));
        let plan = NamespacePlan::from_spec(&spec).unwrap();
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<NamespacePlan>(&json).unwrap(), plan);
    }

    #[test]
    fn join_reports_a_missing_path() {
        let plan = NamespacePlan {
            new_flags: 0,
            join: vec![(NamespaceKind::Net, "/nonexistent/netns".into())],
            id_mappings: None,
            time_offsets: Vec::new(),
        };
        let err = plan.join_all().unwrap_err();
        assert_eq!(
            err.to_string(),
            "open net namespace /nonexistent/netns: No such file or directory"
        );
    }
}
