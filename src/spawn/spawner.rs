//! The spawner (zygote) and the processes it makes: per-request helpers and container inits.
//!
//! ```text
//! shim daemon ──fork──▶ spawner            (forked before the daemon starts any thread)
//!      ▲                  │ clone3(CLONE_PARENT)
//!      │ parent of ───────┼──▶ helper       (setns into joined namespaces, joins the cgroup)
//!      │                  │      │ clone3(CLONE_PARENT | CLONE_NEW* | CLONE_PIDFD)
//!      └──── parent of ───┴──────┴──▶ init  (container setup, waits for Start, execve)
//! ```
//!
//! The spawner itself never changes process-wide state (cwd, namespaces, credentials, umask,
//! signal dispositions): that happens in the helper and the init, so one request cannot leak into
//! the next. The spawner never answers on its channel; each request's sync socket carries the
//! outcome (see `protocol`).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::libc;
use nix::sched::CloneFlags;
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid, fork, getppid};

use super::clone::{Cloned, clone_sibling, pidfd_send_signal};
use super::protocol::{self, SpawnRequest, SyncMessage};
use super::userns;
use crate::cgroups::Cgroup;
use crate::container::hooks::{HookKind, run_hooks};
use crate::container::lsm::{HostProc, asks_labels};
use crate::container::namespaces::{NamespaceKind, NamespacePlan};
use crate::container::process_attrs::set_oom_score_adj;
use crate::container::rlimits::apply_rlimits;
use crate::container::rootfs::IdmappedTrees;
use crate::container::{ExecConfig, InitConfig};

/// Forks the spawner. Must be called while the calling process is still single-threaded.
///
/// Returns the spawner's pid; `spawner_end` is the spawner's end of the channel (the caller keeps
/// the other end and must drop this one).
///
/// # Safety
/// The calling process must have exactly one thread.
pub unsafe fn fork_spawner(spawner_end: &OwnedFd, daemon_end: &OwnedFd) -> nix::Result<Pid> {
    // The contract, checked: a fork while another thread holds a lock (malloc's, the logger's)
    // would hand the spawner that lock, held for ever.
    if thread_count() != Some(1) {
        debug_assert!(false, "the spawner must be forked while single-threaded");
        return Err(nix::errno::Errno::EDEADLK);
    }
    let daemon = nix::unistd::getpid();
    // SAFETY: the caller guarantees a single thread, so the child inherits no lock held elsewhere.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            // The daemon's end would keep the channel open after the daemon died.
            // SAFETY: closing a descriptor this process owns a copy of.
            unsafe { libc::close(daemon_end.as_raw_fd()) };
            run_spawner(spawner_end.as_raw_fd(), daemon, true)
        }
    }
}

/// The action a replacement spawner is started with (see `Spawner::exec`).
pub const SPAWNER_ACTION: &str = "spawner";
/// Where a replacement spawner finds its end of the channel.
pub const CHANNEL_FD_ENV: &str = "SIBLING_SPAWNER_FD";
/// The daemon a replacement spawner serves (to check it did not die before the spawner began).
pub const DAEMON_PID_ENV: &str = "SIBLING_DAEMON_PID";

/// Entry of a replacement spawner (the `spawner` action): the daemon exec'd this binary with
/// the channel and its own pid in the environment. Never returns.
pub fn run_exec_spawner() -> ! {
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<i32>().ok());
    match (number(CHANNEL_FD_ENV), number(DAEMON_PID_ENV)) {
        // No parent-death signal here: it fires when the *thread* that started us exits, and
        // the daemon thread that did is a ttrpc worker that may end at any time. End of file on
        // the channel is what ends this spawner when the daemon dies.
        (Some(channel), Some(daemon)) => run_spawner(channel, Pid::from_raw(daemon), false),
        _ => exit_now(2),
    }
}

