//! Create: the daemon's orchestration of a new container. `Task::create` sends the spawner the
//! init's request, acquires the rootfs mount and the cgroup (with its limits and device rules)
//! at the same time (the mount on a second thread), then stdio, while the spawner readies its
//! helper; then it hands the helper the cgroup and stdio (sync 0), and gives every one back if
//! a later step fails, so a failed Create leaves no mount, cgroup, FIFO reader or process
//! behind. Runs in the daemon.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use containerd_shim_protos::events::task::{TaskCreate, TaskIO};
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim::shim::CreateTaskRequest;
use containerd_shim_protos::topics::TASK_CREATE_EVENT_TOPIC;
use oci_spec::runtime::Spec;

use super::error::TaskError;
use super::events::EventBody;
use super::exit_order::{ExitOrder, InitExitHook};
use super::options::parse_options;
use super::process::Kind;
use super::snapshot_mount::{MountedRootfs, mount_rootfs};
use super::state_file::{SavedState, StateFile};
use super::{DEFAULT_CGROUP_PARENT, Daemon, logger, restore};
use crate::cgroups::{Cgroup, CgroupPath, DeviceRules};
use crate::container::InitConfig;
use crate::container::hooks::{HookKind, StateBase, spec_hooks};
use crate::container::namespaces::{NamespaceKind, NamespacePlan};
use crate::io::{LogOwner, OutputMode, ProcessIo, StdioPaths};
use crate::spawn::protocol::SpawnRequest;

use super::bundle_spec::{load_spec, resolve_root};
use super::spawn_process::{Delivery, spawn_process};
use super::task::{Held, Task, TaskHooks};

/// Resources a Create holds until it succeeds; dropping it releases them in reverse order.
struct Acquired {
    rootfs: Option<MountedRootfs>,
    cgroup: Option<Cgroup>,
}

