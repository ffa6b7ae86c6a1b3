//! The shim daemon's life: fork the spawner while single-threaded, then serve ttrpc, reap
//! children and handle signals until Shutdown or SIGTERM.
//!
//! Thread map: main (signals, the reaper, the idle and stop timers through SIGALRM), the ttrpc
//! server's threads (`ttrpc-accept`, and per connection `ttrpc` threads that take turns reading
//! a request and answer it themselves, see `shim::server`),
//! the event publisher, the OOM watcher, and per process with stdio to copy: a stdin copier, an
//! output copier for a pipe or a pty master. The spawner is forked before any of them exists
//! (checked: `spawn::spawner::fork_spawner` refuses a process with more than one thread).

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::Arc;

use containerd_shim::Flags;
use containerd_shim_protos::shim_sync::create_task;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

use super::events::EventQueue;
use super::logger;
use super::reaper::{Exits, reap_children};
use super::server::{Methods, Server};
use super::service::TaskService;
use super::shared::{Membership, RESERVATION_TIMEOUT, Retire, SHARING_FAILED_ENV};
use super::spawner_slot::SpawnerSlot;
use crate::cgroups::Hierarchies;
use crate::spawn::Spawner;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::error::TaskError;
use super::oom_watcher::OomWatcher;
use super::task::Task;

/// The listener `start` made and handed over (the env var names its fd number).
pub const LISTEN_FD_ENV: &str = "SIBLING_LISTEN_FD";

/// The daemon's log level from the runtime options (set by `start`).
pub const LOG_LEVEL_ENV: &str = "SIBLING_LOG_LEVEL";

/// How long SIGTERM waits for the killed containers' inits to be reaped. A process in
/// uninterruptible sleep may outlast it; the daemon then releases what it can and exits.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where containerd's ttrpc address (for events) arrives.
const TTRPC_ADDRESS: &str = "TTRPC_ADDRESS";

/// Runs the daemon; returns its exit code.
pub fn run(flags: &Flags) -> i32 {
    // One malloc arena for all of the daemon's threads instead of one per thread that ever
    // contended: about 70 KiB less PSS per daemon (docs/PERFORMANCE.md, issue 17). The
    // daemon's threads rarely allocate at the same time (one container, or a few when shared).
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a glibc allocator tunable; no other thread exists yet.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
    // The daemon is executed through its sealed copy's descriptor (/proc/self/fd/N), so the
    // kernel named it "N": ps, top and pgrep would show a number. Its threads inherit this.
    let _ = nix::sys::prctl::set_name(c"sibling-shim");
    // Subreaper first: orphans of containers that share our PID namespace come back to us.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("set child subreaper: {e}");
        return 1;
    }
    // SAFETY: nothing has started a thread yet: this is the first thing `main` does for the
    // daemon action (the std runtime starts none of its own).
    let spawner = match unsafe { Spawner::fork() } {
        Ok(spawner) => spawner,
        Err(e) => {
            eprintln!("fork spawner: {e} (EDEADLK: the daemon was not single-threaded)");
            return 1;
        }
    };
    let forked = std::time::SystemTime::now();
    // Blocked in this thread before any other exists, so every thread inherits the mask and
    // these signals are only ever taken by the loop below.
    let signals = handled_signals();
    if let Err(e) = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals), None) {
        eprintln!("block signals: {e}");
        return 1;
    }
    let level = std::env::var(LOG_LEVEL_ENV).ok();
    logger::init(flags.debug, level.as_deref(), &flags.namespace, &flags.id);
    match serve(flags, spawner, &signals, forked) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("shim daemon: {e}");
            1
        }
    }
}

fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGALRM,
    ] {
        set.add(signal);
    }
    set
}

