//! Plays containerd's part for protocol tests: runs the shim's real `start` action, calls Task
//! RPCs over ttrpc, and hosts a ttrpc Events service that records everything the shim publishes.
//!
//! Every test gets its own temporary directory holding the fake containerd address (so the
//! shim's socket name is unique), the events socket, bundles and overlay directories; `Drop`
//! shuts the shim down, kills what is left by pid and removes the directory.

#![allow(dead_code)]

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{CreateTaskRequest, Empty, ForwardRequest};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskStart,
};
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc::{self, Client, Server, context};
use containerd_shim_protos::types::mount::Mount;
use containerd_shim_protos::{Events, TaskClient, create_events};

pub const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-sibling-v2");
pub const NAMESPACE: &str = "sibling-proto";

/// No extra environment: the default, a daemon per container that exits with it.
pub const DEDICATED_SHIM: [(&str, &str); 0] = [];

/// The runtime options containerd writes to `start`'s stdin (a marshalled `Any`) for a runtime
/// configured with this shim's `sibling.v1.Options`.
pub fn shim_options(options: &containerd_shim_sibling_v2::protos::options::Options) -> Vec<u8> {
    let any = containerd_shim_protos::protobuf::well_known_types::any::Any {
        type_url: "type.googleapis.com/sibling.v1.Options".into(),
        value: options.write_to_bytes().expect("encode options"),
        ..Default::default()
    };
    any.write_to_bytes().expect("encode Any")
}

/// Options that turn sharing on: `per_shim` containers per daemon, `idle` seconds of idle time
/// (0: the default, 10 s).
pub fn sharing(per_shim: u32, idle: u32) -> Vec<u8> {
    shim_options(&containerd_shim_sibling_v2::protos::options::Options {
        containers_per_shim: per_shim,
        idle_seconds: idle,
        ..Default::default()
    })
}

/// Root and the tools the protocol tests need; outside CI a missing piece skips the test with a
/// message, in CI it fails it.
pub fn require_root() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let root = nix::unistd::geteuid().is_root();
    let rootfs = rootfs_source().is_some();
    if root && rootfs {
        return true;
    }
    let why = format!(
        "protocol tests need root (have: {root}) and SIBLING_ROOTFS pointing at a busybox rootfs \
         built by `make rootfs` (have: {rootfs})"
    );
    assert!(!ci, "{why}");
    eprintln!("SKIP: {why}");
    false
}

fn rootfs_source() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("SIBLING_ROOTFS")?);
    dir.join("bin/busybox").exists().then_some(dir)
}

/// One recorded event: its topic and the decoded fields tests look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub topic: String,
    pub container_id: String,
    pub pid: u32,
    pub exit_status: Option<u32>,
    /// TaskExit's `id` (exec id, or the container id for the init), or the exec id of the
    /// exec events.
    pub id: String,
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Recorded>>,
    arrived: Condvar,
}

impl Events for Recorder {
    fn forward(&self, _: &ttrpc::TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        let envelope = req.envelope.into_option().unwrap_or_default();
        let any = envelope.event.into_option().unwrap_or_default();
        let mut recorded = Recorded {
            topic: envelope.topic.clone(),
            container_id: String::new(),
            pid: 0,
            exit_status: None,
            id: String::new(),
        };
        match envelope.topic.as_str() {
            "/tasks/create" => {
                let e = TaskCreate::parse_from_bytes(&any.value).unwrap_or_default();
                (recorded.container_id, recorded.pid) = (e.container_id, e.pid);
            }
            "/tasks/start" => {
                let e = TaskStart::parse_from_bytes(&any.value).unwrap_or_default();
                (recorded.container_id, recorded.pid) = (e.container_id, e.pid);
            }
            "/tasks/exit" => {
                let e = TaskExit::parse_from_bytes(&any.value).unwrap_or_default();
                (recorded.container_id, recorded.pid) = (e.container_id, e.pid);
                recorded.exit_status = Some(e.exit_status);
                recorded.id = e.id;
            }
            "/tasks/paused" | "/tasks/resumed" | "/tasks/oom" | "/tasks/checkpointed" => {
                // All four carry the container id as field 1.
                let e = TaskOOM::parse_from_bytes(&any.value).unwrap_or_default();
                recorded.container_id = e.container_id;
            }
            "/tasks/exec-added" => {
                let e = TaskExecAdded::parse_from_bytes(&any.value).unwrap_or_default();
                (recorded.container_id, recorded.id) = (e.container_id, e.exec_id);
            }
            "/tasks/exec-started" => {
                let e = TaskExecStarted::parse_from_bytes(&any.value).unwrap_or_default();
                (recorded.container_id, recorded.pid) = (e.container_id, e.pid);
                recorded.id = e.exec_id;
            }
            "/tasks/delete" => {
                let e = TaskDelete::parse_from_bytes(&any.value).unwrap_or_default();
                (recorded.container_id, recorded.pid) = (e.container_id, e.pid);
                recorded.exit_status = Some(e.exit_status);
            }
            _ => {}
        }
        self.events.lock().unwrap().push(recorded);
        self.arrived.notify_all();
        Ok(Empty::new())
    }
}

