//! Container stdio: FIFOs from containerd, `file://` destinations (terminals and `binary://`
//! loggers are another issue's work).

pub mod console;
pub mod drain;
pub mod stdio;

pub use stdio::{ProcessIo, StdioPaths};
