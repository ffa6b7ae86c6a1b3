//! `process.apparmorProfile` and `process.selinuxLabel`: the label the process gets at its
//! execve, written to the kernel's `attr/exec` of the process being set up.
//!
//! The daemon first checks that the host can apply what the spec asks ([`check_host`]): a
//! profile on a host without AppArmor, or a label without SELinux, fails Create with the
//! reason, as the container would otherwise run less confined than its spec says.
//!
//! The write goes through [`HostProc`], a procfs opened before the process joined the
//! container's mount namespace or pivoted into its root: the container's /proc is the
//! container's to rearrange, and a label written through it could land elsewhere
//! (CVE-2019-16884, CVE-2025-52881).

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::libc;
use nix::sys::statfs::{PROC_SUPER_MAGIC, fstatfs};
use oci_spec::runtime::Process;

use super::error::InitError;
use super::sys::{RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_XDEV, openat2};

const APPARMOR_ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
const SELINUX_ENFORCE: &str = "/sys/fs/selinux/enforce";

/// What the spec asks of the host's LSMs, if anything.
fn asked(process: &Process) -> (Option<&str>, Option<&str>) {
    (
        non_empty(process.apparmor_profile()),
        non_empty(process.selinux_label()),
    )
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Whether `process` asks for an AppArmor profile or an SELinux label.
pub fn asks_labels(process: &Process) -> bool {
    asked(process) != (None, None)
}

/// Whether this host can apply the labels `process` asks for; the error says what is missing.
pub fn check_host(process: &Process) -> Result<(), String> {
    let (apparmor, selinux) = asked(process);
    if let Some(profile) = apparmor
        && !apparmor_enabled()
    {
        return Err(format!(
            "process.apparmorProfile {profile:?} is set but AppArmor is not enabled on this host"
        ));
    }
    if let Some(label) = selinux
        && !Path::new(SELINUX_ENFORCE).exists()
    {
        return Err(format!(
            "process.selinuxLabel {label:?} is set but SELinux is not enabled on this host"
        ));
    }
    Ok(())
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string(APPARMOR_ENABLED).is_ok_and(|v| v.starts_with('Y'))
}

/// The host's procfs, opened (and checked to be a procfs) while the process still sees it.
#[derive(Debug)]
pub struct HostProc(OwnedFd);

impl HostProc {
    /// Opens `/proc` as the calling process sees it now.
    pub fn open() -> Result<Self, Errno> {
        let fd = nix::fcntl::open(
            "/proc",
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        if fstatfs(&fd)?.filesystem_type() != PROC_SUPER_MAGIC {
            return Err(Errno::EXDEV);
        }
        Ok(Self(fd))
    }

    /// Writes `value` to `thread-self/<file>` of this procfs, never leaving it (no mount
    /// crossing, no magic links).
    fn write(&self, file: &str, value: &str) -> Result<(), Errno> {
        let path = Path::new("thread-self").join(file);
        let resolve = RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS;
        let fd = openat2(self.0.as_fd(), &path, libc::O_WRONLY, 0, resolve)?;
        std::fs::File::from(fd)
            .write_all(value.as_bytes())
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    }
}

/// Sets the AppArmor profile and SELinux label the process gets at its execve.
pub fn apply_labels(process: &Process, proc: &HostProc) -> Result<(), InitError> {
    let (apparmor, selinux) = asked(process);
    if let Some(profile) = apparmor {
        // Linux 5.8 moved AppArmor's attributes to attr/apparmor/; attr/exec is the old place.
        let value = format!("exec {profile}");
        proc.write("attr/apparmor/exec", &value)
            .or_else(|_| proc.write("attr/exec", &value))
            .map_err(|errno| match errno {
                // The kernel knows no profile of that name.
                Errno::ENOENT => InitError::InvalidSpec(format!(
                    "apply process.apparmorProfile {profile:?}: the profile is not loaded \
                     (load it with apparmor_parser)"
                )),
                errno => lsm_error("apparmorProfile", profile, errno),
            })?;
    }
    if let Some(label) = selinux {
        proc.write("attr/exec", label)
            .map_err(|errno| lsm_error("selinuxLabel", label, errno))?;
    }
    Ok(())
}

fn lsm_error(field: &str, value: &str, errno: Errno) -> InitError {
    InitError::InvalidSpec(format!("apply process.{field} {value:?}: {}", errno.desc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(json: serde_json::Value) -> Process {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_host_without_the_lsm_is_named() {
        let base = serde_json::json!({"cwd": "/", "args": ["true"], "user": {"uid": 0, "gid": 0}});
        assert!(check_host(&process(base.clone())).is_ok());
        let mut empty = base.clone();
        empty["apparmorProfile"] = serde_json::json!("");
        assert!(
            check_host(&process(empty)).is_ok(),
            "an empty profile asks nothing"
        );
        if !apparmor_enabled() {
            let mut json = base.clone();
            json["apparmorProfile"] = serde_json::json!("docker-default");
            let err = check_host(&process(json)).unwrap_err();
            assert!(err.contains("AppArmor is not enabled"), "{err}");
        }
        if !Path::new(SELINUX_ENFORCE).exists() {
            let mut json = base;
            json["selinuxLabel"] = serde_json::json!("system_u:system_r:container_t:s0");
            let err = check_host(&process(json)).unwrap_err();
            assert!(err.contains("SELinux is not enabled"), "{err}");
        }
    }

    #[test]
    fn host_proc_is_a_checked_procfs() {
        let proc = HostProc::open().expect("/proc is a procfs here");
        // An attribute every kernel has, written through the checked fd's thread-self.
        let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
        proc.write("comm", comm.trim_end())
            .expect("write comm through the procfs fd");
    }
}
