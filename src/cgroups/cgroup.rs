//! A container's cgroup: one directory per hierarchy, created, joined and removed together.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::{debug, warn};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::files::{Backoff, read_optional, write_file};
use super::{CgroupError, CgroupMode, CgroupPath, Hierarchies, Hierarchy};

/// `rmdir` of a just-emptied cgroup can fail with EBUSY for a moment while the kernel releases
/// it (runc retries too); this bounds the retries.
const RMDIR_BUDGET: Duration = Duration::from_millis(500);

/// A container's cgroup, with the concrete directory to use in every hierarchy. Serializable so
/// the daemon can hand it to the spawner (and get it back after `create`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub(super) mode: CgroupMode,
    pub(super) dirs: Vec<CgroupDir>,
    /// The transient systemd scope the cgroup belongs to (the systemd driver): `remove` stops
    /// it, Update sets its properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) systemd_unit: Option<String>,
}

/// The container's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// v1 controllers of the hierarchy; empty for cgroup2.
    pub(super) controllers: Vec<String>,
    pub(super) unified: bool,
    /// The hierarchy's mount point: never created or removed here.
    pub(super) mount_point: PathBuf,
    /// The container's cgroup directory.
    pub(super) path: PathBuf,
    /// Directories `create` made itself, shallowest first: `remove` removes only these, so a
    /// shared parent such as `/sys/fs/cgroup/memory/default` that existed before survives.
    pub(super) created: Vec<PathBuf>,
}

impl CgroupDir {
    fn resolve(hierarchy: &Hierarchy, path: &CgroupPath) -> CgroupDir {
        let base = match path {
            CgroupPath::Absolute(_) => hierarchy.mount_point().to_path_buf(),
            CgroupPath::Relative(_) => hierarchy.own_dir(),
        };
        // CgroupPath is clean (no `..`), so stripping the leading `/` keeps it below `base`.
        let below = path.as_path().strip_prefix("/").unwrap_or(path.as_path());
        CgroupDir {
            controllers: hierarchy.controllers().to_vec(),
            unified: hierarchy.is_unified(),
            mount_point: hierarchy.mount_point().to_path_buf(),
            path: base.join(below),
            created: Vec::new(),
        }
    }

    /// The container's directory in this hierarchy.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// v1 controllers of this hierarchy; empty for cgroup2.
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    pub fn is_unified(&self) -> bool {
        self.unified
    }

    pub fn has_controller(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// Whether `create` made the container's directory itself (rather than finding it).
    pub fn created_leaf(&self) -> bool {
        self.created.last() == Some(&self.path)
    }

    /// `mkdir -p` from the mount point down, recording what it made. On pure v2 every
    /// ancestor delegates its controllers to its children first (as runc does), otherwise the
    /// leaf has no `memory.max` or `pids.max`. On v1 cpuset, every level needs cpus and mems
    /// before a process can join (else ENOSPC).
    fn create(&mut self, enable_controllers: bool) -> Result<(), CgroupError> {
        // Another container's `remove` may rmdir a parent it created between our mkdir of that
        // parent (EEXIST) and our next step in it: the mkdir below it fails with ENOENT, a
        // write into its files with ENODEV. Start again from the top then.
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            match self.create_levels(enable_controllers) {
                Err(
                    CgroupError::CreateDir { source, .. } | CgroupError::CopyCpuset { source, .. },
                ) if parent_vanished(&source) && attempt < ATTEMPTS => {}
                result => return result,
            }
        }
        unreachable!("the last attempt returns")
    }

    fn create_levels(&mut self, enable_controllers: bool) -> Result<(), CgroupError> {
        let below = self
            .path
            .strip_prefix(&self.mount_point)
            .map_err(|_| CgroupError::InvalidPath {
                path: self.path.display().to_string(),
                reason: "not below its hierarchy's mount point",
            })?
            .to_path_buf();
        let mut current = self.mount_point.clone();
        for component in below.components() {
            if enable_controllers {
                enable_subtree_controllers(&current);
            }
            current.push(component);
            if make_dir(&current)? {
                self.created.push(current.clone());
            }
            if self.has_controller("cpuset") {
                copy_cpuset_from_parent(&current)?;
            }
        }
        Ok(())
    }