/// A fake containerd for one test.
pub struct FakeContainerd {
    pub dir: PathBuf,
    recorder: Arc<Recorder>,
    server: Option<Server>,
    shims: Mutex<Vec<u32>>,
}

impl FakeContainerd {
    pub fn new(name: &str) -> FakeContainerd {
        let dir = std::env::temp_dir().join(format!("sibling-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let recorder = Arc::new(Recorder::default());
        let events_socket = format!("unix://{}", dir.join("events.sock").display());
        let mut server = Server::new()
            .bind(&events_socket)
            .unwrap()
            .register_service(create_events(recorder.clone()));
        server.start().unwrap();
        FakeContainerd {
            dir,
            recorder,
            server: Some(server),
            shims: Mutex::new(Vec::new()),
        }
    }

    /// The containerd address the shim is told (only hashed into its socket name).
    pub fn address(&self) -> String {
        self.dir.join("containerd.sock").display().to_string()
    }

    /// A bundle for `id`: config.json from `test-bundles/<template>` with `args`, the cgroup
    /// path moved under this test, and an empty `rootfs` directory to mount onto.
    pub fn bundle(&self, id: &str, template: &str, args: &[&str]) -> PathBuf {
        let mut spec = load_template(template);
        if !args.is_empty() {
            spec["process"]["args"] = serde_json::json!(args);
        }
        spec["linux"]["cgroupsPath"] = serde_json::json!(self.cgroup_path(id));
        self.bundle_with_spec(id, &spec)
    }

    pub fn cgroup_path(&self, id: &str) -> String {
        format!("/sibling-proto-{}/{id}", std::process::id())
    }

    pub fn bundle_with_spec(&self, id: &str, spec: &serde_json::Value) -> PathBuf {
        let bundle = self.dir.join("bundles").join(id);
        fs::create_dir_all(bundle.join("rootfs")).unwrap();
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(spec).unwrap(),
        )
        .unwrap();
        bundle
    }

    /// Overlay mounts like containerd's overlayfs snapshotter gives (busybox rootfs below).
    pub fn rootfs_mounts(&self, id: &str) -> Vec<Mount> {
        let upper = self.dir.join("snapshots").join(id).join("upper");
        let work = self.dir.join("snapshots").join(id).join("work");
        fs::create_dir_all(&upper).unwrap();
        fs::create_dir_all(&work).unwrap();
        let lower = rootfs_source().expect("SIBLING_ROOTFS");
        vec![Mount {
            type_: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("workdir={}", work.display()),
                format!("upperdir={}", upper.display()),
                format!("lowerdir={}", lower.display()),
            ],
            ..Default::default()
        }]
    }

    /// Runs the shim's `start` action in `bundle` and connects to the address it prints. Each
    /// container gets a daemon of its own that exits with its last container, as the tests of
    /// one daemon's behaviour expect; [`Self::start_shim_with`] sets the sharing knobs.
    pub fn start_shim(&self, id: &str, bundle: &Path) -> Shim {
        self.start_shim_with(id, bundle, &DEDICATED_SHIM)
    }

    /// [`Self::start_shim`] with environment variables for `start` (and the daemon it spawns).
    pub fn start_shim_with(&self, id: &str, bundle: &Path, env: &[(&str, &str)]) -> Shim {
        self.start_shim_options(id, bundle, env, &[])
    }

