//! The daemon's ttrpc server: containerd's requests in, the Task service's replies out.
//!
//! It replaces the ttrpc crate's sync server, which ran, per connection, a reader, a writer, a
//! supervisor and a pool of handlers fed through a crossbeam channel: every request crossed
//! three threads (reader, handler, writer), idle handlers spun on `sched_yield` in the
//! channel's back-off, and while a Wait was outstanding (one per running process) each further
//! request had the supervisor start handler threads that ended again after it. `perf record`
//! over 40 `ctr task exec` counted 2.5 ms of CPU per exec in those threads
//! (docs/PERFORMANCE.md).
//!
//! Here the threads of a connection take turns (leader/follower): the idle thread holding the
//! read turn reads one request, passes the turn on, runs the handler and writes the reply
//! itself. A request crosses no thread. A thread is started only when a request arrives while
//! no other thread of the connection is idle (a Wait holds one for a process's life), and a
//! thread ends after a request when [`IDLE_MAX`] others are idle.
//!
//! The wire format is ttrpc's: a 10-byte header (payload length, stream id, message type,
//! flags; big endian) and a protobuf `Request` or `Response`. The handlers are the generated
//! ones (`create_task`); they answer through `TtrpcContext::res_tx`, which the thread drains
//! once the handler returned. Where this differs from the crate's server, it follows Go's
//! ttrpc (containerd's side): an unknown method gets `UNIMPLEMENTED` (the crate answered
//! `INVALID_ARGUMENT`), and a payload that does not decode gets an `INVALID_ARGUMENT` reply
//! (the crate closed the connection).
//!
//! The null shim of the benchmark (bench/null-shim) serves with this same file, so that the
//! floor it measures is what a shim with this server pays.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc::proto::{
    MESSAGE_HEADER_LENGTH, MESSAGE_LENGTH_MAX, MESSAGE_TYPE_REQUEST,
};
use containerd_shim_protos::ttrpc::{
    self, Code, MessageHeader, MethodHandler, Request, Response, TtrpcContext,
};

/// The Task service's methods by ttrpc path (`/containerd.task.v2.Task/Create`).
pub type Methods = HashMap<String, Box<dyn MethodHandler + Send + Sync>>;

/// Idle threads a connection keeps: the one holding the read turn and one waiting for it, so
/// that a request arriving while another runs finds a reader without a thread being started.
const IDLE_MAX: usize = 2;

/// A reply containerd does not read within this time ends the connection (a write never
/// blocks a handler thread for good).
const WRITE_LIMIT: Duration = Duration::from_secs(30);

/// How long `shutdown` waits for requests in progress (the Shutdown request's own reply among
/// them) before it closes the connections.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// A running server; [`Server::shutdown`] stops it.
pub struct Server {
    listener: Arc<UnixListener>,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    methods: Methods,
    connections: Mutex<Vec<Weak<Connection>>>,
    stopping: AtomicBool,
}

struct Connection {
    stream: UnixStream,
    /// Held by the thread whose turn it is to read a request.
    read_turn: Mutex<()>,
    /// Held while a reply is written: replies never interleave.
    write_turn: Mutex<()>,
    threads: Mutex<Threads>,
    /// Signalled when no request is in progress any more.
    drained: Condvar,
}

#[derive(Default)]
struct Threads {
    idle: usize,
    busy: usize,
    closed: bool,
}

