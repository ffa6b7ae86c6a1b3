//! Restore: a Create with `checkpoint` set has CRIU restore the dumped tree instead of spawning a
//! new init. Runs in the daemon.
//!
//! CRIU runs as the daemon's child with `--restore-sibling --restore-detached`, so the restored
//! init becomes a child of CRIU's parent, the daemon, like every other init, and the daemon reaps
//! it first-hand. Before it execs, the CRIU process moves itself into the container's cgroup
//! (`cgroup.procs` of every hierarchy), so the restored processes are born there
//! (`--manage-cgroups=ignore`). The new stdio reaches it as fds from 3 on and replaces the
//! dumped stdio with `--inherit-fd`. `--leave-stopped` keeps the restored tasks stopped until
//! Start, which sends SIGCONT to the container's cgroup.
//!
//! A terminal container's pty slave was dumped as an external tty (`tty[rdev:dev]`): its master
//! was the old daemon's. The restore makes a new pty in a devpts instance of its own (mounted
//! with `newinstance` for the time of the restore, then detached, so the pty is in no devpts
//! anyone can open by path, as a container's own), hands the slave to CRIU for that key, and
//! binds it over the restored `/dev/console`. The master goes to the daemon's console copy,
//! as a spawned terminal's does.
//!
//! Namespaces the new spec joins by path (a pod's): its network namespace is inherited for the
//! dumped external one, and CRIU enters its ipc and uts namespaces before it executes, so the
//! restored tree is born in them and CRIU restores nothing over them.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use containerd_shim_protos::shim::shim::CreateTaskRequest;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::Daemon;
use super::checkpoint::{
    DESCRIPTION_FILE, Description, EXIT_NAMESPACE, EXTERNAL_NETNS_KEY, REJOINABLE_NAMESPACES,
    find_criu, joined_namespaces, log_tail, open_namespaces,
};
use super::error::TaskError;
use super::exit_order::ExitOrder;
use super::process::Process;
use crate::cgroups::Cgroup;
use crate::io::ProcessIo;

/// How long a restore may take before CRIU is killed.
const RESTORE_LIMIT: Duration = Duration::from_secs(300);

/// Exit codes of the CRIU child before it became CRIU.
const EXIT_CGROUP: i32 = 125;
const EXIT_STDIO: i32 = 124;
const EXIT_EXEC: i32 = 127;

/// A program and its arguments as C strings, with the null-terminated pointer array `execv`
/// takes, made before the fork (nothing may allocate after it).
struct Argv {
    _strings: Vec<CString>,
    pointers: Vec<*const nix::libc::c_char>,
}

// SAFETY: the pointers point into the heap buffers of `_strings`, owned by the same value and
// never changed; moving the value does not move those buffers.
unsafe impl Send for Argv {}
// SAFETY: as above; nothing mutates through the pointers.
unsafe impl Sync for Argv {}

impl Argv {
    fn of(command: &Command) -> Result<Argv, TaskError> {
        let strings: Vec<CString> = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|e| TaskError::invalid(format!("restore: criu argument: {e}")))?;
        let pointers = strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Ok(Argv {
            _strings: strings,
            pointers,
        })
    }

    /// `execv`; returns only if it failed. Async-signal-safe: no allocation.
    fn exec(&self) {
        // SAFETY: a null-terminated array of pointers to live NUL-terminated strings, the
        // first of them the program.
        unsafe { nix::libc::execv(self.pointers[0], self.pointers.as_ptr()) };
    }
}

/// What a restore needs from the Create.
pub struct RestoreInput<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub cgroup: &'a Cgroup,
    pub criu_path: Option<&'a Path>,
}

