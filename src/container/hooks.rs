//! OCI hooks (runtime-spec 1.2, "POSIX-platform Hooks"): running one kind's hooks in array
//! order, each with the container's state JSON on its stdin, its `args` and `env`, and its
//! `timeout` enforced.
//!
//! Who calls [`run_hooks`] (see docs/ARCHITECTURE.md, "Hooks"): the spawner's hook runner
//! (`prestart`, `createRuntime`, `poststart`, `poststop`: the runtime's namespaces), the
//! container's init (`createContainer` before pivot_root, `startContainer` just before execve),
//! and the `delete` action (`poststop` after a dead daemon). Never the threaded daemon.
//!
//! A hook is a child of the caller made with `clone3(CLONE_PIDFD)`; between the clone and
//! `execve` the child only makes async-signal-safe system calls on memory prepared before the
//! clone, so the `delete` action may call this too. The hook gets default signal
//! dispositions, an empty signal mask and only fds 0-2: stdin a memfd holding the state, stdout
//! and stderr memfds the caller reads after the exit (a file never blocks a chatty hook the
//! way a full pipe would). Its end is awaited with `poll` on the pidfd, bounded by its
//! `timeout` (or [`DEFAULT_TIMEOUT`]); past it the hook is killed with SIGKILL, reaped, and
//! the step fails.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use oci_spec::runtime::{Hook, Hooks, Spec};
use serde::{Deserialize, Serialize};

use crate::spawn::clone::CloneArgs;

/// The runtime-spec version the state JSON complies with.
pub const STATE_OCI_VERSION: &str = "1.2.0";

/// How long a hook without a `timeout` may run: no Create, Start or Delete waits forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How much of a failed hook's stdout and stderr goes into the error (the end of each).
const OUTPUT_LIMIT: u64 = 4096;

/// The six kinds, in lifecycle order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookKind {
    /// The name the spec's `hooks` object uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Prestart => "prestart",
            Self::CreateRuntime => "createRuntime",
            Self::CreateContainer => "createContainer",
            Self::StartContainer => "startContainer",
            Self::Poststart => "poststart",
            Self::Poststop => "poststop",
        }
    }

    /// `poststart` and `poststop`: a failure is logged, the rest of the hooks and the
    /// lifecycle go on.
    pub fn failure_is_logged_only(self) -> bool {
        matches!(self, Self::Poststart | Self::Poststop)
    }

    pub const ALL: [HookKind; 6] = [
        Self::Prestart,
        Self::CreateRuntime,
        Self::CreateContainer,
        Self::StartContainer,
        Self::Poststart,
        Self::Poststop,
    ];

    /// This kind's hooks in `hooks` (empty when absent).
    pub fn of(self, hooks: Option<&Hooks>) -> &[Hook] {
        let Some(hooks) = hooks else {
            return &[];
        };
        let list = match self {
            Self::Prestart => hooks.prestart(),
            Self::CreateRuntime => hooks.create_runtime(),
            Self::CreateContainer => hooks.create_container(),
            Self::StartContainer => hooks.start_container(),
            Self::Poststart => hooks.poststart(),
            Self::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

/// This kind's hooks in the spec.
pub fn spec_hooks(spec: &Spec, kind: HookKind) -> &[Hook] {
    kind.of(spec.hooks().as_ref())
}

/// The spec's rules for every hook: an absolute path, a positive timeout.
pub fn validate(spec: &Spec) -> Result<(), String> {
    for kind in HookKind::ALL {
        for (index, hook) in spec_hooks(spec, kind).iter().enumerate() {
            if !hook.path().is_absolute() {
                return Err(format!(
                    "hooks.{}[{index}].path {:?} is not absolute",
                    kind.name(),
                    hook.path()
                ));
            }
            if let Some(timeout) = hook.timeout()
                && timeout <= 0
            {
                return Err(format!(
                    "hooks.{}[{index}].timeout must be greater than zero (is {timeout})",
                    kind.name()
                ));
            }
        }
    }
    Ok(())
}

/// What every state JSON of one container has in common; [`StateBase::json`] adds the status
/// and the pid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateBase {
    pub id: String,
    pub bundle: PathBuf,
    pub annotations: HashMap<String, String>,
}

impl StateBase {
    pub fn of_spec(id: &str, bundle: &Path, spec: &Spec) -> StateBase {
        StateBase {
            id: id.to_owned(),
            bundle: bundle.to_owned(),
            annotations: spec.annotations().clone().unwrap_or_default(),
        }
    }

    /// The runtime-spec state: `status` is `creating`, `created`, `running` or `stopped`;
    /// `pid` (the init's, as the PID namespace the hook runs in sees it) is left out when
    /// `None`.
    pub fn json(&self, status: &str, pid: Option<u32>) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct State<'a> {
            oci_version: &'a str,
            id: &'a str,
            status: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            pid: Option<u32>,
            bundle: &'a Path,
            annotations: &'a HashMap<String, String>,
        }
        let state = State {
            oci_version: STATE_OCI_VERSION,
            id: &self.id,
            status,
            pid,
            bundle: &self.bundle,
            annotations: &self.annotations,
        };
        serde_json::to_string(&state).unwrap_or_default()
    }
}

