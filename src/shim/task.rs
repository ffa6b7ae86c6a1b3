//! A container as the daemon sees it: its bundle, rootfs mount, cgroup, stdio and init process.
//!
//! `Task::create` acquires those in order and gives every one back if a later step fails, so a
//! failed Create leaves no mount, cgroup, FIFO reader or process behind.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use containerd_shim_protos::events::task::{TaskCreate, TaskIO};
use containerd_shim_protos::protobuf::{MessageDyn, MessageField};
use containerd_shim_protos::shim::shim::CreateTaskRequest;
use containerd_shim_protos::topics::TASK_CREATE_EVENT_TOPIC;
use oci_spec::runtime::{LinuxPersonality, LinuxSeccomp, Process as ProcessSpec, Spec};

use super::error::TaskError;
use super::exec::ExecProcess;
use super::exit_order::{ExitOrder, InitExitHook};
use super::options::parse_options;
use super::process::{Kind, Process};
use super::rootfs::{MountedRootfs, mount_rootfs};
use super::state_file::StateFile;
use super::{DEFAULT_CGROUP_PARENT, Daemon};
use crate::container::InitConfig;
use crate::container::cgroups::{Cgroup, CgroupPath, DeviceRules};
use crate::container::namespaces::{NamespaceKind, NamespacePlan};
use crate::io::{LogOwner, OutputMode, ProcessIo, StdioPaths};
use crate::spawn::protocol::SpawnRequest;

/// One container of this shim.
pub struct Task {
    pub id: String,
    pub bundle: PathBuf,
    pub stdio: StdioPaths,
    pub init: Arc<Process>,
    /// TaskExit order between the init and the execs; refuses execs after the init exited.
    pub order: Arc<ExitOrder>,
    /// Exec processes by exec id.
    execs: Mutex<HashMap<String, Arc<ExecProcess>>>,
    pub cgroup: Option<Cgroup>,
    /// The spec's `linux.seccomp`, for the execs (confined like the init).
    pub seccomp: Option<LinuxSeccomp>,
    /// The spec's `linux.personality`, for the execs.
    pub personality: Option<LinuxPersonality>,
    /// The user and time namespaces the init has of its own, as clone flags: execs join
    /// them (the others they always join).
    pub join_also: u64,
    rootfs_target: Option<PathBuf>,
    /// What Delete gives back; `None` once it did.
    held: Mutex<Option<Held>>,
}

