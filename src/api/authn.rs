//! Authentication, once, in front of every service: a tower layer that turns
//! the `authorization: Bearer` header into a `Caller` in the request's
//! extensions, or answers UNAUTHENTICATED before any handler runs. Health and
//! reflection stay open. Handlers read the caller with [`caller`]; no
//! handler can skip the check, because a request without a caller never
//! reaches one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::{Request, Status};
use tower::{Layer, Service};

use crate::auth::Authenticator;
use crate::domain::Error;
use crate::domain::access::Caller;

/// Services that answer without a token.
const OPEN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

#[derive(Clone)]
pub struct AuthLayer {
    auth: Option<Arc<Authenticator>>,
}

impl AuthLayer {
    /// Without an authenticator every call but health and reflection is
    /// refused.
    pub fn new(auth: Option<Arc<Authenticator>>) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Option<Arc<Authenticator>>,
}

impl<S> Service<http::Request<Body>> for Authenticated<S>
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
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let path = request.uri().path();
            if OPEN_SERVICES.iter().any(|open| path.starts_with(open)) {
                return inner.call(request).await;
            }
            let authenticated = match &auth {
                Some(auth) => auth.authenticate(request.headers()).await,
                None => Err(Error::unauthenticated("this server accepts no tokens")),
            };
            match authenticated {
                Ok(caller) => {
                    tracing::Span::current().record("caller", tracing::field::display(caller.user_id));
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(e) => Ok(Status::from(e).into_http()),
            }
        })
    }
}

/// The caller the layer authenticated.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Error> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Error::internal("authentication", "a request reached a handler without a caller"))
}
