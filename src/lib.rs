//! sibling: a containerd shim v2 that is its own OCI runtime, with sibling-mode spawning.
//!
//! - [`spawn`]: the spawner (forked before the daemon's first thread), its wire protocol and
//!   the `clone3(CLONE_PARENT)` calls that make every container process a child of the daemon.
//! - [`container`]: everything that turns an OCI `config.json` into a process in its namespaces.
//! - [`shim`]: the containerd side: actions, daemon, Task service, records, reaper, events.
//! - [`io`]: container stdio.
//! - [`info`]: the `-info` answer (RuntimeInfo with the OCI features document).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cgroups;
pub mod container;
pub mod info;
pub mod io;
pub mod mountinfo;
pub mod shim;
pub mod spawn;

/// The shim's own protobuf messages, compiled from `protos/` by build.rs.
#[allow(clippy::all, clippy::pedantic, missing_docs, unused)]
pub mod protos {
    include!(concat!(env!("OUT_DIR"), "/protos/mod.rs"));
}