fn run_spawner(channel: RawFd, daemon: Pid, death_signal: bool) -> ! {
    let _ = prctl::set_name(c"sibling-spawner");
    // Inherited by every helper and container process until its execve: a container process
    // must not open /proc/<pid>/exe (this binary), the memory or the fds of one still being
    // set up (CVE-2019-5736 class). execve makes the container's program dumpable again.
    if prctl::set_dumpable(false).is_err() {
        exit_now(1);
    }
    // The spawner must never outlive the daemon: nothing else would ever reap its children.
    if death_signal && prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
        exit_now(1);
    }
    if getppid() != daemon {
        exit_now(1);
    }
    close_fds_except(channel);
    warm_up();
    loop {
        match protocol::receive::<SpawnRequest>(channel) {
            Ok((request, fds)) => handle_request(channel, request, fds),
            Err(protocol::ProtocolError::Closed) => exit_now(0),
            // A malformed record cannot be answered (we may not even have its sync socket): the
            // daemon sees its sync socket close and reports that.
            Err(_) => continue,
        }
    }
}

/// Encodes and decodes a request shaped like a Create's once, while the spawner waits for its
/// first: the first decode in a fresh process faults in the decoder's code and grows the heap,
/// which otherwise lies on the first Create's path.
fn warm_up() {
    let request = SpawnRequest::Init {
        config: Box::new(InitConfig {
            id: String::new(),
            spec: oci_spec::runtime::Spec::default(),
            rootfs: std::path::PathBuf::new(),
            bundle: std::path::PathBuf::new(),
        }),
        namespaces: NamespacePlan::default(),
    };
    if let Ok(bytes) = serde_json::to_vec(&request) {
        let _ = serde_json::from_slice::<SpawnRequest>(&bytes);
    }
}

fn handle_request(channel: RawFd, request: SpawnRequest, fds: Vec<OwnedFd>) {
    if fds.len() != request.fd_count() {
        if let Some(sync) = fds.first() {
            fail(sync, format!("spawn request carried {} fds", fds.len()));
        }
        return;
    }
    match clone_sibling(0, false, None) {
        Ok(Cloned::Child) => match request {
            SpawnRequest::Hooks { kind, hooks, state } => {
                run_hook_runner(channel, kind, &hooks, &state, &fds[0])
            }
            SpawnRequest::HoldScope => run_scope_holder(channel, &fds[0]),
            request => run_helper(channel, request, fds),
        },
        Ok(Cloned::Parent { .. }) => {} // The request's fds close here: the helper has them.
        Err(e) => fail(&fds[0], format!("clone helper: {e}")),
    }
}

/// A hook runner: a clone of the spawner, so in the runtime's namespaces and cgroup and
/// single-threaded; runs the hooks in order (each a child it waits for, bounded by its
/// timeout), answers `HooksDone` and exits. Its parent is the daemon, which reaps it.
fn run_hook_runner(
    channel: RawFd,
    kind: HookKind,
    hooks: &[oci_spec::runtime::Hook],
    state: &str,
    sync: &OwnedFd,
) -> ! {
    // SAFETY: the channel is the spawner's; the hooks must not inherit it (they get only
    // their stdio anyway).
    unsafe { libc::close(channel) };
    let _ = prctl::set_name(c"sibling-hooks");
    let error = run_hooks(kind, hooks, state).err();
    let done = SyncMessage::HooksDone {
        runner: nix::unistd::getpid().as_raw(),
        error,
    };
    exit_now(i32::from(protocol::send_sync(sync, &done).is_err()))
}

/// A scope holder (the systemd cgroup driver): systemd moves it into a new scope as the
/// scope's first process, so the scope exists before the container's init is cloned into it.
/// It answers `Holding` with its pid, then waits until the daemon closes its end (the init is
/// in the scope, or the Create failed) or the daemon dies (the same end of file), bounded by
/// `SCOPE_HOLDER_LIMIT`, and exits; the daemon reaps it.
fn run_scope_holder(channel: RawFd, sync: &OwnedFd) -> ! {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    // SAFETY: the channel is the spawner's (a bare number no OwnedFd holds); the holder
    // must not keep it.
    unsafe { libc::close(channel) };
    let _ = prctl::set_name(c"sibling-scope");
    let holding = SyncMessage::Holding {
        pid: nix::unistd::getpid().as_raw(),
    };
    if protocol::send_sync(sync, &holding).is_err() {
        exit_now(1);
    }
    let limit = PollTimeout::try_from(protocol::SCOPE_HOLDER_LIMIT).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(sync),
        PollFlags::POLLIN,
    )];
    // Any outcome ends the wait: end of file, a message (none is expected), the bound, an
    // error. EINTR cannot come: the holder has no signal handlers.
    let _ = poll(&mut fds, limit);
    exit_now(0)
}

