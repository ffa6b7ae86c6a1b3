//! `process.user`: supplementary groups, gid and uid, in that order (setgroups and setgid need
//! CAP_SETGID, which setuid to a non-root user takes away).

use nix::sys::prctl;
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::User;

use super::error::InitError;

/// Switches to the spec's user. PR_SET_KEEPCAPS keeps the permitted capabilities across the uid
/// change (the kernel clears them when leaving uid 0 otherwise), so that the capability step
/// after this can still set the spec's sets.
pub fn switch_user(user: &User) -> Result<(), InitError> {
    set_keepcaps(true)?;
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // Always called, even with no additional gids: the runtime's own groups must not leak in.
    setgroups(&gids).map_err(|errno| InitError::Credentials {
        step: "setgroups",
        value: format!("{:?}", user.additional_gids().clone().unwrap_or_default()),
        errno,
    })?;
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).map_err(|errno| InitError::Credentials {
        step: "setgid",
        value: gid.to_string(),
        errno,
    })?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).map_err(|errno| InitError::Credentials {
        step: "setuid",
        value: uid.to_string(),
        errno,
    })?;
    set_keepcaps(false)
}

fn set_keepcaps(keep: bool) -> Result<(), InitError> {
    prctl::set_keepcaps(keep).map_err(|errno| InitError::Capability {
        step: format!("prctl(PR_SET_KEEPCAPS, {})", u8::from(keep)),
        errno,
    })
}