    /// Removes what `create` made: child cgroups of the leaf deepest first, the leaf, then the
    /// parents it created, deepest first, as long as they are empty.
    fn remove_created(&self) -> Result<(), CgroupError> {
        if self.created_leaf() {
            for child in list_child_cgroups(&self.path)? {
                remove_dir_retrying(&child)?;
            }
            remove_dir_retrying(&self.path)?;
        } else {
            debug!(
                "cgroups: keeping {}: it existed before",
                self.path.display()
            );
        }
        for parent in self.created.iter().rev().filter(|p| **p != self.path) {
            if !remove_parent_if_empty(parent)? {
                break;
            }
        }
        Ok(())
    }

    /// Undo for a failed `create`: nothing joined yet, so a plain `rmdir` is enough.
    fn remove_created_quietly(&self) {
        for dir in self.created.iter().rev() {
            if let Err(e) = fs::remove_dir(dir) {
                debug!("cgroups: undo create: rmdir {}: {e}", dir.display());
            }
        }
    }
}

impl Cgroup {
    /// The directories `path` names in every hierarchy, without touching the filesystem
    /// (nothing is recorded as created, so `remove` on the result removes nothing).
    pub fn resolve(hierarchies: &Hierarchies, path: &CgroupPath) -> Cgroup {
        Cgroup {
            mode: hierarchies.mode(),
            dirs: hierarchies
                .all()
                .map(|h| CgroupDir::resolve(h, path))
                .collect(),
            systemd_unit: None,
        }
    }

    /// The cgroup of a systemd scope that was just started (`unit`, whose directory is
    /// `path`): systemd made the directory and enabled the controllers along the way, so
    /// nothing above it is touched; `remove` stops the unit after emptying it. Only on pure
    /// cgroup v2 (the caller checks).
    pub fn in_systemd_scope(
        hierarchies: &Hierarchies,
        path: &CgroupPath,
        unit: &str,
    ) -> Result<Cgroup, CgroupError> {
        let mut cgroup = Self::resolve(hierarchies, path);
        cgroup.systemd_unit = Some(unit.to_owned());
        for dir in &cgroup.dirs {
            if !dir.path.is_dir() {
                return Err(CgroupError::Systemd(format!(
                    "unit {unit} started but its cgroup {} does not exist",
                    dir.path.display()
                )));
            }
        }
        Ok(cgroup)
    }

    /// The systemd scope this cgroup belongs to, with the systemd driver.
    pub fn systemd_unit(&self) -> Option<&str> {
        self.systemd_unit.as_deref()
    }

    /// Creates the container's cgroup in every hierarchy (`mkdir -p`). If one hierarchy fails,
    /// what was created in the others is removed again before the error is returned.
    pub fn create(hierarchies: &Hierarchies, path: &CgroupPath) -> Result<Cgroup, CgroupError> {
        let mut cgroup = Self::resolve(hierarchies, path);
        let enable_controllers = cgroup.mode == CgroupMode::Unified;
        let created = cgroup
            .dirs
            .iter_mut()
            .try_for_each(|dir| dir.create(enable_controllers));
        if let Err(e) = created {
            cgroup
                .dirs
                .iter()
                .for_each(CgroupDir::remove_created_quietly);
            return Err(e);
        }
        Ok(cgroup)
    }

    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// One directory per hierarchy: v1 ones first, then cgroup2.
    pub fn dirs(&self) -> &[CgroupDir] {
        &self.dirs
    }

