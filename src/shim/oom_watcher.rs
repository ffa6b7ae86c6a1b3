//! Live TaskOOM: the kernel's OOM notifications for every container of the daemon, waited on
//! by one thread (epoll), so an OOM kill is published when it happens, also when the init
//! survives it. The same check runs before each TaskExit (`exit_order`); both go through
//! `ExitOrder::publish_oom_if_any`, which publishes once per new kill, so TaskOOM still
//! precedes the exit an OOM kill caused.
//!
//! The notification is v1's eventfd registered on `memory.oom_control` through
//! `cgroup.event_control` (signalled as the OOM killer is invoked, before its kill is counted),
//! or on cgroup2 an inotify watch of `memory.events` (modified again when `oom_kill` grows).
//! The thread starts with the first container that has a memory cgroup.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::events::EventQueue;
use super::exit_order::ExitOrder;
use crate::cgroups::Cgroup;

/// What keeps one container's notification alive.
struct Watch {
    order: Weak<ExitOrder>,
    /// Readable on each notification (drained before the check).
    signal: OwnedFd,
    /// v1: `memory.oom_control`, which must stay open while the eventfd is registered. Its
    /// presence also says the notification may come before the kill is counted.
    control: Option<OwnedFd>,
}

struct Shared {
    epoll: Epoll,
    watches: Mutex<HashMap<u64, Watch>>,
    ids: Mutex<HashMap<String, u64>>,
}

/// The daemon's watcher; cheap until the first `watch`.
pub struct OomWatcher {
    events: EventQueue,
    shared: Mutex<Option<Arc<Shared>>>,
}

impl OomWatcher {
    pub fn new(events: EventQueue) -> Self {
        Self {
            events,
            shared: Mutex::new(None),
        }
    }

    /// Starts watching the memory cgroup of container `id`. Failing to is logged, not fatal:
    /// the check before each exit still reports OOM kills then.
    pub fn watch(&self, id: &str, cgroup: &Cgroup, order: &Arc<ExitOrder>) {
        if let Err(e) = self.try_watch(id, cgroup, order) {
            log::warn!("{id}: no live OOM notification ({e}); OOM kills are reported at exit");
        }
    }

    fn try_watch(&self, id: &str, cgroup: &Cgroup, order: &Arc<ExitOrder>) -> Result<(), String> {
        let (signal, control) = match notification(cgroup)? {
            Some(pair) => pair,
            None => return Ok(()),
        };
        let shared = self.shared()?;
        let token = signal.as_raw_fd() as u64;
        let event = EpollEvent::new(EpollFlags::EPOLLIN, token);
        shared
            .epoll
            .add(signal.as_fd(), event)
            .map_err(|e| format!("epoll add: {e}"))?;
        let watch = Watch {
            order: Arc::downgrade(order),
            signal,
            control,
        };
        lock(&shared.watches).insert(token, watch);
        lock(&shared.ids).insert(id.to_owned(), token);
        Ok(())
    }

    /// Stops watching container `id` (its Delete) and closes what the watch held.
    pub fn unwatch(&self, id: &str) {
        let Some(shared) = lock(&self.shared).clone() else {
            return;
        };
        let Some(token) = lock(&shared.ids).remove(id) else {
            return;
        };
        if let Some(watch) = lock(&shared.watches).remove(&token) {
            let _ = shared.epoll.delete(watch.signal.as_fd());
        }
    }

    fn shared(&self) -> Result<Arc<Shared>, String> {
        let mut slot = lock(&self.shared);
        if let Some(shared) = slot.as_ref() {
            return Ok(Arc::clone(shared));
        }
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| format!("epoll_create: {e}"))?;
        let shared = Arc::new(Shared {
            epoll,
            watches: Mutex::new(HashMap::new()),
            ids: Mutex::new(HashMap::new()),
        });
        let thread_shared = Arc::clone(&shared);
        let events = self.events.clone();
        std::thread::Builder::new()
            .name("oom-watcher".into())
            .stack_size(64 * 1024)
            .spawn(move || run(&thread_shared, &events))
            .map_err(|e| format!("start the OOM watcher thread: {e}"))?;
        *slot = Some(Arc::clone(&shared));
        Ok(shared)
    }
}

fn run(shared: &Shared, events: &EventQueue) {
    let mut ready = [EpollEvent::empty(); 16];
    loop {
        let n = match shared.epoll.wait(&mut ready, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("OOM watcher stopped: epoll_wait: {e}");
                return;
            }
        };
        for event in &ready[..n] {
            let token = event.data();
            let order = {
                let watches = lock(&shared.watches);
                let Some(watch) = watches.get(&token) else {
                    continue;
                };
                drain(&watch.signal);
                (watch.order.upgrade(), watch.control.is_some())
            };
            match order {
                (Some(order), false) => {
                    order.publish_oom_if_any(events);
                }
                (Some(order), true) => publish_when_counted(&order, events),
                (None, _) => {
                    if let Some(watch) = lock(&shared.watches).remove(&token) {
                        let _ = shared.epoll.delete(watch.signal.as_fd());
                    }
                }
            }
        }
    }
}

/// cgroup v1 signals as its OOM killer is invoked, before the kill is counted: look again a
/// few times, up to about 100 ms. No count ever moving means no kill (the OOM killer is
/// disabled for the cgroup, or the signal came from the cgroup's removal): nothing to report.
/// This runs on the watcher's own thread, never on a container's create, start or exit path.
fn publish_when_counted(order: &ExitOrder, events: &EventQueue) {
    for delay_ms in [0, 1, 10, 100] {
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if order.publish_oom_if_any(events) {
            return;
        }
    }
}

/// Reads what is pending so the fd stops being readable (eventfd counter, inotify events).
fn drain(fd: &OwnedFd) {
    let mut buffer = [0u8; 4096];
    while matches!(nix::unistd::read(fd, &mut buffer), Ok(n) if n > 0) {}
}

/// The readable fd that signals an OOM event in `cgroup` (and the v1 control file to keep
/// open), or None when the cgroup has no memory controller.
fn notification(cgroup: &Cgroup) -> Result<Option<(OwnedFd, Option<OwnedFd>)>, String> {
    if let Some(dir) = cgroup.v1_dir("memory") {
        let eventfd =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(|e| format!("eventfd: {e}"))?;
        let control_path = dir.join("memory.oom_control");
        let control = std::fs::File::open(&control_path)
            .map_err(|e| format!("open {}: {e}", control_path.display()))?;
        let registration = format!("{} {}", eventfd.as_raw_fd(), control.as_raw_fd());
        let event_control = dir.join("cgroup.event_control");
        std::fs::write(&event_control, registration)
            .map_err(|e| format!("write {}: {e}", event_control.display()))?;
        return Ok(Some((OwnedFd::from(eventfd), Some(OwnedFd::from(control)))));
    }
    let Some(dir) = cgroup.unified_dir() else {
        return Ok(None);
    };
    let events_path = dir.join("memory.events");
    if !events_path.exists() {
        return Ok(None);
    }
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(|e| format!("inotify_init: {e}"))?;
    inotify
        .add_watch(&events_path, AddWatchFlags::IN_MODIFY)
        .map_err(|e| format!("watch {}: {e}", events_path.display()))?;
    Ok(Some((OwnedFd::from(inotify), None)))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