struct Held {
    rootfs: Option<MountedRootfs>,
    io: ProcessIo,
}

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
    /// Create: rootfs, spec, cgroup, stdio, then the init from the spawner, set up and waiting.
    pub fn create(daemon: &Daemon, req: &CreateTaskRequest) -> Result<Task, TaskError> {
        if !req.checkpoint.is_empty() {
            return Err(TaskError::unimplemented(
                "restore from checkpoint is not supported",
            ));
        }
        let options = parse_options(req.options.as_ref())?;
        if let Some(level) = options.log_level {
            log::set_max_level(level);
        }
        let bundle = PathBuf::from(&req.bundle);
        let spec = load_spec(&bundle)?;
        let rootfs_path = resolve_root(&bundle, &spec)?;
        let mut acquired = Acquired {
            rootfs: mount_rootfs(&req.rootfs, &bundle.join("rootfs"))
                .map_err(|e| TaskError::invalid(e.to_string()))?,
            cgroup: None,
        };
        let namespaces =
            NamespacePlan::from_spec(&spec).map_err(|e| TaskError::invalid(e.to_string()))?;
        acquired.cgroup = Some(create_cgroup(daemon, &req.id, &spec)?);
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
        let (io, child_stdio) = ProcessIo::open(&stdio, &owner, init_output_mode(&namespaces))
            .map_err(|e| TaskError::invalid(e.to_string()))?;
        if let Some((uid, gid)) = options.io_owner {
            give_pipes_to(&child_stdio, uid, gid)?;
        }
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
        let join_also = [NamespaceKind::User, NamespaceKind::Time]
            .into_iter()
            .filter(|kind| namespaces.is_private(*kind))
            .fold(0, |flags, kind| flags | kind.clone_flag());
        let personality = spec.linux().as_ref().and_then(|l| l.personality().clone());
        let request = SpawnRequest::Init {
            config: Box::new(InitConfig {
                id: req.id.clone(),
                spec,
                rootfs: rootfs_path,
            }),
            namespaces,
            cgroup: acquired.cgroup.clone(),
        };
        let order = Arc::new(exit_order_for(&req.id, &request, acquired.cgroup.as_ref()));
        let init = spawn_process(
            daemon,
            &request,
            (&io, child_stdio),
            None,
            (&req.id, Kind::Init, &req.id),
            &order,
            Some((TASK_CREATE_EVENT_TOPIC, &|pid| task_create_event(req, pid))),
        )?;
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
            rootfs_target: rootfs.as_ref().map(|r| r.target().to_owned()),
            held: Mutex::new(Some(Held { rootfs, io })),
        };
        task.state_file().save(&task);
        Ok(task)
    }

    pub fn state_file(&self) -> StateFile {
        StateFile::in_bundle(&self.bundle)
    }

    pub fn rootfs_target(&self) -> Option<&Path> {
        self.rootfs_target.as_deref()
    }

    pub(super) fn execs(&self) -> MutexGuard<'_, HashMap<String, Arc<ExecProcess>>> {
        self.execs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// ResizePty on the init: nothing to do without a terminal, as runc's shim (which also
    /// accepts it after the init exited).
    pub fn resize_pty(&self, width: u32, height: u32) -> Result<(), TaskError> {
        match self.held().as_ref() {
            Some(held) => held
                .io
                .resize(width, height)
                .map_err(|e| TaskError::precondition(e.to_string())),
            None => Err(TaskError::not_found("container was deleted")),
        }
    }

    /// CloseIO on the init.
    pub fn close_stdin(&self) {
        if let Some(held) = self.held().as_ref() {
            held.io.close_stdin();
        }
    }

    /// Releases what Create acquired, once. The init must have exited; one that was created
    /// but never started is killed here (it never ran user code).
    /// `wait_for_readers`: let containerd read the init's last output first (Delete does; a
    /// shim shutting down on SIGTERM does not wait for anyone).
    pub fn destroy(&self, wait_for_readers: bool) -> Result<(), TaskError> {
        let Some(mut held) = self.held().take() else {
            return Ok(());
        };
        if self.init.exit().is_none() {
            let _ = self.init.kill(nix::libc::SIGKILL);
            self.init.wait();
        }
        if wait_for_readers {
            held.io.wait_output_read();
        }
        let mut errors = Vec::new();
        if let Some(cgroup) = &self.cgroup
            && let Err(e) = cgroup.remove()
        {
            errors.push(format!("remove cgroup: {e}"));
        }
        if let Some(rootfs) = held.rootfs.as_mut()
            && let Err(e) = rootfs.unmount()
        {
            errors.push(e.to_string());
        }
        self.state_file().remove();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TaskError::internal(errors.join("; ")))
        }
    }
}

/// How long a spawn may wait for its helper's reap before it goes on without it.
const HELPER_EXIT_LIMIT: Duration = Duration::from_secs(5);

/// Asks the spawner for a process, waits until its setup is done (sync 1 and 2) and registers
/// it with the reaper. The exit of a process that dies before it is registered is parked.
pub(super) fn spawn_process(
    daemon: &Daemon,
    request: &SpawnRequest,
    (io, stdio): (&ProcessIo, [OwnedFd; 3]),
    init_pidfd: Option<&OwnedFd>,
    (container_id, kind, id): (&str, Kind, &str),
    order: &Arc<ExitOrder>,
    announce: Option<Announce<'_>>,
) -> Result<Arc<Process>, TaskError> {
    let _parking = daemon.exits.begin_spawn();
    let (mut pending, pidfd) = daemon
        .spawner
        .get(&daemon.exits)?
        .spawn(request, [&stdio[0], &stdio[1], &stdio[2]], init_pidfd)
        .map_err(TaskError::from_spawn)?;
    // The process has its own copies now; ours would keep output FIFOs from ever reaching EOF.
    drop(stdio);
    let ready = pending.wait_ready().map_err(TaskError::from_spawn)?;
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
    // The terminal's copy, and the stdin copy that ends with the process (its pidfd).
    io.attach(&pidfd, ready.console)
        .map_err(|e| TaskError::internal(e.to_string()))?;
    // Before the process is registered: its TaskExit can only follow this event.
    if let Some((topic, event)) = announce {
        daemon
            .events
            .publish(topic, event(pending.pid.as_raw() as u32));
    }
    let process = Arc::new(Process::new(
        container_id,
        (kind, id),
        (pending, pidfd),
        daemon.events.clone(),
        Arc::clone(order),
    ));
    daemon.exits.register(&process);
    Ok(process)
}

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
        SpawnRequest::Exec { .. } => false,
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
pub(super) type Announce<'a> = (&'static str, &'a dyn Fn(u32) -> Box<dyn MessageDyn>);

