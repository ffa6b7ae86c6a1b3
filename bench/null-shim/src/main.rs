//! `containerd-shim-null-v2` (runtime `io.containerd.null.v2`): a shim that makes no container.
//!
//! `make bench` registers it beside sibling and runc.v2 and runs it through the same lifecycle;
//! its time is containerd's own cost (the bundle, the snapshot's mounts, metadata, events, the
//! `start` exec of a shim and its ttrpc connection), which no runtime can go below. It behaves
//! like a real shim where containerd can tell:
//! - `start` binds a socket, starts the daemon (this binary again, re-executed, in a process
//!   group of its own, the listener as its stdin), prints the address and exits;
//! - `delete` prints a DeleteResponse (exit 137) and removes a socket left behind;
//! - the daemon answers the Task API at once: Create, Start, Wait (returns exit 0 as soon as
//!   the task has started), State, Kill, Delete, Exec, Connect, Shutdown, and publishes
//!   TaskCreate, TaskStart, TaskExit, TaskDelete, TaskExecAdded and TaskExecStarted to
//!   containerd's TTRPC_ADDRESS, in contract order, from one publisher thread (as sibling does,
//!   so no request waits for containerd to take an event), each encoded without protobuf
//!   reflection (as sibling does: reflection builds every descriptor of the proto files);
//! - a task whose config.json runs `/bin/sleep` (the benchmark's long-running containers) runs
//!   until it is killed (exit 137); any other exits with 0 as soon as it started; an exec
//!   exits with 0 as soon as it started.
//!
//! It is built with the ttrpc server and protocol crates sibling uses (containerd-shim-protos,
//! the same versions), so the floor includes what any shim on that stack pays to answer.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::fd::{AsFd, IntoRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

// sibling's ttrpc server (src/shim/server.rs), compiled into this binary too: the floor is then
// what a shim serving the Task API with it pays.
#[path = "../../../src/shim/server.rs"]
mod server;

use containerd_shim_protos::api::{
    ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
    DeleteResponse, Empty, ExecProcessRequest, KillRequest, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, Status, WaitRequest, WaitResponse,
};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_sync::{EventsClient, Task, create_task};
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc::{self, Code, TtrpcContext, context};

/// What containerd passes: `-name value` flags, `-debug`, `-v`, and the action last.
#[derive(Default)]
struct Flags {
    values: HashMap<String, String>,
    action: String,
    version: bool,
}

impl Flags {
    fn parse() -> Flags {
        let mut flags = Flags::default();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
                Some("v" | "version") => flags.version = true,
                Some("debug") => {}
                Some(name) => {
                    let (name, value) = match name.split_once('=') {
                        Some((n, v)) => (n.to_string(), v.to_string()),
                        None => (name.to_string(), args.next().unwrap_or_default()),
                    };
                    flags.values.insert(name, value);
                }
                None => flags.action = arg,
            }
        }
        flags
    }

    fn get(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    /// The socket of this container's null shim, named like containerd-shim's: after the
    /// containerd address, the namespace and the id, in the directory shims share.
    fn socket_path(&self) -> String {
        let mut hasher = DefaultHasher::new();
        (self.get("address"), self.get("namespace"), self.get("id")).hash(&mut hasher);
        format!("/run/containerd/s/null-{:016x}", hasher.finish())
    }
}

