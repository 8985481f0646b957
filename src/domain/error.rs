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

    /// The server is at capacity (SPEC §5, overload): RESOURCE_EXHAUSTED
    /// `OVERLOADED` with a RetryInfo, refused before the call queues into
    /// a timeout.
    pub fn overloaded() -> Self {
        Self::new(
            ErrorKind::ResourceExhausted,
            "OVERLOADED",
            "the server is at capacity; retry shortly",
        )
        .rate_limited(RateLimited {
            scope: "server",
            limit: 0,
            remaining: 0,
            reset_secs: 1,
            retry_after: OVERLOADED_RETRY_AFTER,
        })
    }
}

/// What a caller refused at capacity is told to wait before retrying.
const OVERLOADED_RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

impl std::error::Error for Error {}

impl ErrorKind {
    const NAMES: [(ErrorKind, &'static str); 11] = [
        (ErrorKind::InvalidArgument, "INVALID_ARGUMENT"),
        (ErrorKind::Unauthenticated, "UNAUTHENTICATED"),
        (ErrorKind::PermissionDenied, "PERMISSION_DENIED"),
        (ErrorKind::NotFound, "NOT_FOUND"),
        (ErrorKind::AlreadyExists, "ALREADY_EXISTS"),
        (ErrorKind::FailedPrecondition, "FAILED_PRECONDITION"),
        (ErrorKind::Aborted, "ABORTED"),
        (ErrorKind::ResourceExhausted, "RESOURCE_EXHAUSTED"),
        (ErrorKind::Unavailable, "UNAVAILABLE"),
        (ErrorKind::Unimplemented, "UNIMPLEMENTED"),
        (ErrorKind::Internal, "INTERNAL"),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("INTERNAL", |(_, n)| n)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
    }
}

/// The most distinct strings [`intern`] keeps.
const INTERNED_MAX: usize = 4_096;

/// A `&'static str` equal to `s`: reasons and metadata keys read back from
/// the database (replayed refusals) are few, and each is kept once.
fn intern(s: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let Ok(mut seen) = SEEN.get_or_init(Default::default).lock() else {
        return "UNKNOWN";
    };
    if let Some(known) = seen.get(s) {
        return known;
    }
    if seen.len() >= INTERNED_MAX {
        return "UNKNOWN";
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    seen.insert(leaked);
    leaked
}

impl Error {
    /// Whether a retry could succeed where this failed (a dependency down, a
    /// limit, a conflict, a bug): such failures are not remembered for
    /// idempotent retries.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Unavailable
                | ErrorKind::ResourceExhausted
                | ErrorKind::Internal
                | ErrorKind::Unauthenticated
        ) || (self.kind == ErrorKind::Aborted && self.reason != "ETAG_MISMATCH")
    }

    /// The refusal as stored with a request id.
    pub fn to_json(&self) -> String {
        let metadata: serde_json::Map<String, serde_json::Value> = self
            .metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::json!({
            "kind": self.kind.name(),
            "reason": self.reason,
            "message": self.message,
            "metadata": metadata,
        })
        .to_string()
    }

    /// A stored refusal, as it was first answered.
    pub fn from_json(raw: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(raw).ok()?;
        let mut e = Error::new(
            ErrorKind::from_name(v["kind"].as_str()?)?,
            intern(v["reason"].as_str()?),
            v["message"].as_str()?,
        );
        if let Some(metadata) = v["metadata"].as_object() {
            for (k, value) in metadata {
                e = e.with(intern(k), value.as_str().unwrap_or_default());
            }
        }
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_survives_its_json() {
        let e = Error::already_exists("MEMBER_ALREADY_EXISTS", "x is already a member")
            .with("field", "entries[2].user_email")
            .with("user_email", "x@y.org");
        let back = Error::from_json(&e.to_json()).expect("decodes");
        assert_eq!(back.kind, e.kind);
        assert_eq!(back.reason, e.reason);
        assert_eq!(back.message, e.message);
        let mut got = back.metadata.clone();
        let mut want = e.metadata.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert!(Error::from_json("{}").is_none());
        assert!(Error::from_json(r#"{"kind": "NOPE", "reason": "X", "message": ""}"#).is_none());
    }

    #[test]
    fn transient_failures_are_told_apart() {
        assert!(Error::unavailable("db down").is_transient());
        assert!(Error::new(ErrorKind::Aborted, "CONFLICT", "x").is_transient());
        assert!(!Error::new(ErrorKind::Aborted, "ETAG_MISMATCH", "x").is_transient());
        assert!(!Error::denied("no").is_transient());
        assert!(!Error::org_not_found("x").is_transient());
    }
}
