//! Small per-process attributes of `process`: oom_score_adj, no_new_privs, umask.

use std::io::Write;

use nix::sys::prctl;
use nix::sys::stat::{Mode, umask};

use super::error::InitError;

/// Writes `process.oomScoreAdj` to `/proc/self/oom_score_adj`.
///
/// Call it while the process still has the runtime's privileges and the host's /proc (for an
/// exec, in the helper before it joins the container's mount namespace: the container's /proc
/// is the container's to rearrange, and a write through it could land on another file,
/// CVE-2025-52881). The value is inherited by the process the helper clones. Lowering
/// the value needs CAP_SYS_RESOURCE. Where that is missing (root on some CI machines lacks it
/// in its bounding set) this fails with EACCES, reported as such, never ignored: the container
/// would otherwise run with a different OOM priority than asked.
pub fn set_oom_score_adj(value: i32) -> Result<(), InitError> {
    let error = |error| InitError::OomScoreAdj { value, error };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/oom_score_adj")
        .map_err(error)?;
    file.write_all(value.to_string().as_bytes()).map_err(error)
}

/// `process.noNewPrivileges`: execve can then grant no privileges (setuid bits, file caps).
pub fn set_no_new_privileges() -> Result<(), InitError> {
    prctl::set_no_new_privs().map_err(InitError::NoNewPrivileges)
}

/// `process.user.umask`, or 0022 as runc when the spec has none.
pub fn set_umask(spec_umask: Option<u32>) {
    let mask = spec_umask.unwrap_or(0o022) & 0o777;
    umask(Mode::from_bits_truncate(mask));
}
