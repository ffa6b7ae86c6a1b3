//! A minimal D-Bus client for the system bus: `AUTH EXTERNAL`, `Hello`, method calls and
//! signals, over a blocking Unix socket where every read has a deadline. Only what systemd's
//! unit API needs; no threads, no async runtime.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::marshal::{DecodeError, Reader, Value, Writer};

pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

const FIELD_PATH: u8 = 1;
const FIELD_INTERFACE: u8 = 2;
const FIELD_MEMBER: u8 = 3;
const FIELD_ERROR_NAME: u8 = 4;
const FIELD_REPLY_SERIAL: u8 = 5;
const FIELD_DESTINATION: u8 = 6;
const FIELD_SENDER: u8 = 7;
const FIELD_SIGNATURE: u8 = 8;

/// The largest message accepted (the specification's limit is 128 MiB; systemd's answers
/// here are a few hundred bytes).
const MAX_MESSAGE: usize = 16 << 20;

/// Why a bus operation failed.
#[derive(Debug)]
pub enum BusError {
    Connect {
        path: PathBuf,
        source: io::Error,
    },
    Io(io::Error),
    Auth(String),
    /// Nothing arrived in time; names what was awaited.
    Timeout(String),
    /// The peer answered with a D-Bus error.
    Remote {
        name: String,
        message: String,
    },
    Decode(DecodeError),
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect { path, source } => write!(f, "connect to {}: {source}", path.display()),
            Self::Io(e) => write!(f, "D-Bus socket: {e}"),
            Self::Auth(line) => write!(f, "D-Bus authentication refused: {line:?}"),
            Self::Timeout(what) => write!(f, "no answer from D-Bus in time: {what}"),
            Self::Remote { name, message } => write!(f, "{name}: {message}"),
            Self::Decode(e) => write!(f, "{e}"),
        }
    }
}

impl From<DecodeError> for BusError {
    fn from(e: DecodeError) -> BusError {
        BusError::Decode(e)
    }
}

/// A received message: the header fields used here and the body.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: u8,
    pub serial: u32,
    pub reply_serial: Option<u32>,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub sender: Option<String>,
    pub signature: String,
    /// Starts 8-aligned in the message, so alignment inside it counts from its first byte.
    pub body: Vec<u8>,
}

impl Message {
    pub fn body_reader(&self) -> Reader<'_> {
        Reader::new(&self.body, 0)
    }

    /// The first string argument (an error's message), if the body starts with one.
    pub fn first_string(&self) -> Option<String> {
        self.signature
            .starts_with('s')
            .then(|| self.body_reader().str().ok())
            .flatten()
    }
}

/// A method call, marshalled: `destination` may be empty (a peer-to-peer connection).
pub fn method_call(
    serial: u32,
    destination: &str,
    path: &str,
    interface: &str,
    member: &str,
    args: &[Value],
) -> Vec<u8> {
    let mut body = Writer::new();
    let mut signature = String::new();
    for arg in args {
        signature.push_str(arg.signature());
        body.value(arg);
    }
    let mut w = Writer::new();
    w.u8(b'l');
    w.u8(METHOD_CALL);
    w.u8(0);
    w.u8(1);
    w.u32(body.buf.len() as u32);
    w.u32(serial);
    w.array(8, |w| {
        let mut field = |code: u8, sig: &str, value: &str| {
            w.align(8);
            w.u8(code);
            w.signature(sig);
            if sig == "g" {
                w.signature(value);
            } else {
                w.str(value);
            }
        };
        field(FIELD_PATH, "o", path);
        field(FIELD_INTERFACE, "s", interface);
        field(FIELD_MEMBER, "s", member);
        if !destination.is_empty() {
            field(FIELD_DESTINATION, "s", destination);
        }
        if !signature.is_empty() {
            field(FIELD_SIGNATURE, "g", &signature);
        }
    });
    w.align(8);
    w.buf.extend_from_slice(&body.buf);
    w.buf
}

/// The total length of a message from its first 16 bytes.
pub fn message_length(fixed: &[u8; 16]) -> Result<usize, DecodeError> {
    if fixed[0] != b'l' {
        return Err(DecodeError(format!(
            "byte order {:?} (only little endian is read)",
            fixed[0] as char
        )));
    }
    let body = u32::from_le_bytes(fixed[4..8].try_into().expect("4 bytes")) as usize;
    let fields = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes")) as usize;
    let length = (16 + fields).next_multiple_of(8) + body;
    if length > MAX_MESSAGE {
        return Err(DecodeError(format!("message of {length} bytes")));
    }
    Ok(length)
}

