//! The daemon's side of the hooks that run in the runtime's namespaces: `prestart` and
//! `createRuntime` (at the init's sync 2, during Create), `poststart` (after Start) and
//! `poststop` (after Delete). The daemon never forks them: each batch is a spawner `Hooks`
//! request, run by a hook runner the spawner clones (see `spawn::spawner`). Runs in the daemon.

use std::time::Duration;

use oci_spec::runtime::Hook;

use super::Daemon;
use crate::container::hooks::HookKind;

/// How long the daemon waits for a hook runner's reap after its answer (it exits right away).
const RUNNER_EXIT_LIMIT: Duration = Duration::from_secs(5);

/// Runs `hooks` of `kind` with `state` on their stdin, in order; the first failure's text
/// (naming the hook, with its stderr) is the error. Returns at once when there are none.
pub(super) fn run(
    daemon: &Daemon,
    container_id: &str,
    kind: HookKind,
    hooks: &[Hook],
    state: String,
) -> Result<(), String> {
    if hooks.is_empty() {
        return Ok(());
    }
    // The runner's exit is parked until `wait_reaped` takes it.
    let _parking = daemon.exits.begin_spawn();
    let spawner = daemon
        .spawner
        .get(&daemon.exits)
        .map_err(|e| format!("{} hooks: {e}", kind.name()))?;
    let (runner, error) = spawner
        .run_hooks(kind, hooks, state)
        .map_err(|e| format!("{} hooks: {e}", kind.name()))?;
    if !daemon.exits.wait_reaped(runner, RUNNER_EXIT_LIMIT) {
        log::warn!("{container_id}: hook runner {runner} not reaped within {RUNNER_EXIT_LIMIT:?}");
    }
    error.map_or(Ok(()), Err)
}

/// [`run`] for the kinds whose failure the spec says to log and go on from (`poststart`,
/// `poststop`).
pub(super) fn run_logged(
    daemon: &Daemon,
    container_id: &str,
    kind: HookKind,
    hooks: &[Hook],
    state: String,
) {
    if let Err(error) = run(daemon, container_id, kind, hooks, state) {
        log::warn!("{container_id}: {error}");
    }
}
