//! Everything that turns an OCI `config.json` into a process inside its namespaces.
//!
//! The daemon uses this module only for pure work (loading and validating the spec, cgroup
//! directories). The setup steps themselves (`init::prepare`) run in the container's init, a
//! descendant of the single-threaded spawner, never in the threaded daemon.

pub mod capabilities;
pub mod cgroupfs_mounts;
pub mod credentials;
pub mod device_nodes;
pub mod error;
pub mod fds;
pub mod hooks;
pub mod hostname;
pub mod in_root;
pub mod init;
pub mod lsm;
pub mod masks;
pub mod mount_options;
pub mod mounts;
pub mod namespaces;
pub mod pivot;
pub mod process_attrs;
pub mod program;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod sys;
pub mod sysctl;
pub mod terminal;

use std::path::PathBuf;

use oci_spec::runtime::{LinuxPersonality, LinuxSeccomp, Process, Spec};
use serde::{Deserialize, Serialize};

/// What a container init needs to set itself up, computed by the daemon before any fork.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    /// The container id (for error messages).
    pub id: String,
    /// The validated spec from the bundle's `config.json`.
    pub spec: Spec,
    /// Absolute host path of the container's root filesystem, already mounted by the daemon.
    pub rootfs: PathBuf,
    /// The bundle directory (for the hooks' state).
    pub bundle: PathBuf,
}

/// What an exec'd process needs: its own `process` spec. It runs in the init's namespaces
/// (joined by the helper through the init's pidfd) and cgroup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecConfig {
    /// The container id and exec id (for error messages).
    pub id: String,
    pub exec_id: String,
    pub process: Process,
    /// The container's `linux.seccomp`: an exec'd process is confined like the init.
    pub seccomp: Option<LinuxSeccomp>,
    /// The container's `linux.personality`, which execs get too.
    pub personality: Option<LinuxPersonality>,
}
