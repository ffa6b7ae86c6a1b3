//! Checkpoint: a running container's init and all its descendants dumped by CRIU (`criu dump
//! --tree`), as runc does, with CRIU's command line instead of its RPC. Runs in the daemon.
//!
//! CRIU runs as a child of the daemon; its exit is parked by the reaper like a helper's and read
//! with a bound. What CRIU cannot rebuild from the container's own mount namespace is described
//! to it as external: every mount that is neither the root nor a filesystem CRIU makes afresh
//! (proc, sysfs, tmpfs, devpts, mqueue) is `--external mnt[<dest>]:<dest>` (bind mounts of host
//! paths, cgroup v1 binds, a terminal's `/dev/console`), a stdio FIFO opened from the host is
//! `--external file[..]` and a terminal's pty slave (its master is the daemon's) `tty[..]`.
//! A network namespace the spec joins by path is external as well (`net[inode]:extRootNetNS`,
//! runc's key), and CRIU runs in the container's joined ipc and uts namespaces, which it then
//! does not dump: they are the pod's. What was made external is written to
//! `sibling-checkpoint.json` in the image directory, for a restore to map each one back.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use containerd_shim_protos::events::task::TaskCheckpointed;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim::oci::CheckpointOptions;
use containerd_shim_protos::shim::shim::CheckpointTaskRequest;
use containerd_shim_protos::topics::TASK_CHECKPOINTED_EVENT_TOPIC;
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::Daemon;
use super::error::TaskError;
use super::process::Phase;
use super::task::Task;
use crate::mountinfo::parse_mountinfo;

/// The file in the image directory that records what the dump made external.
pub const DESCRIPTION_FILE: &str = "sibling-checkpoint.json";

/// How long a dump may take before CRIU is killed (a large container's memory is written out).
const DUMP_LIMIT: Duration = Duration::from_secs(300);
/// How long `criu --version` may take.
const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// Filesystems CRIU mounts afresh on restore: never external.
const CRIU_NATIVE_FS: &[&str] = &["proc", "sysfs", "tmpfs", "devpts", "mqueue"];

/// What runc's `CheckpointOptions` ask for, with the image path resolved.
#[derive(Debug, Default)]
pub struct DumpOptions {
    pub exit: bool,
    pub open_tcp: bool,
    pub external_unix_sockets: bool,
    pub terminal: bool,
    pub file_locks: bool,
    pub empty_namespaces: Vec<String>,
    pub cgroups_mode: Option<String>,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
}

/// The request's options (runc's `containerd.runc.v1.CheckpointOptions`, or none) and path.
pub fn dump_options(req: &CheckpointTaskRequest) -> Result<DumpOptions, TaskError> {
    let options = decode_options(req.options.as_ref())?;
    let image = if options.image_path.is_empty() {
        req.path.clone()
    } else {
        options.image_path.clone()
    };
    if image.is_empty() {
        return Err(TaskError::invalid(
            "checkpoint: neither the request's path nor the options' image_path is set",
        ));
    }
    let cgroups_mode = match options.cgroups_mode.as_str() {
        "" => None,
        mode @ ("soft" | "full" | "strict" | "ignore") => Some(mode.to_owned()),
        other => {
            return Err(TaskError::invalid(format!(
                "checkpoint: cgroups_mode {other:?} (soft, full, strict or ignore)"
            )));
        }
    };
    for ns in &options.empty_namespaces {
        if ns != "network" {
            return Err(TaskError::invalid(format!(
                "checkpoint: empty_namespaces {ns:?}: only \"network\" can be restored empty"
            )));
        }
    }
    Ok(DumpOptions {
        exit: options.exit,
        open_tcp: options.open_tcp,
        external_unix_sockets: options.external_unix_sockets,
        terminal: options.terminal,
        file_locks: options.file_locks,
        empty_namespaces: options.empty_namespaces.clone(),
        cgroups_mode,
        image_path: PathBuf::from(image),
        work_path: (!options.work_path.is_empty()).then(|| PathBuf::from(&options.work_path)),
    })
}

fn decode_options(any: Option<&Any>) -> Result<CheckpointOptions, TaskError> {
    let Some(any) = any.filter(|a| !a.type_url.is_empty()) else {
        return Ok(CheckpointOptions::default());
    };
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    match name {
        "containerd.runc.v1.CheckpointOptions" => CheckpointOptions::parse_from_bytes(&any.value)
            .map_err(|e| TaskError::invalid(format!("checkpoint options {name}: {e}"))),
        other => Err(TaskError::invalid(format!(
            "checkpoint options: unknown type {other:?} (expected \
             containerd.runc.v1.CheckpointOptions)"
        ))),
    }
}

