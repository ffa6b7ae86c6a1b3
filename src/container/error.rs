//! The one error type of the container init.
//!
//! Its Display text travels over the sync socket to the daemon, which returns it as the Create
//! error: so every variant names the failed step and carries the path or value and the errno,
//! e.g. `mount proc on /proc (in /run/.../rootfs): Operation not permitted`.

use std::fmt;
use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use super::namespaces::NamespaceError;

/// Why the container init could not be set up (or could not exec).
#[derive(Debug)]
pub enum InitError {
    /// The spec asks for something invalid, or something this runtime does not support.
    InvalidSpec(String),
    /// A hook failed (the text names its kind, index and path, and carries its stderr), or the
    /// daemon could not run the runtime's hooks.
    Hook(String),
    /// The namespace part of the spec.
    Namespaces(NamespaceError),
    /// Installing the received stdio on 0, 1 and 2, or making the terminal controlling.
    Stdio { step: String, errno: Errno },
    /// Reading a host file the setup depends on (`/proc/self/mountinfo`, `/proc/self/cgroup`).
    ReadHostFile { path: PathBuf, error: io::Error },
    /// Making `/` a slave (or the spec's propagation) and binding the rootfs onto itself.
    PrepareRoot {
        step: String,
        rootfs: PathBuf,
        errno: Errno,
    },
    /// Resolving or creating a path inside the rootfs.
    Resolve {
        action: &'static str,
        path: PathBuf,
        rootfs: PathBuf,
        errno: Errno,
    },
    /// A mount(2) call made for a spec mount, a device, a masked or a read-only path.
    Mount {
        action: String,
        destination: PathBuf,
        rootfs: PathBuf,
        errno: Errno,
    },
    /// The source of a bind mount cannot be used.
    MountSource {
        source: PathBuf,
        destination: PathBuf,
        error: io::Error,
    },
    /// A mount option this runtime recognises but cannot honour yet.
    MountOption {
        destination: PathBuf,
        option: String,
    },
    /// Creating a device node or a `/dev` symlink.
    Device {
        action: &'static str,
        path: PathBuf,
        rootfs: PathBuf,
        errno: Errno,
    },
    /// A step of the pivot_root sequence.
    PivotRoot {
        step: &'static str,
        rootfs: PathBuf,
        errno: Errno,
    },
    /// The container's `/dev/null`, used to mask files, is not the null device (CVE-2025-31133).
    MaskDevNull { found: String },
    /// sethostname or setdomainname.
    Hostname {
        what: &'static str,
        value: String,
        errno: Errno,
    },
    /// Writing a `linux.sysctl` entry.
    Sysctl {
        key: String,
        path: PathBuf,
        errno: Errno,
    },
    /// A sysctl path that does not lead to procfs.
    SysctlNotProcfs { key: String, path: PathBuf },
    /// Writing `/proc/self/oom_score_adj`.
    OomScoreAdj { value: i32, error: io::Error },
    /// setrlimit of a `process.rlimits` entry.
    Rlimit {
        name: String,
        soft: u64,
        hard: u64,
        errno: Errno,
    },
    /// prctl(PR_SET_NO_NEW_PRIVS).
    NoNewPrivileges(Errno),
    /// Compiling or loading `linux.seccomp` (libseccomp's text says why).
    Seccomp(String),
    /// A capability call (bounding drop, capset, ambient raise, keepcaps).
    Capability { step: String, errno: Errno },
    /// The spec asks for a capability this process cannot give.
    CapabilityUnavailable {
        cap: &'static str,
        set: &'static str,
        reason: &'static str,
    },
    /// setgroups, setgid or setuid.
    Credentials {
        step: &'static str,
        value: String,
        errno: Errno,
    },
    /// chdir to `process.cwd`.
    Cwd { path: PathBuf, errno: Errno },
    /// The cwd was reached but is not under the container's root (a path through a leaked
    /// host fd, CVE-2024-21626).
    CwdOutsideRoot { path: PathBuf },
    /// `args[0]` has no slash and is in no directory of `$PATH`.
    ExecutableNotFound { name: String },
    /// The executable exists but cannot be run, or execve itself failed.
    Exec { path: PathBuf, errno: Errno },
    /// A step just before execve (signal reset, close-on-exec sweep).
    PrepareExec { step: &'static str, errno: Errno },
    /// A string that must become a C string contains a NUL byte.
    NulByte { what: &'static str, value: String },
}

impl fmt::Display for InitError {
    // One arm per variant: long, but each arm is the whole message format of one step.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSpec(reason) => write!(f, "invalid spec: {reason}"),
            Self::Hook(error) => f.write_str(error),
            Self::Namespaces(e) => write!(f, "{e}"),
            Self::Stdio { step, errno } => write!(f, "install stdio: {step}: {}", errno.desc()),
            Self::ReadHostFile { path, error } => {
                write!(f, "read {}: {}", path.display(), describe_io(error))
            }
            Self::PrepareRoot {
                step,
                rootfs,
                errno,
            } => {
                write!(f, "{step} (rootfs {}): {}", rootfs.display(), errno.desc())
            }
            Self::Resolve {
                action,
                path,
                rootfs,
                errno,
            } => write!(
                f,
                "{action} {} (in {}): {}",
                path.display(),
                rootfs.display(),
                errno.desc()
            ),
            Self::Mount {
                action,
                destination,
                rootfs,
                errno,
            } => write!(
                f,
                "{action} on {} (in {}): {}",
                destination.display(),
                rootfs.display(),
                errno.desc()
            ),
            Self::MountSource {
                source,
                destination,
                error,
            } => write!(
                f,
                "bind mount source {} for {}: {}",
                source.display(),
                destination.display(),
                describe_io(error)
            ),
            Self::MountOption {
                destination,
                option,
            } => write!(
                f,
                "mount option {option:?} on {} is not supported yet",
                destination.display()
            ),
            Self::Device {
                action,
                path,
                rootfs,
                errno,
            } => write!(
                f,
                "{action} {} (in {}): {}",
                path.display(),
                rootfs.display(),
                errno.desc()
            ),
            Self::PivotRoot {
                step,
                rootfs,
                errno,
            } => {
                write!(
                    f,
                    "pivot_root to {}: {step}: {}",
                    rootfs.display(),
                    errno.desc()
                )
            }
            Self::MaskDevNull { found } => write!(
                f,
                "mask paths: /dev/null in the container is not the null device 1:3 ({found})"
            ),
            Self::Hostname { what, value, errno } => {
                write!(f, "set {what} to {value:?}: {}", errno.desc())
            }
            Self::Sysctl { key, path, errno } => {
                write!(
                    f,
                    "write sysctl {key} ({}): {}",
                    path.display(),
                    errno.desc()
                )
            }
            Self::SysctlNotProcfs { key, path } => {
                write!(f, "write sysctl {key}: {} is not on procfs", path.display())
            }
            Self::OomScoreAdj { value, error } => {
                write!(f, "set oom_score_adj to {value}: {}", describe_io(error))?;
                if error.raw_os_error() == Some(Errno::EACCES as i32) {
                    f.write_str(" (lowering it needs CAP_SYS_RESOURCE)")?;
                }
                Ok(())
            }
            Self::Rlimit {
                name,
                soft,
                hard,
                errno,
            } => {
                write!(
                    f,
                    "setrlimit {name} (soft {soft}, hard {hard}): {}",
                    errno.desc()
                )
            }
            Self::NoNewPrivileges(errno) => {
                write!(f, "prctl(PR_SET_NO_NEW_PRIVS): {}", errno.desc())
            }
            Self::Seccomp(reason) => write!(f, "linux.seccomp: {reason}"),
            Self::Capability { step, errno } => write!(f, "{step}: {}", errno.desc()),
            Self::CapabilityUnavailable { cap, set, reason } => {
                write!(f, "capability {cap} requested in the {set} set: {reason}")
            }
            Self::Credentials { step, value, errno } => {
                write!(f, "{step} {value}: {}", errno.desc())
            }
            Self::Cwd { path, errno } => {
                write!(f, "chdir to cwd {}: {}", path.display(), errno.desc())
            }
            Self::CwdOutsideRoot { path } => write!(
                f,
                "cwd {} is outside the container's root filesystem",
                path.display()
            ),
            Self::ExecutableNotFound { name } => {
                write!(f, "executable file not found in $PATH: {name}")
            }
            Self::Exec { path, errno } => write!(f, "exec {}: {}", path.display(), errno.desc()),
            Self::PrepareExec { step, errno } => {
                write!(f, "prepare exec: {step}: {}", errno.desc())
            }
            Self::NulByte { what, value } => write!(f, "{what} contains a NUL byte: {value:?}"),
        }
    }
}