fn serve(
    flags: &Flags,
    spawner: Spawner,
    signals: &SigSet,
    forked: std::time::SystemTime,
) -> Result<(), String> {
    let ttrpc_address =
        std::env::var(TTRPC_ADDRESS).map_err(|_| format!("{} is not set", TTRPC_ADDRESS))?;
    // Before the publisher thread starts: it unsets an environment variable.
    let listener = take_listener(flags)?;
    let exits = Arc::new(Exits::default());
    exits.set_spawner(spawner.pid());
    let (events, publisher) = EventQueue::start(ttrpc_address, flags.namespace.clone())
        .map_err(|e| format!("start event publisher: {e}"))?;
    let hierarchies = Hierarchies::detect().map_err(|e| format!("detect cgroups: {e}"))?;
    let relaunch_flags = vec![
        "-namespace".into(),
        flags.namespace.clone(),
        "-id".into(),
        flags.id.clone(),
        "-address".into(),
        flags.address.clone(),
    ];
    if let Ok(why) = std::env::var(SHARING_FAILED_ENV) {
        log::warn!("no shared shim ({why}): this container has a daemon of its own");
    }
    let shared = Membership::from_env(&flags.socket);
    if shared.is_some() {
        // The first Create is on its way; if it never comes, the daemon must not stay forever.
        wake_after(RESERVATION_TIMEOUT);
    }
    let daemon = Arc::new(Daemon::new(
        flags.namespace.clone(),
        SpawnerSlot::new(spawner, relaunch_flags),
        Arc::clone(&exits),
        events,
        hierarchies,
        shared,
    ));
    let server = Server::start(listener, task_methods(&daemon))
        .map_err(|e| format!("start ttrpc server: {e}"))?;
    log::info!("shim daemon serving (spawner pid {})", daemon.spawner.pid());
    if log::log_enabled!(log::Level::Debug) {
        let marks = super::cold_start::DaemonMarks {
            main: super::cold_start::main_entered(),
            forked,
            serving: std::time::SystemTime::now(),
        };
        let from_start = std::env::var(super::cold_start::COLD_START_ENV).ok();
        if let Some(line) = super::cold_start::breakdown(from_start.as_deref(), &marks) {
            log::debug!("{line}");
        }
    }

    let retired = wait_for_exit(&daemon, &exits, signals);

    server.shutdown();
    match &daemon.shared {
        // A shared daemon's socket went under the slot lock (it may be another daemon's now).
        Some(shared) => {
            if !retired {
                shared.retire_now();
            }
        }
        None => remove_socket(&flags.socket),
    }
    drop(daemon);
    // TaskDelete and every other queued event still reach containerd before we exit.
    publisher.drain();
    Ok(())
}

/// The Task service under both names containerd 1.6/1.7 (v2) and 2.x (v3) call it.
fn task_methods(daemon: &Arc<Daemon>) -> Methods {
    let service = Arc::new(TaskService::new(Arc::clone(daemon)));
    let mut methods = create_task(service.clone());
    let v3: Vec<_> = create_task(service)
        .into_iter()
        .map(|(name, handler)| (name.replace(".task.v2.", ".task.v3."), handler))
        .collect();
    methods.extend(v3);
    methods
}

/// The main thread's loop: reap on SIGCHLD, stop on Shutdown (SIGUSR1), on a shared daemon's
/// idle timer (SIGALRM) or on SIGTERM/SIGINT. True when a shared daemon has given up its slot.
fn wait_for_exit(daemon: &Daemon, exits: &Exits, signals: &SigSet) -> bool {
    loop {
        let Ok(signal) = signals.wait() else { continue };
        match signal {
            Signal::SIGCHLD => reap_children(exits),
            Signal::SIGUSR1 if daemon.shutdown_requested() => return false,
            Signal::SIGALRM => {
                if let Some(shared) = &daemon.shared
                    && retire_if_idle(daemon, shared)
                {
                    log::info!("idle for {:?}: exiting", shared.idle);
                    return true;
                }
            }
            Signal::SIGTERM | Signal::SIGINT => {
                log::info!("{signal}: stopping every container and exiting");
                stop_all_containers(daemon, exits, signals);
                return false;
            }
            _ => {}
        }
    }
}

/// The idle timer went off: exit if still idle and no container is on its way.
fn retire_if_idle(daemon: &Daemon, shared: &Membership) -> bool {
    match shared.try_retire(|| daemon.has_tasks()) {
        Ok(Some(Retire::Now)) => true,
        Ok(Some(Retire::Later(wait))) => {
            wake_after(wait);
            false
        }
        Ok(None) => false,
        Err(e) => {
            log::error!("shared shim slot: {e}; trying again in {RESERVATION_TIMEOUT:?}");
            wake_after(RESERVATION_TIMEOUT);
            false
        }
    }
}

