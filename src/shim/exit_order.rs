//! The order of a container's TaskExit events: every exec's exit before the init's.
//!
//! When an init with its own PID namespace dies, the kernel kills every exec'd process too, and
//! the reaper sees those exits in any order. containerd's contract wants each exec's TaskExit
//! before the init's, so the init's is held here until no exec is left. The same record refuses
//! new execs once the init has exited.

use std::sync::{Mutex, MutexGuard};

use containerd_shim_protos::events::task::{TaskExit, TaskOOM};
use containerd_shim_protos::topics::{TASK_EXIT_EVENT_TOPIC, TASK_OOM_EVENT_TOPIC};

use super::events::EventQueue;
use crate::cgroups::Cgroup;

#[derive(Default)]
struct State {
    /// Execs spawned (or being spawned) whose TaskExit has not been enqueued yet.
    live_execs: usize,
    init_exited: bool,
    held_init_exit: Option<TaskExit>,
}

/// Runs once when the init's exit is recorded.
pub type InitExitHook = Box<dyn Fn() + Send + Sync>;

/// The container's OOM kill counter and the last value reported.
struct OomCheck {
    container_id: String,
    cgroup: Cgroup,
    reported: Mutex<u64>,
}

/// One per container.
#[derive(Default)]
pub struct ExitOrder {
    state: Mutex<State>,
    on_init_exit: Option<InitExitHook>,
    oom: Option<OomCheck>,
}

impl ExitOrder {
    /// For a container in `cgroup`, whose OOM kills are reported before each exit; `hook`
    /// runs when the init exits (before its TaskExit is due).
    pub fn new(container_id: &str, cgroup: Option<&Cgroup>, hook: Option<InitExitHook>) -> Self {
        ExitOrder {
            state: Mutex::default(),
            on_init_exit: hook,
            oom: cgroup.map(|cgroup| OomCheck {
                container_id: container_id.to_owned(),
                reported: Mutex::new(cgroup.oom_kills()),
                cgroup: cgroup.clone(),
            }),
        }
    }

    /// Publishes TaskOOM if the kernel's OOM killer struck since the last report. Called before
    /// every TaskExit of the container, so the OOM event precedes the exit it caused.
    /// Also called by the live OOM watcher; returns whether it published.
    pub fn publish_oom_if_any(&self, events: &EventQueue) -> bool {
        let Some(oom) = &self.oom else { return false };
        let mut reported = oom.reported.lock().unwrap_or_else(|e| e.into_inner());
        let now = oom.cgroup.oom_kills();
        if now <= *reported {
            return false;
        }
        *reported = now;
        events.publish(
            TASK_OOM_EVENT_TOPIC,
            TaskOOM {
                container_id: oom.container_id.clone(),
                ..Default::default()
            },
        );
        true
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new exec before it is spawned; false once the init has exited.
    pub fn try_add_exec(&self) -> bool {
        let mut state = self.lock();
        if state.init_exited {
            return false;
        }
        state.live_execs += 1;
        true
    }

    /// An exec's TaskExit was enqueued, or its spawn failed: the init's exit may follow now.
    pub fn exec_done(&self, events: &EventQueue) {
        let mut state = self.lock();
        state.live_execs = state.live_execs.saturating_sub(1);
        if state.live_execs == 0
            && let Some(exit) = state.held_init_exit.take()
        {
            events.publish(TASK_EXIT_EVENT_TOPIC, exit);
        }
    }

    /// Marks the init dead (no new execs from here on), without its event yet, and runs the
    /// hook.
    pub fn init_exited(&self) {
        self.lock().init_exited = true;
        if let Some(hook) = &self.on_init_exit {
            hook();
        }
    }

    /// Enqueues the init's TaskExit now, or once the last exec's TaskExit is enqueued.
    pub fn publish_init_exit(&self, events: &EventQueue, exit: TaskExit) {
        let mut state = self.lock();
        state.init_exited = true;
        if state.live_execs == 0 {
            events.publish(TASK_EXIT_EVENT_TOPIC, exit);
        } else {
            state.held_init_exit = Some(exit);
        }
    }
}