/// The CRIU binary: the configured one, or `criu` in PATH; checked by running `criu --version`.
/// Missing or unusable: FAILED_PRECONDITION naming it.
pub fn find_criu(daemon: &Daemon, configured: Option<&Path>) -> Result<PathBuf, TaskError> {
    let criu = match configured {
        Some(path) => path.to_owned(),
        None => search_path("criu").ok_or_else(|| {
            TaskError::precondition(
                "CRIU is needed for checkpoint and restore: no criu in PATH (install it or set \
                 the criu_path runtime option)",
            )
        })?,
    };
    let mut command = Command::new(&criu);
    command.arg("--version");
    match run(daemon, &mut command, PROBE_LIMIT) {
        Ok(0) => Ok(criu),
        Ok(code) => Err(TaskError::precondition(format!(
            "CRIU {} is not usable: `criu --version` exited with {code}",
            criu.display()
        ))),
        Err(e) => Err(TaskError::precondition(format!(
            "CRIU {} is not usable: {e}",
            criu.display()
        ))),
    }
}

fn search_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The exit code of a CRIU child that could not enter a namespace before it became CRIU.
pub const EXIT_NAMESPACE: i32 = 123;

/// Makes `command` enter the namespaces `entered` (open namespace files with their kind) just
/// before it executes; if it cannot, it exits with [`EXIT_NAMESPACE`] (never std's error path,
/// which would wait for the child and race the daemon's reaper).
pub fn enter_before_exec(command: &mut Command, entered: Vec<(OwnedFd, CloneFlags)>) {
    if entered.is_empty() {
        return;
    }
    // SAFETY: the closure makes only setns and _exit system calls on fds opened before the
    // fork, which it owns; both are async-signal-safe and nothing is allocated.
    unsafe {
        command.pre_exec(move || {
            for (fd, kind) in &entered {
                if nix::sched::setns(fd, *kind).is_err() {
                    nix::libc::_exit(EXIT_NAMESPACE);
                }
            }
            Ok(())
        });
    }
}

/// Opens the namespace files of the `names` kinds (`ipc`, `uts`) under `dir` (a
/// `/proc/<pid>/ns` directory) or at their paths.
pub fn open_namespaces<'a>(
    namespaces: impl IntoIterator<Item = (&'a str, PathBuf)>,
) -> Result<Vec<(OwnedFd, CloneFlags)>, TaskError> {
    namespaces
        .into_iter()
        .filter_map(|(name, path)| {
            let kind = match name {
                "ipc" => CloneFlags::CLONE_NEWIPC,
                "uts" => CloneFlags::CLONE_NEWUTS,
                _ => return None,
            };
            Some(
                rustix::fs::open(
                    &path,
                    rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map(|fd| (fd, kind))
                .map_err(|e| {
                    TaskError::invalid(format!("open {name} namespace {}: {e}", path.display()))
                }),
            )
        })
        .collect()
}

/// Runs `command` as a child of the daemon (stdin, stdout and stderr on /dev/null) and returns
/// its exit code (128 + signal), killing it past `limit`.
pub fn run(daemon: &Daemon, command: &mut Command, limit: Duration) -> Result<u32, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // The reaper takes every child's exit: keep it parked for us.
    let _guard = daemon.exits.begin_spawn();
    let child = command.spawn().map_err(|e| format!("run: {e}"))?;
    let pid = Pid::from_raw(child.id() as i32);
    if let Some(code) = daemon.exits.wait_exit(pid, limit) {
        return Ok(code);
    }
    // Not reaped yet, so the pid is still this child's.
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = daemon.exits.wait_exit(pid, Duration::from_secs(5));
    Err(format!("did not finish within {limit:?}; killed"))
}

/// One mount the dump made external: its path in the container, what it was.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExternalMount {
    pub destination: String,
    pub fstype: String,
    /// The mount's root inside its filesystem (for a cgroup bind: the host cgroup directory).
    pub root: String,
    /// For cgroup v1 mounts: the hierarchy's controllers (super options).
    pub super_options: Vec<String>,
}

/// What the dump recorded beside CRIU's images.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Description {
    pub external_mounts: Vec<ExternalMount>,
    /// For fds 0, 1, 2 of the init: the CRIU key of an external file, pipe or pty slave
    /// (`file[..]`, `pipe:[..]`, `tty[..]`), or None when CRIU restores it itself (/dev/null).
    pub stdio: Vec<Option<String>>,
    pub terminal: bool,
    /// The namespaces dumped empty (`network`: restored as a new, empty one).
    pub empty_namespaces: Vec<String>,
    /// Dump options a restore must repeat.
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    /// The namespaces the container joined by path (`net`, `ipc`, `uts`), which a restore
    /// joins again at the new spec's paths. The network namespace was dumped as external
    /// (`net[<inode>]:extRootNetNS`, as runc does); CRIU ran in the container's ipc and uts
    /// namespaces, so it did not dump them (their contents are the pod's, not the container's)
    /// and a restore runs it in the new spec's, where the restored tree stays.
    #[serde(default)]
    pub joined_namespaces: Vec<String>,
}

