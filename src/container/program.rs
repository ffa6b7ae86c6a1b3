//! The program the init becomes: found (and checked) before "ready", so that a missing binary
//! is a Create error naming it, not an exit status after Start; executed on "start".

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::unistd::{AccessFlags, access, execve};

use super::error::InitError;
use super::fds::mark_inherited_fds_cloexec;
use super::hooks::{HookKind, run_hooks};
use super::seccomp::SeccompFilter;
use super::sys::reset_all_signal_dispositions;

/// `PATH` when the process environment has none (runc's and Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `PATH` from the process environment (the first entry, as getenv finds it), or the default.
pub fn path_variable(env: &[String]) -> &str {
    env.iter()
        .find_map(|entry| entry.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

/// The path execve will be given for `arg0`: as is when it contains a slash, else the first
/// executable regular file named `arg0` in the absolute directories of `path_var`.
///
/// `root` is where the container's `/` is (`/` after pivot_root; a temporary directory in
/// tests) and `cwd` the container's working directory, for a relative `arg0`. Checks use the
/// caller's credentials: call after the switch to the container user.
pub fn find_executable(
    arg0: &str,
    path_var: &str,
    root: &Path,
    cwd: &Path,
) -> Result<PathBuf, InitError> {
    if arg0.is_empty() {
        return Err(InitError::InvalidSpec("process.args[0] is empty".into()));
    }
    if arg0.contains('/') {
        let path = PathBuf::from(arg0);
        check_executable(&host_path(root, cwd, &path)).map_err(|errno| InitError::Exec {
            path: path.clone(),
            errno,
        })?;
        return Ok(path);
    }
    // Relative PATH entries (and empty ones, meaning ".") are skipped: what they find depends
    // on the cwd, which is how a planted binary gets run.
    let found = path_var
        .split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| Path::new(dir).join(arg0))
        .find(|candidate| check_executable(&host_path(root, cwd, candidate)).is_ok());
    found.ok_or_else(|| InitError::ExecutableNotFound {
        name: arg0.to_owned(),
    })
}

/// Where container path `path` (relative to `cwd` if relative) is, seen from this process.
fn host_path(root: &Path, cwd: &Path, path: &Path) -> PathBuf {
    let absolute = cwd.join(path);
    root.join(absolute.strip_prefix("/").unwrap_or(&absolute))
}

/// An existing regular file that the current credentials may execute.
fn check_executable(path: &Path) -> Result<(), Errno> {
    let metadata = std::fs::metadata(path)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)))?;
    if metadata.is_dir() {
        return Err(Errno::EISDIR);
    }
    if !metadata.is_file() {
        return Err(Errno::EACCES);
    }
    access(path, AccessFlags::X_OK)
}

/// A program ready for execve: everything allocated up front.
#[derive(Debug)]
pub struct Exec {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    warnings: Vec<String>,
    /// The master of the process's terminal, for the daemon (close-on-exec).
    console: Option<std::os::fd::OwnedFd>,
    /// A seccomp filter still to load, as the last step before execve.
    seccomp: Option<SeccompFilter>,
    /// The `startContainer` hooks and their state JSON, run right before execve.
    start_hooks: Option<(Vec<oci_spec::runtime::Hook>, String)>,
}

impl Exec {
    /// Builds the C strings of `path`, `args` and `env`. `warnings` are for the caller to pass
    /// on (the init itself logs nothing).
    pub fn new(
        path: &Path,
        args: &[String],
        env: &[String],
        warnings: Vec<String>,
    ) -> Result<Self, InitError> {
        let path_text = path.to_string_lossy();
        Ok(Self {
            path: c_string(
                "the executable path",
                path.as_os_str().as_bytes(),
                &path_text,
            )?,
            argv: c_strings("process.args", args)?,
            envp: c_strings("process.env", env)?,
            warnings,
            console: None,
            seccomp: None,
            start_hooks: None,
        })
    }

    /// Attaches the terminal master that "ready" hands to the daemon.
    pub fn with_console(mut self, console: Option<std::os::fd::OwnedFd>) -> Self {
        self.console = console;
        self
    }

    /// A seccomp filter to load right before execve (when no_new_privs lets it load without
    /// privileges).
    pub fn with_seccomp(mut self, seccomp: Option<SeccompFilter>) -> Self {
        self.seccomp = seccomp;
        self
    }

    /// `startContainer` hooks to run (in the container's namespaces, after pivot_root and the
    /// switch to the container's user and seccomp filter, as runc) just before execve.
    pub fn with_start_hooks(
        mut self,
        hooks: Option<(Vec<oci_spec::runtime::Hook>, String)>,
    ) -> Self {
        self.start_hooks = hooks;
        self
    }

    /// The terminal master, if the process has a terminal.
    pub fn console(&self) -> Option<&std::os::fd::OwnedFd> {
        self.console.as_ref()
    }

