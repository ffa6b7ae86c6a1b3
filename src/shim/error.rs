//! The task service's error type and its one mapping to ttrpc status codes.

use containerd_shim_protos::ttrpc::{self, Code};

use crate::spawn::SpawnError;

/// An RPC failure: the containerd error class it maps to, and a message naming what failed.
#[derive(Debug)]
pub struct TaskError {
    code: Code,
    message: String,
}

impl TaskError {
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NOT_FOUND, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(Code::ALREADY_EXISTS, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::INVALID_ARGUMENT, message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FAILED_PRECONDITION, message)
    }
    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(Code::UNIMPLEMENTED, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::INTERNAL, message)
    }
    /// A failed container setup or exec is the caller's spec or image: containerd shows it as
    /// an unknown error with the message, as it does for runc's.
    pub fn from_spawn(error: SpawnError) -> Self {
        Self::new(Code::UNKNOWN, error.to_string())
    }

    fn new(code: Code, message: impl Into<String>) -> Self {
        TaskError {
            code,
            message: message.into(),
        }
    }

    /// Adds what the RPC was doing in front of the message.
    pub fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn code(&self) -> Code {
        self.code
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {}

impl From<TaskError> for ttrpc::Error {
    fn from(e: TaskError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code, e.message))
    }
}