/// TaskCreate, as containerd's runc shim fills it.
fn task_create_event(req: &CreateTaskRequest, pid: u32) -> Box<dyn MessageDyn> {
    Box::new(TaskCreate {
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
    })
}

/// Makes the process's stdio pipes (not files or FIFOs, which belong to others) owned by
/// `uid:gid`, so a container root that is unprivileged on the host may reopen them
/// (`/dev/stdout` is `/proc/self/fd/1`), as runc's shim does with the same option.
fn give_pipes_to(stdio: &[std::os::fd::OwnedFd; 3], uid: u32, gid: u32) -> Result<(), TaskError> {
    const PIPEFS_MAGIC: i64 = 0x5049_5045;
    for fd in stdio {
        let on_pipefs =
            nix::sys::statfs::fstatfs(fd).is_ok_and(|s| s.filesystem_type().0 == PIPEFS_MAGIC);
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

/// Reads and parses `<bundle>/config.json`; a malformed file is the caller's error.
fn load_spec(bundle: &Path) -> Result<Spec, TaskError> {
    let path = bundle.join("config.json");
    let spec = Spec::load(&path)
        .map_err(|e| TaskError::invalid(format!("load {}: {e}", path.display())))?;
    let Some(process) = spec.process() else {
        return Err(TaskError::invalid(format!(
            "{}: no process",
            path.display()
        )));
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(TaskError::invalid(format!(
            "{}: process.args is empty",
            path.display()
        )));
    }
    refuse_unapplied_confinement(&spec)?;
    Ok(spec)
}

/// Confinement the spec asks for but this runtime cannot apply yet fails Create: running the
/// container without it would give it more privilege than its spec grants.
fn refuse_unapplied_confinement(spec: &Spec) -> Result<(), TaskError> {
    refuse_unapplied(spec.process().as_ref())
}

/// The same for an exec's own `process`.
pub(super) fn refuse_unapplied_process_confinement(process: &ProcessSpec) -> Result<(), TaskError> {
    refuse_unapplied(Some(process))
}

fn refuse_unapplied(process: Option<&ProcessSpec>) -> Result<(), TaskError> {
    match process.map(crate::container::lsm::check_host) {
        Some(Err(reason)) => Err(TaskError::precondition(format!(
            "{reason}; refusing to run the container less confined than its spec asks"
        ))),
        _ => Ok(()),
    }
}

/// The container root: `root.path` of the spec, relative to the bundle unless absolute.
fn resolve_root(bundle: &Path, spec: &Spec) -> Result<PathBuf, TaskError> {
    let root = spec.root().as_ref().map(|r| r.path().clone());
    let root = root.unwrap_or_else(|| PathBuf::from("rootfs"));
    let root = if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    };
    root.canonicalize()
        .map_err(|e| TaskError::invalid(format!("container root {}: {e}", root.display())))
}

fn create_cgroup(daemon: &Daemon, id: &str, spec: &Spec) -> Result<Cgroup, TaskError> {
    let linux = spec.linux().as_ref();
    let default_path = PathBuf::from(format!("{DEFAULT_CGROUP_PARENT}/{id}"));
    let path = linux
        .and_then(|l| l.cgroups_path().as_deref())
        .unwrap_or(&default_path);
    let path =
        CgroupPath::parse(Some(path), id, false).map_err(|e| TaskError::invalid(e.to_string()))?;
    let cgroup = Cgroup::create(&daemon.hierarchies, &path)
        .map_err(|e| TaskError::internal(format!("create cgroup: {e}")))?;
    if let Some(resources) = linux.and_then(|l| l.resources().as_ref()) {
        if let Err(e) = cgroup.apply_resources(resources) {
            let _ = cgroup.remove();
            return Err(TaskError::invalid(format!("apply cgroup resources: {e}")));
        }
        let rules = resources.devices().as_deref().unwrap_or_default();
        match cgroup.apply_device_rules(rules) {
            Ok(DeviceRules::NotEnforced) => log::warn!(
                "{id}: device rules are not enforced: neither a v1 devices hierarchy nor a \
                 cgroup2 directory for the container"
            ),
            Ok(_) => {}
            Err(e) => {
                let _ = cgroup.remove();
                return Err(TaskError::invalid(format!("apply device rules: {e}")));
            }
        }
    }
    Ok(cgroup)
}