/// Parses one whole message (as [`message_length`] measured it).
pub fn parse_message(bytes: &[u8]) -> Result<Message, DecodeError> {
    let fixed: &[u8; 16] = bytes
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| DecodeError("short header".into()))?;
    let length = message_length(fixed)?;
    if bytes.len() != length {
        return Err(DecodeError(format!(
            "{} bytes for a message of {length}",
            bytes.len()
        )));
    }
    let mut message = Message {
        kind: bytes[1],
        serial: u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")),
        ..Message::default()
    };
    let fields_end = 16 + u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    let mut r = Reader::new(&bytes[..fields_end], 16);
    while r.pos < fields_end {
        r.align(8)?;
        let code = r.u8()?;
        let sig = r.signature()?;
        match (code, sig.as_str()) {
            (FIELD_PATH, "o") => message.path = Some(r.str()?),
            (FIELD_INTERFACE, "s") => message.interface = Some(r.str()?),
            (FIELD_MEMBER, "s") => message.member = Some(r.str()?),
            (FIELD_ERROR_NAME, "s") => message.error_name = Some(r.str()?),
            (FIELD_REPLY_SERIAL, "u") => message.reply_serial = Some(r.u32()?),
            (FIELD_SENDER, "s") => message.sender = Some(r.str()?),
            (FIELD_SIGNATURE, "g") => message.signature = r.signature()?,
            (_, sig) => {
                let rest = r.skip(sig)?;
                if !rest.is_empty() {
                    return Err(DecodeError(format!("header field signature {sig:?}")));
                }
            }
        }
    }
    message.body = bytes[fields_end.next_multiple_of(8)..].to_vec();
    Ok(message)
}

/// A connection to a message bus (or to systemd's private socket, without `Hello`).
pub struct Bus {
    stream: UnixStream,
    serial: u32,
    /// Signals that arrived while a reply was awaited.
    pending: VecDeque<Message>,
    /// Where method calls go: the bus name (`org.freedesktop.systemd1`), or empty on a
    /// peer-to-peer connection.
    destination: String,
    /// This connection's name on the bus (`Hello`'s answer).
    pub unique_name: String,
}

