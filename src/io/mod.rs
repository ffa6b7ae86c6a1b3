//! Container stdio: FIFOs from containerd, `file://` and `binary://` destinations, terminals.

pub mod binary_log;
pub mod copy;
pub mod drain;
pub mod pty_copy;
pub mod stdio;

pub use binary_log::LogOwner;
pub use stdio::{OutputMode, ProcessIo, StdioPaths};