/// The per-request helper: joins what the new process must join, clones it, reports it, exits.
fn run_helper(channel: RawFd, request: SpawnRequest, mut fds: Vec<OwnedFd>) -> ! {
    // The channel is the spawner's (a bare number no OwnedFd holds); the init must not
    // inherit it.
    let _ = nix::unistd::close(channel);
    let _ = prctl::set_name(c"sibling-helper");
    // fds (checked by handle_request): sync, then for an exec stdin, stdout, stderr and the
    // init's pidfd. An init's stdio comes with sync 0.
    let sync = fds.remove(0);
    let init_pidfd = (fds.len() == 4).then(|| fds.remove(3));
    // For an exec's LSM labels: the host's /proc, before the container's replaces it. Only
    // an exec that asks for a label needs it (an open and an fstatfs saved on every other).
    let host_proc = match &request {
        SpawnRequest::Exec { config, .. } if asks_labels(&config.process) => HostProc::open().ok(),
        _ => None,
    };
    let (entered, new_flags, stdio) = match &request {
        SpawnRequest::Init { namespaces, config } => {
            // Before anything else changes this process: the inherited attributes include
            // rlimits (in a user namespace), which must not limit receiving the stdio.
            let (cgroup, stdio) = wait_for_go(&sync);
            (
                set_inherited_attributes(config.spec.process().as_ref(), namespaces)
                    .and_then(|()| enter_cgroup_and_namespaces(cgroup.as_ref(), namespaces)),
                clone_flags(namespaces),
                stdio,
            )
        }
        SpawnRequest::Hooks { .. } | SpawnRequest::HoldScope => exit_now(1),
        SpawnRequest::Exec {
            cgroup,
            config,
            join_also,
        } => match (&init_pidfd, <[OwnedFd; 3]>::try_from(fds)) {
            (Some(pidfd), Ok(stdio)) => (
                set_inherited_attributes(Some(&config.process), &NamespacePlan::default())
                    .and_then(|()| enter_container_of(cgroup.as_ref(), pidfd, *join_also)),
                0,
                stdio,
            ),
            _ => exit_now(1),
        },
    };
    let into_cgroup = match entered {
        Ok(into_cgroup) => into_cgroup,
        Err(error) => {
            fail(&sync, error);
            exit_now(1);
        }
    };
    let id_maps = match &request {
        SpawnRequest::Init { namespaces, .. } => namespaces.id_mappings.as_ref(),
        SpawnRequest::Exec { .. } | SpawnRequest::Hooks { .. } | SpawnRequest::HoldScope => None,
    };
    let gate = match id_maps.map(|_| userns::gate()).transpose() {
        Ok(gate) => gate,
        Err(error) => {
            fail(&sync, error);
            exit_now(1)
        }
    };
    // After joining the namespaces (a bind source is looked up as the init will see it), before
    // the clone: the init inherits the trees. The helper's copies close when it exits.
    let idmapped = match &request {
        SpawnRequest::Init { config, .. } => match userns::idmapped_trees(config) {
            Ok(trees) => trees,
            Err(error) => {
                fail(&sync, error);
                exit_now(1)
            }
        },
        SpawnRequest::Exec { .. } | SpawnRequest::Hooks { .. } | SpawnRequest::HoldScope => {
            IdmappedTrees::default()
        }
    };
    let waits_for_start = request.waits_for_start();
    match clone_sibling(new_flags, true, into_cgroup.as_ref()) {
        Ok(Cloned::Child) => {
            // A host cgroup directory: nothing the container's process may hold, even until
            // execve (CVE-2024-21626 leaked one through the cwd).
            drop(into_cgroup);
            // Now in the container's cgroup: its cgroup namespace can be joined (see
            // `enter_container_of`), and the init's pidfd is not the container's to keep.
            if let Some(pidfd) = init_pidfd {
                if let Err(error) = join_cgroup_namespace(&pidfd) {
                    fail(&sync, error);
                    exit_now(1)
                }
                drop(pidfd);
            }
            if let Some(gate) = gate
                && let Err(error) = userns::wait_for_maps(gate)
            {
                fail(&sync, error);
                exit_now(1)
            }
            match request {
                SpawnRequest::Init { config, .. } => {
                    drop(host_proc);
                    run_init(&config, sync, stdio, idmapped)
                }
                SpawnRequest::Exec { config, .. } => {
                    run_exec(&config, sync, stdio, (host_proc, waits_for_start))
                }
                SpawnRequest::Hooks { .. } | SpawnRequest::HoldScope => exit_now(1),
            }
        }
        Ok(Cloned::Parent { pid, pidfd }) => {
            drop(init_pidfd);
            if let (Some(maps), Some(gate)) = (id_maps, gate) {
                drop(gate.wait);
                if let Err(error) = userns::write_maps(pid, maps, gate.open) {
                    if let Some(pidfd) = &pidfd {
                        let _ = pidfd_send_signal(pidfd, libc::SIGKILL);
                    }
                    fail(&sync, error);
                    exit_now(1)
                }
            }
            // sync 1: the init's host pid and pidfd.
            let fds: Vec<RawFd> = pidfd.iter().map(|fd| fd.as_raw_fd()).collect();
            let spawned = SyncMessage::Spawned {
                pid: pid.as_raw(),
                helper: nix::unistd::getpid().as_raw(),
            };
            let code = i32::from(protocol::send(sync.as_raw_fd(), &spawned, &fds).is_err());
            exit_now(code)
        }
        Err(e) => {
            fail(&sync, format!("clone container init: {e}"));
            exit_now(1)
        }
    }
}