impl Server {
    /// Serves `listener` (already bound and listening) with `methods`, on a thread of its own.
    pub fn start(listener: UnixListener, methods: Methods) -> std::io::Result<Server> {
        let listener = Arc::new(listener);
        let shared = Arc::new(Shared {
            methods,
            connections: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let accept = {
            let listener = Arc::clone(&listener);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("ttrpc-accept".into())
                .spawn(move || accept_loop(&listener, &shared))?
        };
        Ok(Server {
            listener,
            shared,
            accept: Some(accept),
        })
    }

    /// Stops accepting, lets requests in progress write their replies (bounded by
    /// [`DRAIN_LIMIT`]), then closes every connection. A handler still blocked (a Wait for a
    /// process that has not exited) is left to the process's exit.
    pub fn shutdown(mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // shutdown(2) of the listening socket wakes the accept thread's accept(2) (EINVAL from
        // then on). std offers shutdown on a stream only; it is the same call on any socket.
        if let Ok(listener) = self.listener.try_clone() {
            let _ = UnixStream::from(OwnedFd::from(listener)).shutdown(std::net::Shutdown::Both);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let connections: Vec<_> = lock(&self.shared.connections)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let deadline = Instant::now() + DRAIN_LIMIT;
        for connection in &connections {
            connection.wait_drained(deadline);
            let _ = connection.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) if shared.stopping.load(Ordering::SeqCst) => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("ttrpc: accept: {e}");
                match e.raw_os_error() {
                    // Out of fds or memory: the next accept may succeed once some are freed;
                    // a short pause keeps a persistent shortage from spinning.
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    Some(libc::ECONNABORTED | libc::EPROTO) => continue,
                    // The listener itself is unusable.
                    _ => return,
                }
            }
        };
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = stream.set_write_timeout(Some(WRITE_LIMIT)) {
            log::warn!("ttrpc: connection write timeout: {e}");
        }
        let connection = Arc::new(Connection {
            stream,
            read_turn: Mutex::new(()),
            write_turn: Mutex::new(()),
            threads: Mutex::new(Threads::default()),
            drained: Condvar::new(),
        });
        {
            let mut connections = lock(&shared.connections);
            connections.retain(|c| c.strong_count() > 0);
            connections.push(Arc::downgrade(&connection));
        }
        connection.add_thread(shared);
    }
}

impl Connection {
    /// Starts a thread for this connection, counted idle from the start. If none can be
    /// started, the connection has one thread fewer (requests wait longer; a new connection
    /// with none is closed when its last reference goes).
    fn add_thread(self: &Arc<Self>, shared: &Arc<Shared>) {
        lock(&self.threads).idle += 1;
        let connection = Arc::clone(self);
        let shared = Arc::clone(shared);
        let started = std::thread::Builder::new()
            .name("ttrpc".into())
            .spawn(move || connection.serve(&shared));
        if let Err(e) = started {
            log::warn!("ttrpc: start a connection thread: {e}");
            lock(&self.threads).idle -= 1;
        }
    }

    /// A connection thread: take the read turn, read one request, run it, go back to idle.
    fn serve(self: Arc<Self>, shared: &Arc<Shared>) {
        loop {
            let frame = {
                let _turn = lock(&self.read_turn);
                {
                    let mut threads = lock(&self.threads);
                    if threads.closed {
                        threads.idle -= 1;
                        return;
                    }
                }
                read_frame(&self.stream)
            };
            let no_reader_left = {
                let mut threads = lock(&self.threads);
                threads.idle -= 1;
                match &frame {
                    Ok(_) => {
                        threads.busy += 1;
                        threads.idle == 0
                    }
                    Err(_) => {
                        // containerd closed the connection (or it broke): every idle thread
                        // leaves when it gets the read turn, busy ones after their request.
                        threads.closed = true;
                        if threads.busy == 0 {
                            self.drained.notify_all();
                        }
                        return;
                    }
                }
            };
            if no_reader_left {
                self.add_thread(shared);
            }
            if let Ok((header, payload)) = frame {
                self.handle(&shared.methods, header, payload);
            }
            let mut threads = lock(&self.threads);
            threads.busy -= 1;
            if threads.busy == 0 {
                self.drained.notify_all();
            }
            if threads.closed || threads.idle >= IDLE_MAX {
                return;
            }
            threads.idle += 1;
        }
    }

