//! Exec'd processes of a container.
//!
//! As with runc's shim, the Exec RPC only validates and records the process (TaskExecAdded);
//! Start creates it: the spawner's helper joins the container's cgroup and, through the init's
//! pidfd, all of its namespaces, then clones the process with `CLONE_PARENT`, so an exec is a
//! direct child of the daemon like the init. A missing binary therefore fails Start, and the
//! container keeps running.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use containerd_shim_protos::events::task::TaskExecAdded;
use containerd_shim_protos::shim::shim::ExecProcessRequest;
use containerd_shim_protos::topics::TASK_EXEC_ADDED_EVENT_TOPIC;
use oci_spec::runtime::Process as ProcessSpec;

use super::Daemon;
use super::bundle_spec::refuse_unapplied_process_confinement;
use super::error::TaskError;
use super::process::{Exit, Kind, Process};
use super::spawn_process::{Delivery, spawn_process};
use super::task::Task;
use super::time::go_zero_time;
use crate::container::ExecConfig;
use crate::io::{LogOwner, OutputMode, ProcessIo, StdioPaths};
use crate::spawn::protocol::SpawnRequest;

/// Where an exec is before and after Start.
enum Stage {
    Added,
    Starting,
    Started(Arc<Process>),
    /// Start failed before the process existed for containerd (or the exec was deleted unstarted).
    NeverRan(Exit),
}

/// One exec of a container.
pub struct ExecProcess {
    pub exec_id: String,
    pub stdio: StdioPaths,
    config: ExecConfig,
    stage: Mutex<Stage>,
    changed: Condvar,
    io: Mutex<Option<ProcessIo>>,
}

/// What runc's shim reports for an exec that never ran (its Start failed, or it was deleted
/// before Start): status 0 and Go's zero time, and clients check it. State still reports it
/// CREATED with no pid, as runc's does.
fn never_ran() -> Exit {
    Exit {
        code: 0,
        at: go_zero_time(),
    }
}

impl ExecProcess {
    fn stage(&self) -> MutexGuard<'_, Stage> {
        self.stage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The process, once Start created it.
    pub fn process(&self) -> Option<Arc<Process>> {
        match &*self.stage() {
            Stage::Started(process) => Some(Arc::clone(process)),
            _ => None,
        }
    }