/// SIGTERM: kill every container, reap it here (this thread is the reaper) and release its
/// mounts and cgroups, so the shim leaves nothing behind. A paused container is thawed first
/// (a process frozen by the v1 freezer does not act on SIGKILL), and the wait is bounded by
/// [`STOP_TIMEOUT`] (the idle timer's SIGALRM, re-armed here, ends it).
fn stop_all_containers(daemon: &Daemon, exits: &Exits, signals: &SigSet) {
    let tasks = daemon.all_tasks();
    for task in &tasks {
        let _scope = logger::scope(&task.id);
        if let Some(cgroup) = &task.cgroup {
            cgroup.thaw_v1_freezer();
            if let Err(e) = cgroup.kill_all(Signal::SIGKILL) {
                log::warn!("stop: kill the processes of the cgroup: {e}");
            }
        }
        let _ = task.init.kill(nix::libc::SIGKILL);
    }
    super::wake_after(STOP_TIMEOUT);
    while tasks.iter().any(|task| task.init.exit().is_none()) {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => reap_children(exits),
            Ok(Signal::SIGALRM) => break,
            _ => {}
        }
    }
    for task in tasks {
        let _scope = logger::scope(&task.id);
        if task.init.exit().is_none() {
            log::error!(
                "stop: init {} did not exit within {STOP_TIMEOUT:?} of SIGKILL; releasing the \
                 container anyway",
                task.init.pid
            );
        }
        if let Err(e) = task.destroy_bounded(false) {
            log::error!("stop: {e}");
        }
        daemon.remove(&task.id);
    }
}

fn take_listener(flags: &Flags) -> Result<UnixListener, String> {
    if let Ok(fd) = std::env::var(LISTEN_FD_ENV) {
        // SAFETY: called before the daemon starts its first thread (see `serve`), so no other
        // thread can read the environment concurrently.
        unsafe { std::env::remove_var(LISTEN_FD_ENV) };
        return fd
            .parse::<RawFd>()
            .map_err(|_| format!("bad {LISTEN_FD_ENV}: {fd}"))
            .and_then(|fd| {
                // SAFETY: `start` passed us this listening socket as this fd number.
                let listener = unsafe { UnixListener::from_raw_fd(fd) };
                // `start` cleared close-on-exec so the socket survives our execve; set it
                // again, or every process the daemon starts (a binary:// logger, say) would
                // hold it, and a dead daemon would look alive.
                fcntl(&listener, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
                    .map_err(|e| format!("listener close-on-exec: {e}"))?;
                Ok(listener)
            });
    }
    // Started by hand (`-socket`): bind it ourselves.
    let path = flags.socket.trim_start_matches("unix://");
    UnixListener::bind(path).map_err(|e| format!("bind {path}: {e}"))
}

fn remove_socket(address: &str) {
    let path = address.trim_start_matches("unix://");
    if !path.is_empty() {
        let _ = std::fs::remove_file(path);
    }
}

#[derive(Default)]
struct Tasks {
    ready: HashMap<String, Arc<Task>>,
    /// Ids whose Create is in flight: reserved so a second Create with the same id fails at
    /// once, without holding the lock while the first one runs.
    creating: HashSet<String>,
}

impl Tasks {
    /// Whether `id` is a container of this daemon, created or being created.
    fn knows(&self, id: &str) -> bool {
        self.ready.contains_key(id) || self.creating.contains(id)
    }

    fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.creating.is_empty()
    }
}

/// Everything the daemon's threads share.
pub struct Daemon {
    pub namespace: String,
    pub spawner: SpawnerSlot,
    pub exits: Arc<Exits>,
    pub events: EventQueue,
    pub hierarchies: Hierarchies,
    /// Live TaskOOM for every container with a memory cgroup.
    pub oom: OomWatcher,
    /// The slot of a shared daemon (`shared`); None for a pod's daemon.
    pub shared: Option<Membership>,
    tasks: Mutex<Tasks>,
    shutdown_requested: AtomicBool,
}