    /// The directory in the cgroup2 hierarchy (hybrid and unified modes).
    pub fn unified_dir(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.unified)
            .map(|d| d.path.as_path())
    }

    /// The directory of the v1 hierarchy carrying `controller`.
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.has_controller(controller))
            .map(|d| d.path.as_path())
    }

    /// Moves `pid` (0: the calling process) into the cgroup in every hierarchy.
    pub fn join(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            let procs = dir.path.join("cgroup.procs");
            write_file(&procs, &pid.to_string()).map_err(|source| CgroupError::Join {
                path: procs,
                pid,
                source,
            })?;
        }
        Ok(())
    }

    /// Puts the calling process's children in this cgroup: moves the caller into every v1
    /// hierarchy and returns the cgroup2 directory, if there is one, for the child's
    /// `clone3(CLONE_INTO_CGROUP)`.
    ///
    /// Why not `cgroup.procs` everywhere: moving a whole thread group takes the kernel's global
    /// threadgroup lock for writing, which waits for an RCU grace period (about 8 ms measured on
    /// these machines, per Create and per exec). Moving only the calling thread (`0` into a v1
    /// `tasks` file) skips that lock on current kernels, and `CLONE_INTO_CGROUP` takes it only
    /// for reading. The caller must be single-threaded (a spawner helper is), or its other
    /// threads would stay behind.
    pub fn enter_for_clone(&self) -> Result<Option<OwnedFd>, CgroupError> {
        for dir in self.dirs.iter().filter(|d| !d.unified) {
            let tasks = dir.path.join("tasks");
            write_file(&tasks, "0").map_err(|source| CgroupError::Join {
                path: tasks,
                pid: 0,
                source,
            })?;
        }
        self.dirs
            .iter()
            .find(|d| d.unified)
            .map(|d| open_directory(&d.path))
            .transpose()
    }

    /// The cgroup2 directory, opened for `clone3`'s `CLONE_INTO_CGROUP` (which puts the child in
    /// the cgroup atomically, before it runs). Only on pure v2: elsewhere v1 hierarchies still
    /// need [`Cgroup::join`], so this returns [`CgroupError::NotUnified`].
    pub fn open_dir_fd(&self) -> Result<OwnedFd, CgroupError> {
        if self.mode != CgroupMode::Unified {
            return Err(CgroupError::NotUnified);
        }
        open_directory(self.unified_dir().ok_or(CgroupError::NotUnified)?)
    }

    /// Removes the container's cgroup: thaws a v1 freezer (a frozen process never dies), kills
    /// every leftover process with SIGKILL, waits (bounded) until the cgroup is empty, then
    /// removes child cgroups deepest first and the directories `create` made. Every hierarchy
    /// is attempted; the first error is returned. Directories found already gone are fine, so
    /// a second `remove` succeeds.
    pub fn remove(&self) -> Result<(), CgroupError> {
        self.thaw_v1_freezer();
        self.kill_all(Signal::SIGKILL)?;
        self.wait_until_empty();
        let mut first_error = None;
        for dir in &self.dirs {
            if let Err(e) = dir.remove_created() {
                warn!("cgroups: {e}");
                first_error.get_or_insert(e);
            }
        }
        // Empty now, so systemd has nothing to signal: stopping only removes the unit and
        // its directory (waiting for the job, bounded).
        if let Some(unit) = &self.systemd_unit
            && let Err(e) = super::systemd::stop_unit(unit)
        {
            warn!("cgroups: {e}");
            first_error.get_or_insert(CgroupError::Systemd(e.to_string()));
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A process frozen by the v1 freezer does not act on SIGKILL until thawed. cgroup2's
    /// freezer lets fatal signals through, so it needs nothing.
    pub fn thaw_v1_freezer(&self) {
        for dir in self.dirs.iter().filter(|d| d.has_controller("freezer")) {
            let state = dir.path.join("freezer.state");
            match write_file(&state, "THAWED") {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => warn!("cgroups: thaw {}: {e}", state.display()),
            }
        }
    }
}

fn parent_vanished(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(nix::libc::ENOENT) | Some(nix::libc::ENODEV)
    )
}

