//! A container's new user namespace: its id maps are written by the helper, a process outside
//! the namespace with the host's privileges, while the init waits at a gate (a pipe) right
//! after clone. Only then does the init become the namespace's root and go on with its setup.

use std::io::Write;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::unistd::{Gid, Pid, Uid, pipe2, read, setgroups, setresgid, setresuid};

use crate::container::namespaces::IdMappings;

/// Both ends of the gate: the init reads, the helper writes one byte once the maps are in.
pub struct Gate {
    pub wait: OwnedFd,
    pub open: OwnedFd,
}

pub fn gate() -> Result<Gate, String> {
    let (wait, open) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("create the id map gate: {e}"))?;
    Ok(Gate { wait, open })
}

/// In the helper: writes the init's `uid_map` and `gid_map`, then opens the gate.
///
/// `setgroups` stays "allow": the maps are written by a process with CAP_SETGID over the
/// parent namespace, so the kernel does not require "deny" (and the container may need
/// supplementary groups).
pub fn write_maps(pid: Pid, maps: &IdMappings, open: OwnedFd) -> Result<(), String> {
    write_map(pid, "uid_map", &IdMappings::map_text(&maps.uids))?;
    write_map(pid, "gid_map", &IdMappings::map_text(&maps.gids))?;
    nix::unistd::write(&open, b"1").map_err(|e| format!("open the id map gate: {e}"))?;
    Ok(())
}

fn write_map(pid: Pid, file: &str, text: &str) -> Result<(), String> {
    let path = format!("/proc/{pid}/{file}");
    // One write(2): the kernel takes a map in a single write only.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| {
            format!(
                "write {path} ({}): {e}",
                text.trim_end().replace('\n', ", ")
            )
        })
}

/// In the init: waits until the helper wrote the maps, then becomes root of the namespace
/// (uid and gid 0, no supplementary groups), as files it creates from here on must be owned by
/// the container's root, not by an unmapped id.
pub fn wait_for_maps(gate: Gate) -> Result<(), String> {
    drop(gate.open);
    let mut byte = [0u8; 1];
    loop {
        match read(&gate.wait, &mut byte) {
            Ok(1) => break,
            Ok(_) => return Err("the helper gave up before writing the id maps".into()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("wait for the id maps: {e}")),
        }
    }
    let root = |what: &str, e: Errno| format!("become root of the user namespace ({what}): {e}");
    setgroups(&[]).map_err(|e| root("setgroups", e))?;
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| root("gid 0 must be mapped", e))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| root("uid 0 must be mapped", e))?;
    Ok(())
}
