//! The outermost layer of every request: its id, its log span, and the shape
//! of its errors.
//!
//! - Every request gets a `request_id`: the caller's (or Envoy's)
//!   `x-request-id` when it is a sane token, else a new UUID. It names the
//!   tracing span every log line of the request is written in (with the RPC
//!   and, once authenticated, the caller), comes back in the `x-request-id`
//!   response header, and is attached to every error as a
//!   `google.rpc.RequestInfo` detail, so a caller can quote it.
//! - Errors raised by the transport itself — a request that does not decode
//!   (malformed protobuf, invalid UTF-8), one larger than a method accepts,
//!   an unknown method, a timeout — reach callers in the same shape as
//!   orgd's own: the SPEC §3 code, an ErrorInfo with domain `orgd`, and a
//!   message that names the problem without tonic's or prost's internals.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::body::Body;
use tonic::codegen::http;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::domain::{Error, ErrorKind};
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct ErrorShapeLayer {
    metrics: Arc<Metrics>,
}

impl ErrorShapeLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ErrorShapeLayer {
    type Service = ErrorShaped<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorShaped {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ErrorShaped<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<http::Request<Body>> for ErrorShaped<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path().to_owned();
        let request_id = request_id_of(request.headers());
        let metrics = self.metrics.clone();
        metrics.rpc_started(&path);
        request.extensions_mut().insert(RequestId(request_id.clone()));
        // orgd's own RPCs at info; health checks and reflection (Envoy checks
        // health every few seconds) at debug, so they neither log nor export
        // spans by default.
        macro_rules! request_span {
            ($level:ident) => {
                tracing::$level!(
                    "request",
                    request_id = %request_id,
                    rpc = %path,
                    caller = tracing::field::Empty,
                    otel.name = %path,
                    otel.kind = "server",
                    rpc.system = "grpc",
                    rpc.grpc.status_code = tracing::field::Empty,
                    otel.status_code = tracing::field::Empty,
                )
            };
        }
        let span = if path.starts_with("/orgd.") {
            request_span!(info_span)
        } else {
            request_span!(debug_span)
        };
        // Continue the caller's trace (W3C traceparent, as Envoy forwards it).
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&crate::telemetry::HeaderExtractor(request.headers()))
        });
        let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, parent);
        Box::pin(async move {
            let started = Instant::now();
            let mut response = inner.call(request).instrument(span.clone()).await?;
            let failed = Status::from_header_map(response.headers()).filter(|s| s.code() != Code::Ok);
            let code = failed.as_ref().map_or(Code::Ok, Status::code);
            if let Some(status) = failed {
                let status = if status.details().is_empty() {
                    span.in_scope(|| {
                        tracing::info!(code = ?status.code(), message = status.message(), "transport error")
                    });
                    Status::from(reshape(&status, &path))
                } else {
                    status
                };
                let mut details = status.get_error_details();
                details.set_request_info(request_id.clone(), "");
                let reshaped =
                    Status::with_error_details(status.code(), status.message(), details).into_http();
                // Keep the metadata the handler set (retry-after,
                // x-ratelimit-*, ...); the status itself is the new one.
                let original = std::mem::replace(&mut response, reshaped);
                for (name, value) in original.headers() {
                    if !name.as_str().starts_with("grpc-") && !response.headers().contains_key(name) {
                        response.headers_mut().insert(name.clone(), value.clone());
                    }
                }
            }
            if let Ok(value) = http::HeaderValue::from_str(&request_id) {
                response.headers_mut().insert("x-request-id", value);
            }
            metrics.rpc_handled(&path, code, started.elapsed().as_secs_f64());
            span.record("rpc.grpc.status_code", code as i32);
            if code != Code::Ok {
                span.record("otel.status_code", "ERROR");
            }
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            span.in_scope(|| {
                if path.starts_with("/orgd.") {
                    tracing::info!(status = ?code, elapsed_ms, "request finished");
                } else {
                    tracing::debug!(status = ?code, elapsed_ms, "request finished");
                }
            });
            Ok(response)
        })
    }
}

/// The id of the request being served (in the request's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The caller's `x-request-id` when it is 1 to 128 visible ASCII
/// characters; otherwise a new UUID.
fn request_id_of(headers: &http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The domain error a bare transport status stands for.
fn reshape(status: &Status, path: &str) -> Error {
    let message = status.message();
    match status.code() {
        Code::Internal | Code::InvalidArgument if message.contains("decode") => Error::new(
            ErrorKind::InvalidArgument,
            "MALFORMED_REQUEST",
            if message.contains("UTF-8") {
                "the request holds a text field that is not valid UTF-8"
            } else {
                "the request is not a valid message for this method"
            },
        ),
        Code::OutOfRange | Code::ResourceExhausted if message.contains("too large") => Error::new(
            ErrorKind::ResourceExhausted,
            "REQUEST_TOO_LARGE",
            "the request is larger than this method accepts",
        ),
        Code::Unimplemented => Error::new(
            ErrorKind::Unimplemented,
            "METHOD_NOT_FOUND",
            format!("there is no method {path}"),
        )
        .with("method", path),
        Code::Cancelled | Code::DeadlineExceeded => Error::new(
            ErrorKind::Unavailable,
            "TIMEOUT",
            "the request took too long and was stopped; try again",
        ),
        code => Error::new(
            kind_of(code),
            "TRANSPORT_ERROR",
            "the request could not be processed",
        ),
    }
}

fn kind_of(code: Code) -> ErrorKind {
    match code {
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::FailedPrecondition => ErrorKind::FailedPrecondition,
        Code::Aborted => ErrorKind::Aborted,
        Code::ResourceExhausted => ErrorKind::ResourceExhausted,
        Code::Unavailable => ErrorKind::Unavailable,
        Code::Unimplemented => ErrorKind::Unimplemented,
        _ => ErrorKind::Internal,
    }
}