/// Runs `hooks` (all of kind `kind`) in array order. For the kinds whose failure fails the
/// step, it stops at the first failure; `poststart` and `poststop` go on with the remaining
/// hooks ("as if the hook had succeeded", runtime.md) and report every failure. Each failure's
/// text names the kind, the index and path of the hook, and carries its stderr and stdout.
pub fn run_hooks(kind: HookKind, hooks: &[Hook], state: &str) -> Result<(), String> {
    let mut failures = Vec::new();
    for (index, hook) in hooks.iter().enumerate() {
        if let Err(error) = run_hook(hook, state) {
            failures.push(format!(
                "{} hook #{index} ({}): {error}",
                kind.name(),
                hook.path().display()
            ));
            if !kind.failure_is_logged_only() {
                break;
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// What execve needs, built before the clone (the child must not allocate).
struct Program {
    path: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

impl Program {
    fn new(hook: &Hook) -> Result<Program, String> {
        let c = |text: &[u8], what: &str| {
            CString::new(text).map_err(|_| format!("{what} contains a NUL byte"))
        };
        let path = c(hook.path().as_os_str().as_bytes(), "path")?;
        // No args: argv is just the path, as runc (Go's exec.Cmd) does.
        let argv: Vec<CString> = match hook.args().as_deref() {
            Some(args) if !args.is_empty() => args
                .iter()
                .map(|a| c(a.as_bytes(), "args"))
                .collect::<Result<_, _>>()?,
            _ => vec![path.clone()],
        };
        // No env: an empty environment, never the caller's (the daemon's is not the hook's).
        let envp: Vec<CString> = hook
            .env()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|e| c(e.as_bytes(), "env"))
            .collect::<Result<_, _>>()?;
        let pointers = |strings: &[CString]| {
            strings
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(Program {
            argv_ptrs: pointers(&argv),
            envp_ptrs: pointers(&envp),
            path,
            _argv: argv,
            _envp: envp,
        })
    }
}

fn memfd(name: &std::ffi::CStr) -> Result<std::fs::File, String> {
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| format!("memfd_create: {e}"))?;
    Ok(std::fs::File::from(fd))
}

/// Runs one hook to its end (or its timeout).
fn run_hook(hook: &Hook, state: &str) -> Result<(), String> {
    let program = Program::new(hook)?;
    let mut stdin = memfd(c"hook-state")?;
    stdin
        .write_all(state.as_bytes())
        .and_then(|()| stdin.seek(SeekFrom::Start(0)).map(drop))
        .map_err(|e| format!("write the state: {e}"))?;
    let mut stdout = memfd(c"hook-stdout")?;
    let mut stderr = memfd(c"hook-stderr")?;
    let timeout = hook
        .timeout()
        .and_then(|t| u64::try_from(t).ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let stdio = [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
    let pidfd = spawn(&program, stdio)?;
    let (outcome, timed_out) = wait_bounded(&pidfd, timeout)?;
    let output = |file: &mut std::fs::File, name: &str| {
        let text = tail(file);
        if text.is_empty() {
            String::new()
        } else {
            format!("; {name}: {text:?}")
        }
    };
    let failure = match outcome {
        _ if timed_out => format!("timed out after {timeout:?} and was killed"),
        WaitStatus::Exited(_, 0) => return Ok(()),
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("killed by {signal}"),
        other => format!("ended with {other:?}"),
    };
    Err(format!(
        "{failure}{}{}",
        output(&mut stderr, "stderr"),
        output(&mut stdout, "stdout")
    ))
}

/// Clones the hook with a pidfd; the child sets up fds 0-2, signals, and execs.
fn spawn(program: &Program, stdio: [RawFd; 3]) -> Result<OwnedFd, String> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid clone_args of the size we pass and `pidfd` outlives the call;
    // no stack is given, so the child runs on a private copy of this stack, as after fork(),
    // and only makes async-signal-safe calls (`exec_child`).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    // A container's seccomp profile (the default ones of Docker and containerd) may answer
    // clone3 with ENOSYS so that the C library falls back to clone: do the same.
    let ret = if ret == -1 && nix::Error::last() == nix::Error::ENOSYS {
        // SAFETY: legacy clone with a NULL stack (fork semantics); with CLONE_PIDFD the kernel
        // stores the pidfd at the parent_tid argument, which outlives the call.
        unsafe {
            libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_PIDFD | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                &mut pidfd as *mut libc::c_int,
                0usize,
                0usize,
            )
        }
    } else {
        ret
    };
    match ret {
        -1 => Err(format!("clone: {}", nix::Error::last())),
        0 => exec_child(program, stdio),
        // SAFETY: with CLONE_PIDFD the kernel stored a fresh descriptor only we own.
        _ => Ok(unsafe { OwnedFd::from_raw_fd(pidfd) }),
    }
}

/// In the cloned child: stdio from `stdio`, nothing else open, default signal dispositions,
/// an empty mask, then execve. Only async-signal-safe calls, no allocation.
fn exec_child(program: &Program, stdio: [RawFd; 3]) -> ! {
    // Move the three out of 0-2 first, so no dup2 overwrites one still to be used.
    let mut high = [-1; 3];
    for (slot, fd) in high.iter_mut().zip(stdio) {
        // SAFETY: fcntl on descriptors this process owns.
        *slot = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        if *slot < 0 {
            child_fail(b"dup stdio", nix::Error::last_raw());
        }
    }
    for (target, fd) in high.into_iter().enumerate() {
        // SAFETY: dup2 onto 0-2; the new descriptors are not close-on-exec.
        if unsafe { libc::dup2(fd, target as libc::c_int) } < 0 {
            child_fail(b"dup2 stdio", nix::Error::last_raw());
        }
    }
    // SAFETY: closes every descriptor above stdio in this (single-threaded) child.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if let Err(errno) = super::sys::reset_all_signal_dispositions() {
        child_fail(b"reset signal dispositions", errno as i32);
    }
    // SAFETY: an empty set built on the stack; sigprocmask is async-signal-safe.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
    // SAFETY: NUL-terminated strings and NULL-terminated pointer arrays built before the clone.
    unsafe {
        libc::execve(
            program.path.as_ptr(),
            program.argv_ptrs.as_ptr(),
            program.envp_ptrs.as_ptr(),
        )
    };
    child_fail(b"execve", nix::Error::last_raw())
}

/// Writes "sibling: <what>: errno <n>" to stderr (the hook's memfd) and exits 127.
fn child_fail(what: &[u8], errno: i32) -> ! {
    let mut buffer = [0u8; 128];
    let mut len = 0;
    for part in [b"sibling: ".as_slice(), what, b" failed: errno "] {
        let n = part.len().min(buffer.len() - len - 12);
        buffer[len..len + n].copy_from_slice(&part[..n]);
        len += n;
    }
    let mut digits = [0u8; 11];
    let mut value = errno.unsigned_abs();
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    let n = digits.len() - start;
    buffer[len..len + n].copy_from_slice(&digits[start..]);
    len += n;
    buffer[len] = b'\n';
    len += 1;
    // SAFETY: write and _exit are async-signal-safe; the buffer is on our stack.
    unsafe {
        libc::write(2, buffer.as_ptr().cast(), len);
        libc::_exit(127)
    }
}

/// Waits for the hook's exit at most `timeout` (poll on its pidfd); past that, SIGKILL and
/// reap. Never leaves a zombie. The flag says whether the timeout killed it.
fn wait_bounded(pidfd: &OwnedFd, timeout: Duration) -> Result<(WaitStatus, bool), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = crate::spawn::clone::pidfd_send_signal(pidfd, libc::SIGKILL);
            return reap(pidfd).map(|status| (status, true));
        }
        let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) | Err(nix::Error::EINTR) => continue,
            Ok(_) => return reap(pidfd).map(|status| (status, false)),
            Err(e) => {
                let _ = crate::spawn::clone::pidfd_send_signal(pidfd, libc::SIGKILL);
                reap(pidfd)?;
                return Err(format!("poll the hook's pidfd: {e}"));
            }
        }
    }
}

