//! The containerd Task service: RPCs in, daemon records and events out.
//!
//! Locking: `Daemon::tasks` is held only to look up, reserve or remove an id, never across a
//! container's creation, so one slow Create never blocks another container's RPCs. Each
//! process's own lock orders its events (see `process`).

use std::sync::Arc;

use containerd_shim_protos::events::task::{TaskCreate, TaskDelete, TaskIO};
use containerd_shim_protos::protobuf::{EnumOrUnknown, MessageField};
use containerd_shim_protos::shim::shim::*;
use containerd_shim_protos::shim_sync::Task as TaskRpc;
use containerd_shim_protos::topics::{TASK_CREATE_EVENT_TOPIC, TASK_DELETE_EVENT_TOPIC};
use containerd_shim_protos::ttrpc::{self, TtrpcContext};
use containerd_shim_protos::types::empty::Empty;
use containerd_shim_protos::types::task::{ProcessInfo, Status};

use super::Daemon;
use super::error::TaskError;
use super::process::Phase;
use super::task::Task;

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

    /// This shim runs no exec processes yet: any exec id names nothing.
    fn init_only(exec_id: &str) -> Result<(), TaskError> {
        if exec_id.is_empty() {
            Ok(())
        } else {
            Err(TaskError::not_found(format!("exec {exec_id} not found")))
        }
    }

    fn do_create(&self, req: &CreateTaskRequest) -> Result<CreateTaskResponse, TaskError> {
        let _reservation = self.daemon.reserve(&req.id)?;
        if !self.daemon.exits.spawner_alive() {
            return Err(TaskError::internal("the spawner is gone; restart the shim"));
        }
        let task = Arc::new(Task::create(&self.daemon, req)?);
        let pid = task.init.pid;
        self.daemon.events.publish(
            TASK_CREATE_EVENT_TOPIC,
            Box::new(TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                checkpoint: req.checkpoint.clone(),
                pid,
                ..Default::default()
            }),
        );
        self.daemon.insert(task);
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn do_start(&self, req: &StartRequest) -> Result<StartResponse, TaskError> {
        Self::init_only(&req.exec_id)?;
        let task = self.task(&req.id)?;
        task.init.start()?;
        Ok(StartResponse {
            pid: task.init.pid,
            ..Default::default()
        })
    }

    fn do_delete(&self, req: &DeleteRequest) -> Result<DeleteResponse, TaskError> {
        Self::init_only(&req.exec_id)?;
        let task = self.task(&req.id)?;
        if task.init.exit().is_none() && task.init.phase() != Phase::Created {
            return Err(TaskError::precondition(format!(
                "cannot delete task {}: it is running",
                req.id
            )));
        }
        let result = task.destroy();
        self.daemon.remove(&req.id);
        let exit = task.init.wait();
        self.daemon.events.publish(
            TASK_DELETE_EVENT_TOPIC,
            Box::new(TaskDelete {
                container_id: req.id.clone(),
                id: req.id.clone(),
                pid: task.init.pid,
                exit_status: exit.code,
                exited_at: MessageField::some(exit.at.clone()),
                ..Default::default()
            }),
        );
        if let Err(e) = result {
            log::error!("delete {}: {e}", req.id);
        }
        Ok(DeleteResponse {
            pid: task.init.pid,
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    fn do_state(&self, req: &StateRequest) -> Result<StateResponse, TaskError> {
        Self::init_only(&req.exec_id)?;
        let task = self.task(&req.id)?;
        let exit = task.init.exit();
        let status = match (&exit, task.init.phase()) {
            (Some(_), _) => Status::STOPPED,
            (None, Phase::Created) => Status::CREATED,
            (None, _) => Status::RUNNING,
        };
        Ok(StateResponse {
            id: req.id.clone(),
            bundle: task.bundle.to_string_lossy().into_owned(),
            pid: task.init.pid,
            status: EnumOrUnknown::new(status),
            stdin: task.stdio.stdin.clone(),
            stdout: task.stdio.stdout.clone(),
            stderr: task.stdio.stderr.clone(),
            terminal: task.stdio.terminal,
            exit_status: exit.as_ref().map_or(0, |e| e.code),
            exited_at: exit.map(|e| e.at).into(),
            ..Default::default()
        })
    }

    fn do_kill(&self, req: &KillRequest) -> Result<(), TaskError> {
        Self::init_only(&req.exec_id)?;
        let task = self.task(&req.id)?;
        let signal = req.signal as i32;
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
        let processes = pids
            .into_iter()
            .map(|pid| ProcessInfo {
                pid: pid as u32,
                ..Default::default()
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn do_close_io(&self, req: &CloseIORequest) -> Result<(), TaskError> {
        Self::init_only(&req.exec_id)?;
        let task = self.task(&req.id)?;
        if req.stdin {
            task.close_stdin();
        }
        Ok(())
    }
}

/// Maps a handler's result to the ttrpc reply, logging failures once, here at the boundary.
fn reply<T>(rpc: &str, id: &str, result: Result<T, TaskError>) -> ttrpc::Result<T> {
    result.map_err(|e| {
        log::warn!("{rpc} {id}: {e}");
        e.into()
    })
}

fn unimplemented<T>(rpc: &str) -> ttrpc::Result<T> {
    Err(TaskError::unimplemented(format!("{rpc} is not implemented by this shim yet")).into())
}

impl TaskRpc for TaskService {
    fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        log::info!("create {} (bundle {})", req.id, req.bundle);
        reply("create", &req.id, self.do_create(&req))
    }

    fn start(&self, _: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        reply("start", &req.id, self.do_start(&req))
    }

    fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        reply("delete", &req.id, self.do_delete(&req))
    }

    fn state(&self, _: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        reply("state", &req.id, self.do_state(&req))
    }

    fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let process = Self::init_only(&req.exec_id)
            .and_then(|()| self.task(&req.id))
            .map(|task| Arc::clone(&task.init));
        // Only the process is held while blocking: Delete may drop the task meanwhile.
        let exit = reply("wait", &req.id, process)?.wait();
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    fn kill(&self, _: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        reply("kill", &req.id, self.do_kill(&req)).map(|()| Empty::new())
    }

    fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        reply("pids", &req.id, self.do_pids(&req))
    }

    fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        reply("close_io", &req.id, self.do_close_io(&req)).map(|()| Empty::new())
    }

    fn connect(&self, _: &TtrpcContext, req: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
        let task_pid = self.daemon.task(&req.id).map_or(0, |t| t.init.pid);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _: &TtrpcContext, _: ShutdownRequest) -> ttrpc::Result<Empty> {
        self.daemon.request_shutdown_if_idle();
        Ok(Empty::new())
    }

    fn pause(&self, _: &TtrpcContext, _: PauseRequest) -> ttrpc::Result<Empty> {
        unimplemented("pause")
    }

    fn resume(&self, _: &TtrpcContext, _: ResumeRequest) -> ttrpc::Result<Empty> {
        unimplemented("resume")
    }

    fn checkpoint(&self, _: &TtrpcContext, _: CheckpointTaskRequest) -> ttrpc::Result<Empty> {
        unimplemented("checkpoint")
    }

    fn exec(&self, _: &TtrpcContext, _: ExecProcessRequest) -> ttrpc::Result<Empty> {
        unimplemented("exec")
    }

    fn resize_pty(&self, _: &TtrpcContext, _: ResizePtyRequest) -> ttrpc::Result<Empty> {
        unimplemented("resize_pty")
    }

    fn update(&self, _: &TtrpcContext, _: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        unimplemented("update")
    }

    fn stats(&self, _: &TtrpcContext, _: StatsRequest) -> ttrpc::Result<StatsResponse> {
        unimplemented("stats")
    }
}
