//! What the `delete` action needs when the daemon is gone: a small JSON file in the bundle,
//! written by Create once the init's pid is known (while the init sets itself up), removed on
//! Delete or when the Create fails.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::task::TaskHooks;
use crate::cgroups::Cgroup;

const FILE_NAME: &str = "sibling-state.json";

#[derive(Debug, Serialize, Deserialize)]
pub struct SavedState {
    pub pid: u32,
    pub cgroup: Option<Cgroup>,
    /// The rootfs mount point, when the daemon mounted it.
    pub rootfs: Option<PathBuf>,
    /// The `poststop` hooks and their state, for a `delete` after the daemon died.
    #[serde(default)]
    pub hooks: TaskHooks,
}

impl SavedState {
    /// What `delete` needs of a container whose init is `pid`.
    pub fn new(
        pid: u32,
        cgroup: Option<&Cgroup>,
        rootfs: Option<&Path>,
        hooks: &TaskHooks,
    ) -> SavedState {
        SavedState {
            pid,
            cgroup: cgroup.cloned(),
            rootfs: rootfs.map(Path::to_owned),
            hooks: TaskHooks {
                poststart: Vec::new(),
                ..hooks.clone()
            },
        }
    }
}

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn in_bundle(bundle: &Path) -> StateFile {
        StateFile {
            path: bundle.join(FILE_NAME),
        }
    }

    pub fn save(&self, state: &SavedState) {
        let written = serde_json::to_vec(state)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&self.path, bytes));
        if let Err(e) = written {
            log::warn!("write {}: {e}", self.path.display());
        }
    }

    pub fn load(&self) -> Option<SavedState> {
        let bytes = std::fs::read(&self.path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
