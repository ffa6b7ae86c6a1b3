//! The containerd Task service: RPCs in, daemon records and events out.
//!
//! Locking: `Daemon::tasks` is held only to look up, reserve or remove an id, never across a
//! container's creation, so one slow Create never blocks another container's RPCs. Each
//! process's own lock orders its events (see `process`).

use std::sync::Arc;

use containerd_shim_protos::events::task::{TaskDelete, TaskPaused, TaskResumed};
use containerd_shim_protos::protobuf::{EnumOrUnknown, MessageField};
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::shim::shim::*;
use containerd_shim_protos::shim_sync::Task as TaskRpc;
use containerd_shim_protos::topics::{
    TASK_DELETE_EVENT_TOPIC, TASK_PAUSED_EVENT_TOPIC, TASK_RESUMED_EVENT_TOPIC,
};
use containerd_shim_protos::ttrpc::{self, TtrpcContext};
use containerd_shim_protos::types::empty::Empty;
use containerd_shim_protos::types::task::{ProcessInfo, Status};

use super::error::TaskError;
use super::events::EventBody;
use super::process::{Exit, Phase, Process};
use super::task::Task;
use super::time::go_zero_time;
use super::{Daemon, bundle_spec, hooks, logger};
use crate::cgroups::DeviceRules;
use crate::container::hooks::HookKind;
use crate::io::StdioPaths;

/// The ttrpc-facing service; cheap to share between the server's threads.
pub struct TaskService {
    daemon: Arc<Daemon>,
}