    /// Blocks until the exec has exited (or will never run: see [`never_ran`]).
    pub fn wait(&self) -> Exit {
        let mut stage = self.stage();
        loop {
            match &*stage {
                Stage::Started(process) => {
                    let process = Arc::clone(process);
                    drop(stage);
                    return process.wait();
                }
                Stage::NeverRan(exit) => return exit.clone(),
                Stage::Added | Stage::Starting => {
                    stage = self.changed.wait(stage).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }

    /// The exit, if there is one.
    pub fn exit(&self) -> Option<Exit> {
        match &*self.stage() {
            Stage::Started(process) => process.exit(),
            Stage::NeverRan(exit) => Some(exit.clone()),
            Stage::Added | Stage::Starting => None,
        }
    }

    fn set_stage(&self, stage: Stage) {
        *self.stage() = stage;
        self.changed.notify_all();
    }

    /// ResizePty, as runc's shim answers it: nothing to do (and no error) for an exec without
    /// a terminal or not started yet; an error once it exited.
    pub fn resize_pty(&self, width: u32, height: u32) -> Result<(), TaskError> {
        if self.exit().is_some() {
            return Err(TaskError::precondition(format!(
                "cannot resize exec {}: it has exited",
                self.exec_id
            )));
        }
        match self.io.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(io) => io
                .resize(width, height)
                .map_err(|e| TaskError::precondition(e.to_string())),
            None => Ok(()),
        }
    }

    pub fn close_stdin(&self) {
        if let Some(io) = self.io.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            io.close_stdin();
        }
    }

    /// Start: create the process in the container and let it exec.
    pub fn start(&self, daemon: &Daemon, task: &Task) -> Result<u32, TaskError> {
        {
            let mut stage = self.stage();
            if !matches!(*stage, Stage::Added) {
                return Err(TaskError::precondition(format!(
                    "exec {} was already started",
                    self.exec_id
                )));
            }
            *stage = Stage::Starting;
        }
        match self.create_and_start(daemon, task) {
            Ok(process) => {
                let pid = process.pid;
                self.set_stage(Stage::Started(process));
                Ok(pid)
            }
            Err(e) => {
                self.set_stage(Stage::NeverRan(never_ran()));
                Err(e)
            }
        }
    }

    fn create_and_start(&self, daemon: &Daemon, task: &Task) -> Result<Arc<Process>, TaskError> {
        // The helper would join a frozen cgroup and freeze with it (runc refuses too).
        if task.cgroup.as_ref().is_some_and(|c| c.is_frozen()) {
            return Err(TaskError::precondition(format!(
                "cannot exec in paused container {}",
                task.id
            )));
        }
        if !task.order.try_add_exec() {
            return Err(TaskError::precondition(format!(
                "container {} has exited: no exec can start in it",
                task.id
            )));
        }
        let spawned = self.spawn(daemon, task);
        let process = match spawned {
            Ok(process) => process,
            Err(e) => {
                // Never registered: no TaskExit will come for it.
                task.order.exec_done(&daemon.events);
                return Err(e);
            }
        };
        // From here the process is registered: its TaskExit (and the count) follow its exit.
        process.start()?;
        Ok(process)
    }

    fn spawn(&self, daemon: &Daemon, task: &Task) -> Result<Arc<Process>, TaskError> {
        let owner = LogOwner {
            container_id: &task.id,
            namespace: &daemon.namespace,
        };
        let (io, stdio) = ProcessIo::open(&self.stdio, &owner, OutputMode::Copied)
            .map_err(|e| TaskError::invalid(e.to_string()))?;
        let request = SpawnRequest::Exec {
            config: Box::new(self.config.clone()),
            cgroup: task.cgroup.clone(),
            join_also: task.join_also,
        };
        let mut slot = self.io.lock().unwrap_or_else(|e| e.into_inner());
        let io = slot.insert(io);
        spawn_process(
            daemon,
            (&request, Delivery::Now(Some(task.init.pidfd()))),
            (io, stdio),
            (&task.id, Kind::Exec, &self.exec_id),
            &task.order,
            (None, None),
        )
    }

    /// Delete: an unstarted exec is dropped (its waiters get what Delete reports, see
    /// [`never_ran`]); a running one is refused.
    pub fn release(&self) -> Result<Exit, TaskError> {
        let mut stage = self.stage();
        let exit = match &*stage {
            Stage::Started(process) => process.exit().ok_or_else(|| {
                TaskError::precondition(format!("exec {} is still running", self.exec_id))
            })?,
            Stage::NeverRan(exit) => exit.clone(),
            Stage::Starting => {
                return Err(TaskError::precondition(format!(
                    "exec {} is starting",
                    self.exec_id
                )));
            }
            Stage::Added => {
                let exit = never_ran();
                *stage = Stage::NeverRan(exit.clone());
                self.changed.notify_all();
                exit
            }
        };
        drop(stage);
        if let Some(io) = self.io.lock().unwrap_or_else(|e| e.into_inner()).take() {
            io.wait_output_read();
        }
        Ok(exit)
    }
}

impl Task {
    /// Exec: validate and record the process; nothing runs until Start.
    pub fn add_exec(&self, daemon: &Daemon, req: &ExecProcessRequest) -> Result<(), TaskError> {
        if req.exec_id.is_empty() {
            return Err(TaskError::invalid("exec id is empty"));
        }
        let mut process = parse_process_spec(req)?;
        // The request's `terminal` decides, as in runc's shim (`spec.Terminal = r.Terminal`):
        // containerd's Go client asks for it there (`cio.WithTerminal`), not in the spec. The
        // spec and the stdio must agree, or the exec would wait for a pty that is never made.
        process.set_terminal(Some(req.terminal));
        refuse_unapplied_process_confinement(&process)?;
        if self.init.exit().is_some() {
            return Err(TaskError::precondition(format!(
                "container {} has exited: no new exec",
                self.id
            )));
        }
        {
            let mut execs = self.execs();
            if execs.contains_key(&req.exec_id) {
                return Err(TaskError::already_exists(format!(
                    "exec {} already exists",
                    req.exec_id
                )));
            }
            let exec = ExecProcess {
                exec_id: req.exec_id.clone(),
                stdio: StdioPaths {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                },
                config: ExecConfig {
                    id: self.id.clone(),
                    exec_id: req.exec_id.clone(),
                    process,
                    seccomp: self.seccomp.clone(),
                    personality: self.personality.clone(),
                },
                stage: Mutex::new(Stage::Added),
                changed: Condvar::new(),
                io: Mutex::new(None),
            };
            execs.insert(req.exec_id.clone(), Arc::new(exec));
        }
        daemon.events.publish(
            TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskExecAdded {
                container_id: self.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(())
    }

    pub fn exec(&self, exec_id: &str) -> Result<Arc<ExecProcess>, TaskError> {
        match self.execs().get(exec_id) {
            Some(exec) => Ok(Arc::clone(exec)),
            None => Err(TaskError::not_found(format!(
                "exec {exec_id} not found in container {}",
                self.id
            ))),
        }
    }

    /// Delete of an exec id.
    pub fn delete_exec(&self, exec_id: &str) -> Result<(u32, Exit), TaskError> {
        let exec = self.exec(exec_id)?;
        let exit = exec.release()?;
        self.execs().remove(exec_id);
        let pid = exec.process().map_or(0, |p| p.pid);
        Ok((pid, exit))
    }

    /// Exec ids by pid, for Pids.
    pub fn exec_ids_by_pid(&self) -> Vec<(u32, String)> {
        self.execs()
            .values()
            .filter_map(|exec| exec.process().map(|p| (p.pid, exec.exec_id.clone())))
            .collect()
    }
}

/// The exec's OCI `process`, which containerd sends as JSON in an Any.
fn parse_process_spec(req: &ExecProcessRequest) -> Result<ProcessSpec, TaskError> {
    let Some(any) = req.spec.as_ref() else {
        return Err(TaskError::invalid("exec request carries no process spec"));
    };
    serde_json::from_slice(&any.value)
        .map_err(|e| TaskError::invalid(format!("exec {}: process spec: {e}", req.exec_id)))
}
