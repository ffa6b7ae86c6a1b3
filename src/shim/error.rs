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

/// The text containerd's errdefs gives an error class: Go shims (runc's) build a status from an
/// error wrapping the class (`errdefs.ToGRPCf`), so its message ends with this. containerd 1.x
/// appended it again on receipt whatever the message; 2.x (errdefs 1.0) keeps the class by code
/// but shows the message as sent, so without it `ctr` on 2.x would print "process already
/// finished" where runc's shim shows "process already finished: not found".
fn class_text(code: Code) -> Option<&'static str> {
    match code {
        Code::NOT_FOUND => Some("not found"),
        Code::ALREADY_EXISTS => Some("already exists"),
        Code::INVALID_ARGUMENT => Some("invalid argument"),
        Code::FAILED_PRECONDITION => Some("failed precondition"),
        Code::UNIMPLEMENTED => Some("not implemented"),
        // UNKNOWN (a failed setup) and INTERNAL carry the message alone, as runc's shim does.
        _ => None,
    }
}

/// The status message: the message, then `: <class>` unless it already ends with it.
fn status_message(code: Code, message: String) -> String {
    match class_text(code) {
        Some(class) if message != class && !message.ends_with(&format!(": {class}")) => {
            format!("{message}: {class}")
        }
        _ => message,
    }
}

impl From<TaskError> for ttrpc::Error {
    fn from(e: TaskError) -> Self {
        let message = status_message(e.code, e.message);
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_end_with_the_class_as_go_shims_do() {
        let message = |e: TaskError| match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(status) => status.message().to_owned(),
            other => panic!("not a status: {other:?}"),
        };
        assert_eq!(
            message(TaskError::not_found("process already finished")),
            "process already finished: not found"
        );
        assert_eq!(
            message(TaskError::precondition(
                "exec x is still running: failed precondition"
            )),
            "exec x is still running: failed precondition"
        );
        assert_eq!(message(TaskError::not_found("not found")), "not found");
        assert_eq!(
            message(TaskError::new(Code::UNKNOWN, "exec: no such file")),
            "exec: no such file"
        );
    }
}
