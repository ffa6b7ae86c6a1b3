//! The shim's one ordered event queue to containerd.
//!
//! Callers enqueue events in contract order (they hold the process's lock while they do, see
//! `task`); one publisher thread sends them in exactly that order over ttrpc, retrying with a
//! timeout, so a slow or restarting containerd never blocks an RPC or the reaper.
//!
//! The publisher speaks ttrpc itself over one blocking socket with timeouts: one
//! `Events.Forward` request, then its response, per event. The ttrpc crate's sync client would
//! add two threads per daemon, one of which wakes every 10 ms for as long as the daemon lives
//! (its receiver polls with a 10 ms timeout), and the publisher never has two requests in flight.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::ttrpc::proto::{
    MESSAGE_HEADER_LENGTH, MESSAGE_LENGTH_MAX, MESSAGE_TYPE_RESPONSE,
};
use containerd_shim_protos::ttrpc::{Code, MessageHeader, Request, Response};

/// How long one publish may take before it counts as failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per event before it is dropped (and logged); with the back-off below about 20 s.
const ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct Event {
    topic: &'static str,
    body: EventBody,
}

/// A task event (package `containerd.events`), encoded, with its type name: both without
/// protobuf reflection. Asking a message for its descriptor (`descriptor_dyn`, which
/// `write_to_bytes_dyn` also does) builds the descriptors of its whole proto file and of every
/// file it imports (containerd's events import descriptor.proto through gogo.proto, comments
/// included), and they stay on the daemon's heap for good: about 340 KiB of each daemon.
pub struct EventBody {
    /// The message's name in its package (`Message::NAME`).
    type_name: &'static str,
    encoded: Result<Vec<u8>, String>,
}

/// containerd's task events' proto package (api/events/task.proto).
const EVENTS_PACKAGE: &str = "containerd.events";

impl<M: Message> From<M> for EventBody {
    fn from(message: M) -> EventBody {
        EventBody {
            type_name: M::NAME,
            encoded: message.write_to_bytes().map_err(|e| e.to_string()),
        }
    }
}

impl EventBody {
    /// The `Any` type URL containerd's clients resolve: the message's full name.
    fn type_url(&self) -> String {
        format!("{EVENTS_PACKAGE}.{}", self.type_name)
    }
}

enum Item {
    Event(Event),
    /// Everything queued before this is delivered (or given up on); then the thread ends.
    Stop,
}

/// The sending side of the queue. Cloning shares the same ordered queue.
#[derive(Clone)]
pub struct EventQueue {
    tx: Sender<Item>,
}

/// The publisher thread.
pub struct Publisher {
    tx: Sender<Item>,
    thread: JoinHandle<()>,
}

impl EventQueue {
    /// Starts the publisher thread for containerd's ttrpc `address`.
    pub fn start(address: String, namespace: String) -> std::io::Result<(EventQueue, Publisher)> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("events".into())
            .stack_size(256 * 1024)
            .spawn(move || run_publisher(&address, &namespace, rx))?;
        let publisher = Publisher {
            tx: tx.clone(),
            thread,
        };
        Ok((EventQueue { tx }, publisher))
    }

    /// Enqueues an event; it is sent after every event enqueued before it.
    pub fn publish(&self, topic: &'static str, body: impl Into<EventBody>) {
        log::debug!("event {topic}");
        let body = body.into();
        if self.tx.send(Item::Event(Event { topic, body })).is_err() {
            log::error!("event {topic} dropped: publisher stopped");
        }
    }
}

impl Publisher {
    /// Waits until every event queued so far was sent or given up on, then stops the thread.
    /// Events queued after this call are dropped.
    pub fn drain(self) {
        if self.tx.send(Item::Stop).is_ok() {
            let _ = self.thread.join();
        }
    }
}

fn run_publisher(address: &str, namespace: &str, rx: Receiver<Item>) {
    let mut client: Option<EventsConnection> = None;
    for item in rx {
        match item {
            Item::Event(event) => deliver(address, namespace, &mut client, event),
            Item::Stop => return,
        }
    }
}

fn deliver(address: &str, namespace: &str, client: &mut Option<EventsConnection>, event: Event) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match try_publish(address, namespace, client, &event) {
            Ok(()) => return,
            Err(e) => {
                log::warn!("publish {} (attempt {attempt}): {e}", event.topic);
                *client = None; // Reconnect: containerd may have restarted.
            }
        }
        if attempt < ATTEMPTS {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    log::error!("event {} dropped after {ATTEMPTS} attempts", event.topic);
}

