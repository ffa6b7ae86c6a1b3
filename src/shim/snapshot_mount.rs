//! Mounting the root filesystem containerd's snapshotter prepared (the Create request's `rootfs`
//! mounts) at `<bundle>/rootfs`, and unmounting it on Delete.
//!
//! This runs in the daemon: a mount(2) call changes no per-process state, so it is safe in a
//! threaded process (unlike the chdir trick containerd's Go code uses for long overlay options).

use std::path::{Path, PathBuf};

use containerd_shim_protos::types::mount::Mount;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::container::mount_options::MountOptions;

/// Why the rootfs could not be mounted.
#[derive(Debug)]
pub struct RootfsError {
    message: String,
}

impl std::fmt::Display for RootfsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RootfsError {}

/// The rootfs mounts this daemon made; `unmount` undoes them.
#[derive(Debug)]
pub struct MountedRootfs {
    target: PathBuf,
    layers: usize,
}

/// Mounts `mounts` in order on `target` (all of them: containerd may stack several).
/// Returns `None` when there is nothing to mount (the bundle's rootfs is already in place).
pub fn mount_rootfs(mounts: &[Mount], target: &Path) -> Result<Option<MountedRootfs>, RootfsError> {
    if mounts.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(target).map_err(|e| RootfsError {
        message: format!("create rootfs directory {}: {e}", target.display()),
    })?;
    let mut mounted = MountedRootfs {
        target: target.to_owned(),
        layers: 0,
    };
    for m in mounts {
        // On failure `mounted` drops here and unmounts the layers already stacked.
        mount_one(m, target)?;
        mounted.layers += 1;
    }
    Ok(Some(mounted))
}

fn mount_one(m: &Mount, target: &Path) -> Result<(), RootfsError> {
    let options = MountOptions::parse(&m.options);
    let mut flags = options.flags;
    if m.type_ == "bind" || m.type_ == "rbind" {
        flags |= MsFlags::MS_BIND;
    }
    let data = options.data.join(",");
    // mount(2) copies at most one page of option data.
    if data.len() >= 4096 {
        return Err(RootfsError {
            message: format!(
                "mount {} on {}: {} bytes of options exceed one page",
                m.type_,
                target.display(),
                data.len()
            ),
        });
    }
    let fstype = (m.type_ != "bind").then_some(m.type_.as_str());
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(Some(m.source.as_str()), target, fstype, flags, data).map_err(|e| RootfsError {
        message: format!(
            "mount {} {} on {} ({}): {e}",
            m.type_,
            m.source,
            target.display(),
            m.options.join(",")
        ),
    })?;
    // A read-only bind needs a second call: MS_RDONLY is ignored on the first.
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        let remount = flags | MsFlags::MS_REMOUNT;
        mount(None::<&str>, target, None::<&str>, remount, None::<&str>).map_err(|e| {
            RootfsError {
                message: format!("remount {} read-only: {e}", target.display()),
            }
        })?;
    }
    Ok(())
}

impl MountedRootfs {
    /// Unmounts every layer this daemon stacked on the target.
    pub fn unmount(&mut self) -> Result<(), RootfsError> {
        while self.layers > 0 {
            umount2(&self.target, MntFlags::MNT_DETACH).map_err(|e| RootfsError {
                message: format!("unmount rootfs {}: {e}", self.target.display()),
            })?;
            self.layers -= 1;
        }
        Ok(())
    }

    pub fn target(&self) -> &Path {
        &self.target
    }
}

impl Drop for MountedRootfs {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            log::error!("{e}");
        }
    }
}
