//! `linux.sysctl`: written through the container's own procfs after pivot_root, and only for
//! the namespaced sysctls whose namespace the container does not share with the host (writing
//! `vm.*` or `kernel.core_pattern` from a container would change the host).

use std::collections::HashMap;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::libc;
use nix::sys::statfs::{PROC_SUPER_MAGIC, fstatfs};
use nix::unistd::write;

use super::error::InitError;
use super::in_root::RootDir;
use super::namespaces::{NamespaceKind, NamespacePlan};

/// IPC sysctls under `kernel.` (the rest of `kernel.` is global).
const KERNEL_IPC: &[&str] = &[
    "msgmax",
    "msgmnb",
    "msgmni",
    "sem",
    "shmall",
    "shmmax",
    "shmmni",
    "shm_rmid_forced",
];

/// A key's components: `net.ipv4.ip_forward`, or the slash form that allows dots in names
/// (`net/ipv4/conf/eth0.100/forwarding`).
fn key_components(key: &str) -> Result<Vec<&str>, InitError> {
    let separator = if key.contains('/') { '/' } else { '.' };
    let components: Vec<&str> = key.split(separator).collect();
    if components
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(InitError::InvalidSpec(format!(
            "invalid sysctl name {key:?}"
        )));
    }
    Ok(components)
}

/// The container path of a sysctl's file (`/proc/sys/net/ipv4/ip_forward`).
pub fn sysctl_path(key: &str) -> Result<PathBuf, InitError> {
    let mut path = PathBuf::from("/proc/sys");
    path.extend(key_components(key)?);
    Ok(path)
}

/// The namespace a sysctl belongs to; `None` for global ones.
pub fn sysctl_namespace(key: &str) -> Result<Option<NamespaceKind>, InitError> {
    let components = key_components(key)?;
    let kind = match components.as_slice() {
        ["net", ..] => Some(NamespaceKind::Net),
        ["fs", "mqueue", ..] => Some(NamespaceKind::Ipc),
        ["kernel", name] if KERNEL_IPC.contains(name) => Some(NamespaceKind::Ipc),
        ["kernel", "hostname" | "domainname"] => Some(NamespaceKind::Uts),
        _ => None,
    };
    Ok(kind)
}

/// Rejects a sysctl that would change the host.
pub fn check_sysctl(key: &str, namespaces: &NamespacePlan) -> Result<(), InitError> {
    match sysctl_namespace(key)? {
        Some(kind) if namespaces.is_private(kind) => Ok(()),
        Some(kind) => Err(InitError::InvalidSpec(format!(
            "sysctl {key} needs a {} namespace of the container's own",
            kind.name()
        ))),
        None => Err(InitError::InvalidSpec(format!(
            "sysctl {key} is not namespaced: setting it would change the host"
        ))),
    }
}

/// Writes every sysctl (sorted by key, so the order does not depend on a HashMap).
pub fn apply_sysctls(
    root: &RootDir,
    sysctls: &HashMap<String, String>,
    namespaces: &NamespacePlan,
) -> Result<(), InitError> {
    let mut keys: Vec<&String> = sysctls.keys().collect();
    keys.sort();
    for key in keys {
        check_sysctl(key, namespaces)?;
        write_sysctl(root, key, &sysctls[key])?;
    }
    Ok(())
}

fn write_sysctl(root: &RootDir, key: &str, value: &str) -> Result<(), InitError> {
    let path = sysctl_path(key)?;
    let error = |errno| InitError::Sysctl {
        key: key.to_owned(),
        path: path.clone(),
        errno,
    };
    // O_NONBLOCK: should this not be procfs after all, a FIFO must not hang the init.
    let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
    let fd = root.open_in_root(&path, flags).map_err(error)?;
    // The check is made on the opened fd, so what was checked is what is written.
    let statfs = fstatfs(&fd).map_err(error)?;
    if statfs.filesystem_type() != PROC_SUPER_MAGIC {
        return Err(InitError::SysctlNotProcfs {
            key: key.to_owned(),
            path,
        });
    }
    let written = write(&fd, value.as_bytes()).map_err(error)?;
    if written != value.len() {
        return Err(error(Errno::EIO));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn keys_map_to_proc_sys_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/forwarding").unwrap(),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        assert!(sysctl_path("net..x").is_err());
        assert!(sysctl_path("net/../../etc/passwd").is_err());
        assert!(sysctl_path("/net/ipv4").is_err());
    }

    #[test]
    fn only_namespaced_sysctls_in_private_namespaces_are_allowed() {
        let private = NamespacePlan {
            new_flags: NamespaceKind::Net.clone_flag() | NamespaceKind::Ipc.clone_flag(),
            join: vec![(NamespaceKind::Uts, "/proc/1/ns/uts".into())],
            id_mappings: None,
            time_offsets: Vec::new(),
        };
        for key in [
            "net.ipv4.ip_unprivileged_port_start",
            "kernel.shmmax",
            "fs.mqueue.msg_max",
            "kernel.hostname",
        ] {
            assert!(check_sysctl(key, &private).is_ok(), "{key}");
        }
        let host = NamespacePlan::default();
        let err = check_sysctl("net.ipv4.ip_forward", &host).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid spec: sysctl net.ipv4.ip_forward needs a net namespace of the container's own"
        );
        assert!(check_sysctl("vm.overcommit_memory", &private).is_err());
        assert!(check_sysctl("kernel.core_pattern", &private).is_err());
    }
}
