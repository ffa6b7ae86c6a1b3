//! The one error type of the cgroup module: a variant per failed step, carrying what failed.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a cgroup step failed. Each variant names the step and carries the path (or value) it
/// worked on, so a message read in containerd's log says exactly what broke.
#[derive(Debug)]
pub enum CgroupError {
    /// Reading the mount table (`/proc/self/mountinfo` or an injected copy) failed.
    ReadMountinfo { path: PathBuf, source: io::Error },
    /// A mount table line does not have the documented shape.
    ParseMountinfo { line: String },
    /// Reading this process's cgroup membership (`/proc/self/cgroup`) failed.
    ReadOwnCgroup { path: PathBuf, source: io::Error },
    /// The mount table lists neither a cgroup v1 hierarchy nor a cgroup2 mount.
    NoHierarchy,
    /// `linux.cgroupsPath` cannot be used (the reason says why).
    InvalidPath { path: String, reason: &'static str },
    /// `mkdir` of a cgroup directory failed.
    CreateDir { path: PathBuf, source: io::Error },
    /// Copying `cpuset.cpus`/`cpuset.mems` from the parent (v1) failed.
    CopyCpuset { path: PathBuf, source: io::Error },
    /// Writing a pid to `cgroup.procs` failed.
    Join {
        path: PathBuf,
        pid: i32,
        source: io::Error,
    },
    /// A cgroup2 directory fd was asked for, but the host is not pure cgroup v2.
    NotUnified,
    /// Opening the cgroup2 directory (for `CLONE_INTO_CGROUP`) failed.
    OpenDir { path: PathBuf, source: io::Error },
    /// Reading `cgroup.procs`, `cgroup.events` or listing child cgroups failed.
    ReadProcs { path: PathBuf, source: io::Error },
    /// Writing `cgroup.kill` failed.
    Kill { path: PathBuf, source: io::Error },
    /// `kill(2)` of one process of the cgroup failed (other than "no such process").
    Signal { pid: i32, source: io::Error },
    /// New processes kept appearing after every round of signals.
    KillIncomplete { path: PathBuf, rounds: usize },
    /// `rmdir` of a cgroup directory failed.
    RemoveDir { path: PathBuf, source: io::Error },
    /// A resource limit needs a controller that no hierarchy provides.
    ControllerMissing { controller: &'static str },
    /// Reading a controller's file (`devices.list`) failed.
    ReadResource { path: PathBuf, source: io::Error },
    /// Writing a resource limit failed.
    WriteResource {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    /// A resource setting this host's cgroups cannot express.
    Unsupported { what: &'static str },
    /// Loading or attaching the cgroup2 device program failed.
    DeviceProgram { reason: String },
    /// A `linux.resources.unified` key that is not a plain cgroup file name.
    InvalidUnifiedKey { key: String },
    /// A systemd unit operation (the systemd cgroup driver) failed; the text says which.
    Systemd(String),
}

impl fmt::Display for CgroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReadMountinfo { path, source } => {
                write!(f, "read mount table {}: {source}", path.display())
            }
            Self::ParseMountinfo { line } => write!(f, "parse mount table line {line:?}"),
            Self::ReadOwnCgroup { path, source } => {
                write!(f, "read own cgroup from {}: {source}", path.display())
            }
            Self::NoHierarchy => write!(f, "no cgroup v1 or cgroup2 mount in the mount table"),
            Self::Unsupported { what } => write!(f, "{what} is not supported here"),
            Self::DeviceProgram { reason } => write!(f, "device rules on cgroup2: {reason}"),
            Self::Systemd(reason) => write!(f, "systemd cgroup driver: {reason}"),
            Self::InvalidUnifiedKey { key } => {
                write!(
                    f,
                    "linux.resources.unified key {key:?} is not a cgroup file name"
                )
            }
            Self::InvalidPath { path, reason } => write!(f, "cgroupsPath {path:?}: {reason}"),
            Self::CreateDir { path, source } => {
                write!(f, "create cgroup directory {}: {source}", path.display())
            }
            Self::CopyCpuset { path, source } => {
                write!(
                    f,
                    "copy cpuset from parent into {}: {source}",
                    path.display()
                )
            }
            Self::Join { path, pid, source } => {
                write!(f, "move pid {pid} into {}: {source}", path.display())
            }
            Self::NotUnified => write!(f, "no cgroup2 directory: the host is not pure cgroup v2"),
            Self::OpenDir { path, source } => {
                write!(f, "open cgroup directory {}: {source}", path.display())
            }
            Self::ReadProcs { path, source } => {
                write!(f, "read processes of {}: {source}", path.display())
            }
            Self::ReadResource { path, source } => {
                write!(f, "read {}: {source}", path.display())
            }
            Self::Kill { path, source } => write!(f, "write {}: {source}", path.display()),
            Self::Signal { pid, source } => write!(f, "signal pid {pid}: {source}"),
            Self::KillIncomplete { path, rounds } => write!(
                f,
                "processes of {} still appearing after {rounds} rounds of signals",
                path.display()
            ),
            Self::RemoveDir { path, source } => {
                write!(f, "remove cgroup directory {}: {source}", path.display())
            }
            Self::ControllerMissing { controller } => {
                write!(
                    f,
                    "no cgroup hierarchy provides the {controller} controller"
                )
            }
            Self::WriteResource {
                path,
                value,
                source,
            } => write!(f, "write {value:?} to {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for CgroupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::ReadMountinfo { source, .. }
            | Self::ReadOwnCgroup { source, .. }
            | Self::CreateDir { source, .. }
            | Self::CopyCpuset { source, .. }
            | Self::Join { source, .. }
            | Self::OpenDir { source, .. }
            | Self::ReadProcs { source, .. }
            | Self::Kill { source, .. }
            | Self::Signal { source, .. }
            | Self::RemoveDir { source, .. }
            | Self::ReadResource { source, .. }
            | Self::WriteResource { source, .. } => Some(source),
            Self::ParseMountinfo { .. }
            | Self::NoHierarchy
            | Self::InvalidPath { .. }
            | Self::NotUnified
            | Self::KillIncomplete { .. }
            | Self::ControllerMissing { .. }
            | Self::Unsupported { .. }
            | Self::DeviceProgram { .. }
            | Self::InvalidUnifiedKey { .. }
            | Self::Systemd(_) => None,
        }
    }
}