impl Bus {
    /// Connects to `path`, authenticates as this process's uid and, on a bus, says `Hello`.
    /// Every step must finish before `deadline`.
    pub fn connect(
        path: &Path,
        destination: &str,
        hello: bool,
        deadline: Instant,
    ) -> Result<Bus, BusError> {
        let stream = UnixStream::connect(path).map_err(|source| BusError::Connect {
            path: path.to_owned(),
            source,
        })?;
        let mut bus = Bus {
            stream,
            serial: 0,
            pending: VecDeque::new(),
            destination: destination.to_owned(),
            unique_name: String::new(),
        };
        bus.authenticate(deadline)?;
        if hello {
            let reply = bus.call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
                &[],
                deadline,
            )?;
            bus.unique_name = reply.first_string().unwrap_or_default();
        }
        Ok(bus)
    }

    fn authenticate(&mut self, deadline: Instant) -> Result<(), BusError> {
        let uid = nix::unistd::getuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        self.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes(), deadline)?;
        let line = self.read_line(deadline)?;
        if !line.starts_with("OK ") {
            return Err(BusError::Auth(line));
        }
        self.write_all(b"BEGIN\r\n", deadline)
    }

    fn read_line(&mut self, deadline: Instant) -> Result<String, BusError> {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            let mut byte = [0u8; 1];
            self.read_exact(&mut byte, deadline, "the authentication answer")?;
            line.push(byte[0]);
            if line.len() > 4096 {
                return Err(BusError::Auth(String::from_utf8_lossy(&line).into_owned()));
            }
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    fn write_all(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), BusError> {
        let left = remaining(deadline, "a write to the bus")?;
        self.stream
            .set_write_timeout(Some(left))
            .map_err(BusError::Io)?;
        self.stream.write_all(bytes).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                BusError::Timeout("a write to the bus".into())
            }
            _ => BusError::Io(e),
        })
    }

    fn read_exact(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        what: &str,
    ) -> Result<(), BusError> {
        let mut done = 0;
        while done < buf.len() {
            let left = remaining(deadline, what)?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(BusError::Io)?;
            match self.stream.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(BusError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the bus closed the connection",
                    )));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(BusError::Timeout(what.to_owned()));
                }
                Err(e) => return Err(BusError::Io(e)),
            }
        }
        Ok(())
    }

    fn read_message(&mut self, deadline: Instant, what: &str) -> Result<Message, BusError> {
        let mut fixed = [0u8; 16];
        self.read_exact(&mut fixed, deadline, what)?;
        let length = message_length(&fixed)?;
        let mut bytes = vec![0u8; length];
        bytes[..16].copy_from_slice(&fixed);
        self.read_exact(&mut bytes[16..], deadline, what)?;
        Ok(parse_message(&bytes)?)
    }

    /// Calls `member` on the bus's destination (or `destination` when given) and waits for its
    /// reply; a D-Bus error reply is [`BusError::Remote`]. Signals read meanwhile are kept
    /// for [`Bus::wait_signal`].
    pub fn call(
        &mut self,
        destination: &str,
        path: &str,
        interface: &str,
        member: &str,
        args: &[Value],
        deadline: Instant,
    ) -> Result<Message, BusError> {
        let serial = self.send_call(destination, path, interface, member, args, deadline)?;
        let what = format!("the reply to {interface}.{member}");
        loop {
            let message = self.read_message(deadline, &what)?;
            match message.kind {
                METHOD_RETURN if message.reply_serial == Some(serial) => return Ok(message),
                ERROR if message.reply_serial == Some(serial) => {
                    return Err(BusError::Remote {
                        name: message.error_name.clone().unwrap_or_default(),
                        message: message.first_string().unwrap_or_default(),
                    });
                }
                SIGNAL => self.pending.push_back(message),
                _ => {}
            }
        }
    }

    /// Sends a method call without waiting for its reply; returns its serial.
    fn send_call(
        &mut self,
        destination: &str,
        path: &str,
        interface: &str,
        member: &str,
        args: &[Value],
        deadline: Instant,
    ) -> Result<u32, BusError> {
        self.serial += 1;
        let serial = self.serial;
        let destination = if destination.is_empty() {
            self.destination.clone()
        } else {
            destination.to_owned()
        };
        let bytes = method_call(serial, &destination, path, interface, member, args);
        self.write_all(&bytes, deadline)?;
        Ok(serial)
    }

    /// Waits until a signal `accept` takes (returning `Some`) arrives, first among those
    /// already received.
    pub fn wait_signal<T>(
        &mut self,
        deadline: Instant,
        what: &str,
        mut accept: impl FnMut(&Message) -> Option<T>,
    ) -> Result<T, BusError> {
        while let Some(message) = self.pending.pop_front() {
            if let Some(found) = accept(&message) {
                return Ok(found);
            }
        }
        loop {
            let message = self.read_message(deadline, what)?;
            if message.kind == SIGNAL
                && let Some(found) = accept(&message)
            {
                return Ok(found);
            }
        }
    }
}

