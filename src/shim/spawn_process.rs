//! Spawning a process through the spawner, from the daemon's side: the request, sync 1 and 2,
//! the helper's reap, and registration with the reaper (used by Create for the init and by an
//! exec's Start). Runs in the daemon.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use super::Daemon;
use super::error::TaskError;
use super::exit_order::ExitOrder;
use super::process::{Kind, Process};
use crate::cgroups::Cgroup;
use crate::container::hooks::{HookKind, StateBase, spec_hooks};
use crate::io::ProcessIo;
use crate::spawn::client::{EarlyInit, Setup, SpawnError};
use crate::spawn::clone::pidfd_send_signal;
use crate::spawn::protocol::SpawnRequest;

use super::create::Announce;

/// How long a spawn may wait for its helper's reap before it goes on without it.
const HELPER_EXIT_LIMIT: Duration = Duration::from_secs(5);

/// How a spawn's request reaches the spawner.
pub(super) enum Delivery<'a> {
    /// Sent now, with the stdio and, for an exec, the init's pidfd.
    Now(Option<&'a OwnedFd>),
    /// Sent ahead by Create ([`crate::spawn::client::Spawner::request_init`], while holding a
    /// spawn guard of its own); sync 0 brings the cgroup and the stdio.
    Ahead(EarlyInit, Option<&'a Cgroup>),
}

/// Asks the spawner for a process, waits until its setup is done (sync 1 and 2) and registers
/// it with the reaper. The exit of a process that dies before it is registered is parked.
/// `spawned_hook` runs once sync 1 brought the pid (while the process sets itself up), the
/// announcement's event is enqueued once it is set up.
pub(super) fn spawn_process(
    daemon: &Daemon,
    (request, delivery): (&SpawnRequest, Delivery<'_>),
    (io, stdio): (&ProcessIo, [OwnedFd; 3]),
    (container_id, kind, id): (&str, Kind, &str),
    order: &Arc<ExitOrder>,
    (spawned_hook, announce): (Option<&dyn Fn(u32)>, Option<Announce<'_>>),
) -> Result<Arc<Process>, TaskError> {
    let _parking = daemon.exits.begin_spawn();
    let stdio_refs = [&stdio[0], &stdio[1], &stdio[2]];
    let spawned = match delivery {
        Delivery::Now(init_pidfd) => daemon
            .spawner
            .get(&daemon.exits)?
            .spawn(request, stdio_refs, init_pidfd),
        Delivery::Ahead(early, cgroup) => early.go(cgroup, stdio_refs),
    };
    let (mut pending, pidfd) = spawned.map_err(TaskError::from_spawn)?;
    // The process has its own copies now; ours would keep output FIFOs from ever reaching EOF.
    drop(stdio);
    // Sync 1 brought the pid; the process sets itself up while the caller records it.
    if let Some(spawned_hook) = spawned_hook {
        spawned_hook(pending.pid.as_raw() as u32);
    }
    let ready = loop {
        match pending.wait_setup().map_err(TaskError::from_spawn)? {
            Setup::Ready(ready) => break ready,
            // Sync 2: the init's mounts are done. On a failed hook `pending` is dropped: the
            // init sees its sync socket close and exits (the caller releases the rest).
            Setup::RuntimeHooks => {
                runtime_hooks(daemon, container_id, request, pending.pid.as_raw() as u32)
                    .map_err(|e| TaskError::from_spawn(SpawnError::Failed(e)))?;
                pending.hooks_ran().map_err(TaskError::from_spawn)?;
            }
        }
    };
    // The helper exited right after sync 1; by now it is normally reaped already. Waiting for it
    // keeps the promise that no intermediate process outlives a Create (or an exec's Start).
    if !daemon.exits.wait_reaped(pending.helper, HELPER_EXIT_LIMIT) {
        log::warn!(
            "{container_id}/{id}: spawn helper {} not reaped within {HELPER_EXIT_LIMIT:?}",
            pending.helper
        );
    }
    for warning in ready.warnings {
        log::warn!("{container_id}/{id}: {warning}");
    }
    let waits_for_start = request.waits_for_start();
    // The terminal's copy, and the stdin copy that ends with the process (its pidfd).
    if let Err(e) = io.attach(&pidfd, ready.console) {
        // A process that did not wait for Start may be running its program already.
        if !waits_for_start {
            let _ = pidfd_send_signal(&pidfd, nix::libc::SIGKILL);
        }
        return Err(TaskError::internal(e.to_string()));
    }
    // `process.consoleSize` (nerdctl and Docker set it for `-t`): the terminal's size before
    // the program runs; containerd's ResizePty may change it later.
    if let Some(size) = console_size(request) {
        io.resize(size.width() as u32, size.height() as u32)
            .map_err(|e| TaskError::internal(e.to_string()))?;
    }
    // Before the process is registered: its TaskExit can only follow this event.
    if let Some((topic, event)) = announce {
        daemon
            .events
            .publish(topic, event(pending.pid.as_raw() as u32));
    }
    let process = Arc::new(Process::new(
        container_id,
        (kind, id),
        (pending, pidfd, waits_for_start),
        daemon.events.clone(),
        Arc::clone(order),
    ));
    daemon.exits.register(&process);
    Ok(process)
}

/// `prestart` then `createRuntime`, in the runtime's namespaces, with the state `creating`.
fn runtime_hooks(
    daemon: &Daemon,
    container_id: &str,
    request: &SpawnRequest,
    pid: u32,
) -> Result<(), String> {
    let SpawnRequest::Init { config, .. } = request else {
        return Err("runtime hooks asked for by a process that is not an init".into());
    };
    let state =
        StateBase::of_spec(&config.id, &config.bundle, &config.spec).json("creating", Some(pid));
    for kind in [HookKind::Prestart, HookKind::CreateRuntime] {
        let hooks = spec_hooks(&config.spec, kind);
        super::hooks::run(daemon, container_id, kind, hooks, state.clone())?;
    }
    Ok(())
}

/// The process's `consoleSize`, when it asks for a terminal.
fn console_size(request: &SpawnRequest) -> Option<oci_spec::runtime::Box> {
    let process = match request {
        SpawnRequest::Init { config, .. } => config.spec.process().as_ref()?,
        SpawnRequest::Exec { config, .. } => &config.process,
        _ => return None,
    };
    if process.terminal() != Some(true) {
        return None;
    }
    process.console_size()
}
