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
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;

/// Services that answer without a token.
const OPEN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Whether a path belongs to a service that answers without a token.
pub fn is_open(path: &str) -> bool {
    OPEN_SERVICES.iter().any(|open| path.starts_with(open))
}

#[derive(Clone)]
pub struct AuthLayer {
    auth: Option<Arc<Authenticator>>,
    limits: Arc<RateLimits>,
    metrics: Arc<Metrics>,
}

impl AuthLayer {
    /// Without an authenticator every call but health and reflection is
    /// refused. Each authenticated call is charged to its caller's rate
    /// limit before the database is touched.
    pub fn new(auth: Option<Arc<Authenticator>>, limits: Arc<RateLimits>, metrics: Arc<Metrics>) -> Self {
        Self {
            auth,
            limits,
            metrics,
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            auth: self.auth.clone(),
            limits: self.limits.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Option<Arc<Authenticator>>,
    limits: Arc<RateLimits>,
    metrics: Arc<Metrics>,
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
        let limits = self.limits.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let path = request.uri().path();
            if is_open(path) {
                return inner.call(request).await;
            }
            // The token and the caller's limit are checked before the
            // database is touched.
            let identified = auth
                .ok_or_else(|| Error::unauthenticated("this server accepts no tokens"))
                .and_then(|auth| {
                    let (email, name) = auth.identify(request.headers())?;
                    let quota = limits.caller(email.as_str()).inspect_err(|e| {
                        if let Some(limited) = &e.rate_limited {
                            metrics.rate_limited(limited.scope);
                        }
                    })?;
                    Ok((auth, email, name, quota))
                });
            let admitted = match identified {
                Ok((auth, email, name, quota)) => {
                    auth.resolve(&email, &name).await.map(|caller| (caller, quota))
                }
                Err(e) => Err(e),
            };
            match admitted {
                Ok((caller, quota)) => {
                    tracing::Span::current().record("caller", tracing::field::display(caller.user_id));
                    request.extensions_mut().insert(caller);
                    let mut response = inner.call(request).await?;
                    if let Some(quota) = quota {
                        let headers = response.headers_mut();
                        for (name, value) in [
                            ("x-ratelimit-limit", quota.limit),
                            ("x-ratelimit-remaining", quota.remaining),
                            ("x-ratelimit-reset", quota.reset_secs),
                        ] {
                            headers.insert(name, http::HeaderValue::from(value));
                        }
                    }
                    Ok(response)
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