fn remaining(deadline: Instant, what: &str) -> Result<Duration, BusError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(BusError::Timeout(what.to_owned()));
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Hello` to the bus, byte for byte as the specification lays it out.
    #[test]
    fn hello_call_bytes() {
        let bytes = method_call(
            1,
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            &[],
        );
        let mut expected: Vec<u8> = vec![b'l', 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0];
        let mut fields = Vec::new();
        let mut field = |code: u8, sig: u8, value: &str| {
            while !fields.len().is_multiple_of(8) {
                fields.push(0);
            }
            fields.extend_from_slice(&[code, 1, sig, 0]);
            fields.extend_from_slice(&(value.len() as u32).to_le_bytes());
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        };
        field(1, b'o', "/org/freedesktop/DBus");
        field(2, b's', "org.freedesktop.DBus");
        field(3, b's', "Hello");
        field(6, b's', "org.freedesktop.DBus");
        // The array of fields starts at 16 (already 8-aligned): its length counts from there.
        expected.extend_from_slice(&(fields.len() as u32).to_le_bytes());
        expected.extend_from_slice(&fields);
        while !expected.len().is_multiple_of(8) {
            expected.push(0);
        }
        assert_eq!(bytes, expected);
        assert_eq!(
            message_length(bytes[..16].try_into().unwrap()).unwrap(),
            bytes.len()
        );
    }

    #[test]
    fn a_call_with_a_body_has_its_signature_and_length() {
        let bytes = method_call(
            7,
            "",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "StopUnit",
            &[Value::Str("a.scope".into()), Value::Str("replace".into())],
        );
        let message = parse_message(&bytes).unwrap();
        assert_eq!(message.kind, METHOD_CALL);
        assert_eq!(message.serial, 7);
        assert_eq!(message.signature, "ss");
        assert_eq!(message.member.as_deref(), Some("StopUnit"));
        let mut body = message.body_reader();
        assert_eq!(body.str().unwrap(), "a.scope");
        assert_eq!(body.str().unwrap(), "replace");
        assert_eq!(
            message.body.len(),
            u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize
        );
    }

    /// A JobRemoved signal as systemd sends it (built by hand: header fields path, interface,
    /// member, signature "uoss", sender, then the body).
    #[test]
    fn parse_a_signal() {
        let mut body = Writer::new();
        body.u32(42);
        body.str("/org/freedesktop/systemd1/job/42");
        body.str("x.scope");
        body.str("done");
        let mut w = Writer::new();
        w.buf.extend_from_slice(&[b'l', SIGNAL, 1, 1]);
        w.u32(body.buf.len() as u32);
        w.u32(9);
        w.array(8, |w| {
            w.align(8);
            w.u8(FIELD_PATH);
            w.signature("o");
            w.str("/org/freedesktop/systemd1");
            w.align(8);
            w.u8(FIELD_MEMBER);
            w.signature("s");
            w.str("JobRemoved");
            w.align(8);
            w.u8(FIELD_SIGNATURE);
            w.signature("g");
            w.signature("uoss");
            w.align(8);
            w.u8(FIELD_SENDER);
            w.signature("s");
            w.str(":1.0");
            // An unknown field is skipped.
            w.align(8);
            w.u8(42);
            w.signature("as");
            w.value(&Value::Strings(vec!["x".into()]));
        });
        w.align(8);
        w.buf.extend_from_slice(&body.buf);
        let message = parse_message(&w.buf).unwrap();
        assert_eq!(message.kind, SIGNAL);
        assert_eq!(message.sender.as_deref(), Some(":1.0"));
        assert_eq!(message.member.as_deref(), Some("JobRemoved"));
        let mut r = message.body_reader();
        assert_eq!(r.u32().unwrap(), 42);
        assert_eq!(r.str().unwrap(), "/org/freedesktop/systemd1/job/42");
        assert_eq!(r.str().unwrap(), "x.scope");
        assert_eq!(r.str().unwrap(), "done");
        // Truncated or big-endian messages are refused.
        assert!(parse_message(&w.buf[..w.buf.len() - 1]).is_err());
        let mut big = w.buf.clone();
        big[0] = b'B';
        assert!(parse_message(&big).is_err());
    }

    /// The messages systemd's API needs, through a real `dbus-daemon` (which validates every
    /// message it routes and drops a connection that sends a malformed one): a call with
    /// StartTransientUnit's signature goes from one connection to another and arrives intact.
    #[test]
    fn a_real_dbus_daemon_routes_our_messages() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        if !Path::new("/usr/bin/dbus-daemon").exists() {
            eprintln!("skipped: no /usr/bin/dbus-daemon");
            return;
        }
        let dir = std::env::temp_dir().join(format!("sibling-dbus-real-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("bus");
        let mut daemon = Command::new("/usr/bin/dbus-daemon")
            .args(["--session", "--nofork", "--print-address"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The address is printed once the daemon listens (or end of file if it failed).
        let mut address = String::new();
        std::io::BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let result = std::panic::catch_unwind(|| {
            assert!(address.starts_with("unix:path="), "{address:?}");
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut a = Bus::connect(&socket, "org.freedesktop.DBus", true, deadline).unwrap();
            let mut b = Bus::connect(&socket, "org.freedesktop.DBus", true, deadline).unwrap();
            assert!(b.unique_name.starts_with(':'), "{:?}", b.unique_name);
            let owner = a
                .call(
                    "",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "GetNameOwner",
                    &[Value::Str("org.freedesktop.DBus".into())],
                    deadline,
                )
                .unwrap();
            assert_eq!(
                owner.first_string().as_deref(),
                Some("org.freedesktop.DBus")
            );
            // An error reply from the real daemon.
            let err = a
                .call(
                    "",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "GetNameOwner",
                    &[Value::Str("org.example.Nobody".into())],
                    deadline,
                )
                .unwrap_err();
            assert!(
                matches!(&err, BusError::Remote { name, .. } if name == "org.freedesktop.DBus.Error.NameHasNoOwner"),
                "{err}"
            );
            let args = [
                Value::Str("x.scope".into()),
                Value::Str("replace".into()),
                Value::Properties(vec![
                    ("Delegate".into(), Value::Bool(true)),
                    ("PIDs".into(), Value::U32Array(vec![1, 2])),
                    ("MemoryMax".into(), Value::U64(1 << 30)),
                    ("AllowedCPUs".into(), Value::Bytes(vec![3])),
                    ("Slice".into(), Value::Str("system.slice".into())),
                ]),
                Value::AuxUnits(Vec::new()),
            ];
            let target = b.unique_name.clone();
            a.send_call(
                &target,
                "/org/example",
                "org.example.Manager",
                "Start",
                &args,
                deadline,
            )
            .unwrap();
            // The daemon's NameAcquired signal comes first.
            let got = loop {
                let message = b.read_message(deadline, "the routed call").unwrap();
                if message.kind != SIGNAL {
                    break message;
                }
                assert_eq!(message.member.as_deref(), Some("NameAcquired"));
            };
            assert_eq!(got.kind, METHOD_CALL);
            assert_eq!(got.member.as_deref(), Some("Start"));
            assert_eq!(got.signature, "ssa(sv)a(sa(sv))");
            let mut expected = Writer::new();
            args.iter().for_each(|v| expected.value(v));
            assert_eq!(got.body, expected.buf);
        });
        let _ = daemon.kill();
        let _ = daemon.wait();
        std::fs::remove_dir_all(&dir).unwrap();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }

    /// The whole exchange against a peer in this test: authentication, Hello, an error reply
    /// and a signal that overtakes a reply.
    #[test]
    fn talks_to_a_peer() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("sibling-dbus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bus");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut auth = Vec::new();
            while !auth.ends_with(b"\r\n") {
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                auth.push(b[0]);
            }
            let uid = nix::unistd::getuid().as_raw().to_string();
            let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
            assert_eq!(auth, format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes());
            s.write_all(b"OK 0123456789abcdef\r\n").unwrap();
            let mut begin = [0u8; 7];
            s.read_exact(&mut begin).unwrap();
            assert_eq!(&begin, b"BEGIN\r\n");
            let read = |s: &mut UnixStream| {
                let mut fixed = [0u8; 16];
                s.read_exact(&mut fixed).unwrap();
                let mut bytes = vec![0u8; message_length(&fixed).unwrap()];
                bytes[..16].copy_from_slice(&fixed);
                s.read_exact(&mut bytes[16..]).unwrap();
                parse_message(&bytes).unwrap()
            };
            let reply = |kind: u8, serial: u32, error: Option<&str>, body: &[&str]| {
                let mut b = Writer::new();
                body.iter().for_each(|s| b.str(s));
                let mut w = Writer::new();
                w.buf.extend_from_slice(&[b'l', kind, 1, 1]);
                w.u32(b.buf.len() as u32);
                w.u32(100 + serial);
                w.array(8, |w| {
                    if kind == SIGNAL {
                        w.align(8);
                        w.u8(FIELD_MEMBER);
                        w.signature("s");
                        w.str("JobRemoved");
                    } else {
                        w.align(8);
                        w.u8(FIELD_REPLY_SERIAL);
                        w.signature("u");
                        w.u32(serial);
                    }
                    if let Some(error) = error {
                        w.align(8);
                        w.u8(FIELD_ERROR_NAME);
                        w.signature("s");
                        w.str(error);
                    }
                    if !body.is_empty() {
                        w.align(8);
                        w.u8(FIELD_SIGNATURE);
                        w.signature("g");
                        w.signature(&"s".repeat(body.len()));
                    }
                });
                w.align(8);
                w.buf.extend_from_slice(&b.buf);
                w.buf
            };
            let hello = read(&mut s);
            assert_eq!(hello.member.as_deref(), Some("Hello"));
            s.write_all(&reply(METHOD_RETURN, hello.serial, None, &[":1.5"]))
                .unwrap();
            let call = read(&mut s);
            s.write_all(&reply(
                ERROR,
                call.serial,
                Some("org.example.Failed"),
                &["it broke"],
            ))
            .unwrap();
            let call = read(&mut s);
            s.write_all(&reply(SIGNAL, 0, None, &["overtaking"]))
                .unwrap();
            s.write_all(&reply(METHOD_RETURN, call.serial, None, &[]))
                .unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut bus = Bus::connect(&path, "org.example", true, deadline).unwrap();
        let err = bus
            .call("", "/", "org.example.I", "Break", &[], deadline)
            .unwrap_err();
        assert_eq!(err.to_string(), "org.example.Failed: it broke");
        bus.call("", "/", "org.example.I", "Work", &[Value::U32(1)], deadline)
            .unwrap();
        let text = bus
            .wait_signal(deadline, "a signal", |m| m.first_string())
            .unwrap();
        assert_eq!(text, "overtaking");
        // Nothing more comes: the wait ends at its deadline.
        let short = Instant::now() + Duration::from_millis(100);
        assert!(matches!(
            bus.wait_signal(short, "nothing", |_| Some(())),
            Err(BusError::Timeout(_) | BusError::Io(_))
        ));
        server.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
