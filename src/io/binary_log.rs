//! `binary:///path?key=value` output destinations: a logging binary (nerdctl's log driver, for
//! instance) that reads the container's stdout and stderr.
//!
//! The contract containerd's runc shim follows, and so do we: the binary gets the read ends of
//! the stdout and stderr pipes as fds 3 and 4 and the write end of a readiness pipe as fd 5,
//! `CONTAINER_ID` and `CONTAINER_NAMESPACE` in its environment, and the URI's query as
//! arguments (`key value`); it closes fd 5 (or writes to it) once ready, and Create waits for
//! that. The logger is a child of the daemon, reaped by its reaper; it exits when the
//! container's last writer closes the pipes.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::container::sys::{close_range_cloexec, reset_all_signal_dispositions};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::pipe2;

/// How long Create waits for the logger to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Who the logger logs for.
pub struct LogOwner<'a> {
    pub container_id: &'a str,
    pub namespace: &'a str,
}

/// The binary and its arguments from a `binary://` URI.
#[derive(Debug, PartialEq, Eq)]
pub struct LoggerCommand {
    pub path: String,
    pub args: Vec<String>,
}

/// Parses `binary:///path/to/bin?key=value&flag` into the binary and its `key value flag` args.
pub fn parse_binary_uri(uri: &str) -> Option<LoggerCommand> {
    let rest = uri.strip_prefix("binary://")?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') {
        return None;
    }
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        args.push(percent_decode(key));
        if !value.is_empty() {
            args.push(percent_decode(value));
        }
    }
    Some(LoggerCommand {
        path: percent_decode(path),
        args,
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts the logger and waits until it is ready; returns the write ends the container gets
/// as stdout and stderr.
pub fn start_logger(
    command: &LoggerCommand,
    owner: &LogOwner<'_>,
) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC)?;
    // Above 5, so that placing them on 3, 4 and 5 in the child never overwrites one another.
    let sources = [high_dup(&out_r)?, high_dup(&err_r)?, high_dup(&ready_w)?];
    let raw: Vec<RawFd> = sources.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut cmd = Command::new(&command.path);
    cmd.args(&command.args)
        .env("CONTAINER_ID", owner.container_id)
        .env("CONTAINER_NAMESPACE", owner.namespace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure only makes system calls that are async-signal-safe (dup2,
    // close_range, rt_sigaction) on fds that stay open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 clears close-on-exec on the targets.
            for (target, source) in (3..).zip(&raw) {
                if libc::dup2(*source, target) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Exactly fds 0-5 reach the logger, whatever another thread opened meanwhile
            // without close-on-exec; and default dispositions (std resets only the mask and
            // SIGPIPE).
            close_range_cloexec(6)?;
            reset_all_signal_dispositions()?;
            Ok(())
        });
    }
    cmd.spawn()?;
    drop((sources, out_r, err_r, ready_w));
    wait_ready(ready_r)?;
    Ok((out_w, err_w))
}

fn high_dup(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 10)?)
}

/// The logger is ready when it closes or writes to fd 5.
fn wait_ready(ready: OwnedFd) -> std::io::Result<()> {
    let millis = u16::try_from(READY_TIMEOUT.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&ready),
        PollFlags::POLLIN,
    )];
    if poll(&mut fds, PollTimeout::from(millis))? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("logger not ready after {READY_TIMEOUT:?}"),
        ));
    }
    let mut byte = [0u8; 1];
    let _ = File::from(ready).read(&mut byte);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_uri_gives_path_and_query_args() {
        let cmd = parse_binary_uri("binary:///usr/bin/logger?id=abc&--log-dir=%2Fvar%2Flog&flag")
            .unwrap();
        assert_eq!(cmd.path, "/usr/bin/logger");
        assert_eq!(cmd.args, ["id", "abc", "--log-dir", "/var/log", "flag"]);
        assert_eq!(
            parse_binary_uri("binary:///bin/x").unwrap().args,
            Vec::<String>::new()
        );
        assert!(parse_binary_uri("binary://relative").is_none());
        assert!(parse_binary_uri("file:///x").is_none());
    }
}