    /// [`Self::start_shim_with`] with `options` on `start`'s stdin, as containerd writes a
    /// runtime's options there (see [`shim_options`]).
    pub fn start_shim_options(
        &self,
        id: &str,
        bundle: &Path,
        env: &[(&str, &str)],
        options: &[u8],
    ) -> Shim {
        let out = self.run_start(id, bundle, env, options);
        let address = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "start failed: {address} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "start wrote to stderr: {:?}",
            out.stderr
        );
        assert!(
            address.starts_with("unix://"),
            "not an address: {address:?}"
        );
        let client = Client::connect(&address).expect("connect to shim");
        let shim = Shim {
            id: id.to_owned(),
            address,
            task: TaskClient::new(client),
        };
        let pid = shim.shim_pid();
        self.shims.lock().unwrap().push(pid);
        shim
    }

    /// Runs the shim's `delete` action for `id` in `bundle`, as containerd does after a daemon
    /// died, and asserts it succeeded.
    pub fn run_delete_action(&self, id: &str, bundle: &Path) -> std::process::Output {
        let out = Command::new(SHIM)
            .args([
                "-namespace",
                NAMESPACE,
                "-id",
                id,
                "-address",
                &self.address(),
            ])
            .arg("delete")
            .current_dir(bundle)
            .output()
            .expect("run delete");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `start` with `options` on its stdin and returns what it did.
    pub fn run_start(
        &self,
        id: &str,
        bundle: &Path,
        env: &[(&str, &str)],
        options: &[u8],
    ) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(SHIM)
            .envs(env.iter().copied())
            .args([
                "-namespace",
                NAMESPACE,
                "-id",
                id,
                "-address",
                &self.address(),
            ])
            .arg("start")
            .current_dir(bundle)
            .env(
                "TTRPC_ADDRESS",
                self.dir.join("events.sock").display().to_string(),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run shim start");
        let mut stdin = child.stdin.take().expect("start's stdin");
        stdin.write_all(options).expect("write options");
        drop(stdin);
        child.wait_with_output().expect("wait for shim start")
    }

    /// Events recorded so far.
    pub fn events(&self) -> Vec<Recorded> {
        self.recorder.events.lock().unwrap().clone()
    }

    /// Events for one container, once `count` of them arrived (or after 10 s: then the test's
    /// own assertion shows what was missing).
    pub fn events_for(&self, id: &str, count: usize) -> Vec<Recorded> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut events = self.recorder.events.lock().unwrap();
        loop {
            let mine: Vec<Recorded> = events
                .iter()
                .filter(|e| e.container_id == id)
                .cloned()
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            if mine.len() >= count || left.is_zero() {
                return mine;
            }
            events = self.recorder.arrived.wait_timeout(events, left).unwrap().0;
        }
    }

    /// Create request for `id` with the overlay rootfs and stdio paths.
    pub fn create_request(&self, id: &str, bundle: &Path, stdout: &str) -> CreateTaskRequest {
        CreateTaskRequest {
            id: id.into(),
            bundle: bundle.display().to_string(),
            rootfs: self.rootfs_mounts(id),
            stdout: stdout.into(),
            ..Default::default()
        }
    }

    /// Exec request for `args`, with the container template's process otherwise.
    pub fn exec_request(
        &self,
        id: &str,
        exec_id: &str,
        args: &[&str],
        stdout: &str,
    ) -> containerd_shim_protos::api::ExecProcessRequest {
        let mut process = load_template("echo")["process"].clone();
        process["args"] = serde_json::json!(args);
        let spec = containerd_shim_protos::protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: serde_json::to_vec(&process).unwrap(),
            ..Default::default()
        };
        containerd_shim_protos::api::ExecProcessRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            stdout: stdout.into(),
            spec: Some(spec).into(),
            ..Default::default()
        }
    }

    /// A FIFO in the test dir and a thread that sends each line it reads.
    pub fn output_lines(&self, name: &str) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::BufRead;
        let path = self.dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader_path = path.clone();
        std::thread::spawn(move || {
            let Ok(file) = fs::File::open(reader_path) else {
                return;
            };
            for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        (path.display().to_string(), rx)
    }

    /// A FIFO in the test dir and a thread that reads it to end-of-file.
    pub fn output_fifo(&self, name: &str) -> (String, std::thread::JoinHandle<String>) {
        let path = self.dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let reader_path = path.clone();
        let reader =
            std::thread::spawn(move || fs::read_to_string(reader_path).unwrap_or_default());
        (path.display().to_string(), reader)
    }
}

