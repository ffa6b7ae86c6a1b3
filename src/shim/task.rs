//! A container as the daemon sees it: its bundle, rootfs mount, cgroup, stdio and init process.
//!
//! `Task::create` acquires those in order and gives every one back if a later step fails, so a
//! failed Create leaves no mount, cgroup, FIFO reader or process behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use oci_spec::runtime::{Hook, LinuxPersonality, LinuxSeccomp};
use serde::{Deserialize, Serialize};

use super::error::TaskError;
use super::exec_process::ExecProcess;
use super::exit_order::ExitOrder;
use super::process::Process;
use super::snapshot_mount::MountedRootfs;
use super::state_file::StateFile;
use crate::cgroups::Cgroup;
use crate::container::hooks::StateBase;
use crate::io::{ProcessIo, StdioPaths};

/// One container of this shim.
pub struct Task {
    pub id: String,
    pub bundle: PathBuf,
    pub stdio: StdioPaths,
    pub init: Arc<Process>,
    /// TaskExit order between the init and the execs; refuses execs after the init exited.
    pub order: Arc<ExitOrder>,
    /// Exec processes by exec id.
    pub(super) execs: Mutex<HashMap<String, Arc<ExecProcess>>>,
    pub cgroup: Option<Cgroup>,
    /// The spec's `linux.seccomp`, for the execs (confined like the init).
    pub seccomp: Option<LinuxSeccomp>,
    /// The spec's `linux.personality`, for the execs.
    pub personality: Option<LinuxPersonality>,
    /// The user and time namespaces the init has of its own, as clone flags: execs join
    /// them (the others they always join).
    pub join_also: u64,
    /// What the `poststart` and `poststop` hooks need (the others run during Create).
    pub hooks: TaskHooks,
    pub(super) rootfs_target: Option<PathBuf>,
    /// The CRIU binary of the Create's runtime options (`criu_path`), for Checkpoint.
    pub criu_path: Option<PathBuf>,
    /// What Delete gives back; `None` once it did.
    pub(super) held: Mutex<Option<Held>>,
}

/// The hooks the daemon runs after Create, and their state's common part.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskHooks {
    pub state: StateBase,
    pub poststart: Vec<Hook>,
    pub poststop: Vec<Hook>,
}

pub(super) struct Held {
    pub(super) rootfs: Option<MountedRootfs>,
    pub(super) io: ProcessIo,
}

impl Task {
    pub fn state_file(&self) -> StateFile {
        StateFile::in_bundle(&self.bundle)
    }

    pub fn rootfs_target(&self) -> Option<&Path> {
        self.rootfs_target.as_deref()
    }

    pub(super) fn execs(&self) -> MutexGuard<'_, HashMap<String, Arc<ExecProcess>>> {
        self.execs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// ResizePty on the init: nothing to do without a terminal, as runc's shim (which also
    /// accepts it after the init exited).
    pub fn resize_pty(&self, width: u32, height: u32) -> Result<(), TaskError> {
        match self.held().as_ref() {
            Some(held) => held
                .io
                .resize(width, height)
                .map_err(|e| TaskError::precondition(e.to_string())),
            None => Err(TaskError::not_found("container was deleted")),
        }
    }

    /// CloseIO on the init.
    pub fn close_stdin(&self) {
        if let Some(held) = self.held().as_ref() {
            held.io.close_stdin();
        }
    }

    /// Releases what Create acquired, once. The init must have exited; one that was created
    /// but never started is killed here (it never ran user code).
    /// `wait_for_readers`: let containerd read the init's last output first (Delete does; a
    /// shim shutting down on SIGTERM does not wait for anyone).
    pub fn destroy(&self, wait_for_readers: bool) -> Result<(), TaskError> {
        self.release(wait_for_readers, None)
    }

    /// [`Task::destroy`] that waits at most a few seconds for the init's exit: for the reaper's
    /// own thread, which cannot reap while it waits, and for a process that ignores SIGKILL
    /// (uninterruptible sleep).
    pub fn destroy_bounded(&self, wait_for_readers: bool) -> Result<(), TaskError> {
        self.release(wait_for_readers, Some(std::time::Duration::from_secs(2)))
    }

    fn release(
        &self,
        wait_for_readers: bool,
        bound: Option<std::time::Duration>,
    ) -> Result<(), TaskError> {
        let Some(mut held) = self.held().take() else {
            return Ok(());
        };
        if self.init.exit().is_none() {
            let _ = self.init.kill(nix::libc::SIGKILL);
            match bound {
                None => drop(self.init.wait()),
                Some(bound) => drop(self.init.wait_timeout(bound)),
            }
        }
        if wait_for_readers {
            held.io.wait_output_read();
        }
        let mut errors = Vec::new();
        if let Some(cgroup) = &self.cgroup
            && let Err(e) = cgroup.remove()
        {
            errors.push(format!("remove cgroup: {e}"));
        }
        if let Some(rootfs) = held.rootfs.as_mut()
            && let Err(e) = rootfs.unmount()
        {
            errors.push(e.to_string());
        }
        self.state_file().remove();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TaskError::internal(errors.join("; ")))
        }
    }
}