impl Drop for Acquired {
    fn drop(&mut self) {
        if let Some(cgroup) = self.cgroup.take()
            && let Err(e) = cgroup.remove()
        {
            log::error!("remove cgroup of a failed create: {e}");
        }
        // The rootfs unmounts itself when dropped, after the cgroup (its processes) are gone.
    }
}
impl Task {
    /// Create: spec, rootfs, cgroup, stdio, then the init from the spawner, set up and waiting.
    ///
    /// The spawn request goes to the spawner as soon as the spec is checked: it decodes it and
    /// forks the helper while the rootfs is mounted, the cgroup made and stdio opened here;
    /// then sync 0 hands the helper the cgroup and stdio (see `spawn::protocol`).
    pub fn create(daemon: &Daemon, req: &CreateTaskRequest) -> Result<Task, TaskError> {
        let options = parse_options(req.options.as_ref())?;
        let bundle = PathBuf::from(&req.bundle);
        // containerd reads this container's log FIFO for as long as it lives; its lines go
        // there, at its own level.
        logger::follow(&req.id, &bundle, options.log_level);
        let spec = load_spec(&bundle)?;
        crate::container::hooks::validate(&spec).map_err(TaskError::invalid)?;
        let rootfs_path = resolve_root(&bundle, &spec)?;
        // A restore: checked before anything is acquired; CRIU replaces the spawn below.
        let restoring = (!req.checkpoint.is_empty())
            .then(|| -> Result<_, TaskError> {
                let dumped = restore::read_description(std::path::Path::new(&req.checkpoint))?;
                restore::check_supported(&spec, req.terminal, &dumped)?;
                Ok((spec.clone(), rootfs_path.clone()))
            })
            .transpose()?;
        let namespaces =
            NamespacePlan::from_spec(&spec).map_err(|e| TaskError::invalid(e.to_string()))?;
        let output_mode = init_output_mode(&namespaces);
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
        let join_also = [NamespaceKind::User, NamespaceKind::Time]
            .into_iter()
            .filter(|kind| namespaces.is_private(*kind))
            .fold(0, |flags, kind| flags | kind.clone_flag());
        let personality = spec.linux().as_ref().and_then(|l| l.personality().clone());
        let hooks = TaskHooks {
            state: StateBase::of_spec(&req.id, &bundle, &spec),
            poststart: spec_hooks(&spec, HookKind::Poststart).to_vec(),
            poststop: spec_hooks(&spec, HookKind::Poststop).to_vec(),
        };
        let config = Box::new(InitConfig {
            id: req.id.clone(),
            spec,
            rootfs: rootfs_path,
            bundle: bundle.clone(),
        });
        let request = SpawnRequest::Init { config, namespaces };
        let SpawnRequest::Init { config, .. } = &request else {
            unreachable!("built as an Init just above")
        };
        // Exits of the helper are parked from the moment the request is out (see `reaper`).
        let _parking = daemon.exits.begin_spawn();
        let ahead = match restoring {
            Some(_) => None,
            None => Some(
                daemon
                    .spawner
                    .get(&daemon.exits)?
                    .request_init(&request)
                    .map_err(TaskError::from_spawn)?,
            ),
        };
        // With the systemd driver, a scope holder keeps the new scope alive until the init is
        // in it; it is let go (and reaped) right after the spawn, or on any failure.
        let (mut acquired, scope_holder) =
            acquire_rootfs_and_cgroup(&req.rootfs, &bundle.join("rootfs"), || {
                create_cgroup(daemon, &req.id, &config.spec, options.systemd_cgroup)
            })?;
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let owner = LogOwner {
            container_id: &req.id,
            namespace: &daemon.namespace,
        };
        let (io, child_stdio) = ProcessIo::open(&stdio, &owner, output_mode)
            .map_err(|e| TaskError::invalid(e.to_string()))?;
        if let Some((uid, gid)) = options.io_owner {
            give_pipes_to(&child_stdio, uid, gid)?;
        }
        let order = Arc::new(exit_order_for(&req.id, &request, acquired.cgroup.as_ref()));
        // `delete`'s record, written as soon as the init's pid is known: while the init sets
        // itself up, the daemon only waits. Removed again if the Create fails.
        let state_file = StateFile::in_bundle(&bundle);
        let state_written = Cell::new(false);
        let write_state = |pid: u32| {
            let rootfs = acquired.rootfs.as_ref().map(MountedRootfs::target);
            let cgroup = acquired.cgroup.as_ref();
            state_file.save(&SavedState::new(pid, cgroup, rootfs, &hooks));
            state_written.set(true);
        };
        let init = match (&restoring, acquired.cgroup.as_ref(), ahead) {
            (Some((spec, rootfs)), Some(cgroup), _) => restore::restore(
                daemon,
                req,
                &restore::RestoreInput {
                    spec,
                    rootfs,
                    cgroup,
                    criu_path: options.criu_path.as_deref(),
                },
                (&io, child_stdio),
                &order,
                &|pid| {
                    write_state(pid);
                    daemon
                        .events
                        .publish(TASK_CREATE_EVENT_TOPIC, task_create_event(req, pid))
                },
            ),
            (_, cgroup, Some(ahead)) => spawn_process(
                daemon,
                (&request, Delivery::Ahead(ahead, cgroup)),
                (&io, child_stdio),
                (&req.id, Kind::Init, &req.id),
                &order,
                (
                    Some(&write_state),
                    Some((TASK_CREATE_EVENT_TOPIC, &|pid| task_create_event(req, pid))),
                ),
            ),
            (_, _, None) => Err(TaskError::internal(
                "a restore without a cgroup".to_string(),
            )),
        };
        let init = init.inspect_err(|_| {
            if state_written.get() {
                state_file.remove();
            }
        })?;
        drop(scope_holder);
        let rootfs = acquired.rootfs.take();
        let task = Task {
            id: req.id.clone(),
            bundle,
            stdio,
            init,
            order,
            execs: Mutex::new(HashMap::new()),
            cgroup: acquired.cgroup.take(),
            seccomp,
            personality,
            join_also,
            hooks,
            rootfs_target: rootfs.as_ref().map(|r| r.target().to_owned()),
            criu_path: options.criu_path.clone(),
            held: Mutex::new(Some(Held { rootfs, io })),
        };
        Ok(task)
    }
}