impl TaskService {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        TaskService { daemon }
    }

    fn task(&self, id: &str) -> Result<Arc<Task>, TaskError> {
        self.daemon
            .task(id)
            .ok_or_else(|| TaskError::not_found(format!("container {id} not found")))
    }

    fn do_create(&self, req: &CreateTaskRequest) -> Result<CreateTaskResponse, TaskError> {
        let _reservation = self.daemon.reserve(&req.id)?;
        // TaskCreate is enqueued by Task::create, before the init can exit.
        let task = Arc::new(Task::create(&self.daemon, req)?);
        let pid = task.init.pid;
        self.daemon.insert(task);
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn do_start(&self, req: &StartRequest) -> Result<StartResponse, TaskError> {
        let task = self.task(&req.id)?;
        let pid = if req.exec_id.is_empty() {
            task.init.start()?;
            // After the program started, before Start returns; a failure is only logged.
            let hooks = &task.hooks;
            let state = hooks.state.json("running", Some(task.init.pid));
            hooks::run_logged(
                &self.daemon,
                &req.id,
                HookKind::Poststart,
                &hooks.poststart,
                state,
            );
            task.init.pid
        } else {
            task.exec(&req.exec_id)?.start(&self.daemon, &task)?
        };
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn do_exec(&self, req: &ExecProcessRequest) -> Result<(), TaskError> {
        self.task(&req.id)?.add_exec(&self.daemon, req)
    }

    fn do_delete(&self, req: &DeleteRequest) -> Result<DeleteResponse, TaskError> {
        let task = self.task(&req.id)?;
        if !req.exec_id.is_empty() {
            // No TaskDelete for an exec: containerd's contract has it for the init only.
            let (pid, exit) = task.delete_exec(&req.exec_id)?;
            return Ok(DeleteResponse {
                pid,
                exit_status: exit.code,
                exited_at: MessageField::some(exit.at),
                ..Default::default()
            });
        }
        if task.init.exit().is_none() && task.init.phase() != Phase::Created {
            return Err(TaskError::precondition(format!(
                "cannot delete task {}: it is running",
                req.id
            )));
        }
        // Created, never started, and killed by this Delete: runc's shim reports status 0 and
        // no exit time for it (the init never ran user code), and so do we.
        let killed_unstarted = task.init.exit().is_none();
        let result = task.destroy(true);
        if let Err(e) = &result {
            log::error!("delete {}: {e}", req.id);
        }
        self.daemon.remove(&req.id);
        // The container is gone (process, cgroup, mounts): poststop, failures only logged.
        let hooks = &task.hooks;
        let state = hooks.state.json("stopped", None);
        hooks::run_logged(
            &self.daemon,
            &req.id,
            HookKind::Poststop,
            &hooks.poststop,
            state,
        );
        let mut exit = task.init.wait();
        if killed_unstarted {
            exit = Exit {
                code: 0,
                at: go_zero_time(),
            };
        }
        self.daemon.events.publish(
            TASK_DELETE_EVENT_TOPIC,
            TaskDelete {
                container_id: req.id.clone(),
                id: req.id.clone(),
                pid: task.init.pid,
                exit_status: exit.code,
                exited_at: MessageField::some(exit.at.clone()),
                ..Default::default()
            },
        );
        Ok(DeleteResponse {
            pid: task.init.pid,
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    fn do_state(&self, req: &StateRequest) -> Result<StateResponse, TaskError> {
        let task = self.task(&req.id)?;
        if req.exec_id.is_empty() {
            let init = Some(Arc::clone(&task.init));
            return Ok(state_response(
                req,
                &task,
                init,
                &task.stdio,
                task.init.exit(),
            ));
        }
        let exec = task.exec(&req.exec_id)?;
        // An exec that never ran stays CREATED with no exit, as in runc's shim.
        let process = exec.process();
        let exit = process.as_ref().and_then(|p| p.exit());
        Ok(state_response(req, &task, process, &exec.stdio, exit))
    }

    fn do_kill(&self, req: &KillRequest) -> Result<(), TaskError> {
        let task = self.task(&req.id)?;
        let signal = req.signal as i32;
        if !req.exec_id.is_empty() {
            let exec = task.exec(&req.exec_id)?;
            let process = exec.process().ok_or_else(|| {
                TaskError::precondition(format!("exec {} is not running", req.exec_id))
            })?;
            return process.kill(signal);
        }
        if req.all {
            let Some(cgroup) = &task.cgroup else {
                return task.init.kill(signal);
            };
            let signal = nix::sys::signal::Signal::try_from(signal)
                .map_err(|e| TaskError::invalid(format!("signal {signal}: {e}")))?;
            return cgroup
                .kill_all(signal)
                .map_err(|e| TaskError::internal(format!("kill all in {}: {e}", req.id)));
        }
        task.init.kill(signal)
    }

    fn do_pids(&self, req: &PidsRequest) -> Result<PidsResponse, TaskError> {
        let task = self.task(&req.id)?;
        let pids = match &task.cgroup {
            Some(cgroup) => cgroup
                .procs()
                .map_err(|e| TaskError::internal(format!("list pids of {}: {e}", req.id)))?,
            None => vec![task.init.pid as i32],
        };
        let exec_ids = task.exec_ids_by_pid();
        let processes = pids
            .into_iter()
            .map(|pid| process_info(pid as u32, &exec_ids))
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn do_close_io(&self, req: &CloseIORequest) -> Result<(), TaskError> {
        let task = self.task(&req.id)?;
        if !req.stdin {
            return Ok(());
        }
        if req.exec_id.is_empty() {
            task.close_stdin();
        } else {
            task.exec(&req.exec_id)?.close_stdin();
        }
        Ok(())
    }

    /// Pause (`freeze`) or Resume: only a running init's container, then TaskPaused or
    /// TaskResumed once the freezer settled.
    fn do_freeze(&self, id: &str, freeze: bool) -> Result<(), TaskError> {
        let task = self.task(id)?;
        let what = if freeze { "pause" } else { "resume" };
        if task.init.exit().is_some() || task.init.phase() != Phase::Running {
            return Err(TaskError::precondition(format!(
                "cannot {what} task {id}: it is not running"
            )));
        }
        let Some(cgroup) = &task.cgroup else {
            return Err(TaskError::precondition(format!("task {id} has no cgroup")));
        };
        let (result, topic): (_, &'static str) = if freeze {
            (cgroup.freeze(), TASK_PAUSED_EVENT_TOPIC)
        } else {
            (cgroup.thaw(), TASK_RESUMED_EVENT_TOPIC)
        };
        result.map_err(|e| TaskError::internal(format!("{what} {id}: {e}")))?;
        let event: EventBody = if freeze {
            TaskPaused {
                container_id: id.to_owned(),
                ..Default::default()
            }
            .into()
        } else {
            TaskResumed {
                container_id: id.to_owned(),
                ..Default::default()
            }
            .into()
        };
        self.daemon.events.publish(topic, event);
        Ok(())
    }

    /// Update: new `linux.resources` (as JSON in an Any) applied to the running container.
    fn do_update(&self, req: &UpdateTaskRequest) -> Result<(), TaskError> {
        let task = self.task(&req.id)?;
        let Some(any) = req.resources.as_ref() else {
            return Err(TaskError::invalid("update carries no resources"));
        };
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(&any.value)
            .map_err(|e| TaskError::invalid(format!("update {}: resources: {e}", req.id)))?;
        bundle_spec::refuse_unapplied_resources(&resources)?;
        let Some(cgroup) = &task.cgroup else {
            return Err(TaskError::precondition(format!(
                "task {} has no cgroup",
                req.id
            )));
        };
        // The systemd driver: the unit's properties first (systemd writes the same files
        // whenever it realizes the unit, so it must know the new limits), then cgroupfs.
        if let Some(unit) = cgroup.systemd_unit() {
            let properties = crate::cgroups::systemd::resource_properties(&resources)
                .map_err(|e| TaskError::invalid(format!("update {}: {e}", req.id)))?;
            crate::cgroups::systemd::set_unit_properties(unit, properties)
                .map_err(|e| TaskError::internal(format!("update {}: {e}", req.id)))?;
        }
        cgroup
            .apply_resources(&resources)
            .map_err(|e| TaskError::invalid(format!("update {}: {e}", req.id)))?;
        // Device rules, when the update has some, replace the container's: deny-all, these
        // rules, the defaults. Without any, the container keeps the ones it has.
        let rules = resources.devices().as_deref().unwrap_or_default();
        if rules.is_empty() {
            return Ok(());
        }
        match cgroup.update_device_rules(rules) {
            Ok(DeviceRules::Applied) => Ok(()),
            Ok(DeviceRules::NotEnforced) => {
                log::warn!(
                    "update {}: device rules are not enforced: neither a v1 devices hierarchy \
                     nor a cgroup2 directory for the container",
                    req.id
                );
                Ok(())
            }
            Err(e) => Err(TaskError::invalid(format!(
                "update {}: device rules: {e}",
                req.id
            ))),
        }
    }

    /// Stats: the cgroup's metrics (v1 or v2 message, by the host's cgroup layout).
    fn do_stats(&self, req: &StatsRequest) -> Result<StatsResponse, TaskError> {
        let task = self.task(&req.id)?;
        let Some(cgroup) = &task.cgroup else {
            return Err(TaskError::precondition(format!(
                "task {} has no cgroup",
                req.id
            )));
        };
        let stats = crate::shim::metrics::collect(cgroup)
            .map_err(|e| TaskError::internal(format!("stats {}: {e}", req.id)))?;
        Ok(StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    fn do_resize_pty(&self, req: &ResizePtyRequest) -> Result<(), TaskError> {
        let task = self.task(&req.id)?;
        if req.exec_id.is_empty() {
            task.resize_pty(req.width, req.height)
        } else {
            task.exec(&req.exec_id)?.resize_pty(req.width, req.height)
        }
    }

    fn wait_for(&self, req: &WaitRequest) -> Result<Exit, TaskError> {
        let task = self.task(&req.id)?;
        if req.exec_id.is_empty() {
            // Only the process is held while blocking: Delete may drop the task meanwhile.
            let init = Arc::clone(&task.init);
            drop(task);
            return Ok(init.wait());
        }
        let exec = task.exec(&req.exec_id)?;
        drop(task);
        Ok(exec.wait())
    }
}

fn state_response(
    req: &StateRequest,
    task: &Task,
    process: Option<Arc<Process>>,
    stdio: &StdioPaths,
    exit: Option<Exit>,
) -> StateResponse {
    let phase = process.as_ref().map(|p| p.phase());
    let frozen = || task.cgroup.as_ref().is_some_and(|c| c.is_frozen());
    let status = match (&exit, phase) {
        (Some(_), _) => Status::STOPPED,
        (None, Some(Phase::Created) | None) => Status::CREATED,
        (None, Some(_)) if frozen() => Status::PAUSED,
        (None, Some(_)) => Status::RUNNING,
    };
    StateResponse {
        id: req.id.clone(),
        exec_id: req.exec_id.clone(),
        bundle: task.bundle.to_string_lossy().into_owned(),
        pid: process.map_or(0, |p| p.pid),
        status: EnumOrUnknown::new(status),
        stdin: stdio.stdin.clone(),
        stdout: stdio.stdout.clone(),
        stderr: stdio.stderr.clone(),
        terminal: stdio.terminal,
        exit_status: exit.as_ref().map_or(0, |e| e.code),
        // No exit yet: Go's zero time, as runc's shim answers (containerd 1.7 and 2.x pass it
        // through; an absent field reads as 1970 there).
        exited_at: MessageField::some(exit.map_or_else(go_zero_time, |e| e.at)),
        ..Default::default()
    }
}

/// A pid for Pids; an exec's carries its exec id in runc's ProcessDetails, as ctr shows it.
fn process_info(pid: u32, exec_ids: &[(u32, String)]) -> ProcessInfo {
    let info = exec_ids
        .iter()
        .find(|(exec_pid, _)| *exec_pid == pid)
        .and_then(|(_, exec_id)| {
            let details = ProcessDetails {
                exec_id: exec_id.clone(),
                ..Default::default()
            };
            containerd_shim::util::convert_to_any(Box::new(details)).ok()
        });
    ProcessInfo {
        pid,
        info: info.into(),
        ..Default::default()
    }
}

/// Maps a handler's result to the ttrpc reply, logging failures once, here at the boundary.
fn reply<T>(rpc: &str, id: &str, result: Result<T, TaskError>) -> ttrpc::Result<T> {
    result.map_err(|e| {
        log::warn!("{rpc} {id}: {e}");
        e.into()
    })
}

impl TaskRpc for TaskService {
    fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let _scope = logger::scope(&req.id);
        log::info!("create {} (bundle {})", req.id, req.bundle);
        reply("create", &req.id, self.do_create(&req))
    }

    fn start(&self, _: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let _scope = logger::scope(&req.id);
        reply("start", &req.id, self.do_start(&req))
    }

    fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        let _scope = logger::scope(&req.id);
        reply("delete", &req.id, self.do_delete(&req))
    }

    fn state(&self, _: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        let _scope = logger::scope(&req.id);
        reply("state", &req.id, self.do_state(&req))
    }

    fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let _scope = logger::scope(&req.id);
        let exit = reply("wait", &req.id, self.wait_for(&req))?;
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    fn kill(&self, _: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        let _scope = logger::scope(&req.id);
        reply("kill", &req.id, self.do_kill(&req)).map(|()| Empty::new())
    }

    fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        let _scope = logger::scope(&req.id);
        reply("pids", &req.id, self.do_pids(&req))
    }

    fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        let _scope = logger::scope(&req.id);
        reply("close_io", &req.id, self.do_close_io(&req)).map(|()| Empty::new())
    }

    fn connect(&self, _: &TtrpcContext, req: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
        let _scope = logger::scope(&req.id);
        let task_pid = self.daemon.task(&req.id).map_or(0, |t| t.init.pid);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _: &TtrpcContext, req: ShutdownRequest) -> ttrpc::Result<Empty> {
        let _scope = logger::scope(&req.id);
        self.daemon.request_shutdown_if_idle(&req.id);
        Ok(Empty::new())
    }

    fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        let _scope = logger::scope(&req.id);
        reply("pause", &req.id, self.do_freeze(&req.id, true)).map(|()| Empty::new())
    }

    fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        let _scope = logger::scope(&req.id);
        reply("resume", &req.id, self.do_freeze(&req.id, false)).map(|()| Empty::new())
    }

    fn checkpoint(&self, _: &TtrpcContext, req: CheckpointTaskRequest) -> ttrpc::Result<Empty> {
        let _scope = logger::scope(&req.id);
        let result = self
            .task(&req.id)
            .and_then(|task| super::checkpoint::checkpoint(&self.daemon, &task, &req));
        reply("checkpoint", &req.id, result).map(|()| Empty::new())
    }

    fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        let _scope = logger::scope(&req.id);
        reply("exec", &req.id, self.do_exec(&req)).map(|()| Empty::new())
    }

    fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        let _scope = logger::scope(&req.id);
        reply("resize_pty", &req.id, self.do_resize_pty(&req)).map(|()| Empty::new())
    }

    fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        let _scope = logger::scope(&req.id);
        reply("update", &req.id, self.do_update(&req)).map(|()| Empty::new())
    }

    fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let _scope = logger::scope(&req.id);
        reply("stats", &req.id, self.do_stats(&req))
    }
}
