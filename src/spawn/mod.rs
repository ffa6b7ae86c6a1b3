//! Sibling-mode spawning: the spawner process, its wire protocol and the clone calls.
//!
//! See `docs/ARCHITECTURE.md` for the process tree and the reasons behind it.

pub mod client;
pub mod clone;
pub mod protocol;
pub mod spawner;
pub mod userns;

pub use client::{PendingProcess, SpawnError, Spawner};