/// Sync 0: waits for the daemon's `Go`, which brings the cgroup to join and the init's stdin,
/// stdout and stderr. When the daemon closes its end instead (a later step of its Create
/// failed: it reports that), the helper leaves quietly; anything else is answered `Failed`.
/// The wait ends with the daemon: its end closes when it exits.
fn wait_for_go(sync: &OwnedFd) -> (Option<Cgroup>, [OwnedFd; 3]) {
    let error = match protocol::receive::<SyncMessage>(sync.as_raw_fd()) {
        Ok((SyncMessage::Go { cgroup }, fds)) => match <[OwnedFd; 3]>::try_from(fds) {
            Ok(stdio) => return (cgroup, stdio),
            Err(fds) => format!("sync 0 carried {} fds, expected 3", fds.len()),
        },
        Ok((got, _)) => format!("expected the go-ahead (sync 0), got {got:?}"),
        Err(protocol::ProtocolError::Closed) => exit_now(1),
        Err(e) => format!("wait for the go-ahead (sync 0): {e}"),
    };
    fail(sync, error);
    exit_now(1)
}

/// Joins the cgroup first, so the init is born inside it (it never runs a single instruction
/// outside its limits) and a new cgroup namespace created at clone is rooted there; then joins
/// the namespaces given by path.
///
/// Returns the cgroup2 directory the init is to be cloned into, if any.
fn enter_cgroup_and_namespaces(
    cgroup: Option<&Cgroup>,
    namespaces: &NamespacePlan,
) -> Result<Option<OwnedFd>, String> {
    let into_cgroup = enter_cgroup(cgroup)?;
    namespaces.join_all().map_err(|e| e.to_string())?;
    if !namespaces.time_offsets.is_empty() {
        create_time_namespace(&namespaces.time_offsets)?;
    }
    Ok(into_cgroup)
}