impl std::error::Error for InitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Namespaces(e) => Some(e),
            Self::ReadHostFile { error, .. }
            | Self::MountSource { error, .. }
            | Self::OomScoreAdj { error, .. } => Some(error),
            Self::Stdio { errno, .. }
            | Self::PrepareRoot { errno, .. }
            | Self::Resolve { errno, .. }
            | Self::Mount { errno, .. }
            | Self::Device { errno, .. }
            | Self::PivotRoot { errno, .. }
            | Self::Hostname { errno, .. }
            | Self::Sysctl { errno, .. }
            | Self::Rlimit { errno, .. }
            | Self::NoNewPrivileges(errno)
            | Self::Capability { errno, .. }
            | Self::Credentials { errno, .. }
            | Self::Cwd { errno, .. }
            | Self::Exec { errno, .. }
            | Self::PrepareExec { errno, .. } => Some(errno),
            _ => None,
        }
    }
}

impl From<NamespaceError> for InitError {
    fn from(e: NamespaceError) -> Self {
        Self::Namespaces(e)
    }
}

/// An io::Error as the bare OS description ("Permission denied"), without Rust's "(os error 13)"
/// suffix, so messages read the same whichever API failed.
pub fn describe_io(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_owned(),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_error_names_step_path_rootfs_and_errno() {
        let e = InitError::Mount {
            action: "mount proc".into(),
            destination: "/proc".into(),
            rootfs: "/run/c1/rootfs".into(),
            errno: Errno::EPERM,
        };
        assert_eq!(
            e.to_string(),
            "mount proc on /proc (in /run/c1/rootfs): Operation not permitted"
        );
    }

    #[test]
    fn oom_score_adj_eacces_explains_the_missing_capability() {
        let e = InitError::OomScoreAdj {
            value: -999,
            error: io::Error::from_raw_os_error(Errno::EACCES as i32),
        };
        assert_eq!(
            e.to_string(),
            "set oom_score_adj to -999: Permission denied (lowering it needs CAP_SYS_RESOURCE)"
        );
    }

    #[test]
    fn exec_errors_read_like_runc() {
        let missing = InitError::ExecutableNotFound { name: "foo".into() };
        assert_eq!(
            missing.to_string(),
            "executable file not found in $PATH: foo"
        );
        let nope = InitError::Exec {
            path: "/bin/nope".into(),
            errno: Errno::ENOENT,
        };
        assert_eq!(
            nope.to_string(),
            "exec /bin/nope: No such file or directory"
        );
    }
}