    /// Runs one request and writes its reply.
    fn handle(&self, methods: &Methods, header: MessageHeader, payload: Option<Vec<u8>>) {
        // As ttrpc: only requests are answered (no streams in the Task API).
        if header.type_ != MESSAGE_TYPE_REQUEST {
            return;
        }
        let stream_id = header.stream_id;
        let Some(payload) = payload else {
            let message = format!(
                "message length {} exceeds maximum message size of {MESSAGE_LENGTH_MAX}",
                header.length
            );
            return self.reply_status(stream_id, Code::INVALID_ARGUMENT, message);
        };
        let request = match Request::parse_from_bytes(&payload) {
            Ok(request) => request,
            Err(e) => {
                let message = format!("ttrpc request: {e}");
                return self.reply_status(stream_id, Code::INVALID_ARGUMENT, message);
            }
        };
        let path = format!("/{}/{}", request.service, request.method);
        let Some(method) = methods.get(&path) else {
            let message = format!("{path} is not implemented");
            return self.reply_status(stream_id, Code::UNIMPLEMENTED, message);
        };
        let (res_tx, replies) = std::sync::mpsc::channel();
        let context = TtrpcContext {
            fd: self.stream.as_raw_fd(),
            cancel_rx: crossbeam_channel::never(),
            mh: header,
            res_tx,
            metadata: ttrpc::context::from_pb(&request.metadata),
            timeout_nano: request.timeout_nano,
        };
        // A panicking handler gets an INTERNAL reply instead of leaving containerd's call
        // unanswered; the thread goes on serving.
        let handled =
            std::panic::catch_unwind(AssertUnwindSafe(|| method.handler(context, request)));
        match handled {
            Ok(Ok(())) => {}
            // The generated handler fails only before it answers: the method's own message
            // did not decode (or its reply could not be queued, which cannot happen here).
            Ok(Err(e)) => {
                let message = format!("{path}: {e}");
                return self.reply_status(stream_id, Code::INVALID_ARGUMENT, message);
            }
            Err(_) => {
                let message = format!("{path}: the shim's handler panicked (see its log)");
                return self.reply_status(stream_id, Code::INTERNAL, message);
            }
        }
        while let Ok((header, body)) = replies.try_recv() {
            self.write_frame(header, &body);
        }
    }

    fn reply_status(&self, stream_id: u32, code: Code, message: String) {
        let mut response = Response::new();
        response.set_status(ttrpc::get_status(code, message));
        match response.write_to_bytes() {
            Ok(body) => {
                let header = MessageHeader::new_response(stream_id, body.len() as u32);
                self.write_frame(header, &body);
            }
            Err(e) => log::warn!("ttrpc: encode an error reply: {e}"),
        }
    }

    /// Header and body in one write. A failed write (containerd gone, or not reading within
    /// [`WRITE_LIMIT`]) ends the connection: its readers see end of file.
    fn write_frame(&self, header: MessageHeader, body: &[u8]) {
        let mut frame: Vec<u8> = header.into();
        frame.extend_from_slice(body);
        let _turn = lock(&self.write_turn);
        if let Err(e) = (&self.stream).write_all(&frame) {
            log::warn!("ttrpc: write a reply: {e}");
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn wait_drained(&self, deadline: Instant) {
        let mut threads = lock(&self.threads);
        while threads.busy > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            threads = self
                .drained
                .wait_timeout(threads, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// One message: its header, and its payload unless it was larger than ttrpc allows (then read
/// and dropped, and the request is answered with an error).
fn read_frame(mut stream: &UnixStream) -> std::io::Result<(MessageHeader, Option<Vec<u8>>)> {
    let mut raw = [0u8; MESSAGE_HEADER_LENGTH];
    stream.read_exact(&mut raw)?;
    let header = MessageHeader::from(&raw);
    let length = header.length as usize;
    if length > MESSAGE_LENGTH_MAX {
        std::io::copy(&mut stream.take(length as u64), &mut std::io::sink())?;
        return Ok((header, None));
    }
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload)?;
    Ok((header, Some(payload)))
}

/// A poisoned lock only means a handler panicked while holding it; the counts it guards stay
/// consistent (every update is a single step).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