/// `mkdir` one level; `true` if this call created it. A directory that appears concurrently
/// (another container creating the same parent) is not ours.
fn make_dir(path: &Path) -> Result<bool, CgroupError> {
    match DirBuilder::new().mode(0o755).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::CreateDir {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Best effort, like runc: enable every controller `dir` has in its `cgroup.subtree_control`,
/// all at once, else one by one. Some cannot be enabled (a cgroup with processes in it, a
/// delegated subtree); a resource limit that needs one then fails with a clear error.
fn enable_subtree_controllers(dir: &Path) {
    let available = match read_optional(&dir.join("cgroup.controllers")) {
        Ok(Some(text)) => text,
        Ok(None) => return,
        Err(e) => {
            debug!("cgroups: read {}/cgroup.controllers: {e}", dir.display());
            return;
        }
    };
    let wanted: Vec<String> = available
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let subtree_control = dir.join("cgroup.subtree_control");
    if write_file(&subtree_control, &wanted.join(" ")).is_ok() {
        return;
    }
    for controller in &wanted {
        if let Err(e) = write_file(&subtree_control, controller) {
            debug!(
                "cgroups: {controller} in {}: {e}",
                subtree_control.display()
            );
        }
    }
}

/// A new v1 cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems`, and joining it
/// fails with ENOSPC; copy the parent's values into any level that is still empty.
fn copy_cpuset_from_parent(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for name in ["cpuset.cpus", "cpuset.mems"] {
        let file = dir.join(name);
        let copy_error = |source| CgroupError::CopyCpuset {
            path: file.clone(),
            source,
        };
        let current = fs::read_to_string(&file).map_err(copy_error)?;
        if !current.trim().is_empty() {
            continue;
        }
        let inherited = fs::read_to_string(parent.join(name)).map_err(copy_error)?;
        write_file(&file, inherited.trim()).map_err(copy_error)?;
    }
    Ok(())
}

/// Every cgroup below `dir`, children before their parents (reversed pre-order).
fn list_child_cgroups(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut pending = vec![dir.to_path_buf()];
    let mut found = Vec::new();
    while let Some(current) = pending.pop() {
        for child in read_subdirs(&current)? {
            pending.push(child.clone());
            found.push(child);
        }
    }
    found.reverse();
    Ok(found)
}

/// Subdirectories of `dir`; none if `dir` is gone.
pub(super) fn read_subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let read_error = |source| CgroupError::ReadProcs {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(e)),
    };
    let mut subdirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_error)?;
        if entry.file_type().map_err(read_error)?.is_dir() {
            subdirs.push(entry.path());
        }
    }
    Ok(subdirs)
}

/// `rmdir`, retrying EBUSY for a short bounded time; a directory already gone is fine.
fn remove_dir_retrying(path: &Path) -> Result<(), CgroupError> {
    let mut backoff = Backoff::new(
        Duration::from_millis(10),
        Duration::from_millis(100),
        RMDIR_BUDGET,
    );
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) && backoff.sleep() => {}
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// `rmdir` of a parent `create` made; `false` when it still holds other cgroups (another
/// container created below it meanwhile): it and its ancestors stay, which is not an error.
fn remove_parent_if_empty(path: &Path) -> Result<bool, CgroupError> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e)
            if e.raw_os_error() == Some(Errno::EBUSY as i32)
                || e.raw_os_error() == Some(Errno::ENOTEMPTY as i32) =>
        {
            debug!("cgroups: keeping {}: still in use", path.display());
            Ok(false)
        }
        Err(source) => Err(CgroupError::RemoveDir {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A cgroup2 directory for `CLONE_INTO_CGROUP`: a real read-only open, since the kernel rejects
/// O_PATH descriptors there (std adds O_CLOEXEC).
fn open_directory(dir: &Path) -> Result<OwnedFd, CgroupError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY)
        .open(dir)
        .map_err(|source| CgroupError::OpenDir {
            path: dir.to_path_buf(),
            source,
        })?;
    Ok(OwnedFd::from(file))
}
