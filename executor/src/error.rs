//! planx's one error type: what went wrong, said for a person, and the exit code its kind
//! gives (0 done, 1 a step failed or a check refused, 2 usage or unreadable input, 3 refused to
//! start: stale, drifted, locked, 130 interrupted).

use std::fmt;

/// Why planx stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A step failed, a check refused, or the person said no.
    Failed,
    /// The arguments or an input file cannot be used.
    Input,
    /// Refused to start: a stale saved plan, drifted objects, another run's Lease.
    RefusedToStart,
    /// Stopped by Ctrl-C.
    Interrupted,
}

impl ErrorKind {
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::Input => 2,
            ErrorKind::RefusedToStart => 3,
            ErrorKind::Interrupted => 130,
        }
    }
}

/// An error planx reports: its kind and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanxError {
    pub kind: ErrorKind,
    pub message: String,
}

impl PlanxError {
    pub fn failed(message: impl Into<String>) -> PlanxError {
        PlanxError {
            kind: ErrorKind::Failed,
            message: message.into(),
        }
    }

    pub fn input(message: impl Into<String>) -> PlanxError {
        PlanxError {
            kind: ErrorKind::Input,
            message: message.into(),
        }
    }

    pub fn refused(message: impl Into<String>) -> PlanxError {
        PlanxError {
            kind: ErrorKind::RefusedToStart,
            message: message.into(),
        }
    }

    /// The same error with `context` in front of its message.
    pub fn context(self, context: impl fmt::Display) -> PlanxError {
        PlanxError {
            message: format!("{context}: {}", self.message),
            ..self
        }
    }
}

impl fmt::Display for PlanxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PlanxError {}
