//! Shared helpers for the integration tests: a private containerd, the busybox test image and
//! bundles, commands with timeouts, and leak checks.
//!
//! Rules these helpers follow (see shared/TESTING.md): every containerd is private (its own root,
//! state and sockets under a fresh temporary directory); only processes started here are killed,
//! by pid; `/run/containerd/s/` is shared by every containerd, so only the exact sockets of shims
//! this harness had to kill are removed from it.
//!
//! Only std and crates the package already depends on (nix, serde_json).

// Each test crate that says `mod common;` uses its own subset of these helpers.
#![allow(dead_code)]

use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `for_each_runtime!(a, b)` makes `mod a { fn runc(); fn sibling() }` (and so on), each test
/// calling `a(RUNTIME)`: every end-to-end check runs against the reference shim, which proves
/// the expectation, and against ours.
#[allow(unused_macros)]
macro_rules! for_each_runtime {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            #[ignore = "needs root"]
            fn runc() {
                super::$name(super::RUNC);
            }

            #[test]
            #[ignore = "needs root"]
            fn sibling() {
                super::$name(super::SIBLING);
            }
        }
    )*};
}

/// The containerd namespace every test uses. `ctr run` puts a container's cgroup at
/// `/<namespace>/<id>`.
pub const NAMESPACE: &str = "sibling-test";
/// The name `scripts/build-image.sh` gives the busybox image.
pub const IMAGE: &str = "docker.io/library/sibling-busybox:latest";
/// Runtime names, as passed to `ctr run --runtime`.
pub const SIBLING: &str = "io.containerd.sibling.v2";
pub const RUNC: &str = "io.containerd.runc.v2";
/// The shim under test; containerd finds it through PATH by its name.
pub const SHIM_BINARY: &str = env!("CARGO_BIN_EXE_containerd-shim-sibling-v2");

const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// The default for one `ctr` command; override with SIBLING_TEST_TIMEOUT (seconds).
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Cleanup commands get less: a wedged shim must not stall the whole suite.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long leak checks wait for asynchronous teardown (a shim exits after `ctr run --rm`
/// has already returned) before calling what is left a leak.
const LEAK_GRACE: Duration = Duration::from_secs(10);

/// Where shared shims keep their slots (the leak check looks for the tests' containers there).
const SHARED_SLOT_ROOT: &str = "/run/sibling/shared";
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// Environment

/// True under CI (`CI=true`), where tests must run rather than skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The binary name containerd derives from a runtime name (`io.containerd.X.v2` ->
/// `containerd-shim-X-v2`).
pub fn shim_binary_name(runtime: &str) -> String {
    let mut parts = runtime.split('.').skip(2);
    match (parts.next(), parts.next()) {
        (Some(name), Some(version)) => format!("containerd-shim-{name}-{version}"),
        _ => panic!("not a shim v2 runtime name: {runtime}"),
    }
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// Checks that this test can run here: root, containerd and ctr installed, and an image (or the
/// busybox to build one). Outside CI it prints why it skips and returns false; in CI (`CI=true`)
/// the same finding is a failure, because there every test must really run.
pub fn require_root_and_tools() -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (run the tests as root, e.g. `sudo make test`)".to_string());
    }
    match containerd_bin_dir() {
        Some(dir) => {
            for tool in ["containerd", "ctr", "containerd-shim-runc-v2"] {
                if !dir.join(tool).is_file() {
                    missing.push(format!(
                        "`{tool}` in SIBLING_CONTAINERD_BIN_DIR={} (scripts/fetch-containerd.sh)",
                        dir.display()
                    ));
                }
            }
        }
        None => {
            for tool in ["containerd", "ctr"] {
                if !in_path(tool) {
                    missing.push(format!("`{tool}` in PATH (apt-get install containerd)"));
                }
            }
        }
    }
    if configured_path("SIBLING_IMAGE_TAR", "build/busybox-image.tar").is_none()
        && !Path::new("/bin/busybox").exists()
    {
        missing.push("SIBLING_IMAGE_TAR or /bin/busybox (apt-get install busybox-static)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("needs {}", missing.join(", "));
    if in_ci() {
        panic!("CI=true and this test cannot run: {message}");
    }
    eprintln!("SKIPPED: {message}");
    false
}

/// The directory of the containerd under test: `$SIBLING_CONTAINERD_BIN_DIR` (a containerd, the
/// `ctr` of the same version and its reference `containerd-shim-runc-v2`, e.g. one that
/// scripts/fetch-containerd.sh extracted), else None: the ones in PATH (Debian's 1.6).
pub fn containerd_bin_dir() -> Option<PathBuf> {
    std::env::var_os("SIBLING_CONTAINERD_BIN_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// `containerd` or `ctr` of the containerd under test: from [`containerd_bin_dir`], else PATH.
/// A `ctr` must match its containerd: a newer ctr may use services an older containerd lacks.
pub fn containerd_tool(tool: &str) -> PathBuf {
    containerd_bin_dir().map_or_else(|| PathBuf::from(tool), |dir| dir.join(tool))
}

/// (major, minor) of the containerd under test, from `containerd --version`
/// (`containerd github.com/containerd/containerd 1.6.20~ds1 ...`, or `.../v2 2.1.9+unknown`).
pub fn containerd_version() -> (u32, u32) {
    static VERSION: OnceLock<(u32, u32)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let program = containerd_tool("containerd");
        let out = Command::new(&program)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", program.display()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        parse_containerd_version(&text)
            .unwrap_or_else(|| panic!("no version in `{} --version`: {text}", program.display()))
    })
}

fn parse_containerd_version(text: &str) -> Option<(u32, u32)> {
    let version = text.split_whitespace().nth(2)?;
    let mut numbers = version.split(|c: char| !c.is_ascii_digit());
    Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
}

/// `$VAR` if set, else `<repo>/<default>` if it exists.
fn configured_path(var: &str, default: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(PathBuf::from(path));
    }
    let path = repo_dir().join(default);
    path.exists().then_some(path)
}

/// Runs one of our build scripts once per test process (tests run in parallel threads).
fn build_once(cell: &'static OnceLock<PathBuf>, script: &str, out: &str) -> PathBuf {
    cell.get_or_init(|| {
        let out = repo_dir().join(out);
        let status = Command::new(repo_dir().join("scripts").join(script))
            .arg(&out)
            .status()
            .unwrap_or_else(|e| panic!("cannot run scripts/{script}: {e}"));
        assert!(
            status.success(),
            "scripts/{script} {} failed: {status}",
            out.display()
        );
        out
    })
    .clone()
}

/// The busybox rootfs: `$SIBLING_ROOTFS`, else `build/rootfs`, built if missing.
pub fn rootfs_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    configured_path("SIBLING_ROOTFS", "build/rootfs")
        .unwrap_or_else(|| build_once(&BUILT, "build-rootfs.sh", "build/rootfs"))
}

