//! One container process (the init, later also execs): its state machine, exit record and events.
//!
//! Event order is decided here, under the process's lock: TaskStart is enqueued when `execve`
//! succeeded, and an exit that the reaper records while Start is still in flight is held back and
//! enqueued right after TaskStart. So TaskStart always precedes TaskExit for the same process.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use containerd_shim_protos::events::task::{TaskExecStarted, TaskExit, TaskStart};
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::topics::{
    TASK_EXEC_STARTED_EVENT_TOPIC, TASK_EXIT_EVENT_TOPIC, TASK_START_EVENT_TOPIC,
};

use super::error::TaskError;
use super::events::EventQueue;
use super::exit_order::ExitOrder;
use super::time::timestamp_now;
use crate::spawn::{PendingProcess, clone::pidfd_send_signal};

/// How long Start waits, after a failed start, for the process to exit on its own, then after
/// SIGKILL, for the reaper to record the exit.
const FAILED_START_EXIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where a process is in its life, as far as the daemon's records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Set up, waiting for Start.
    Created,
    /// Start is in flight: told to exec, not yet confirmed.
    Starting,
    /// `execve` succeeded.
    Running,
    /// Start failed (`execve` or the sync broke); the process is gone or going.
    StartFailed,
}

/// How and when a process ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub code: u32,
    pub at: Timestamp,
}

struct State {
    phase: Phase,
    exit: Option<Exit>,
    /// The sync socket until Start uses it; dropping it unstarted makes the init give up.
    pending: Option<Starter>,
}

/// What Start does to let a created process run.
enum Starter {
    /// A spawned process waiting for Start: sync 5 and 6 on its socket.
    Spawned(PendingProcess),
    /// A spawned process that did not wait for Start (an exec without a terminal, see
    /// `SpawnRequest::waits_for_start`): it is in phase `Starting` from the first, so its exit
    /// is held back until Start confirmed its `execve` (sync 6) and published TaskExecStarted.
    Execing(PendingProcess),
    /// A process CRIU restored, stopped: resume it (`restore`).
    Restored(Box<dyn FnOnce() -> Result<(), TaskError> + Send>),
}

/// Which of a container's processes this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Init,
    Exec,
}

/// A container process whose parent is the shim daemon.
pub struct Process {
    pub container_id: String,
    /// The exec id, or the container id for the init (what TaskExit's `id` carries).
    pub id: String,
    pub kind: Kind,
    pub pid: u32,
    pidfd: OwnedFd,
    state: Mutex<State>,
    exited: Condvar,
    events: EventQueue,
    order: Arc<ExitOrder>,
}

impl Process {
    /// A spawned process; `waits_for_start` tells whether it waits for Start (sync 5) or is
    /// already on its way to `execve`.
    pub fn new(
        container_id: &str,
        (kind, id): (Kind, &str),
        (pending, pidfd, waits_for_start): (PendingProcess, OwnedFd, bool),
        events: EventQueue,
        order: Arc<ExitOrder>,
    ) -> Self {
        let pid = pending.pid.as_raw() as u32;
        let (phase, starter) = if waits_for_start {
            (Phase::Created, Starter::Spawned(pending))
        } else {
            (Phase::Starting, Starter::Execing(pending))
        };
        Process {
            container_id: container_id.to_owned(),
            id: id.to_owned(),
            kind,
            pid,
            pidfd,
            state: Mutex::new(State {
                phase,
                exit: None,
                pending: Some(starter),
            }),
            exited: Condvar::new(),
            events,
            order,
        }
    }

    /// A process CRIU restored (a direct child of the daemon, stopped): Start calls `resume`.
    pub fn restored(
        container_id: &str,
        (pid, pidfd): (u32, OwnedFd),
        resume: Box<dyn FnOnce() -> Result<(), TaskError> + Send>,
        events: EventQueue,
        order: Arc<ExitOrder>,
    ) -> Self {
        Process {
            container_id: container_id.to_owned(),
            id: container_id.to_owned(),
            kind: Kind::Init,
            pid,
            pidfd,
            state: Mutex::new(State {
                phase: Phase::Created,
                exit: None,
                pending: Some(Starter::Restored(resume)),
            }),
            exited: Condvar::new(),
            events,
            order,
        }
    }

