//! The bundle's `config.json` as the daemon reads it: parsed once per Create, with the
//! confinement this host cannot apply refused up front, and the container root resolved.
//! Runs in the daemon.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Process as ProcessSpec, Spec};

use super::error::TaskError;

/// Reads and parses `<bundle>/config.json`; a malformed file is the caller's error.
pub(super) fn load_spec(bundle: &Path) -> Result<Spec, TaskError> {
    let path = bundle.join("config.json");
    let spec = Spec::load(&path)
        .map_err(|e| TaskError::invalid(format!("load {}: {e}", path.display())))?;
    let Some(process) = spec.process() else {
        return Err(TaskError::invalid(format!(
            "{}: no process",
            path.display()
        )));
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(TaskError::invalid(format!(
            "{}: process.args is empty",
            path.display()
        )));
    }
    refuse_unapplied_confinement(&spec)?;
    Ok(spec)
}

/// Confinement the spec asks for but this runtime cannot apply yet fails Create: running the
/// container without it would give it more privilege than its spec grants.
fn refuse_unapplied_confinement(spec: &Spec) -> Result<(), TaskError> {
    refuse_unapplied(spec.process().as_ref())
}

/// The same for an exec's own `process`.
pub(super) fn refuse_unapplied_process_confinement(process: &ProcessSpec) -> Result<(), TaskError> {
    refuse_unapplied(Some(process))
}

fn refuse_unapplied(process: Option<&ProcessSpec>) -> Result<(), TaskError> {
    match process.map(crate::container::lsm::check_host) {
        Some(Err(reason)) => Err(TaskError::precondition(format!(
            "{reason}; refusing to run the container less confined than its spec asks"
        ))),
        _ => Ok(()),
    }
}

/// The container root: `root.path` of the spec, relative to the bundle unless absolute.
pub(super) fn resolve_root(bundle: &Path, spec: &Spec) -> Result<PathBuf, TaskError> {
    let root = spec.root().as_ref().map(|r| r.path().clone());
    let root = root.unwrap_or_else(|| PathBuf::from("rootfs"));
    let root = if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    };
    root.canonicalize()
        .map_err(|e| TaskError::invalid(format!("container root {}: {e}", root.display())))
}