/// The OCI image archive: `$SIBLING_IMAGE_TAR`, else `build/busybox-image.tar`, built if missing.
pub fn image_tar() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    configured_path("SIBLING_IMAGE_TAR", "build/busybox-image.tar")
        .unwrap_or_else(|| build_once(&BUILT, "build-image.sh", "build/busybox-image.tar"))
}

/// A container id no other test (or test process) uses: `<tag>-<pid>-<n>`.
pub fn unique_id(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{tag}-{}-{n}", std::process::id())
}

/// A new empty directory under the temp dir, `<tag>-<pid>-<n>`. The pid in the name lets a sweep
/// (scripts/sweep-test-leftovers.sh) tell directories of dead test processes from live ones.
pub fn unique_temp_dir(tag: &str) -> PathBuf {
    loop {
        let dir = std::env::temp_dir().join(unique_id(tag));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create {}: {e}", dir.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands with timeouts

/// The timeout for one `ctr` command (SIBLING_TEST_TIMEOUT seconds, default 60).
pub fn command_timeout() -> Duration {
    std::env::var("SIBLING_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_COMMAND_TIMEOUT, Duration::from_secs)
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error only shortens the captured output; the exit status still tells.
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` until `deadline`; None if it is still running then.
pub fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => thread::sleep(POLL),
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
    }
}

/// Runs `cmd` with stdout and stderr captured. A shim under development can make `ctr` hang
/// forever, so after `timeout` the command (our own child) is killed and the captured stderr
/// says so: the test then fails with a message instead of stalling the suite.
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    output_with_input(cmd, None, timeout)
}

/// Like [`output_with_timeout`], but with `input` written to the command's stdin, which is then
/// closed (so the command reads EOF after it). None: stdin is /dev/null.
pub fn output_with_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // A thread writes stdin, so a command that fills its stdout pipe before reading all of its
    // input cannot deadlock against us. A write error (the command exited early) only shortens
    // the input; the exit status and output tell what happened.
    let feeder = match (input, child.stdin.take()) {
        (Some(input), Some(mut stdin)) => {
            let input = input.to_vec();
            Some(thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(&input);
                // Dropping stdin here closes it: the command reads EOF.
            }))
        }
        _ => None,
    };
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_until(&mut child, Instant::now() + timeout);
    let timed_out = status.is_none();
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        child
            .wait()
            .unwrap_or_else(|e| panic!("reaping {cmd:?}: {e}"))
    });
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    let mut stderr = stderr.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(
            format!("\n[test harness: killed {cmd:?} after {timeout:?}]\n").as_bytes(),
        );
    }
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr,
    }
}

/// Exit code as a shell reports it: 128 + signal for a process killed by a signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// What one `ctr` command did, printable in an assertion message.
#[derive(Debug, Clone)]
pub struct CtrResult {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for CtrResult {
    fn from(out: Output) -> Self {
        Self {
            code: exit_code(out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl fmt::Display for CtrResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A `ctr run` running in the background: its stdout arrives line by line, its stderr is
/// collected. Dropping it kills `ctr` (our own child, by pid) if it is still running.
pub struct BackgroundRun {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout_reader: Option<thread::JoinHandle<()>>,
    stdout_seen: Vec<String>,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl BackgroundRun {
    fn new(mut child: Child) -> Self {
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take();
        let stdout_reader = thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Some(drain(child.stderr.take()));
        Self {
            child,
            lines,
            stdout_reader: Some(stdout_reader),
            stdout_seen: Vec::new(),
            stderr,
            status: None,
        }
    }

    /// The next line `ctr` prints, or None when it closed stdout or `timeout` passed.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.stdout_seen.push(line.clone());
        Some(line)
    }

    pub fn has_exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status.is_some()
    }

    /// Waits for `ctr` to exit (killing it after `timeout`) and returns all it printed.
    pub fn finish(&mut self, timeout: Duration) -> CtrResult {
        let mut timed_out = false;
        if self.status.is_none() {
            self.status = wait_until(&mut self.child, Instant::now() + timeout);
        }
        let status = *self.status.get_or_insert_with(|| {
            timed_out = true;
            let _ = self.child.kill();
            self.child.wait().expect("reap ctr")
        });
        // The reader ends when ctr's stdout closes: after it, every line is in the channel.
        if let Some(reader) = self.stdout_reader.take() {
            let _ = reader.join();
        }
        self.stdout_seen.extend(self.lines.try_iter());
        let stdout: String = self.stdout_seen.iter().map(|l| format!("{l}\n")).collect();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let mut stderr = String::from_utf8_lossy(&stderr).into_owned();
        if timed_out {
            stderr.push_str(&format!(
                "\n[test harness: killed ctr run after {timeout:?}]\n"
            ));
        }
        CtrResult {
            code: exit_code(status),
            stdout,
            stderr,
        }
    }
}

impl Drop for BackgroundRun {
    fn drop(&mut self) {
        if !self.has_exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Private containerd

/// containerd's config for `major` (1 or 2): everything under `dir`, CRI off (it needs a network
/// and system-wide setup), NRI off (its socket, /var/run/nri/nri.sock, is machine-wide; 2.x
/// enables it by default), snapshotters that cannot work here off so the log stays readable.
/// containerd 2.x reads config version 3, where CRI is three plugins. Same as
/// scripts/containerd-private.sh.
fn containerd_config(dir: &Path, major: u32) -> String {
    let d = dir.display();
    // What differs by version: 2.x's CRI is three plugins, and it has two more snapshotters.
    let (version, off) = if major >= 2 {
        (
            3,
            r#""io.containerd.cri.v1.images",
  "io.containerd.cri.v1.runtime",
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs","#,
        )
    } else {
        (2, r#""io.containerd.grpc.v1.cri","#)
    };
    format!(
        r#"version = {version}
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  {off}
  "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{d}/c.sock"

[ttrpc]
  address = "{d}/c.sock.ttrpc"

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
    )
}

/// A containerd of the test's own, in a fresh temporary directory, with the test image imported.
/// Dropping it removes leftover tasks, stops containerd (by pid), kills shims that still name
/// its address, unmounts what is under its directory and removes the directory, even when the
/// test failed.
pub struct PrivateContainerd {
    dir: PathBuf,
    runtime: String,
    containerd: Option<Child>,
}

impl PrivateContainerd {
    /// A private containerd whose `run` uses the sibling shim.
    pub fn start() -> Self {
        Self::start_with_runtime(SIBLING)
    }

    /// A private containerd whose `run` uses `runtime` (e.g. [`RUNC`], to check the harness and
    /// the expectations against the reference shim).
    pub fn start_with_runtime(runtime: &str) -> Self {
        let image = image_tar();
        let mut this = Self {
            dir: unique_temp_dir("sibling-e2e"),
            runtime: runtime.to_string(),
            containerd: None,
        };
        // From here on a panic drops `this`, and Drop cleans up what was started.
        this.spawn_containerd();
        this.wait_until_ready();
        let image = image.display().to_string();
        let out = this.ctr(&["image", "import", "--all-platforms", &image]);
        assert!(
            out.status.success(),
            "image import failed:\n{}",
            CtrResult::from(out)
        );
        this
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn runtime(&self) -> &str {
        &self.runtime
    }

    /// containerd's gRPC address, which is also the `-address` every shim it starts gets.
    pub fn address(&self) -> PathBuf {
        self.dir.join("c.sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// Pid of our containerd, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.containerd.as_ref().map(Child::id)
    }

    /// Kills containerd (SIGKILL, by pid) and starts it again on the same root, state and
    /// sockets, as after a crash; running shims and their containers are left alone.
    pub fn restart(&mut self) {
        self.crash();
        self.start_again();
    }

    /// SIGKILLs containerd (its shims and containers go on without it).
    pub fn crash(&mut self) {
        if let Some(mut child) = self.containerd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts containerd again on the same directory after [`crash`](Self::crash).
    pub fn start_again(&mut self) {
        self.spawn_containerd();
        self.wait_until_ready();
    }

    fn spawn_containerd(&mut self) {
        let config = self.dir.join("config.toml");
        let (major, _) = containerd_version();
        fs::write(&config, containerd_config(&self.dir, major)).expect("write config.toml");
        let log = fs::File::create(self.log_path()).expect("create containerd.log");
        let log_err = log.try_clone().expect("dup containerd.log");
        // containerd resolves `io.containerd.sibling.v2` to `containerd-shim-sibling-v2` in PATH:
        // put the binary cargo built for this test first, then the containerd under test's own
        // directory, so `io.containerd.runc.v2` is the reference shim of the same version.
        let shim_dir = Path::new(SHIM_BINARY)
            .parent()
            .expect("shim binary has a directory");
        let path = std::env::var_os("PATH").unwrap_or_default();
        // CRIU for checkpoint/restore (both runtimes find `criu` in PATH): SIBLING_CRIU's
        // directory, or build/criu from scripts/fetch-criu.sh, when there.
        let criu_dir = std::env::var_os("SIBLING_CRIU")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("build/criu/usr/sbin/criu")
            })
            .parent()
            .map(Path::to_path_buf)
            .filter(|dir| dir.join("criu").exists());
        let path = std::env::join_paths(
            std::iter::once(shim_dir.to_path_buf())
                .chain(containerd_bin_dir())
                .chain(criu_dir)
                .chain(std::env::split_paths(&path)),
        )
        .expect("PATH");
        let child = Command::new(containerd_tool("containerd"))
            .arg("--config")
            .arg(&config)
            .env("PATH", path)
            // containerd passes its environment to the shims it starts.
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start containerd: {e}"));
        self.containerd = Some(child);
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self
                .ctr_global(&["version"], Duration::from_secs(5))
                .status
                .success()
            {
                return;
            }
            let exited = self
                .containerd
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "containerd exited during start-up ({status}):\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not answer within 30s:\n{}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// containerd's last warnings and errors (its debug lines drown them), for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let important: Vec<&str> = log
            .lines()
            .filter(|l| {
                ["level=warning", "level=error", "level=fatal"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .collect();
        let tail = &important[important.len().saturating_sub(30)..];
        format!(
            "--- containerd warnings and errors ({})\n{}",
            self.log_path().display(),
            tail.join("\n")
        )
    }

    fn ctr_global(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new(containerd_tool("ctr"));
        cmd.arg("-a").arg(self.address()).args(args);
        output_with_timeout(&mut cmd, timeout)
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(containerd_tool("ctr"));
        cmd.arg("-a")
            .arg(self.address())
            .arg("-n")
            .arg(NAMESPACE)
            .args(args);
        cmd
    }

    fn ctr_with_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        output_with_timeout(&mut self.ctr_command(args), timeout)
    }

    /// Like [`ctr`](Self::ctr), with `input` on ctr's stdin (closed after it, so ctr sees EOF).
    pub fn ctr_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        output_with_input(&mut self.ctr_command(args), Some(input), command_timeout())
    }

    /// Any `ctr ARGS...` in the background (stdin /dev/null), e.g. an attached `ctr task exec`
    /// a test signals while it runs.
    pub fn spawn_ctr(&self, args: &[&str]) -> BackgroundRun {
        let mut cmd = self.ctr_command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        BackgroundRun::new(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}")),
        )
    }

    /// Where `ctr run` (and tests' `ctr task exec --fifo-dir`) put their stdio FIFOs: under the
    /// private directory, never in the shared /run/containerd/fifo.
    pub fn fifo_dir(&self) -> PathBuf {
        self.dir.join("fifo")
    }

    /// `ctr -a SOCK -n sibling-test ARGS...`
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_with_timeout(args, command_timeout())
    }

    /// Like [`ctr`](Self::ctr), panicking with the full output unless it succeeds; returns stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let result = CtrResult::from(self.ctr(args));
        assert_eq!(result.code, 0, "ctr {args:?} failed:\n{result}");
        result.stdout
    }

    /// The `ctr run` arguments for this runtime, up to and including the image and id.
    fn run_prefix(&self, mode: &str, id: &str) -> Vec<String> {
        self.run_prefix_with(mode, &[], id)
    }

    /// [`run_prefix`](Self::run_prefix) with more `ctr run` flags before the image.
    fn run_prefix_with(&self, mode: &str, flags: &[&str], id: &str) -> Vec<String> {
        let fifo_dir = self.fifo_dir().display().to_string();
        let mut args = vec!["run".to_string(), mode.to_string()];
        args.extend(flags.iter().map(|f| f.to_string()));
        args.extend([
            "--runtime".into(),
            self.runtime.clone(),
            "--fifo-dir".into(),
            fifo_dir,
        ]);
        if self.runtime == RUNC {
            // Keep runc's state under our directory too (ctr sends these as runc Options).
            args.extend([
                "--runc-root".into(),
                self.dir.join("runc").display().to_string(),
            ]);
        }
        args.extend([IMAGE.to_string(), id.to_string()]);
        args
    }

    /// `ctr run --rm --runtime RUNTIME IMAGE ID ARGS...`, everything it printed and its exit code.
    pub fn run_full(&self, id: &str, args: &[&str]) -> CtrResult {
        self.run_full_with(&[], id, args)
    }

    /// [`run_full`](Self::run_full) with more `ctr run` flags (e.g. `--seccomp`).
    pub fn run_full_with(&self, flags: &[&str], id: &str, args: &[&str]) -> CtrResult {
        let mut all = self.run_prefix_with("--rm", flags, id);
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.ctr(&all).into()
    }

    /// `ctr run --rm --config CONFIG --runtime RUNTIME ID`: the container is the spec in
    /// `config` as it is (ctr adds nothing to it, and uses no image or snapshot: the spec's
    /// `root.path` is the rootfs).
    pub fn run_config(&self, config: &Path, id: &str) -> CtrResult {
        self.run_config_mode("--rm", config, id)
    }

    /// `ctr run -d --config CONFIG --runtime RUNTIME ID`: creates and starts the task of the
    /// spec in `config` (as [`run_config`](Self::run_config)), then returns.
    pub fn run_config_detached(&self, config: &Path, id: &str) -> CtrResult {
        self.run_config_mode("-d", config, id)
    }

    fn run_config_mode(&self, mode: &str, config: &Path, id: &str) -> CtrResult {
        let mut all = self.run_prefix_with(mode, &["--config", &config.display().to_string()], id);
        // With --config, ctr takes the id alone: drop the image.
        all.retain(|a| a != IMAGE);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.ctr(&all).into()
    }

    /// `ctr run --rm ...`: (exit code, stdout). Anything on stderr is printed, so a failing test
    /// shows it.
    pub fn run(&self, id: &str, args: &[&str]) -> (i32, String) {
        let result = self.run_full(id, args);
        if !result.stderr.is_empty() {
            eprintln!("ctr run {id} stderr:\n{}", result.stderr);
        }
        (result.code, result.stdout)
    }

    /// `ctr run --rm ...` in the background, for tests that act on the task while it runs.
    pub fn spawn_run(&self, id: &str, args: &[&str]) -> BackgroundRun {
        let mut all = self.run_prefix("--rm", id);
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.spawn_ctr(&all)
    }

    /// `ctr run -d ...`: creates and starts the task, then returns.
    pub fn run_detached(&self, id: &str, args: &[&str]) {
        self.run_detached_with(&[], id, args);
    }

    /// [`run_detached`](Self::run_detached) with more `ctr run` flags (e.g. `--annotation`).
    pub fn run_detached_with(&self, flags: &[&str], id: &str, args: &[&str]) {
        let mut all = self.run_prefix_with("-d", flags, id);
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.ctr_ok(&all);
    }

    /// (pid, status) of a task, from `ctr task ls`.
    pub fn task(&self, id: &str) -> Option<(u32, String)> {
        let out = self.ctr_ok(&["task", "ls"]);
        out.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [task, pid, status, ..] if *task == id => {
                    Some((pid.parse().ok()?, status.to_string()))
                }
                _ => None,
            }
        })
    }

    /// Waits until `ctr task ls` shows the task with `status` (e.g. "RUNNING"); returns its pid.
    /// With `run`, the `ctr run` that should create the task: if it exits first, fail at once
    /// with what it printed instead of waiting out the timeout.
    pub fn wait_for_task(
        &self,
        id: &str,
        status: &str,
        mut run: Option<&mut BackgroundRun>,
    ) -> u32 {
        let deadline = Instant::now() + command_timeout();
        loop {
            let seen = self.task(id);
            if let Some((pid, s)) = &seen
                && s == status
            {
                return *pid;
            }
            if let Some(run) = run.as_deref_mut()
                && run.has_exited()
            {
                panic!(
                    "ctr run exited before task {id} was {status}:\n{}",
                    run.finish(POLL)
                );
            }
            assert!(
                Instant::now() < deadline,
                "task {id} never became {status} (last seen: {seen:?})\n{}",
                self.log_tail()
            );
            thread::sleep(POLL);
        }
    }

    /// Stops and removes a task and its container (for tests that used `run -d`).
    pub fn remove_container(&self, id: &str) {
        let timeout = CLEANUP_TIMEOUT;
        let _ = self.ctr_with_timeout(&["task", "kill", "-a", "-s", "SIGKILL", id], timeout);
        let _ = self.ctr_with_timeout(&["task", "rm", "-f", id], timeout);
        let _ = self.ctr_with_timeout(&["container", "rm", id], timeout);
    }

    /// Container ids containerd still knows in our namespace.
    pub fn container_ids(&self) -> Vec<String> {
        self.ctr_ok(&["container", "ls", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Pids of running shims started by this containerd.
    pub fn shim_pids(&self) -> Vec<u32> {
        shims_of(&self.address())
    }

    /// Leak check for this containerd: see [`assert_no_leaks`].
    pub fn assert_no_leaks<S: AsRef<str>>(&self, ids: &[S]) {
        assert_no_leaks(&self.dir, ids);
    }

    /// Leaks of this containerd's containers `ids`: see [`leaks_after_grace`].
    pub fn leaks<S: AsRef<str>>(&self, ids: &[S]) -> Vec<String> {
        leaks_after_grace(&self.dir, ids)
    }

    fn remove_leftover_tasks(&mut self) {
        let Some(child) = self.containerd.as_mut() else {
            return;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return; // containerd is gone: nobody to ask
        }
        let pid = child.id();
        let timeout = CLEANUP_TIMEOUT;
        let tasks = self.ctr_with_timeout(&["task", "ls", "-q"], timeout);
        let containers = self.ctr_with_timeout(&["container", "ls", "-q"], timeout);
        let ids = |out: &Output| -> Vec<String> {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        };
        let mut all = ids(&tasks);
        all.extend(ids(&containers));
        all.sort();
        all.dedup();
        for id in all {
            eprintln!("cleanup: containerd {pid} still had container {id}");
            self.remove_container(&id);
        }
    }

    fn stop_containerd(&mut self) {
        let Some(mut child) = self.containerd.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        // SIGTERM lets containerd close its sockets and databases; SIGKILL if it will not.
        let _ = kill(pid, Signal::SIGTERM);
        if wait_until(&mut child, Instant::now() + CLEANUP_TIMEOUT).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills shims that outlived containerd (it could not shut them down), with their
    /// containers, and removes what they would have removed: their socket and the containers'
    /// cgroups. Everything is found from the shim's own argv (`-namespace NS -id ID`).
    fn kill_leftover_shims(&self) {
        let address = self.address().display().to_string();
        for shim in self.shim_pids() {
            let argv = cmdline(shim);
            // Killing an earlier shim's children may already have ended this one (a spawner);
            // check it is still ours before signalling the pid.
            if !argv
                .windows(2)
                .any(|w| w[0] == "-address" && w[1] == address)
            {
                continue;
            }
            let flag = |name: &str| argv.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
            let socket = shim_socket_of(shim);
            // A sibling daemon (its socket is in argv) stops its containers and gives up its
            // shared slot on SIGTERM: let it clean up after itself first.
            if flag("-socket").is_some() {
                eprintln!("cleanup: stopping leftover shim {shim} {argv:?}");
                let _ = kill(Pid::from_raw(shim as i32), Signal::SIGTERM);
                if wait_gone(shim, CLEANUP_TIMEOUT) {
                    continue;
                }
            }
            eprintln!("cleanup: killing leftover shim {shim} {argv:?}");
            // A shim's children are its containers' inits (and sibling's spawner). Killing a
            // PID namespace's init kills the whole namespace; the still-living shim reaps them.
            let children = children_of(shim);
            for &child in &children {
                let _ = kill(Pid::from_raw(child as i32), Signal::SIGKILL);
            }
            for &child in &children {
                wait_gone(child, CLEANUP_TIMEOUT);
            }
            let _ = kill(Pid::from_raw(shim as i32), Signal::SIGKILL);
            wait_gone(shim, CLEANUP_TIMEOUT);
            // The shim died before it could remove its own socket. This exact name is ours.
            if let Some(socket) = socket {
                let _ = fs::remove_file(socket);
            }
            if let (Some(ns), Some(id)) = (flag("-namespace"), flag("-id")) {
                remove_container_cgroups(&ns, &id);
            }
        }
    }
}

/// Removes `/<ns>/<id>` (where `ctr run` puts a container) from every cgroup hierarchy. rmdir
/// only succeeds on a cgroup with no processes and no children, so nothing live is lost.
fn remove_container_cgroups(ns: &str, id: &str) {
    for hierarchy in cgroup_mount_points() {
        let dir = hierarchy.join(ns).join(id);
        if dir.is_dir()
            && let Err(e) = fs::remove_dir(&dir)
        {
            eprintln!("cleanup: cannot remove cgroup {}: {e}", dir.display());
        }
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        // Order matters: tasks go while containerd can still drive their shims; shims that
        // outlive containerd are killed next; then nothing holds the mounts under `dir`.
        self.remove_leftover_tasks();
        self.stop_containerd();
        self.kill_leftover_shims();
        remove_private_dir(&self.dir);
    }
}

/// Unmounts everything at or under `dir`, then removes it; never removes a directory that
/// still has something mounted in it (that would delete files of the mounted filesystem).
fn remove_private_dir(dir: &Path) {
    if let Err(left) = unmount_under(dir) {
        eprintln!(
            "cleanup: still mounted under {}, not removing it: {left:?}",
            dir.display()
        );
        return;
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        eprintln!("cleanup: cannot remove {}: {e}", dir.display());
    }
}

// ---------------------------------------------------------------------------------------------
// A test bundle (for protocol tests that play containerd's role)

/// A copy of `test-bundles/NAME` in a fresh temporary directory, with a rootfs beside it and
/// `linux.cgroupsPath` set to `/sibling-test/<id>`. Removed (after unmounting anything left
/// under it) on drop.
pub struct TestBundle {
    pub dir: PathBuf,
}

impl TestBundle {
    pub fn new(name: &str, id: &str) -> Self {
        let bundle = Self {
            dir: unique_temp_dir("sibling-bundle"),
        };
        let source = repo_dir()
            .join("test-bundles")
            .join(name)
            .join("config.json");
        let text = fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
        fs::write(bundle.config_path(), &text).expect("write config.json");
        // The malformed bundle stays malformed; every other one gets this test's cgroup.
        if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
            bundle.edit_config(|spec| {
                spec["linux"]["cgroupsPath"] = format!("/{NAMESPACE}/{id}").into();
            });
        }
        let status = Command::new("cp")
            .arg("-a")
            .arg(rootfs_dir())
            .arg(bundle.dir.join("rootfs"))
            .status()
            .expect("run cp");
        assert!(status.success(), "copying the rootfs failed: {status}");
        bundle
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Rewrites config.json through `edit`.
    pub fn edit_config(&self, edit: impl FnOnce(&mut serde_json::Value)) {
        let text = fs::read_to_string(self.config_path()).expect("read config.json");
        let mut spec: serde_json::Value = serde_json::from_str(&text).expect("config.json is JSON");
        edit(&mut spec);
        let text = serde_json::to_string_pretty(&spec).expect("serialize config.json");
        fs::write(self.config_path(), text).expect("write config.json");
    }

    /// Sets `process.args`.
    pub fn set_args(&self, args: &[&str]) {
        self.edit_config(|spec| spec["process"]["args"] = args.into());
    }
}

impl Drop for TestBundle {
    fn drop(&mut self) {
        remove_private_dir(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// /proc helpers

fn proc_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// argv of a process; empty for kernel threads and processes that are gone.
pub fn cmdline(pid: u32) -> Vec<String> {
    let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    raw.split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The value of `Key:` in /proc/PID/status.
pub fn proc_status_field(pid: u32, key: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// (state, ppid) from /proc/PID/stat. The comm field may hold spaces and parentheses, so the
/// fields are counted from the last ')'.
fn stat_state_ppid(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Pids whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    proc_pids()
        .into_iter()
        .filter(|&pid| stat_state_ppid(pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

/// Children of `parent` that are zombies (exited, never reaped).
pub fn zombie_children_of(parent: u32) -> Vec<u32> {
    proc_pids()
        .into_iter()
        .filter(|&pid| stat_state_ppid(pid).is_some_and(|(s, ppid)| ppid == parent && s == 'Z'))
        .collect()
}

/// Pids of shims started by the containerd at `address`: their argv has `-address ADDRESS`.
/// (`ctr` says `-a`, containerd says `--config`: neither matches.)
pub fn shims_of(address: &Path) -> Vec<u32> {
    let address = address.display().to_string();
    proc_pids()
        .into_iter()
        .filter(|&pid| {
            cmdline(pid)
                .windows(2)
                .any(|w| w[0] == "-address" && w[1] == address)
        })
        .collect()
}

/// The socket a shim of this containerd listens on:
/// `/run/containerd/s/<sha256("<address>/<namespace>/<id>")>` (containerd's shim
/// SocketAddress; the Rust shim crate follows it).
pub fn shim_socket_path(address: &Path, namespace: &str, id: &str) -> Option<PathBuf> {
    let key = format!("{}/{namespace}/{id}", address.display());
    sha256_hex(key.as_bytes()).map(|hex| Path::new(SHIM_SOCKET_DIR).join(hex))
}

fn shim_socket_of(pid: u32) -> Option<PathBuf> {
    let argv = cmdline(pid);
    let value = |flag: &str| argv.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
    // A daemon has its socket in argv; an older shim (runc.v2) only its id.
    if let Some(socket) = value("-socket") {
        return Some(PathBuf::from(socket.trim_start_matches("unix://")));
    }
    shim_socket_path(
        Path::new(&value("-address")?),
        &value("-namespace")?,
        &value("-id")?,
    )
}

/// sha256 in hex through coreutils' sha256sum (no hashing crate among the dependencies).
fn sha256_hex(data: &[u8]) -> Option<String> {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(data).ok()?;
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace().next().map(str::to_string)
}

/// Waits until `pid` has exited. A zombie counts as exited: reaping an orphan is its new
/// parent's business (here often a slow PID 1), not something a test can hurry.
fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while stat_state_ppid(pid).is_some_and(|(state, _)| state != 'Z') {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Mounts

/// One /proc/self/mountinfo line, unescaped.
struct MountInfo {
    mount_point: String,
    line: String,
    fstype: String,
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts() -> Vec<MountInfo> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountInfo {
                mount_point: unescape_octal(fields.get(4)?),
                fstype: fields.get(sep + 1)?.to_string(),
                line: unescape_octal(line),
            })
        })
        .collect()
}

fn is_at_or_under(path: &str, dir: &Path) -> bool {
    Path::new(path).starts_with(dir)
}

/// Unmounts everything at or under `dir`, deepest first (detaching what is busy).
/// Err lists what stayed mounted.
pub fn unmount_under(dir: &Path) -> Result<(), Vec<String>> {
    for _ in 0..5 {
        let mut points: Vec<String> = mounts()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| is_at_or_under(p, dir))
            .collect();
        if points.is_empty() {
            return Ok(());
        }
        // Deeper paths sort after their parents: reverse order unmounts children first.
        points.sort();
        for point in points.iter().rev() {
            if umount2(point.as_str(), MntFlags::empty()).is_err() {
                let _ = umount2(point.as_str(), MntFlags::MNT_DETACH);
            }
        }
    }
    let left: Vec<String> = mounts()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| is_at_or_under(p, dir))
        .collect();
    if left.is_empty() { Ok(()) } else { Err(left) }
}

// ---------------------------------------------------------------------------------------------
// Leak checks

/// True if `id` appears as a whole path component (or option value) in `text`: "run-1-1" must
/// not match "run-1-10".
fn mentions_id(text: &str, id: &str) -> bool {
    text.split(|c: char| c == '/' || c == ',' || c == '=' || c == ':' || c.is_whitespace())
        .any(|token| token == id)
}

/// True if a path in `text` is `dir` or under it ("/tmp/x-1" must not match "/tmp/x-10").
fn mentions_dir(text: &str, dir: &Path) -> bool {
    text.split(|c: char| c == ',' || c == '=' || c == ':' || c.is_whitespace())
        .any(|token| token.starts_with('/') && is_at_or_under(token, dir))
}

fn mount_leaks(dir: &Path, ids: &[&str]) -> Vec<String> {
    mounts()
        .into_iter()
        .filter(|m| mentions_dir(&m.line, dir) || ids.iter().any(|id| mentions_id(&m.line, id)))
        .map(|m| format!("mount: {}", m.line))
        .collect()
}

/// Mount points of cgroup hierarchies, from mountinfo: on these machines /sys/fs/cgroup is a
/// writable tmpfs, so a directory there proves nothing by itself.
pub fn cgroup_mount_points() -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.mount_point))
        .collect()
}

fn cgroup_leaks(ids: &[&str]) -> Vec<String> {
    let mut leaks = Vec::new();
    for hierarchy in cgroup_mount_points() {
        for id in ids {
            // `ctr run` asks for /<namespace>/<id>; a runtime that ignored it might use /<id>.
            for dir in [hierarchy.join(NAMESPACE).join(id), hierarchy.join(id)] {
                if dir.is_dir() {
                    leaks.push(format!("cgroup: {}", dir.display()));
                }
            }
        }
    }
    leaks
}

fn process_leaks(address: &Path) -> Vec<String> {
    shims_of(address)
        .into_iter()
        .map(|pid| {
            format!(
                "process {pid} names {}: {:?}",
                address.display(),
                cmdline(pid)
            )
        })
        .collect()
}

/// Sockets named after the containers (their own daemons, pod shims, runc.v2), and shared-shim
/// slots that still count one of them as a member (see src/shim/shared.rs).
fn socket_leaks(address: &Path, ids: &[&str]) -> Vec<String> {
    let mut leaks: Vec<String> = ids
        .iter()
        .filter_map(|id| shim_socket_path(address, NAMESPACE, id))
        .filter(|socket| socket.exists())
        .map(|socket| format!("shim socket: {}", socket.display()))
        .collect();
    let slots = std::fs::read_dir(SHARED_SLOT_ROOT)
        .into_iter()
        .flatten()
        .flatten();
    for slot in slots {
        for id in ids {
            let member = slot.path().join("members").join(id);
            if member.exists() {
                leaks.push(format!("shared shim slot member: {}", member.display()));
            }
        }
    }
    leaks
}

fn zombie_leaks() -> Vec<String> {
    zombie_children_of(std::process::id())
        .into_iter()
        .map(|pid| format!("zombie child of the test: {pid} {:?}", cmdline(pid)))
        .collect()
}

/// Everything `ids` (containers of the private containerd in `dir`) left behind right now.
pub fn find_leaks<S: AsRef<str>>(dir: &Path, ids: &[S]) -> Vec<String> {
    let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    let address = dir.join("c.sock");
    let mut leaks = mount_leaks(dir, &ids);
    leaks.extend(cgroup_leaks(&ids));
    leaks.extend(process_leaks(&address));
    leaks.extend(socket_leaks(&address, &ids));
    leaks.extend(zombie_leaks());
    leaks
}

/// What `ids` still leave behind after teardown had [`LEAK_GRACE`] to finish: teardown is
/// asynchronous (a shim exits after `ctr run --rm` returned), so this retries until the list is
/// empty or the grace time is over.
pub fn leaks_after_grace<S: AsRef<str>>(dir: &Path, ids: &[S]) -> Vec<String> {
    let deadline = Instant::now() + LEAK_GRACE;
    loop {
        let leaks = find_leaks(dir, ids);
        if leaks.is_empty() || Instant::now() >= deadline {
            return leaks;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that the containers `ids` of the private containerd in `dir` left nothing behind:
/// no mount mentioning `dir` or an id, no cgroup directory named after an id, no process (shim,
/// or the spawner forked from it) naming the containerd address, no shim socket, no zombie child
/// of the test. Waits [`LEAK_GRACE`] for asynchronous teardown first.
pub fn assert_no_leaks<S: AsRef<str>>(dir: &Path, ids: &[S]) {
    let leaks = leaks_after_grace(dir, ids);
    assert!(
        leaks.is_empty(),
        "leaked after {LEAK_GRACE:?}:\n  {}",
        leaks.join("\n  ")
    );
}

pub fn ppid(pid: u32) -> Option<u32> {
    proc_status_field(pid, "PPid")?.parse().ok()
}

/// Waits until `pid` is reaped (no /proc entry, not even a zombie): its parent, the shim,
/// collected the exit.
pub fn assert_reaped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "pid {pid} not reaped after 10s: state {:?}, parent {:?}",
            proc_status_field(pid, "State"),
            ppid(pid)
        );
        thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_binary_name_follows_containerd() {
        assert_eq!(shim_binary_name(RUNC), "containerd-shim-runc-v2");
        assert_eq!(shim_binary_name(SIBLING), "containerd-shim-sibling-v2");
    }

    #[test]
    fn mountinfo_unescapes_octal() {
        assert_eq!(unescape_octal(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape_octal(r"/plain\"), r"/plain\");
    }

    #[test]
    fn ids_match_whole_components_only() {
        assert!(mentions_id(
            "/sys/fs/cgroup/cpu/sibling-test/run-1-1",
            "run-1-1"
        ));
        assert!(!mentions_id(
            "/sys/fs/cgroup/cpu/sibling-test/run-1-10",
            "run-1-1"
        ));
        assert!(mentions_id(
            "overlay rw,lowerdir=/x/run-1-1/rootfs",
            "run-1-1"
        ));
        let dir = Path::new("/tmp/x-1");
        assert!(mentions_dir(
            "44 27 0:39 / /tmp/x-1/state/rootfs rw - overlay",
            dir
        ));
        assert!(mentions_dir(
            "overlay rw,lowerdir=/a:/tmp/x-1/root/1/fs",
            dir
        ));
        assert!(!mentions_dir(
            "44 27 0:39 / /tmp/x-10/state rw - overlay",
            dir
        ));
    }

    #[test]
    fn containerd_versions_parse() {
        let debian = "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1\n";
        assert_eq!(parse_containerd_version(debian), Some((1, 6)));
        let v2 = "containerd github.com/containerd/containerd/v2 2.1.9+unknown \n";
        assert_eq!(parse_containerd_version(v2), Some((2, 1)));
        assert_eq!(parse_containerd_version("containerd"), None);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }
}