/// The rootfs mount and the cgroup, made at the same time: neither needs the other, and both
/// lie on Create's path while the spawner's helper waits for them (sync 0). The mount (an
/// overlayfs superblock) and the cgroup (a directory in every hierarchy, each taking the
/// kernel's cgroup mutex) are kernel work that shares no lock, so a second thread halves the
/// wait when a CPU is free. Either failure releases what the other made (`Acquired`), the
/// mount's error first, as when they ran in turn; without a thread the mount runs here first.
fn acquire_rootfs_and_cgroup<'d>(
    mounts: &[containerd_shim_protos::types::mount::Mount],
    target: &std::path::Path,
    create_cgroup: impl FnOnce() -> Result<(Cgroup, Option<HeldScope<'d>>), TaskError>,
) -> Result<(Acquired, Option<HeldScope<'d>>), TaskError> {
    let (mounted, created) = std::thread::scope(|scope| {
        let mounting = std::thread::Builder::new()
            .stack_size(MOUNT_THREAD_STACK)
            .spawn_scoped(scope, || mount_rootfs(mounts, target));
        match mounting {
            Ok(mounting) => {
                let created = create_cgroup();
                let mounted = mounting
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (mounted, Some(created))
            }
            // No thread to be had (a task limit): one after the other.
            Err(e) => {
                log::debug!("mounting the rootfs without a thread of its own: {e}");
                let mounted = mount_rootfs(mounts, target);
                let created = mounted.is_ok().then(create_cgroup);
                (mounted, created)
            }
        }
    });
    let mut cgroup_error = None;
    let (cgroup, scope_holder) = match created {
        Some(Ok((cgroup, holder))) => (Some(cgroup), holder),
        Some(Err(e)) => {
            cgroup_error = Some(e);
            (None, None)
        }
        None => (None, None),
    };
    let mut acquired = Acquired {
        rootfs: None,
        cgroup,
    };
    match (mounted, cgroup_error) {
        (Ok(rootfs), None) => {
            acquired.rootfs = rootfs;
            Ok((acquired, scope_holder))
        }
        // The holder goes before the cgroup, as in every other failed Create.
        (Err(e), _) => {
            drop(scope_holder);
            drop(acquired);
            Err(TaskError::invalid(e.to_string()))
        }
        (Ok(rootfs), Some(e)) => {
            acquired.rootfs = rootfs;
            Err(e)
        }
    }
}

/// The mount thread's stack: mount_rootfs needs a few KiB; the default 2 MiB is mapped for
/// nothing.
const MOUNT_THREAD_STACK: usize = 64 * 1024;

/// An init with a PID namespace of its own takes every process of it along when it dies, so no
/// writer can outlive it: its output goes to the FIFOs directly. Otherwise (the host's or a
/// pod's PID namespace) a writer may outlive it: copy, so Delete can end the stream.
fn init_output_mode(namespaces: &NamespacePlan) -> OutputMode {
    if namespaces.is_new(NamespaceKind::Pid) {
        OutputMode::Direct
    } else {
        OutputMode::Copied
    }
}

/// Without a PID namespace of its own, nothing kills a container's other processes when its
/// init dies; as containerd's runc shim does, kill everything left in its cgroup then (the
/// execs' exits, and so the init's TaskExit, follow).
fn exit_order_for(id: &str, request: &SpawnRequest, cgroup: Option<&Cgroup>) -> ExitOrder {
    let shares_host_pids = match request {
        SpawnRequest::Init { namespaces, .. } => !namespaces.is_private(NamespaceKind::Pid),
        SpawnRequest::Exec { .. } | SpawnRequest::Hooks { .. } | SpawnRequest::HoldScope => false,
    };
    let kill_rest = match cgroup {
        Some(cgroup) if shares_host_pids => {
            let cgroup = cgroup.clone();
            let hook: InitExitHook = Box::new(move || {
                if let Err(e) = cgroup.kill_all(nix::sys::signal::Signal::SIGKILL) {
                    log::warn!("kill what is left after the init exited: {e}");
                }
            });
            Some(hook)
        }
        _ => None,
    };
    ExitOrder::new(id, cgroup, kill_rest)
}

