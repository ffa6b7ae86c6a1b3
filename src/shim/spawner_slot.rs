//! The daemon's current spawner, replaced when it has died.
//!
//! The spawner is forked once, before the daemon's first thread. If it dies (killed by hand, the
//! OOM killer), the Creates and execs in flight at that moment fail (their sync sockets close),
//! the containers already running go on, and the next spawn starts a replacement: this binary
//! exec'd with the `spawner` action, single-threaded like the first (a threaded process may fork
//! only to exec). Nothing waits or polls for this: the check is one `poll` with a zero timeout.

use std::sync::{Arc, Mutex, MutexGuard};

use nix::unistd::Pid;

use super::error::TaskError;
use super::reaper::Exits;
use crate::spawn::Spawner;

pub struct SpawnerSlot {
    current: Mutex<Arc<Spawner>>,
    /// The flags a replacement is started with (`-namespace`, `-id`, `-address`): so that tools
    /// which find a shim's processes by their argv find it too.
    relaunch_flags: Vec<String>,
}

impl SpawnerSlot {
    pub fn new(first: Spawner, relaunch_flags: Vec<String>) -> SpawnerSlot {
        SpawnerSlot {
            current: Mutex::new(Arc::new(first)),
            relaunch_flags,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Arc<Spawner>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pid(&self) -> Pid {
        self.lock().pid()
    }

    /// The live spawner, replacing a dead one first.
    pub fn get(&self, exits: &Exits) -> Result<Arc<Spawner>, TaskError> {
        let mut current = self.lock();
        if exits.spawner_alive() && !current.is_gone() {
            return Ok(Arc::clone(&current));
        }
        let dead = current.pid();
        let flags: Vec<&str> = self.relaunch_flags.iter().map(String::as_str).collect();
        let replacement = Spawner::exec(&flags).map_err(|e| {
            TaskError::internal(format!(
                "the spawner ({dead}) died and a new one could not be started: {e}"
            ))
        })?;
        log::warn!(
            "spawner {dead} is gone; started spawner {}",
            replacement.pid()
        );
        exits.set_spawner(replacement.pid());
        *current = Arc::new(replacement);
        Ok(Arc::clone(&current))
    }
}
