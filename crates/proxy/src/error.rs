//! Errors a client may see, with their SQLSTATE, kept apart from the internal
//! cause that only reaches the log.

use wire::build::{self, Severity};
use wire::{Frame, SqlState};

/// An error to report to one client: a SQLSTATE and a message safe to show
/// it. Internal details (addresses, other clients' data) stay in `detail`,
/// which is logged and never sent.
#[derive(Debug, Clone)]
pub struct ClientError {
    pub code: SqlState,
    pub message: String,
    pub severity: Severity,
    /// Logged only.
    pub detail: Option<String>,
}

impl ClientError {
    /// A FATAL error: the proxy closes this client after sending it.
    pub fn fatal(code: SqlState, message: impl Into<String>) -> ClientError {
        ClientError {
            code,
            message: message.into(),
            severity: Severity::Fatal,
            detail: None,
        }
    }

    /// An ERROR: the client's session goes on.
    pub fn error(code: SqlState, message: impl Into<String>) -> ClientError {
        ClientError {
            code,
            message: message.into(),
            severity: Severity::Error,
            detail: None,
        }
    }

    /// Attaches an internal cause for the log.
    pub fn with_detail(mut self, detail: impl std::fmt::Display) -> ClientError {
        self.detail = Some(detail.to_string());
        self
    }

    /// The ErrorResponse frame to send.
    pub fn to_frame(&self) -> Frame {
        build::error_response(self.severity, self.code, &self.message)
    }

    /// Whether the connection ends after this error.
    pub fn is_fatal(&self) -> bool {
        self.severity == Severity::Fatal
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ClientError {}
