//! The one error type of orgd. Transport-free: `api::status` maps it to a gRPC
//! status (and so, through Envoy, to an HTTP status) in one place.

use std::fmt;

/// What went wrong, in terms the caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Aborted,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
    Internal,
}

/// A domain error: a kind, a stable UPPER_SNAKE reason, a message for a
/// person, and the offending field or value. Never holds internal details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub reason: &'static str,
    pub message: String,
    pub metadata: Vec<(&'static str, String)>,
    /// Set when a rate limit refused the call: when to retry, and the
    /// state of the limit that refused it.
    pub rate_limited: Option<Box<RateLimited>>,
}

/// A rate limit's refusal, for `google.rpc.RetryInfo` and the
/// `retry-after` / `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    /// `caller` or `organization`.
    pub scope: &'static str,
    pub limit: u64,
    pub remaining: u64,
    pub reset_secs: u64,
    pub retry_after: std::time::Duration,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            reason,
            message: message.into(),
            metadata: Vec::new(),
            rate_limited: None,
        }
    }

    pub fn rate_limited(mut self, info: RateLimited) -> Self {
        self.rate_limited = Some(Box::new(info));
        self
    }

    /// Adds a metadata entry (the field, the offending value, ...).
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.metadata.push((key, value.into()));
        self
    }

    /// A required field is absent or blank.
    pub fn missing(field: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, "MISSING_FIELD", message).with("field", field)
    }

    /// A field is present but wrong.
    pub fn invalid(reason: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, reason, message).with("field", field)
    }

    pub fn not_found(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, reason, message)
    }

    pub fn already_exists(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, reason, message)
    }

    pub fn failed_precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::FailedPrecondition, reason, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, "UNAUTHENTICATED", message)
    }

    /// The caller is known but may not do this.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, "NOT_AUTHORIZED", message)
    }

    /// An existing organization the caller may not see or change.
    pub fn org_denied(slug: &str) -> Self {
        Self::denied("not authorized for this organization").with("slug", slug)
    }

    pub fn org_not_found(slug: &str) -> Self {
        Self::not_found("ORG_NOT_FOUND", format!("organization '{slug}' not found")).with("slug", slug)
    }

    pub fn unimplemented(what: &str) -> Self {
        Self::new(
            ErrorKind::Unimplemented,
            "NOT_IMPLEMENTED",
            format!("{what} is not implemented yet"),
        )
    }

    /// Something failed inside orgd. The details are logged here and never
    /// reach the caller.
    pub fn internal(context: &str, details: impl fmt::Display) -> Self {
        tracing::error!(context, error = %details, "internal error");
        Self::new(ErrorKind::Internal, "INTERNAL", "internal error")
    }

    pub fn unavailable(details: impl fmt::Display) -> Self {
        tracing::warn!(error = %details, "dependency unavailable");
        Self::new(
            ErrorKind::Unavailable,
            "UNAVAILABLE",
            "the service is temporarily unavailable, try again",
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

impl std::error::Error for Error {}