/// The init's clone flags. A time namespace with offsets is not made by the clone: offsets
/// can only be written before any process is in the namespace, so the helper makes it for its
/// children ([`create_time_namespace`]) and the init is born into it.
fn clone_flags(namespaces: &NamespacePlan) -> u64 {
    let time = NamespaceKind::Time.clone_flag();
    if namespaces.time_offsets.is_empty() {
        namespaces.new_flags
    } else {
        namespaces.new_flags & !time
    }
}

/// unshare(CLONE_NEWTIME) (the helper's next child goes into the new namespace) and writes
/// the offsets while the namespace is still empty.
fn create_time_namespace(offsets: &[String]) -> Result<(), String> {
    let time = CloneFlags::from_bits_retain(NamespaceKind::Time.clone_flag() as libc::c_int);
    // It changes only this single-threaded helper.
    nix::sched::unshare(time).map_err(|errno| format!("create a time namespace: {errno}"))?;
    let text = offsets.join("\n") + "\n";
    std::fs::write("/proc/self/timens_offsets", &text)
        .map_err(|e| format!("write timens_offsets ({}): {e}", offsets.join(", ")))
}

fn enter_cgroup(cgroup: Option<&Cgroup>) -> Result<Option<OwnedFd>, String> {
    match cgroup {
        Some(cgroup) => cgroup.enter_for_clone().map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// What the new process inherits from the helper, set here while the helper still has the
/// host's privileges and sees the host's /proc: `oomScoreAdj` (the container's /proc is the
/// container's to rearrange, CVE-2025-52881; lowering it needs CAP_SYS_RESOURCE over the
/// host), and with a new user namespace the rlimits (raising a hard limit needs the same).
fn set_inherited_attributes(
    process: Option<&oci_spec::runtime::Process>,
    namespaces: &NamespacePlan,
) -> Result<(), String> {
    let Some(process) = process else {
        return Ok(());
    };
    if let Some(value) = process.oom_score_adj() {
        set_oom_score_adj(value).map_err(|e| e.to_string())?;
    }
    if namespaces.id_mappings.is_some() {
        apply_rlimits(process.rlimits().as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// For an exec: the container's cgroup first (through host paths, which the container's mount
/// namespace hides), then every namespace of the init at once through its pidfd, but the
/// cgroup namespace: the exec process joins that itself once cloned into the cgroup
/// ([`join_cgroup_namespace`]). With cgroup2's `nsdelegate` (systemd always mounts it so),
/// `clone3(CLONE_INTO_CGROUP)` from inside the container's cgroup namespace fails with ENOENT:
/// the helper's own cgroup lies outside that namespace's root.
fn enter_container_of(
    cgroup: Option<&Cgroup>,
    init_pidfd: &OwnedFd,
    join_also: u64,
) -> Result<Option<OwnedFd>, String> {
    let into_cgroup = enter_cgroup(cgroup)?;
    let flags = join_also as libc::c_int
        | nix::libc::CLONE_NEWNS
        | nix::libc::CLONE_NEWPID
        | nix::libc::CLONE_NEWNET
        | nix::libc::CLONE_NEWIPC
        | nix::libc::CLONE_NEWUTS;
    // It changes only this single-threaded helper.
    nix::sched::setns(init_pidfd, CloneFlags::from_bits_retain(flags)).map_err(|errno| {
        format!("join the container's namespaces (setns on the init's pidfd): {errno}")
    })?;
    Ok(into_cgroup)
}

/// An exec process, just cloned into the container's cgroup, joins the init's cgroup
/// namespace (its root is then the container's cgroup, as for the init).
fn join_cgroup_namespace(init_pidfd: &OwnedFd) -> Result<(), String> {
    // It changes only this single-threaded process.
    nix::sched::setns(init_pidfd, CloneFlags::CLONE_NEWCGROUP)
        .map_err(|errno| format!("join the container's cgroup namespace: {errno}"))
}

/// The container init: setup (with sync 2 and 3 around the runtime's hooks when the spec has
/// any), sync 4 (ready), sync 5 (wait for start), sync 6 (startContainer hooks, execve).
fn run_init(config: &InitConfig, sync: OwnedFd, stdio: [OwnedFd; 3], idmapped: IdmappedTrees) -> ! {
    let mut runtime_hooks = || runtime_hooks(&sync);
    let prepared = crate::container::init::prepare(config, stdio, idmapped, &mut runtime_hooks);
    run_prepared(prepared, sync, true)
}

/// Sync 2 and 3: asks the daemon to run the `prestart` and `createRuntime` hooks and waits
/// until they ran. The daemon closes the socket when one failed (its Create reports it).
fn runtime_hooks(sync: &OwnedFd) -> Result<(), String> {
    protocol::send_sync(sync, &SyncMessage::RuntimeHooks)
        .map_err(|e| format!("ask for the runtime's hooks: {e}"))?;
    match protocol::receive::<SyncMessage>(sync.as_raw_fd()) {
        Ok((SyncMessage::HooksRan, _)) => Ok(()),
        Ok((other, _)) => Err(format!("runtime hooks: unexpected message {other:?}")),
        Err(e) => Err(format!("runtime hooks: {e}")),
    }
}

/// An exec'd process: the same sync steps after the process-level setup, but sync 5 only
/// when `waits_for_start` (see `SpawnRequest::waits_for_start`).
fn run_exec(
    config: &ExecConfig,
    sync: OwnedFd,
    stdio: [OwnedFd; 3],
    (host_proc, waits_for_start): (Option<HostProc>, bool),
) -> ! {
    let prepared = crate::container::init::prepare_exec(config, stdio, host_proc);
    run_prepared(prepared, sync, waits_for_start)
}

fn run_prepared(
    prepared: Result<crate::container::init::Exec, crate::container::init::InitError>,
    sync: OwnedFd,
    waits_for_start: bool,
) -> ! {
    let exec = match prepared {
        Ok(exec) => exec,
        Err(e) => {
            fail(&sync, e.to_string());
            exit_now(1)
        }
    };
    let ready = SyncMessage::Ready {
        warnings: exec.warnings().to_vec(),
    };
    // sync 4, with the terminal's master when the process has one.
    let console: Vec<RawFd> = exec.console().iter().map(|fd| fd.as_raw_fd()).collect();
    if protocol::send(sync.as_raw_fd(), &ready, &console).is_err() {
        exit_now(1);
    }
    if waits_for_start {
        match protocol::receive::<SyncMessage>(sync.as_raw_fd()) {
            Ok((SyncMessage::Start, _)) => {}
            // The daemon gave up on this container (or died): never run it.
            _ => exit_now(1),
        }
    }
    let error = exec.exec();
    fail(&sync, error.to_string());
    exit_now(127)
}

fn fail(sync: &OwnedFd, error: String) {
    let _ = protocol::send_sync(sync, &SyncMessage::Failed { error });
}

/// Leaves without running atexit handlers or flushing std's buffers, which belong to the daemon.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// This process's thread count, from `/proc/self/status`.
pub fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Closes every inherited fd but stdio and `keep` (the daemon's listener, its log, ...). Where
/// close_range(2) is missing (kernels before 5.9) or fails, each fd listed in /proc/self/fd is
/// closed instead; a spawner that cannot close them exits rather than leak them into
/// containers.
fn close_fds_except(keep: RawFd) {
    let ranges = [(3, keep - 1), (keep + 1, RawFd::MAX)];
    for (first, last) in ranges {
        if first > last {
            continue;
        }
        // Raw because neither nix nor rustix wraps close_range.
        // SAFETY: close_range only closes descriptors of this single-threaded process; the
        // ones we keep are outside the ranges.
        let ret = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32) };
        if ret != 0 && close_listed_fds(first, last).is_err() {
            exit_now(1);
        }
    }
}

/// The fallback of [`close_fds_except`]: closes the fds in `first..=last` that /proc lists.
fn close_listed_fds(first: RawFd, last: RawFd) -> std::io::Result<()> {
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|fd| (first..=last).contains(fd))
        .collect();
    for fd in open {
        // The directory's own fd is gone by now and gives EBADF: nothing else can fail here.
        let _ = nix::unistd::close(fd);
    }
    Ok(())
}