/// An event to enqueue once the new process's pid is known, before it is registered.
pub(super) type Announce<'a> = (&'static str, &'a dyn Fn(u32) -> EventBody);

/// TaskCreate, as containerd's runc shim fills it.
fn task_create_event(req: &CreateTaskRequest, pid: u32) -> EventBody {
    TaskCreate {
        pid,
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
        ..Default::default()
    }
    .into()
}

/// Makes the process's stdio pipes (not files or FIFOs, which belong to others) owned by
/// `uid:gid`, so a container root that is unprivileged on the host may reopen them
/// (`/dev/stdout` is `/proc/self/fd/1`), as runc's shim does with the same option.
fn give_pipes_to(stdio: &[std::os::fd::OwnedFd; 3], uid: u32, gid: u32) -> Result<(), TaskError> {
    // Not in nix. A literal, whose type is libc's (i64 on glibc, u64 on musl).
    const PIPEFS_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x5049_5045);
    for fd in stdio {
        let on_pipefs =
            nix::sys::statfs::fstatfs(fd).is_ok_and(|s| s.filesystem_type() == PIPEFS_MAGIC);
        if on_pipefs {
            let owner = (
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            );
            nix::unistd::fchown(fd, owner.0, owner.1).map_err(|e| {
                TaskError::invalid(format!("give the stdio pipes to {uid}:{gid}: {e}"))
            })?;
        }
    }
    Ok(())
}

fn create_cgroup<'a>(
    daemon: &'a Daemon,
    id: &str,
    spec: &Spec,
    systemd_driver: bool,
) -> Result<(Cgroup, Option<HeldScope<'a>>), TaskError> {
    let linux = spec.linux().as_ref();
    let resources = linux.and_then(|l| l.resources().as_ref());
    let (cgroup, holder) = if systemd_driver {
        let cgroups_path = linux.and_then(|l| l.cgroups_path().as_deref());
        let (cgroup, holder) = start_scope(daemon, id, cgroups_path, resources)?;
        (cgroup, Some(holder))
    } else {
        let default_path = PathBuf::from(format!("{DEFAULT_CGROUP_PARENT}/{id}"));
        let path = linux
            .and_then(|l| l.cgroups_path().as_deref())
            .unwrap_or(&default_path);
        let path = CgroupPath::parse(Some(path), id, false)
            .map_err(|e| TaskError::invalid(e.to_string()))?;
        let cgroup = Cgroup::create(&daemon.hierarchies, &path)
            .map_err(|e| TaskError::internal(format!("create cgroup: {e}")))?;
        (cgroup, None)
    };
    // Everything systemd has no property for (and the same limits again, so the files and
    // the unit agree) goes through cgroupfs in the cgroup's directory, as runc does.
    if let Some(resources) = resources
        && let Err(e) = cgroup.apply_resources(resources)
    {
        let _ = cgroup.remove();
        return Err(TaskError::invalid(format!("apply cgroup resources: {e}")));
    }
    // Always, with or without rules in the spec: deny-all, the spec's rules, the defaults.
    let rules = resources
        .and_then(|r| r.devices().as_deref())
        .unwrap_or_default();
    match cgroup.apply_device_rules(rules) {
        Ok(DeviceRules::NotEnforced) => log::warn!(
            "{id}: device rules are not enforced: neither a v1 devices hierarchy nor a \
             cgroup2 directory for the container"
        ),
        Ok(DeviceRules::Applied) => {}
        Err(e) => {
            let _ = cgroup.remove();
            return Err(TaskError::invalid(format!("apply device rules: {e}")));
        }
    }
    Ok((cgroup, holder))
}

/// What the systemd driver needs, named in every error that says it is missing.
const SYSTEMD_OPTION: &str =
    "the systemd cgroup driver (SystemdCgroup / systemd_cgroup in the runtime options)";