/// Holds an id reserved for a Create in flight.
pub struct Reservation<'a> {
    daemon: &'a Daemon,
    id: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let created = {
            let mut tasks = self.daemon.tasks();
            tasks.creating.remove(&self.id);
            tasks.ready.contains_key(&self.id)
        };
        if !created {
            // The Create failed: containerd will not send Delete for it.
            self.daemon.left(&self.id);
        }
    }
}

impl Daemon {
    pub fn new(
        namespace: String,
        spawner: SpawnerSlot,
        exits: Arc<Exits>,
        events: EventQueue,
        hierarchies: Hierarchies,
        shared: Option<Membership>,
    ) -> Daemon {
        Daemon {
            namespace,
            spawner,
            exits,
            oom: OomWatcher::new(events.clone()),
            events,
            hierarchies,
            shared,
            tasks: Mutex::new(Tasks::default()),
            shutdown_requested: AtomicBool::new(false),
        }
    }

    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn task(&self, id: &str) -> Option<Arc<Task>> {
        self.tasks().ready.get(id).cloned()
    }

    pub fn all_tasks(&self) -> Vec<Arc<Task>> {
        self.tasks().ready.values().cloned().collect()
    }

    /// Reserves `id` for a Create; a second Create of a live or in-flight id fails.
    pub fn reserve(&self, id: &str) -> Result<Reservation<'_>, TaskError> {
        let mut tasks = self.tasks();
        if tasks.knows(id) {
            return Err(TaskError::already_exists(format!(
                "container {id} already exists"
            )));
        }
        tasks.creating.insert(id.to_owned());
        Ok(Reservation {
            daemon: self,
            id: id.to_owned(),
        })
    }

    pub fn insert(&self, task: Arc<Task>) {
        if let Some(cgroup) = &task.cgroup {
            self.oom.watch(&task.id, cgroup, &task.order);
        }
        self.tasks().ready.insert(task.id.clone(), task);
    }

    pub fn remove(&self, id: &str) {
        self.oom.unwatch(id);
        self.tasks().ready.remove(id);
        self.left(id);
    }

    /// Whether a container is running or being created here.
    pub fn has_tasks(&self) -> bool {
        !self.tasks().is_empty()
    }

    /// Container `id` is gone: a shared daemon gives up its slot membership and, if that was
    /// the last, starts its idle timer.
    fn left(&self, id: &str) {
        logger::leave(id);
        if let Some(shared) = &self.shared {
            shared.leave(id);
            if !self.has_tasks() {
                // containerd's Shutdown, which follows, starts the idle time; this is for
                // when it never comes (containerd died), and never before the Shutdown.
                wake_after(shared.idle.max(std::time::Duration::from_secs(1)));
            }
        }
    }

    /// Shutdown: a pod's daemon exits once it has no container left (containerd calls this
    /// after every Delete of a shim's containers); a shared daemon waits out its idle time.
    pub fn request_shutdown_if_idle(&self, id: &str) {
        let idle = {
            let tasks = self.tasks();
            if let Some(shared) = &self.shared
                && !tasks.knows(id)
            {
                // containerd gave up on a container whose Create never came (or repeats
                // itself after a Delete): it holds the daemon no longer.
                shared.leave(id);
            }
            tasks.is_empty()
        };
        if !idle {
            return;
        }
        match &self.shared {
            Some(shared) => wake_after(shared.idle),
            None => {
                self.shutdown_requested.store(true, Ordering::SeqCst);
                // Wake the main thread's signal loop.
                send_to_self(nix::sys::signal::Signal::SIGUSR1);
            }
        }
    }

    pub fn shutdown_requested(&self) -> bool {
        self.shutdown_requested.load(Ordering::SeqCst)
    }
}

/// Has SIGALRM reach the main thread's signal loop after `delay` (whole seconds, rounded up),
/// replacing any earlier timer.
pub fn wake_after(delay: std::time::Duration) {
    if delay.is_zero() {
        send_to_self(nix::sys::signal::Signal::SIGALRM);
        return;
    }
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    nix::unistd::alarm::set(u32::try_from(seconds).unwrap_or(u32::MAX));
}

/// A process-directed signal: raise() would be directed at the calling thread, which blocks
/// it; the main thread takes it with sigwait.
fn send_to_self(signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), signal);
}
