//! The containerd side: the shim's actions (`start`, `delete`), the daemon, the Task service,
//! the container and process records, the reaper and the event queue.
//!
//! Which process runs what: `manager` (and the parts of `shared`, `options` and `shim_cgroup`
//! it calls) runs in the short-lived `start` and `delete` actions; everything else runs in the
//! daemon (`daemon::run` is its entry point; the `Daemon` type there holds what its threads
//! share). Nothing here runs in the spawner or a container process.

pub mod bundle_spec;
pub mod checkpoint;
pub mod cold_start;
pub mod create;
pub mod daemon;
pub mod error;
pub mod events;
pub mod exec_process;
pub mod exit_order;
pub mod hooks;
pub mod logger;
pub mod manager;
pub mod metrics;
pub mod oom_watcher;
pub mod options;
pub mod process;
pub mod reaper;
pub mod restore;
pub mod sealed_exe;
pub mod server;
pub mod service;
pub mod shared;
pub mod shim_cgroup;
pub mod snapshot_mount;
pub mod spawn_process;
pub mod spawner_slot;
pub mod state_file;
pub mod task;
pub mod time;

/// The runtime name containerd knows this shim by.
pub const RUNTIME_NAME: &str = "io.containerd.sibling.v2";

/// Where a container's cgroup goes when its spec names none.
pub const DEFAULT_CGROUP_PARENT: &str = "/sibling";

pub use daemon::{Daemon, Reservation, wake_after};
