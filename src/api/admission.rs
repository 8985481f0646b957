//! Admission control (SPEC §5, overload): at most `max_in_flight` calls are
//! served at once. A call that cannot start within `wait` is refused at
//! once with RESOURCE_EXHAUSTED (`OVERLOADED`, with a RetryInfo), before
//! any authentication or database work, instead of queueing until every
//! call times out. A streaming call holds its place only until its response
//! starts. Health and reflection are always admitted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tower::{Layer, Service};

use crate::domain::Error;
use crate::metrics::Metrics;

/// How many calls run at once and how long one may wait for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// 0 admits everything.
    pub max_in_flight: usize,
    pub wait: Duration,
    /// How long an admitted call's read waits for a database reader when
    /// every one is in use (see `store::SqlStore::read`): admission bounds
    /// the calls in the server, this bounds the queue at the database.
    pub read_wait: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            wait: Duration::from_millis(100),
            read_wait: crate::store::DEFAULT_READ_WAIT,
        }
    }
}

#[derive(Clone)]
pub struct AdmissionLayer {
    slots: Option<Arc<Semaphore>>,
    wait: Duration,
    metrics: Arc<Metrics>,
}

impl AdmissionLayer {
    pub fn new(config: AdmissionConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            slots: (config.max_in_flight > 0).then(|| Arc::new(Semaphore::new(config.max_in_flight))),
            wait: config.wait,
            metrics,
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admitted {
            inner,
            slots: self.slots.clone(),
            wait: self.wait,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admitted<S> {
    inner: S,
    slots: Option<Arc<Semaphore>>,
    wait: Duration,
    metrics: Arc<Metrics>,
}

fn overloaded() -> Status {
    Status::from(Error::overloaded())
}

impl<S> Service<http::Request<Body>> for Admitted<S>
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
        let slots = self.slots.clone();
        let wait = self.wait;
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let open = crate::api::authn::is_open(request.uri().path());
            let Some(slots) = slots.filter(|_| !open) else {
                return inner.call(request).await;
            };
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) if wait.is_zero() => None,
                Err(_) => tokio::time::timeout(wait, slots.acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok),
            };
            match permit {
                Some(permit) => {
                    let response = inner.call(request).await;
                    drop(permit);
                    response
                }
                None => {
                    metrics.overloaded();
                    Ok(overloaded().into_http())
                }
            }
        })
    }
}