/// CRIU's key of an external network namespace (runc's).
pub const EXTERNAL_NETNS_KEY: &str = "extRootNetNS";

/// The namespaces a spec joins by path, with their kernel (and CRIU) names, in the spec's order.
pub fn joined_namespaces(spec: &oci_spec::runtime::Spec) -> Vec<(&'static str, PathBuf)> {
    use oci_spec::runtime::LinuxNamespaceType as T;
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ns| {
            let name = match ns.typ() {
                T::Network => "net",
                T::Ipc => "ipc",
                T::Uts => "uts",
                T::Pid => "pid",
                T::Mount => "mnt",
                T::User => "user",
                T::Cgroup => "cgroup",
                T::Time => "time",
            };
            Some((name, ns.path().clone()?))
        })
        .collect()
}

/// The joined namespaces a restore can join again.
pub const REJOINABLE_NAMESPACES: &[&str] = &["net", "ipc", "uts"];

impl Description {
    /// The options dump and restore share.
    pub fn add_flags(&self, command: &mut Command) {
        if self.tcp_established {
            command.arg("--tcp-established");
        }
        if self.ext_unix_sk {
            command.arg("--ext-unix-sk");
        }
        if self.shell_job {
            command.arg("--shell-job");
        }
        if self.file_locks {
            command.arg("--file-locks");
        }
        // runc's EmptyNs: the network namespace comes back new and empty.
        if self.empty_namespaces.iter().any(|ns| ns == "network") {
            command.args(["--empty-ns", "net"]);
        }
    }
}

/// The mounts of the init's mount namespace that CRIU must be told are external.
fn external_mounts(pid: u32) -> Result<Vec<ExternalMount>, TaskError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map_err(|e| TaskError::internal(format!("read the init's mountinfo: {e}")))?;
    Ok(parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.mount_point != Path::new("/"))
        // A terminal's /dev/console is a bind of its pty slave, whose master is outside.
        .filter(|m| {
            !CRIU_NATIVE_FS.contains(&m.fstype.as_str())
                || (m.fstype == "devpts" && m.root != Path::new("/"))
        })
        .map(|m| ExternalMount {
            destination: m.mount_point.to_string_lossy().into_owned(),
            fstype: m.fstype,
            root: m.root.to_string_lossy().into_owned(),
            super_options: m.super_options,
        })
        .collect())
}

/// The CRIU key of fd `fd` of `pid` if it is a pipe or a file outside the container.
fn stdio_key(pid: u32, fd: u32, container_mounts: &[u64]) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let link = link.to_string_lossy().into_owned();
    if link.starts_with("pipe:") {
        return Some(link);
    }
    if !link.starts_with('/') {
        return None;
    }
    // A pty slave (Unix98 ptys: majors 136-143) whose master the daemon holds, outside the
    // dumped tree: an external tty.
    let meta = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let major = nix::sys::stat::major(meta.rdev());
    if meta.file_type().is_char_device() && (136..=143).contains(&major) {
        return Some(format!("tty[{:x}:{:x}]", meta.rdev(), meta.dev()));
    }
    let fdinfo = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let mnt_id: u64 = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())?;
    if container_mounts.contains(&mnt_id) {
        return None;
    }
    let ino = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
        .ok()?
        .ino();
    Some(format!("file[{mnt_id:x}:{ino:x}]"))
}

fn mount_ids(pid: u32) -> Vec<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