fn try_publish(
    address: &str,
    namespace: &str,
    client: &mut Option<EventsConnection>,
    event: &Event,
) -> Result<(), String> {
    if client.is_none() {
        *client = Some(EventsConnection::connect(address).map_err(|e| format!("connect: {e}"))?);
    }
    let Some(connection) = client.as_mut() else {
        unreachable!("connected above")
    };
    connection.forward(&forward_request(namespace, event)?)
}

/// containerd's Events service, as the shim crate's publisher addresses it.
const EVENTS_SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";

/// The envelope containerd expects: topic, namespace, the time of sending, the event as `Any`.
fn forward_request(namespace: &str, event: &Event) -> Result<ForwardRequest, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut envelope = Envelope::new();
    envelope.set_topic(event.topic.to_owned());
    envelope.set_namespace(namespace.to_owned());
    envelope.set_timestamp(Timestamp {
        seconds: now.as_secs() as i64,
        nanos: now.subsec_nanos() as i32,
        ..Default::default()
    });
    let mut any = Any::new();
    any.type_url = event.body.type_url();
    any.value = event
        .body
        .encoded
        .clone()
        .map_err(|e| format!("encode {}: {e}", event.topic))?;
    envelope.set_event(any);
    let mut request = ForwardRequest::new();
    request.set_envelope(envelope);
    Ok(request)
}

/// One ttrpc connection to containerd, used by the publisher thread alone.
struct EventsConnection {
    stream: UnixStream,
    /// Client streams are odd, and each request takes a new one.
    next_stream: u32,
}

impl EventsConnection {
    fn connect(address: &str) -> std::io::Result<EventsConnection> {
        let path = address.strip_prefix("unix://").unwrap_or(address);
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(PUBLISH_TIMEOUT))?;
        stream.set_write_timeout(Some(PUBLISH_TIMEOUT))?;
        Ok(EventsConnection {
            stream,
            next_stream: 1,
        })
    }

    /// Sends `Events.Forward` and waits (at most PUBLISH_TIMEOUT per read) for its response.
    fn forward(&mut self, forward: &ForwardRequest) -> Result<(), String> {
        let mut request = Request::new();
        request.set_service(EVENTS_SERVICE.to_owned());
        request.set_method("Forward".to_owned());
        request.set_timeout_nano(PUBLISH_TIMEOUT.as_nanos() as i64);
        request.payload = forward
            .write_to_bytes()
            .map_err(|e| format!("encode: {e}"))?;
        let body = request
            .write_to_bytes()
            .map_err(|e| format!("encode: {e}"))?;
        let stream_id = self.next_stream;
        self.next_stream = self.next_stream.wrapping_add(2);
        let header: Vec<u8> = MessageHeader::new_request(stream_id, body.len() as u32).into();
        let io = |e: std::io::Error| format!("ttrpc: {e}");
        self.stream.write_all(&header).map_err(io)?;
        self.stream.write_all(&body).map_err(io)?;
        loop {
            let mut header = [0u8; MESSAGE_HEADER_LENGTH];
            self.stream.read_exact(&mut header).map_err(io)?;
            let header = MessageHeader::from(&header);
            if header.length as usize > MESSAGE_LENGTH_MAX {
                return Err(format!("ttrpc: a {} byte message", header.length));
            }
            let mut body = vec![0u8; header.length as usize];
            self.stream.read_exact(&mut body).map_err(io)?;
            if header.type_ != MESSAGE_TYPE_RESPONSE || header.stream_id != stream_id {
                continue; // not ours (a late answer to a request that timed out)
            }
            let response =
                Response::parse_from_bytes(&body).map_err(|e| format!("ttrpc response: {e}"))?;
            let status = response.status();
            return if status.code() == Code::OK {
                Ok(())
            } else {
                Err(format!("{:?}: {}", status.code(), status.message()))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim_protos::events::task::{
        TaskCheckpointed, TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit,
        TaskOOM, TaskPaused, TaskResumed, TaskStart,
    };

    use containerd_shim_protos::protobuf::MessageFull;

    use super::*;

    /// The type URL built without reflection is the one reflection gives (what containerd-shim's
    /// publisher sent), for every event the daemon publishes.
    #[test]
    fn event_type_urls_are_the_messages_full_names() {
        fn check<M: MessageFull + Default>() {
            let body = EventBody::from(M::default());
            assert_eq!(body.type_url(), M::descriptor().full_name());
        }
        check::<TaskCreate>();
        check::<TaskStart>();
        check::<TaskExit>();
        check::<TaskDelete>();
        check::<TaskExecAdded>();
        check::<TaskExecStarted>();
        check::<TaskOOM>();
        check::<TaskPaused>();
        check::<TaskResumed>();
        check::<TaskCheckpointed>();
    }
}