#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() {
    let flags = Flags::parse();
    if flags.version {
        println!(
            "containerd-shim-null-v2:\n  Version:  {}",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    let result = match flags.action.as_str() {
        "start" => start(&flags),
        "delete" => delete(&flags),
        "" => serve(&flags),
        other => Err(format!("unknown action {other:?}")),
    };
    if let Err(e) = result {
        eprint!("containerd-shim-null-v2: {e}");
        std::process::exit(1);
    }
}

/// `start`: bind the socket, launch the daemon with it, print the address.
fn start(flags: &Flags) -> Result<(), String> {
    let path = flags.socket_path();
    let _ = std::fs::create_dir_all("/run/containerd/s");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| format!("bind {path}: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    Command::new(exe)
        .args(["-namespace", flags.get("namespace"), "-id", flags.get("id")])
        .args(["-address", flags.get("address")])
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("start the daemon: {e}"))?;
    let address = format!("unix://{path}");
    std::fs::write("address", &address).map_err(|e| format!("write address: {e}"))?;
    print!("{address}");
    std::io::stdout().flush().map_err(|e| e.to_string())
}

/// `delete`: the daemon is gone (or containerd cleans up after it): answer as killed.
fn delete(flags: &Flags) -> Result<(), String> {
    let _ = std::fs::remove_file(flags.socket_path());
    let response = DeleteResponse {
        exit_status: 137,
        exited_at: MessageField::some(now()),
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    response
        .write_to_writer(&mut out)
        .map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())
}

fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// The daemon: serve the Task API on the listener `start` handed over as stdin until Shutdown.
fn serve(flags: &Flags) -> Result<(), String> {
    let listener = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(UnixListener::from)
        .map_err(|e| format!("listener: {e}"))?;
    let ttrpc_address =
        std::env::var("TTRPC_ADDRESS").map_err(|_| "TTRPC_ADDRESS is not set".to_string())?;
    let (events, queue) = channel();
    let namespace = flags.get("namespace").to_string();
    std::thread::spawn(move || publish(&ttrpc_address, &namespace, queue));
    let (shutdown, shut) = channel();
    let service = NullTask {
        tasks: Mutex::new(HashMap::new()),
        changed: Condvar::new(),
        events: Mutex::new(events),
        shutdown: Mutex::new(shutdown),
    };
    let server = server::Server::start(listener, create_task(Arc::new(service)))
        .map_err(|e| format!("serve: {e}"))?;
    let _ = shut.recv();
    server.shutdown();
    let _ = std::fs::remove_file(flags.socket_path());
    // As a real shim does: the process ends with Shutdown; containerd takes a closed
    // connection as its answer.
    std::process::exit(0);
}

/// One event for containerd: its topic, its type URL and the encoded message.
struct Event {
    topic: &'static str,
    type_url: String,
    value: Vec<u8>,
}

impl Event {
    fn new<M: Message>(topic: &'static str, message: M) -> Event {
        Event {
            topic,
            type_url: format!("containerd.events.{}", M::NAME),
            value: message.write_to_bytes().unwrap_or_default(),
        }
    }
}

/// Forwards the events in order; connects on the first one.
fn publish(address: &str, namespace: &str, queue: Receiver<Event>) {
    let mut client = None;
    for event in queue {
        if client.is_none() {
            let path = address.trim_start_matches("unix://");
            let Ok(socket) = UnixStream::connect(path) else {
                continue;
            };
            match ttrpc::Client::new(socket.into_raw_fd()) {
                Ok(c) => client = Some(EventsClient::new(c)),
                Err(_) => continue,
            }
        }
        let Some(events) = &client else { continue };
        let envelope = Envelope {
            timestamp: MessageField::some(now()),
            namespace: namespace.to_string(),
            topic: event.topic.to_string(),
            event: MessageField::some(Any {
                type_url: event.type_url,
                value: event.value,
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = ForwardRequest {
            envelope: MessageField::some(envelope),
            ..Default::default()
        };
        if events
            .forward(context::with_timeout(5_000_000_000), &request)
            .is_err()
        {
            client = None;
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Created,
    Running,
    Stopped(u32),
}

/// A task and its execs, by exec id.
struct NullProcesses {
    init: State,
    /// The config runs `/bin/sleep`: the task runs until it is killed.
    long_running: bool,
    execs: HashMap<String, State>,
}

struct NullTask {
    tasks: Mutex<HashMap<String, NullProcesses>>,
    /// Wakes a Wait whose process had not stopped yet.
    changed: Condvar,
    events: Mutex<Sender<Event>>,
    shutdown: Mutex<Sender<()>>,
}

fn not_found(id: &str) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(
        Code::NOT_FOUND,
        format!("task {id} not found"),
    ))
}

impl NullTask {
    fn send<M: Message>(&self, topic: &'static str, message: M) {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let _ = events.send(Event::new(topic, message));
    }

    /// The pid every answer names: the daemon's own (there is no container process).
    fn pid() -> u32 {
        std::process::id()
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, NullProcesses>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state of the process `exec_id` (the init when empty).
    fn state_of<'a>(
        tasks: &'a mut HashMap<String, NullProcesses>,
        id: &str,
        exec_id: &str,
    ) -> ttrpc::Result<&'a mut State> {
        let task = tasks.get_mut(id).ok_or_else(|| not_found(id))?;
        if exec_id.is_empty() {
            Ok(&mut task.init)
        } else {
            task.execs
                .get_mut(exec_id)
                .ok_or_else(|| not_found(exec_id))
        }
    }

    fn exited(&self, id: &str, exec_id: &str, code: u32) {
        self.send(
            topics::TASK_EXIT_EVENT_TOPIC,
            TaskExit {
                container_id: id.to_string(),
                id: if exec_id.is_empty() { id } else { exec_id }.to_string(),
                pid: Self::pid(),
                exit_status: code,
                exited_at: MessageField::some(now()),
                ..Default::default()
            },
        );
        self.changed.notify_all();
    }
}

impl Task for NullTask {
    fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let config =
            std::fs::read_to_string(format!("{}/config.json", req.bundle)).unwrap_or_default();
        self.tasks().insert(
            req.id.clone(),
            NullProcesses {
                init: State::Created,
                long_running: config.contains("\"/bin/sleep\""),
                execs: HashMap::new(),
            },
        );
        self.send(
            topics::TASK_CREATE_EVENT_TOPIC,
            TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                checkpoint: req.checkpoint.clone(),
                pid: Self::pid(),
                ..Default::default()
            },
        );
        Ok(CreateTaskResponse {
            pid: Self::pid(),
            ..Default::default()
        })
    }

    /// The task (or exec) "runs"; it exits at once with 0 unless it is a long-running task.
    fn start(&self, _: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let mut tasks = self.tasks();
        let long_running = tasks.get(&req.id).is_some_and(|t| t.long_running);
        let state = Self::state_of(&mut tasks, &req.id, &req.exec_id)?;
        if req.exec_id.is_empty() {
            self.send(
                topics::TASK_START_EVENT_TOPIC,
                TaskStart {
                    container_id: req.id.clone(),
                    pid: Self::pid(),
                    ..Default::default()
                },
            );
        } else {
            self.send(
                topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                TaskExecStarted {
                    container_id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    pid: Self::pid(),
                    ..Default::default()
                },
            );
        }
        if long_running && req.exec_id.is_empty() {
            *state = State::Running;
        } else {
            *state = State::Stopped(0);
            self.exited(&req.id, &req.exec_id, 0);
        }
        Ok(StartResponse {
            pid: Self::pid(),
            ..Default::default()
        })
    }

    fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let mut tasks = self.tasks();
        let code = loop {
            match *Self::state_of(&mut tasks, &req.id, &req.exec_id)? {
                State::Stopped(code) => break code,
                State::Created | State::Running => {
                    tasks = self.changed.wait(tasks).unwrap_or_else(|e| e.into_inner());
                }
            }
        };
        Ok(WaitResponse {
            exit_status: code,
            exited_at: MessageField::some(now()),
            ..Default::default()
        })
    }

    fn state(&self, _: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        let mut tasks = self.tasks();
        let state = *Self::state_of(&mut tasks, &req.id, &req.exec_id)?;
        let (status, exit_status) = match state {
            State::Created => (Status::CREATED, 0),
            State::Running => (Status::RUNNING, 0),
            State::Stopped(code) => (Status::STOPPED, code),
        };
        Ok(StateResponse {
            id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            pid: Self::pid(),
            status: status.into(),
            exit_status,
            exited_at: MessageField::some(now()),
            ..Default::default()
        })
    }

    /// A running task stops (exit 137, as after SIGKILL); anything else has nothing to kill.
    fn kill(&self, _: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        let mut tasks = self.tasks();
        let state = Self::state_of(&mut tasks, &req.id, &req.exec_id)?;
        if *state == State::Running {
            *state = State::Stopped(137);
            self.exited(&req.id, &req.exec_id, 137);
        }
        Ok(Empty::default())
    }

    fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        let mut tasks = self.tasks();
        let task = tasks.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
        task.execs.insert(req.exec_id.clone(), State::Created);
        self.send(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(Empty::default())
    }

    fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        let mut tasks = self.tasks();
        let code = match *Self::state_of(&mut tasks, &req.id, &req.exec_id)? {
            State::Stopped(code) => code,
            _ => 0,
        };
        let exited_at = now();
        if req.exec_id.is_empty() {
            tasks.remove(&req.id);
            self.send(
                topics::TASK_DELETE_EVENT_TOPIC,
                TaskDelete {
                    container_id: req.id.clone(),
                    pid: Self::pid(),
                    exit_status: code,
                    exited_at: MessageField::some(exited_at.clone()),
                    ..Default::default()
                },
            );
        } else if let Some(task) = tasks.get_mut(&req.id) {
            task.execs.remove(&req.exec_id);
        }
        Ok(DeleteResponse {
            pid: Self::pid(),
            exit_status: code,
            exited_at: MessageField::some(exited_at),
            ..Default::default()
        })
    }

    fn connect(&self, _: &TtrpcContext, _: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
        Ok(ConnectResponse {
            shim_pid: Self::pid(),
            task_pid: Self::pid(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _: &TtrpcContext, _: ShutdownRequest) -> ttrpc::Result<Empty> {
        if self.tasks().is_empty() {
            let shutdown = self.shutdown.lock().unwrap_or_else(|e| e.into_inner());
            let _ = shutdown.send(());
        }
        Ok(Empty::default())
    }
}
