//! A container's new user namespace: its id maps are written by the helper, a process outside
//! the namespace with the host's privileges, while the init waits at a gate (a pipe) right
//! after clone. Only then does the init become the namespace's root and go on with its setup.
//!
//! Also the user namespaces of idmapped mounts ([`idmapped_trees`]), made by the helper too.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::waitpid;
use nix::unistd::{
    ForkResult, Gid, Pid, Uid, fork, pipe2, read, setgroups, setresgid, setresuid, write,
};

use crate::container::InitConfig;
use crate::container::mounts::{open_idmapped_tree, plan_mount};
use crate::container::namespaces::IdMappings;
use crate::container::rootfs::IdmappedTrees;

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
    write_id_maps(pid, maps)?;
    nix::unistd::write(&open, b"1").map_err(|e| format!("open the id map gate: {e}"))?;
    Ok(())
}

fn write_id_maps(pid: Pid, maps: &IdMappings) -> Result<(), String> {
    write_map(pid, "uid_map", &IdMappings::map_text(&maps.uids))?;
    write_map(pid, "gid_map", &IdMappings::map_text(&maps.gids))
}

/// In the helper, before it clones the init: the detached idmapped trees of the spec's
/// idmapped binds, by index in `mounts` (the init inherits them and attaches each in its turn).
/// Made here, outside the container's user namespace: attaching an idmap to a host filesystem
/// needs privileges over the filesystem's user namespace, which the init may no longer have.
/// Mounts with the same maps share one user namespace.
pub fn idmapped_trees(config: &InitConfig) -> Result<IdmappedTrees, String> {
    let mounts = config.spec.mounts().as_deref().unwrap_or_default();
    let bundle = config.rootfs.parent().unwrap_or(Path::new("/"));
    let mut namespaces: Vec<(IdMappings, OwnedFd)> = Vec::new();
    let mut trees = Vec::new();
    for (index, mount) in mounts.iter().enumerate() {
        if mount.uid_mappings().is_none() && mount.gid_mappings().is_none() {
            continue;
        }
        let plan = plan_mount(mount, bundle).map_err(|e| e.to_string())?;
        let Some(idmap) = &plan.idmap else { continue };
        let position = match namespaces.iter().position(|(maps, _)| *maps == idmap.maps) {
            Some(position) => position,
            None => {
                let userns = mapped_user_namespace(&idmap.maps).map_err(|e| {
                    format!(
                        "idmapped mount on {}: user namespace: {e}",
                        plan.destination.display()
                    )
                })?;
                namespaces.push((idmap.maps.clone(), userns));
                namespaces.len() - 1
            }
        };
        let tree = open_idmapped_tree(&plan, namespaces[position].1.as_fd())?;
        trees.push((index, tree));
    }
    Ok(IdmappedTrees::new(trees))
}

/// A user namespace with `maps`, held by an fd (`/proc/<pid>/ns/user` of a short-lived child
/// that made it, as runc does). The child is gone, and reaped, when this returns.
fn mapped_user_namespace(maps: &IdMappings) -> Result<OwnedFd, String> {
    let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
    let (ready_read, ready_write) = pipe()?;
    let (done_read, done_write) = pipe()?;
    // SAFETY: the helper is single-threaded, so the child is a complete copy; it only closes
    // fds, calls unshare, read and write, and leaves with _exit.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(ready_read);
            drop(done_write);
            if unshare(CloneFlags::CLONE_NEWUSER).is_ok() && write(&ready_write, b"1") == Ok(1) {
                // Until the helper closed its end: it has opened our namespace by then.
                let mut byte = [0u8; 1];
                while read(&done_read, &mut byte) == Err(Errno::EINTR) {}
            }
            // SAFETY: _exit is async-signal-safe and never returns; nothing of the helper's
            // may be flushed or run from this copy.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(ready_write);
            drop(done_read);
            let opened = open_child_namespace(child, maps, &ready_read);
            // The child leaves at end of file; reap it before anything else can happen.
            drop(done_write);
            while let Err(Errno::EINTR) = waitpid(child, None) {}
            opened
        }
    }
}

fn open_child_namespace(child: Pid, maps: &IdMappings, ready: &OwnedFd) -> Result<OwnedFd, String> {
    let mut byte = [0u8; 1];
    loop {
        match read(ready, &mut byte) {
            Ok(1) => break,
            Ok(_) => return Err("the child could not unshare a user namespace".into()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("wait for the child: {e}")),
        }
    }
    write_id_maps(child, maps)?;
    let path = format!("/proc/{child}/ns/user");
    std::fs::File::open(&path)
        .map(OwnedFd::from)
        .map_err(|e| format!("open {path}: {e}"))
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