/// The systemd driver: a transient scope `prefix-name.scope` in the spec's slice, started
/// with a scope holder as its first process (systemd refuses an empty scope), `Delegate=yes`
/// and the resource properties systemd knows. Returns the scope's cgroup (its `remove` stops
/// the unit) and the holder, to let go once the init is in the scope.
fn start_scope<'a>(
    daemon: &'a Daemon,
    id: &str,
    cgroups_path: Option<&std::path::Path>,
    resources: Option<&oci_spec::runtime::LinuxResources>,
) -> Result<(Cgroup, HeldScope<'a>), TaskError> {
    use crate::cgroups::systemd::{Systemd, marshal::Value, resource_properties};
    use crate::cgroups::{CgroupMode, SystemdScope};
    let scope = SystemdScope::parse(cgroups_path, id)
        .map_err(|e| TaskError::invalid(format!("{SYSTEMD_OPTION}: {e}")))?;
    let mut systemd = Systemd::connect()
        .map_err(|e| TaskError::precondition(format!("{SYSTEMD_OPTION} is on, but {e}")))?;
    // On cgroup v1, systemd rewrites a delegated scope's device list (`devices.allow a`)
    // whenever it realizes the unit, which would undo the container's device rules.
    if daemon.hierarchies.mode() != CgroupMode::Unified {
        return Err(TaskError::precondition(format!(
            "{SYSTEMD_OPTION} needs a pure cgroup v2 host; this host's cgroups are {:?} \
             (use the cgroupfs driver here)",
            daemon.hierarchies.mode()
        )));
    }
    let mut properties = match resources {
        Some(resources) => resource_properties(resources)
            .map_err(|e| TaskError::invalid(format!("apply cgroup resources: {e}")))?,
        None => Vec::new(),
    };
    let holder = HeldScope::start(daemon)?;
    let mut unit_properties = vec![
        (
            "Description".to_owned(),
            Value::Str(format!("sibling container {id}")),
        ),
        ("Slice".to_owned(), Value::Str(scope.slice.clone())),
        ("Delegate".to_owned(), Value::Bool(true)),
        ("DefaultDependencies".to_owned(), Value::Bool(false)),
        (
            "PIDs".to_owned(),
            Value::U32Array(vec![holder.pid().as_raw() as u32]),
        ),
    ];
    unit_properties.append(&mut properties);
    systemd
        .start_transient_unit(&scope.unit, unit_properties)
        .map_err(|e| TaskError::internal(format!("{SYSTEMD_OPTION}: {e}")))?;
    let cgroup =
        Cgroup::in_systemd_scope(&daemon.hierarchies, &scope.path, &scope.unit).map_err(|e| {
            let _ = systemd.stop_unit(&scope.unit);
            TaskError::internal(e.to_string())
        })?;
    Ok((cgroup, holder))
}

/// A scope holder while the new scope waits for its init; dropping it lets the holder exit
/// and waits (bounded) for its reap, so no holder outlives the Create.
struct HeldScope<'a> {
    daemon: &'a Daemon,
    holder: Option<crate::spawn::client::ScopeHolder>,
    /// The holder's exit is parked until `wait_reaped` takes it.
    _parking: super::reaper::SpawnGuard<'a>,
}

/// How long a Create waits for a released scope holder's reap (it exits at once).
const HOLDER_EXIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

impl<'a> HeldScope<'a> {
    fn start(daemon: &'a Daemon) -> Result<HeldScope<'a>, TaskError> {
        let parking = daemon.exits.begin_spawn();
        let holder = daemon
            .spawner
            .get(&daemon.exits)?
            .hold_scope()
            .map_err(|e| TaskError::from_spawn(e).context("systemd scope holder"))?;
        Ok(HeldScope {
            daemon,
            holder: Some(holder),
            _parking: parking,
        })
    }

    fn pid(&self) -> nix::unistd::Pid {
        self.holder
            .as_ref()
            .map_or(nix::unistd::Pid::from_raw(0), |h| h.pid)
    }
}

impl Drop for HeldScope<'_> {
    fn drop(&mut self) {
        if let Some(holder) = self.holder.take() {
            let pid = holder.pid;
            drop(holder.sync);
            if !self.daemon.exits.wait_reaped(pid, HOLDER_EXIT_LIMIT) {
                log::warn!("scope holder {pid} not reaped within {HOLDER_EXIT_LIMIT:?}");
            }
        }
    }
}