impl Drop for FakeContainerd {
    fn drop(&mut self) {
        for pid in self.shims.lock().unwrap().drain(..) {
            // Our own shims, by the pid they reported: stop them if a test left them running.
            if let Some(pidfd) = pidfd_open(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                wait_pidfd(&pidfd, Duration::from_secs(5));
            }
        }
        // What containerd does for a shim that died: the `delete` action in every bundle, which
        // kills what is left, removes cgroups and unmounts rootfs. Harmless after a clean run.
        if let Ok(bundles) = fs::read_dir(self.dir.join("bundles")) {
            for bundle in bundles.flatten() {
                let id = bundle.file_name().to_string_lossy().into_owned();
                let _ = Command::new(SHIM)
                    .args([
                        "-namespace",
                        NAMESPACE,
                        "-id",
                        &id,
                        "-address",
                        &self.address(),
                    ])
                    .arg("delete")
                    .current_dir(bundle.path())
                    .output();
            }
        }
        for dir in cgroup_dirs(&self.cgroup_path("")) {
            let _ = fs::remove_dir(dir);
        }
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn load_template(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test-bundles")
        .join(name)
        .join("config.json");
    serde_json::from_slice(&fs::read(&path).unwrap()).unwrap()
}

/// A connected shim.
pub struct Shim {
    /// The container `start` was run for (containerd names it in Shutdown).
    pub id: String,
    pub address: String,
    pub task: TaskClient,
}

/// Every shim client this test process made, kept until it exits. ttrpc 0.9's sync client
/// closes its socket when dropped, while its receiver thread, between its readiness poll and
/// its read, holds the bare fd number without a reference: an fd another test's thread opens
/// meanwhile gets that number (the lowest free one), and the stale thread reads from it. An
/// output FIFO's read end opened so lost what the stale thread swallowed (seen in full runs,
/// two tests at a time: a terminal exec's output cut after its first line), and another
/// client's socket would lose a reply. Kept clients never free their numbers.
static KEPT_CLIENTS: Mutex<Vec<TaskClient>> = Mutex::new(Vec::new());

impl Drop for Shim {
    fn drop(&mut self) {
        if let Ok(mut kept) = KEPT_CLIENTS.lock() {
            kept.push(self.task.clone());
        }
    }
}

pub fn ctx() -> context::Context {
    context::with_timeout(Duration::from_secs(30).as_nanos() as i64)
}

impl Shim {
    pub fn shim_pid(&self) -> u32 {
        let req = containerd_shim_protos::api::ConnectRequest::default();
        self.task
            .connect(ctx(), &req)
            .expect("connect rpc")
            .shim_pid
    }

    /// Shutdown, then waits (through a pidfd, no polling) until the daemon is gone.
    pub fn shutdown_and_wait(&self) {
        let pid = self.shim_pid();
        let pidfd = pidfd_open(pid).expect("shim pidfd");
        let req = containerd_shim_protos::api::ShutdownRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        let _ = self.task.shutdown(ctx(), &req);
        assert!(
            wait_pidfd(&pidfd, Duration::from_secs(10)),
            "shim {pid} did not exit after Shutdown"
        );
    }
}

pub fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; the returned descriptor is owned by us.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as i32, 0) };
    // SAFETY: a non-negative return is a new descriptor nobody else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the process behind `pidfd` exits; false on timeout.
pub fn wait_pidfd(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut pfd = nix::libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: nix::libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { nix::libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    n == 1
}

/// Pids whose parent is `parent`, from /proc.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if status_field(pid, "PPid").as_deref() == Some(&parent.to_string()) {
            children.push(pid);
        }
    }
    children
}

/// A field of /proc/<pid>/status.
pub fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
}

/// Mount points under `dir` (leak check).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

/// Cgroup directories named `path` in any v1/v2 hierarchy (leak check).
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for line in fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-").unwrap_or(0);
        let fstype = fields.get(sep + 1).copied().unwrap_or("");
        if fstype == "cgroup" || fstype == "cgroup2" {
            let dir = Path::new(fields[4]).join(path.trim_start_matches('/'));
            if dir.exists() {
                found.push(dir);
            }
        }
    }
    found
}
