//! Typed errors. They carry no secret and no body content: what reaches a
//! caller is decided at the HTTP edge (`shared::http`), from the variant
//! alone; a dependency failure logs itself from any layer
//! ([`DependencyError::log`]): its service, operation and error chain,
//! never a payload.

use thiserror::Error;

/// Why a request was refused as unauthenticated. All variants get the same
/// answer, so a caller cannot tell an unknown instance from a bad signature;
/// the reason is only logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthFailure {
    #[error("signature header missing")]
    MissingSignature,
    #[error("signature header malformed")]
    MalformedSignature,
    #[error("instance header missing")]
    MissingInstance,
    #[error("instance header invalid")]
    InvalidInstance,
    #[error("instance unknown")]
    UnknownInstance,
    #[error("signature mismatch")]
    SignatureMismatch,
}

impl AuthFailure {
    /// Short machine-readable reason for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::MissingInstance => "missing_instance",
            Self::InvalidInstance => "invalid_instance",
            Self::UnknownInstance => "unknown_instance",
            Self::SignatureMismatch => "signature_mismatch",
        }
    }
}

/// A dependency that could not be reached or answered wrongly. The source
/// error is kept for the log line (SDK errors hold no payload).
#[derive(Debug, Error)]
#[error("{service} {operation} failed")]
pub struct DependencyError {
    pub service: &'static str,
    pub operation: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl DependencyError {
    pub fn new(
        service: &'static str,
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            service,
            operation,
            source: source.into(),
        }
    }

    /// Logs the failure with its service and operation, never payloads.
    pub fn log(&self, message: &str) {
        tracing::error!(
            service = self.service,
            operation = self.operation,
            error = %summary(self),
            "{message}"
        );
    }
}

/// An error chain in one line. SDK errors name the failure (timeout,
/// dispatch failure, service error code), never request or response bodies.
pub fn summary(error: &(dyn std::error::Error + 'static)) -> String {
    let mut summary = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        summary.push_str(": ");
        summary.push_str(&cause.to_string());
        source = cause.source();
    }
    summary
}

/// Everything that stops a receiver from storing a request's event.
#[derive(Debug, Error)]
pub enum ReceiveError {
    #[error("unauthorized: {0}")]
    Unauthorized(AuthFailure),
    #[error("body of {size} bytes is over the limit of {limit}")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("dependency unavailable: {0}")]
    Unavailable(#[from] DependencyError),
}

impl From<AuthFailure> for ReceiveError {
    fn from(value: AuthFailure) -> Self {
        Self::Unauthorized(value)
    }
}

/// A setting missing or invalid at cold start.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

/// A value that failed validation as one of the [`crate::ids`] newtypes.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {what}: {why}")]
pub struct InvalidId {
    pub what: &'static str,
    pub why: &'static str,
}