    /// Things the setup skipped and the daemon should log (capabilities unknown to this
    /// kernel, spec fields not applied yet). The init logs nothing itself: its caller forwards
    /// these with "ready".
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Resets signal dispositions and mask, marks every fd from 3 up close-on-exec, loads the
    /// seccomp filter if one is left to load, runs the `startContainer` hooks, and execs.
    /// Returns only on failure.
    pub fn exec(self) -> InitError {
        if let Err(e) = reset_signals() {
            return e;
        }
        if let Err(errno) = mark_inherited_fds_cloexec() {
            return InitError::PrepareExec {
                step: "mark inherited fds close-on-exec",
                errno,
            };
        }
        if let Some(filter) = &self.seccomp
            && let Err(e) = filter.load()
        {
            return e;
        }
        if let Some((hooks, state)) = &self.start_hooks
            && let Err(error) = run_hooks(HookKind::StartContainer, hooks, state)
        {
            return InitError::Hook(error);
        }
        let Err(errno) = execve(&self.path, &self.argv, &self.envp);
        InitError::Exec {
            path: PathBuf::from(OsStr::from_bytes(self.path.as_bytes())),
            errno,
        }
    }
}

/// Every signal back to SIG_DFL and none blocked. An ignored signal stays ignored across
/// execve: Rust's runtime ignores SIGPIPE at start-up, and the container's program would
/// inherit that (and so would anything the spawner blocked).
fn reset_signals() -> Result<(), InitError> {
    reset_all_signal_dispositions().map_err(|errno| InitError::PrepareExec {
        step: "reset signal dispositions",
        errno,
    })?;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(|errno| {
        InitError::PrepareExec {
            step: "unblock all signals",
            errno,
        }
    })
}

fn c_strings(what: &'static str, values: &[String]) -> Result<Vec<CString>, InitError> {
    values
        .iter()
        .map(|value| c_string(what, value.as_bytes(), value))
        .collect()
}

fn c_string(what: &'static str, bytes: &[u8], shown: &str) -> Result<CString, InitError> {
    CString::new(bytes).map_err(|_| InitError::NulByte {
        what,
        value: shown.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_root(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("exec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn make_file(root: &Path, path: &str, mode: u32) {
        let file = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn path_variable_comes_from_the_env_or_defaults() {
        let env = [
            "HOME=/root".to_string(),
            "PATH=/opt/bin:/bin".into(),
            "PATH=/x".into(),
        ];
        assert_eq!(path_variable(&env), "/opt/bin:/bin");
        assert_eq!(path_variable(&["TERM=xterm".to_string()]), DEFAULT_PATH);
    }

    #[test]
    fn path_search_takes_the_first_executable_regular_file() {
        let root = temp_root("search");
        make_file(&root, "/usr/local/bin/tool", 0o644); // not executable: skipped
        std::fs::create_dir_all(root.join("usr/sbin/tool")).unwrap(); // a directory: skipped
        make_file(&root, "/bin/tool", 0o755);
        let found = find_executable(
            "tool",
            "/usr/local/bin:/usr/sbin:/bin",
            &root,
            Path::new("/"),
        );
        // Running as root, access(X_OK) still wants an execute bit somewhere.
        assert_eq!(found.unwrap(), Path::new("/bin/tool"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_command_is_named() {
        let root = temp_root("missing");
        let err = find_executable("foo", DEFAULT_PATH, &root, Path::new("/")).unwrap_err();
        assert_eq!(err.to_string(), "executable file not found in $PATH: foo");
        let relative_only = find_executable("foo", "bin::.", &root, Path::new("/"));
        assert!(relative_only.is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_path_with_a_slash_is_used_as_is_and_checked() {
        let root = temp_root("slash");
        make_file(&root, "/app/run", 0o755);
        make_file(&root, "/app/data", 0o644);
        let cwd = Path::new("/app");
        assert_eq!(
            find_executable("./run", "", &root, cwd).unwrap(),
            Path::new("./run")
        );
        assert_eq!(
            find_executable("/app/run", "", &root, cwd).unwrap(),
            Path::new("/app/run")
        );
        let nope = find_executable("/bin/nope", "", &root, cwd).unwrap_err();
        assert_eq!(
            nope.to_string(),
            "exec /bin/nope: No such file or directory"
        );
        let dir = find_executable("/app", "", &root, cwd).unwrap_err();
        assert_eq!(dir.to_string(), "exec /app: Is a directory");
        let plain = find_executable("./data", "", &root, cwd).unwrap_err();
        assert_eq!(plain.to_string(), "exec ./data: Permission denied");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn exec_builds_c_strings_and_rejects_nul_bytes() {
        let args = ["sh".to_string(), "-c".into(), "true".into()];
        let exec = Exec::new(Path::new("/bin/sh"), &args, &["A=1".into()], vec![]).unwrap();
        assert_eq!(exec.path.to_str().unwrap(), "/bin/sh");
        assert_eq!(exec.argv.len(), 3);
        assert_eq!(exec.envp, [c"A=1"]);
        let bad = Exec::new(Path::new("/bin/sh"), &["a\0b".into()], &[], vec![]).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "process.args contains a NUL byte: \"a\\0b\""
        );
    }
}