/// Checkpoint: dump the init and its descendants into the image directory; publish
/// TaskCheckpointed. With `exit`, CRIU kills the container after the dump and the init's exit
/// arrives as any other.
pub fn checkpoint(
    daemon: &Daemon,
    task: &Task,
    req: &CheckpointTaskRequest,
) -> Result<(), TaskError> {
    let options = dump_options(req)?;
    if task.init.exit().is_some() || task.init.phase() != Phase::Running {
        return Err(TaskError::precondition(format!(
            "cannot checkpoint task {}: it is not running",
            task.id
        )));
    }
    let criu = find_criu(daemon, task.criu_path.as_deref())?;
    let images = &options.image_path;
    std::fs::create_dir_all(images).map_err(|e| {
        TaskError::invalid(format!(
            "checkpoint: create image directory {}: {e}",
            images.display()
        ))
    })?;
    let work = options.work_path.clone().unwrap_or_else(|| images.clone());
    std::fs::create_dir_all(&work).map_err(|e| {
        TaskError::invalid(format!(
            "checkpoint: create work directory {}: {e}",
            work.display()
        ))
    })?;
    let pid = task.init.pid;
    let mounts = external_mounts(pid)?;
    let ids = mount_ids(pid);
    let stdio: Vec<Option<String>> = (0..3).map(|fd| stdio_key(pid, fd, &ids)).collect();
    // The spec's namespaces joined by path: a restore joins the new spec's. The rest is dumped
    // as CRIU does for any namespace (a restore refuses what it cannot join again).
    let spec = super::bundle_spec::load_spec(&task.bundle)?;
    let joined: Vec<String> = joined_namespaces(&spec)
        .into_iter()
        .map(|(name, _)| name.to_owned())
        .filter(|name| REJOINABLE_NAMESPACES.contains(&name.as_str()))
        .collect();
    let description = Description {
        external_mounts: mounts,
        stdio,
        terminal: task.stdio.terminal,
        empty_namespaces: options.empty_namespaces.clone(),
        tcp_established: options.open_tcp,
        ext_unix_sk: options.external_unix_sockets,
        shell_job: options.terminal || task.stdio.terminal,
        file_locks: options.file_locks,
        joined_namespaces: joined,
    };

    let mut command = Command::new(&criu);
    command
        .arg("dump")
        .arg("--tree")
        .arg(pid.to_string())
        .arg("--images-dir")
        .arg(images)
        .arg("--work-dir")
        .arg(&work)
        .args(["--log-file", "dump.log", "-v4"])
        .arg(format!(
            "--manage-cgroups={}",
            options.cgroups_mode.as_deref().unwrap_or("soft")
        ));
    if !options.exit {
        command.arg("--leave-running");
    }
    description.add_flags(&mut command);
    if let Some(cgroup) = &task.cgroup
        && let Some(freezer) = cgroup.v1_dir("freezer").or_else(|| cgroup.unified_dir())
    {
        command.arg("--freeze-cgroup").arg(freezer);
    }
    for mount in &description.external_mounts {
        command
            .arg("--external")
            .arg(format!("mnt[{}]:{}", mount.destination, mount.destination));
    }
    let mut externals: Vec<&String> = description
        .stdio
        .iter()
        .flatten()
        .filter(|key| key.starts_with("file[") || key.starts_with("tty["))
        .collect();
    externals.dedup();
    for key in externals {
        command.arg("--external").arg(key);
    }
    if description.joined_namespaces.iter().any(|n| n == "net") {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .map_err(|e| TaskError::internal(format!("stat the init's network namespace: {e}")))?
            .ino();
        command
            .arg("--external")
            .arg(format!("net[{inode}]:{EXTERNAL_NETNS_KEY}"));
    }
    // CRIU in the container's joined ipc and uts namespaces: it dumps only namespaces that
    // differ from its own, and these are the pod's to keep, not the container's to restore.
    let proc_ns = PathBuf::from(format!("/proc/{pid}/ns"));
    let entered = open_namespaces(
        description
            .joined_namespaces
            .iter()
            .map(|name| (name.as_str(), proc_ns.join(name))),
    )?;
    enter_before_exec(&mut command, entered);
    log::info!("checkpoint {} into {}", task.id, images.display());
    let log = work.join("dump.log");
    match run(daemon, &mut command, DUMP_LIMIT) {
        Ok(0) => {}
        Ok(code) if code as i32 == EXIT_NAMESPACE && !description.joined_namespaces.is_empty() => {
            return Err(TaskError::internal(format!(
                "checkpoint: criu could not enter the container's {:?} namespaces",
                description.joined_namespaces
            )));
        }
        Ok(code) => {
            return Err(TaskError::internal(format!(
                "criu dump exited with {code}: {}",
                log_tail(&log)
            )));
        }
        Err(e) => {
            return Err(TaskError::internal(format!(
                "criu dump: {e}: {}",
                log_tail(&log)
            )));
        }
    }
    let json = serde_json::to_vec_pretty(&description)
        .map_err(|e| TaskError::internal(format!("checkpoint description: {e}")))?;
    std::fs::write(images.join(DESCRIPTION_FILE), json)
        .map_err(|e| TaskError::internal(format!("write {DESCRIPTION_FILE}: {e}")))?;
    daemon.events.publish(
        TASK_CHECKPOINTED_EVENT_TOPIC,
        TaskCheckpointed {
            container_id: task.id.clone(),
            checkpoint: images.to_string_lossy().into_owned(),
            ..Default::default()
        },
    );
    Ok(())
}

/// The last error lines of a CRIU log, for an error message.
pub fn log_tail(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return format!("(no log at {})", log.display());
    };
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") || l.contains("error"))
        .collect();
    let lines = if errors.is_empty() {
        text.lines().rev().take(5).collect::<Vec<_>>()
    } else {
        errors.into_iter().rev().take(5).collect()
    };
    let mut lines = lines;
    lines.reverse();
    format!("{} (log: {})", lines.join(" | "), log.display())
}
