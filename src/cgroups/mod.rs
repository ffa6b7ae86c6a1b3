//! Cgroups of containers, on cgroup v1 (legacy and hybrid hosts) and pure cgroup v2.
//!
//! The daemon detects the hierarchies once ([`Hierarchies::detect`], from the mount table),
//! parses a spec's `linux.cgroupsPath` ([`CgroupPath::parse`]) and creates the container's
//! cgroup ([`Cgroup::create`]). The [`Cgroup`] value (serializable) goes to the spawner, whose
//! child joins it ([`Cgroup::join`], or `CLONE_INTO_CGROUP` with [`Cgroup::open_dir_fd`] on pure
//! v2). Kill with `all` uses [`Cgroup::kill_all`]; Delete uses [`Cgroup::remove`].
//!
//! cgroupfs file operations, and with the systemd cgroup driver a transient scope per container
//! made through systemd's D-Bus API first ([`systemd`], on pure cgroup v2 hosts).
//! Every root comes from the mount table text, so tests run on a temporary directory.

mod cgroup;
mod device_program;
mod devices;
mod error;
mod files;
mod freezer;
mod hierarchy;
mod hugetlb;
mod io;
mod kill;
mod oom;
mod path;
mod resources;
pub mod systemd;
mod unified;

pub use cgroup::{Cgroup, CgroupDir};
pub use devices::DeviceRules;
pub use error::CgroupError;
pub use hierarchy::{CgroupMode, Hierarchies, Hierarchy, MOUNTINFO_PATH, PROC_CGROUP_PATH};
pub use path::{CgroupPath, SystemdScope};
pub use resources::cpu_shares_to_weight;

#[cfg(test)]
mod tests;