fn reap(pidfd: &OwnedFd) -> Result<WaitStatus, String> {
    loop {
        match waitid(Id::PIDFd(pidfd.as_fd()), WaitPidFlag::WEXITED) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(format!("wait for the hook: {e}")),
            Ok(status) => return Ok(status),
        }
    }
}

/// The last [`OUTPUT_LIMIT`] bytes of a memfd the hook wrote, trimmed.
fn tail(file: &mut std::fs::File) -> String {
    let len = file.seek(SeekFrom::End(0)).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(OUTPUT_LIMIT)));
    let mut bytes = Vec::new();
    let _ = file.take(OUTPUT_LIMIT).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn state_json_has_the_spec_fields() {
        let base = StateBase {
            id: "c1".into(),
            bundle: "/b".into(),
            annotations: [("a".to_string(), "b".to_string())].into(),
        };
        let value: serde_json::Value =
            serde_json::from_str(&base.json("creating", Some(7))).unwrap();
        assert_eq!(value["ociVersion"], STATE_OCI_VERSION);
        assert_eq!(value["id"], "c1");
        assert_eq!(value["status"], "creating");
        assert_eq!(value["pid"], 7);
        assert_eq!(value["bundle"], "/b");
        assert_eq!(value["annotations"]["a"], "b");
        let stopped: serde_json::Value = serde_json::from_str(&base.json("stopped", None)).unwrap();
        assert!(stopped.get("pid").is_none());
    }

    #[test]
    fn hooks_get_state_args_env_and_fail_with_stderr() {
        let ok = hook(
            r#"{"path":"/bin/sh","args":["sh","-c","read s; [ \"$s\" = '{\"x\":1}' ] && [ \"$V\" = v ] && [ $# = 1 ]","--","one"],"env":["V=v"]}"#,
        );
        run_hooks(HookKind::Poststop, &[ok], r#"{"x":1}"#).unwrap();
        let bad = hook(r#"{"path":"/bin/sh","args":["sh","-c","echo oops >&2; exit 3"]}"#);
        let error = run_hooks(HookKind::CreateRuntime, &[bad], "{}").unwrap_err();
        assert!(
            error.starts_with("createRuntime hook #0 (/bin/sh): exit status 3"),
            "{error}"
        );
        assert!(error.contains("oops"), "{error}");
        let missing = hook(r#"{"path":"/nonexistent/hook"}"#);
        let error = run_hooks(HookKind::Prestart, &[missing], "{}").unwrap_err();
        assert!(error.contains("execve failed: errno 2"), "{error}");
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let slow = hook(r#"{"path":"/bin/sleep","args":["sleep","30"],"timeout":1}"#);
        let started = Instant::now();
        let error = run_hooks(HookKind::Poststart, &[slow], "{}").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(error.contains("timed out after 1s"), "{error}");
    }
}
