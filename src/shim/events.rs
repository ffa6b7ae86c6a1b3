//! The shim's one ordered event queue to containerd.
//!
//! Callers enqueue events in contract order (they hold the process's lock while they do, see
//! `task`); one publisher thread sends them in exactly that order over ttrpc, retrying with a
//! timeout, so a slow or restarting containerd never blocks an RPC or the reaper.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::ttrpc::context;

/// How long one publish may take before it counts as failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per event before it is dropped (and logged); with the back-off below about 20 s.
const ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct Event {
    topic: &'static str,
    message: Box<dyn MessageDyn>,
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
    pub fn publish(&self, topic: &'static str, message: Box<dyn MessageDyn>) {
        log::debug!("event {topic}");
        if self.tx.send(Item::Event(Event { topic, message })).is_err() {
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
    let mut client: Option<RemotePublisher> = None;
    for item in rx {
        match item {
            Item::Event(event) => deliver(address, namespace, &mut client, event),
            Item::Stop => return,
        }
    }
}

fn deliver(address: &str, namespace: &str, client: &mut Option<RemotePublisher>, event: Event) {
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
    client: &mut Option<RemotePublisher>,
    event: &Event,
) -> Result<(), containerd_shim::Error> {
    if client.is_none() {
        *client = Some(RemotePublisher::new(address)?);
    }
    let Some(publisher) = client.as_ref() else {
        unreachable!("connected above")
    };
    let ctx = context::with_timeout(PUBLISH_TIMEOUT.as_nanos() as i64);
    publisher.publish(ctx, event.topic, namespace, event.message.clone_box())
}