/// Reads the dump's description; a missing image is an error naming the directory.
pub fn read_description(images: &Path) -> Result<Description, TaskError> {
    if !images.join("inventory.img").exists() {
        return Err(TaskError::not_found(format!(
            "restore: no checkpoint image in {} (no inventory.img)",
            images.display()
        )));
    }
    let file = images.join(DESCRIPTION_FILE);
    let bytes = std::fs::read(&file).map_err(|e| {
        TaskError::invalid(format!(
            "restore: {}: {e} (not a checkpoint this shim made)",
            file.display()
        ))
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| TaskError::invalid(format!("restore: {}: {e}", file.display())))
}

/// Checks what restore cannot do, before anything is acquired: `terminal` is the Create's,
/// `dumped` what the checkpoint recorded.
pub fn check_supported(spec: &Spec, terminal: bool, dumped: &Description) -> Result<(), TaskError> {
    match (terminal, dumped.terminal) {
        (true, false) => {
            return Err(TaskError::invalid(
                "restore: a terminal was asked for, but the checkpoint is of a container \
                 without one (its process cannot be given a terminal it never had)",
            ));
        }
        (false, true) => {
            return Err(TaskError::invalid(
                "restore: the checkpoint is of a terminal container; restore it with a \
                 terminal (its process holds one)",
            ));
        }
        _ => {}
    }
    let joined: Vec<&str> = joined_namespaces(spec)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    if let Some(name) = joined.iter().find(|n| !REJOINABLE_NAMESPACES.contains(*n)) {
        return Err(TaskError::unimplemented(format!(
            "restore into a {name} namespace joined by path is not supported (net, ipc and uts \
             are)"
        )));
    }
    let mut wanted: Vec<&str> = joined;
    wanted.sort_unstable();
    let mut had: Vec<&str> = dumped
        .joined_namespaces
        .iter()
        .map(String::as_str)
        .collect();
    had.sort_unstable();
    if wanted != had {
        return Err(TaskError::invalid(format!(
            "restore: the checkpoint's container joined the namespaces {had:?} by path, this \
             container joins {wanted:?}: they must be the same kinds (a namespace the checkpoint \
             holds cannot become a joined one, nor the reverse)"
        )));
    }
    Ok(())
}

/// The host path each external mount of the dump maps to in this container; `console` is the
/// new terminal's slave, the source of a terminal's `/dev/console`.
fn external_sources(
    description: &Description,
    input: &RestoreInput<'_>,
    console: Option<&Path>,
) -> Result<Vec<(String, String)>, TaskError> {
    let mut out = Vec::new();
    for mount in &description.external_mounts {
        let source = if mount.fstype == "devpts" && mount.destination == "/dev/console" {
            console.map(|c| c.to_string_lossy().into_owned())
        } else if mount.fstype == "cgroup" {
            let controller = mount
                .super_options
                .iter()
                .find(|o| *o != "rw" && *o != "ro")
                .map(|o| o.strip_prefix("name=").unwrap_or(o))
                .unwrap_or_default();
            let dir = controller
                .split(',')
                .find_map(|c| input.cgroup.v1_dir(c))
                .or_else(|| {
                    mount
                        .super_options
                        .iter()
                        .find_map(|o| input.cgroup.v1_dir(o))
                });
            dir.map(|d| d.to_string_lossy().into_owned())
        } else {
            input
                .spec
                .mounts()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|m| m.destination().as_os_str() == mount.destination.as_str())
                .and_then(|m| m.source().as_ref())
                .map(|s| s.to_string_lossy().into_owned())
        };
        let source = source.ok_or_else(|| {
            TaskError::invalid(format!(
                "restore: the checkpoint has an external {} mount at {} that this container \
                 does not have",
                mount.fstype, mount.destination
            ))
        })?;
        out.push((mount.destination.clone(), source));
    }
    Ok(out)
}

/// A new pty for a restored terminal container, in a devpts instance of its own that stays
/// mounted only while CRIU needs the slave's path (for `/dev/console`).
struct NewTerminal {
    master: Option<OwnedFd>,
    slave: OwnedFd,
    slave_path: PathBuf,
    mount: Option<PathBuf>,
}

impl NewTerminal {
    fn open(dir: &Path) -> Result<NewTerminal, TaskError> {
        use nix::mount::{MsFlags, mount};
        use rustix::fs::{Mode, OFlags};
        use rustix::pty::{OpenptFlags, ioctl_tiocgptpeer, ptsname, unlockpt};
        let error = |what: &str, e: &dyn std::fmt::Display| {
            TaskError::internal(format!("restore: new terminal: {what}: {e}"))
        };
        std::fs::create_dir_all(dir).map_err(|e| error(&dir.display().to_string(), &e))?;
        mount(
            Some("devpts"),
            dir,
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )
        .map_err(|e| error("mount a devpts instance", &e))?;
        let opened = (|| {
            let master = rustix::fs::open(
                dir.join("ptmx"),
                OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| error("open ptmx", &e))?;
            unlockpt(&master).map_err(|e| error("unlockpt", &e))?;
            let name = ptsname(&master, Vec::new()).map_err(|e| error("ptsname", &e))?;
            let index = Path::new(std::ffi::OsStr::from_bytes(name.as_bytes()))
                .file_name()
                .map(|n| n.to_owned())
                .ok_or_else(|| error("ptsname", &format!("{name:?}")))?;
            let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
            let slave =
                ioctl_tiocgptpeer(&master, flags).map_err(|e| error("open the slave", &e))?;
            Ok((master, slave, dir.join(index)))
        })();
        let (master, slave, slave_path) = opened.inspect_err(|_| {
            let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(dir);
        })?;
        Ok(NewTerminal {
            master: Some(master),
            slave,
            slave_path,
            mount: Some(dir.to_owned()),
        })
    }