    /// The pidfd, through which an exec joins this process's namespaces.
    pub fn pidfd(&self) -> &OwnedFd {
        &self.pidfd
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets the process exec (sync 5/6) and enqueues TaskStart once it did.
    pub fn start(&self) -> Result<(), TaskError> {
        let pending = {
            let mut state = self.lock();
            // Already in `Starting`, and it may have exited (held back): only sync 6 is left.
            if matches!(state.pending, Some(Starter::Execing(_))) {
                state.pending.take()
            } else {
                if state.exit.is_some() {
                    return Err(TaskError::precondition("process already finished"));
                }
                if state.phase != Phase::Created {
                    return Err(TaskError::precondition("process already started"));
                }
                state.phase = Phase::Starting;
                state.pending.take()
            }
        };
        let result = match pending {
            Some(Starter::Spawned(pending)) => pending.start().map_err(TaskError::from_spawn),
            Some(Starter::Execing(pending)) => pending.wait_exec().map_err(TaskError::from_spawn),
            Some(Starter::Restored(resume)) => resume(),
            None => Err(TaskError::precondition("process has no start channel")),
        };
        let mut state = self.lock();
        state.phase = match result {
            Ok(()) => {
                self.publish_started();
                Phase::Running
            }
            Err(_) => Phase::StartFailed,
        };
        if let Some(exit) = state.exit.clone() {
            // The exit came while Start was in flight: its event was held back until now.
            self.publish_exit(&exit);
        }
        drop(state);
        if result.is_err() {
            self.settle_failed_start();
        }
        result
    }

    /// A process whose Start failed never ran its program and is on its way out (it exits once
    /// its sync step failed). Start returns only once the reaper recorded that exit (bounded;
    /// SIGKILL if it lingers), so the process is STOPPED and deletable by the time containerd
    /// hears of the failure: `ctr run --rm` deletes the task at once, and a Delete of a task
    /// still RUNNING is refused (runc's shim keeps such an init CREATED and deletes it).
    fn settle_failed_start(&self) {
        if self.wait_timeout(FAILED_START_EXIT).is_some() {
            return;
        }
        // Not through `kill`: it may have exited meanwhile, which is what is wanted.
        let _ = pidfd_send_signal(&self.pidfd, nix::libc::SIGKILL);
        if self.wait_timeout(FAILED_START_EXIT).is_none() {
            log::warn!(
                "{}: process {} whose start failed did not exit within {:?} of SIGKILL",
                self.container_id,
                self.pid,
                FAILED_START_EXIT
            );
        }
    }

    /// Records the exit the reaper saw, wakes waiters and enqueues TaskExit (or leaves that to
    /// `start` while Start is in flight).
    pub fn set_exited(&self, code: u32) {
        let mut state = self.lock();
        if state.exit.is_some() {
            return;
        }
        let exit = Exit {
            code,
            at: timestamp_now(),
        };
        state.exit = Some(exit.clone());
        if self.kind == Kind::Init {
            // From now on no exec may be added, even before the init's TaskExit is due.
            self.order.init_exited();
        }
        // An init that never started must not wait for a Start that cannot come. A process
        // that did not wait for Start keeps its socket: sync 6 (or its `Failed`) is still to
        // be read there.
        if state.phase == Phase::Created {
            state.pending = None;
        }
        if state.phase != Phase::Starting {
            self.publish_exit(&exit);
        }
        self.exited.notify_all();
    }

    fn publish_started(&self) {
        match self.kind {
            Kind::Init => self.events.publish(
                TASK_START_EVENT_TOPIC,
                TaskStart {
                    container_id: self.container_id.clone(),
                    pid: self.pid,
                    ..Default::default()
                },
            ),
            Kind::Exec => self.events.publish(
                TASK_EXEC_STARTED_EVENT_TOPIC,
                TaskExecStarted {
                    container_id: self.container_id.clone(),
                    exec_id: self.id.clone(),
                    pid: self.pid,
                    ..Default::default()
                },
            ),
        }
    }

    /// TaskExit; the init's waits for every exec's (see `exit_order`).
    fn publish_exit(&self, exit: &Exit) {
        self.order.publish_oom_if_any(&self.events);
        let event = TaskExit {
            container_id: self.container_id.clone(),
            id: self.id.clone(),
            pid: self.pid,
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at.clone()),
            ..Default::default()
        };
        match self.kind {
            Kind::Init => self.order.publish_init_exit(&self.events, event),
            Kind::Exec => {
                self.events.publish(TASK_EXIT_EVENT_TOPIC, event);
                self.order.exec_done(&self.events);
            }
        }
    }

    /// Blocks until the exit is recorded.
    pub fn wait(&self) -> Exit {
        let mut state = self.lock();
        loop {
            if let Some(exit) = &state.exit {
                return exit.clone();
            }
            state = self.exited.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// [`Process::wait`], at most `timeout`.
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> Option<Exit> {
        let state = self.lock();
        let (state, _) = self
            .exited
            .wait_timeout_while(state, timeout, |s| s.exit.is_none())
            .unwrap_or_else(|e| e.into_inner());
        state.exit.clone()
    }

    pub fn exit(&self) -> Option<Exit> {
        self.lock().exit.clone()
    }

    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// Signals the process through its pidfd (never a recycled pid).
    pub fn kill(&self, signal: i32) -> Result<(), TaskError> {
        let state = self.lock();
        if state.exit.is_some() {
            return Err(TaskError::not_found("process already finished"));
        }
        // The pidfd stays valid after the process is reaped, so a signal can never reach
        // another process that reused the pid; ESRCH then means it is gone.
        match pidfd_send_signal(&self.pidfd, signal) {
            Ok(()) => Ok(()),
            Err(nix::Error::ESRCH) => Err(TaskError::not_found("process already finished")),
            Err(e) => Err(TaskError::internal(format!(
                "signal {signal} to {}: {e}",
                self.pid
            ))),
        }
    }
}

/// The exit code containerd expects from a wait status: the code, or 128 + signal.
pub fn exit_code(status: nix::sys::wait::WaitStatus) -> Option<u32> {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, code) => Some(code as u32),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as u32),
        _ => None,
    }
}
