//! Errors raised by the transport itself — a request that does not decode
//! (malformed protobuf, invalid UTF-8), one larger than a method accepts, an
//! unknown method, a timeout — reach callers in the same shape as orgd's own:
//! the SPEC §3 code, an ErrorInfo with domain `orgd`, and a message that
//! names the problem without tonic's or prost's internals.
//!
//! A tower layer in front of the services rewrites trailers-only error
//! responses that carry no details (orgd's own errors always carry an
//! ErrorInfo, so they pass untouched).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::domain::{Error, ErrorKind};

#[derive(Clone, Copy, Default)]
pub struct ErrorShapeLayer;

impl<S> Layer<S> for ErrorShapeLayer {
    type Service = ErrorShaped<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorShaped { inner }
    }
}

#[derive(Clone)]
pub struct ErrorShaped<S> {
    inner: S,
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

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path().to_owned();
        Box::pin(async move {
            let response = inner.call(request).await?;
            let Some(status) = Status::from_header_map(response.headers()) else {
                return Ok(response);
            };
            if status.code() == Code::Ok || !status.details().is_empty() {
                return Ok(response);
            }
            let reshaped = reshape(&status, &path);
            tracing::info!(code = ?status.code(), message = status.message(), path, "transport error");
            Ok(Status::from(reshaped).into_http())
        })
    }
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