    /// Detaches the devpts instance (the pty lives on in its open fds) and removes its
    /// directory.
    fn unmount(&mut self) {
        if let Some(dir) = self.mount.take() {
            if let Err(e) = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH) {
                log::warn!("restore: unmount {}: {e}", dir.display());
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

impl Drop for NewTerminal {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// The fds CRIU gets for `--inherit-fd` (placed on 3, 4, ...), each with the dumped key it
/// replaces: the new stdio, or the new terminal's slave for the dumped one.
fn inherited_fds(
    description: &Description,
    stdio: &[OwnedFd; 3],
    terminal: Option<&NewTerminal>,
) -> Result<Vec<(OwnedFd, String)>, TaskError> {
    let mut out: Vec<(OwnedFd, String)> = Vec::new();
    for (fd, key) in stdio.iter().zip(&description.stdio) {
        let Some(key) = key else { continue };
        if out.iter().any(|(_, k)| k == key) {
            continue;
        }
        let fd = match (key.starts_with("tty["), terminal) {
            (true, Some(terminal)) => &terminal.slave,
            (false, None) => fd,
            (true, None) | (false, Some(_)) => {
                return Err(TaskError::invalid(format!(
                    "restore: the checkpoint's stdio {key} does not fit a container {} a \
                     terminal",
                    if terminal.is_some() {
                        "with"
                    } else {
                        "without"
                    }
                )));
            }
        };
        // Above the fds they are placed on, so that placing them never overwrites one another.
        out.push((high_dup(fd)?, key.clone()));
    }
    Ok(out)
}

/// Restores the checkpoint in `req.checkpoint` into the prepared container (rootfs mounted,
/// cgroup made, stdio opened); returns the restored init, stopped, registered with the reaper,
/// its stdio copies (a terminal's console copy, stdin) started through `io`.
pub fn restore(
    daemon: &Daemon,
    req: &CreateTaskRequest,
    input: &RestoreInput<'_>,
    (io, stdio): (&ProcessIo, [OwnedFd; 3]),
    order: &Arc<ExitOrder>,
    announce: &dyn Fn(u32),
) -> Result<Arc<Process>, TaskError> {
    let images = Path::new(&req.checkpoint);
    let description = read_description(images)?;
    let criu = find_criu(daemon, input.criu_path)?;
    let work = images.join(format!("restore-{}", req.id));
    std::fs::create_dir_all(&work)
        .map_err(|e| TaskError::internal(format!("restore: {}: {e}", work.display())))?;
    let pidfile = work.join("init.pid");
    let _ = std::fs::remove_file(&pidfile);

    let mut command = Command::new(&criu);
    command
        .arg("restore")
        .arg("--images-dir")
        .arg(images)
        .arg("--work-dir")
        .arg(&work)
        .args(["--log-file", "restore.log", "-v4"])
        .arg("--root")
        .arg(input.rootfs)
        .args([
            "--restore-detached",
            "--restore-sibling",
            "--leave-stopped",
            "--manage-cgroups=ignore",
        ])
        .arg("--pidfile")
        .arg(&pidfile);
    description.add_flags(&mut command);
    let mut terminal = description
        .terminal
        .then(|| NewTerminal::open(&work.join("pts")))
        .transpose()?;
    let console = terminal.as_ref().map(|t| t.slave_path.as_path());
    for (destination, source) in external_sources(&description, input, console)? {
        command
            .arg("--external")
            .arg(format!("mnt[{destination}]:{source}"));
    }
    let mut inherited = inherited_fds(&description, &stdio, terminal.as_ref())?;
    drop(stdio);
    // The namespaces joined by path: the new spec's. The network namespace replaces the dumped
    // external one (runc's way); CRIU runs in the ipc and uts namespaces (which the dump did
    // not hold), so the restored tree is born in them.
    let entered = open_namespaces(joined_namespaces(input.spec))?;
    for (name, path) in joined_namespaces(input.spec) {
        if name == "net" {
            let fd = rustix::fs::open(
                &path,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| {
                TaskError::invalid(format!(
                    "restore: open network namespace {}: {e}",
                    path.display()
                ))
            })?;
            inherited.push((high_dup(&fd)?, EXTERNAL_NETNS_KEY.to_owned()));
        }
    }
    for (n, (_, key)) in inherited.iter().enumerate() {
        command
            .arg("--inherit-fd")
            .arg(format!("fd[{}]:{key}", 3 + n));
    }
    let sources: Vec<OwnedFd> = inherited.into_iter().map(|(fd, _)| fd).collect();
    let raw: Vec<RawFd> = sources.iter().map(|fd| fd.as_raw_fd()).collect();
    let procs: Vec<CString> = input
        .cgroup
        .dirs()
        .iter()
        .map(|d| CString::new(d.path().join("cgroup.procs").as_os_str().as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| TaskError::internal(format!("restore: cgroup path: {e}")))?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let argv = Argv::of(&command)?;
    // SAFETY: the closure makes only async-signal-safe system calls (open, write, close, dup2,
    // setns, execv, _exit) on buffers and fds prepared before the fork, which stay alive until spawn
    // returns. It never returns an error and execs itself: a failure after the fork must not
    // reach std's error path, which waits for the child and would race the daemon's reaper.
    unsafe {
        command.pre_exec(move || {
            for path in &procs {
                let fd = nix::libc::open(path.as_ptr(), nix::libc::O_WRONLY | nix::libc::O_CLOEXEC);
                if fd == -1 {
                    nix::libc::_exit(EXIT_CGROUP);
                }
                let written = nix::libc::write(fd, b"0".as_ptr().cast(), 1);
                nix::libc::close(fd);
                if written != 1 {
                    nix::libc::_exit(EXIT_CGROUP);
                }
            }
            // dup2 clears close-on-exec on the targets.
            for (target, source) in (3..).zip(&raw) {
                if nix::libc::dup2(*source, target) == -1 {
                    nix::libc::_exit(EXIT_STDIO);
                }
            }
            for (fd, kind) in &entered {
                if nix::sched::setns(fd, *kind).is_err() {
                    nix::libc::_exit(EXIT_NAMESPACE);
                }
            }
            argv.exec();
            nix::libc::_exit(EXIT_EXEC)
        });
    }
    log::info!("restore {} from {}", req.id, images.display());
    // Keeps exits of unknown pids (criu, and the restored init before it is registered) parked.
    let _guard = daemon.exits.begin_spawn();
    let child = command
        .spawn()
        .map_err(|e| TaskError::internal(format!("restore: run {}: {e}", criu.display())))?;
    drop(sources);
    let criu_pid = Pid::from_raw(child.id() as i32);
    // Whatever happens next, CRIU is done with the slave's path once it exited.
    let unmount = |terminal: &mut Option<NewTerminal>| {
        if let Some(t) = terminal.as_mut() {
            t.unmount();
        }
    };
    let log = work.join("restore.log");
    let code = match daemon.exits.wait_exit(criu_pid, RESTORE_LIMIT) {
        Some(code) => code,
        None => {
            let _ = nix::sys::signal::kill(criu_pid, Signal::SIGKILL);
            let _ = daemon.exits.wait_exit(criu_pid, Duration::from_secs(5));
            unmount(&mut terminal);
            return Err(TaskError::internal(format!(
                "criu restore did not finish within {RESTORE_LIMIT:?}: {}",
                log_tail(&log)
            )));
        }
    };
    unmount(&mut terminal);
    let why = match code as i32 {
        EXIT_CGROUP => Some("could not enter the container's cgroup"),
        EXIT_STDIO => Some("could not place the new stdio"),
        EXIT_EXEC => Some("could not be executed"),
        EXIT_NAMESPACE => Some("could not enter the container's ipc or uts namespace"),
        _ => None,
    };
    if let Some(why) = why {
        return Err(TaskError::internal(format!(
            "restore: {} {why} (exit code {code})",
            criu.display()
        )));
    }
    if code != 0 {
        // Whatever CRIU left behind is in the cgroup, which the failed Create removes.
        let _ = input.cgroup.kill_all(Signal::SIGKILL);
        return Err(TaskError::internal(format!(
            "criu restore exited with {code}: {}",
            log_tail(&log)
        )));
    }
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            let _ = input.cgroup.kill_all(Signal::SIGKILL);
            TaskError::internal(format!("restore: no pid in {}", pidfile.display()))
        })?;
    let pidfd = pidfd_open(pid).inspect_err(|_| {
        let _ = input.cgroup.kill_all(Signal::SIGKILL);
    })?;
    // The daemon's copy of the slave goes, so the console copy sees EIO once the container's
    // last one closed.
    let master = terminal.take().and_then(|mut t| t.master.take());
    let attached = io
        .attach(&pidfd, master)
        .and_then(|()| match console_size(input.spec) {
            Some((width, height)) => io.resize(width, height),
            None => Ok(()),
        });
    if let Err(e) = attached {
        let _ = input.cgroup.kill_all(Signal::SIGKILL);
        return Err(TaskError::internal(format!("restore: {e}")));
    }
    announce(pid);
    let cgroup = input.cgroup.clone();
    let resume: Box<dyn FnOnce() -> Result<(), TaskError> + Send> = Box::new(move || {
        cgroup
            .kill_all(Signal::SIGCONT)
            .map_err(|e| TaskError::internal(format!("resume the restored processes: {e}")))
    });
    let process = Arc::new(Process::restored(
        &req.id,
        (pid, pidfd),
        resume,
        daemon.events.clone(),
        Arc::clone(order),
    ));
    daemon.exits.register(&process);
    Ok(process)
}

/// `process.consoleSize` of a terminal container (width, height).
fn console_size(spec: &Spec) -> Option<(u32, u32)> {
    let process = spec.process().as_ref()?;
    if process.terminal() != Some(true) {
        return None;
    }
    process
        .console_size()
        .map(|size| (size.width() as u32, size.height() as u32))
}

fn high_dup(fd: &OwnedFd) -> Result<OwnedFd, TaskError> {
    rustix::io::fcntl_dupfd_cloexec(fd, 10)
        .map_err(|e| TaskError::internal(format!("restore: dup stdio: {e}")))
}

fn pidfd_open(pid: u32) -> Result<OwnedFd, TaskError> {
    let raw = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    let pid_value = raw.ok_or_else(|| TaskError::internal(format!("restore: bad pid {pid}")))?;
    rustix::process::pidfd_open(pid_value, rustix::process::PidfdFlags::empty())
        .map_err(|e| TaskError::internal(format!("restore: pidfd_open({pid}): {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::ttrpc::Code;

    fn spec_joining(joined: &[(&str, &str)]) -> Spec {
        let namespaces: Vec<serde_json::Value> = ["pid", "mount", "network", "ipc", "uts"]
            .iter()
            .map(|kind| match joined.iter().find(|(k, _)| k == kind) {
                Some((_, path)) => serde_json::json!({"type": kind, "path": path}),
                None => serde_json::json!({"type": kind}),
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "linux": {"namespaces": namespaces}
        }))
        .unwrap()
    }

    fn dumped(terminal: bool, joined: &[&str]) -> Description {
        Description {
            terminal,
            joined_namespaces: joined.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_terminal_on_one_side_only_is_refused() {
        let spec = spec_joining(&[]);
        assert!(check_supported(&spec, true, &dumped(true, &[])).is_ok());
        assert!(check_supported(&spec, false, &dumped(false, &[])).is_ok());
        for (asked, had) in [(true, false), (false, true)] {
            let err = check_supported(&spec, asked, &dumped(had, &[])).unwrap_err();
            assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err}");
            assert!(err.to_string().contains("terminal"), "{err}");
        }
    }

    #[test]
    fn joined_namespaces_must_be_the_checkpoints_kinds() {
        let pod = spec_joining(&[
            ("network", "/run/netns/pod"),
            ("ipc", "/proc/1/ns/ipc"),
            ("uts", "/proc/1/ns/uts"),
        ]);
        assert!(check_supported(&pod, false, &dumped(false, &["uts", "net", "ipc"])).is_ok());
        let err = check_supported(&pod, false, &dumped(false, &["net"])).unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err}");
        let err = check_supported(&spec_joining(&[]), false, &dumped(false, &["net"])).unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err}");
    }

    #[test]
    fn joined_namespaces_restore_cannot_join_are_unimplemented() {
        let spec = spec_joining(&[("pid", "/proc/1/ns/pid")]);
        let err = check_supported(&spec, false, &dumped(false, &[])).unwrap_err();
        assert_eq!(err.code(), Code::UNIMPLEMENTED, "{err}");
        assert!(err.to_string().contains("pid"), "{err}");
    }

    #[test]
    fn an_old_description_without_joined_namespaces_reads() {
        let description: Description = serde_json::from_value(serde_json::json!({
            "external_mounts": [], "stdio": [null, null, null], "terminal": false,
            "empty_namespaces": [], "tcp_established": false, "ext_unix_sk": false,
            "shell_job": false, "file_locks": false
        }))
        .unwrap();
        assert!(description.joined_namespaces.is_empty());
    }
}
