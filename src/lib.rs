//! orgd: a multi-tenant organizations service over gRPC.
//!
//! The library builds the application and serves it on a listener it is
//! given; `main.rs` only parses the command line.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod domain;
pub mod export;
pub mod generate;
pub mod metrics;
pub mod openapi;
pub mod progress;
pub mod ratelimit;
pub mod signing;
pub mod storage;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use crate::app::App;
use crate::auth::{AuthConfig, Authenticator};
use crate::domain::types::Email;
use crate::storage::Storage;
use crate::store::StoreOptions;

/// Generated protobuf and gRPC code.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("orgd.v1");

    /// `google.api.HttpBody`: a response whose bytes Envoy's transcoder
    /// passes through as the HTTP body (see proto/google/api/httpbody.proto).
    pub mod google_api {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct HttpBody {
            #[prost(string, tag = "1")]
            pub content_type: String,
            #[prost(bytes = "vec", tag = "2")]
            pub data: Vec<u8>,
            #[prost(message, repeated, tag = "3")]
            pub extensions: Vec<prost_types::Any>,
        }
    }

    /// The encoded descriptor set of every orgd proto, with imports.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("orgd_descriptor");
}

/// The largest request accepted: a batch of 1,000 content items with long
/// descriptions fits.
pub const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// The gRPC services orgd serves, as health checks name them.
pub const SERVICE_NAMES: &[&str] = &[
    "orgd.v1.OrganizationService",
    "orgd.v1.SpaceService",
    "orgd.v1.AggregationService",
];

/// Everything `serve` needs, already resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub database_url: String,
    pub storage_root: PathBuf,
    pub auth: AuthConfig,
    pub superadmins: Vec<String>,
    pub db_max_connections: u32,
    /// SQLite: how long a write waits for a write lock held by another
    /// process before answering UNAVAILABLE.
    pub db_busy_timeout: Duration,
    /// Signs audit checkpoints.
    pub audit_signer: signing::AuditSigner,
    /// How long audit events are kept; `None` keeps them forever.
    pub audit_retention: Option<Duration>,
    /// How long deleted organizations and spaces can be restored; zero
    /// purges at once.
    pub soft_delete_window: Duration,
    /// How many calls are served at once, and how long one waits for a turn.
    pub admission: api::admission::AdmissionConfig,
    /// Calls per second per caller and per organization (0 = no limit).
    pub rate_limits: ratelimit::RateLimitConfig,
    /// Entries of the in-process snapshot of hot reads; 0 turns it off.
    pub cache_entries: usize,
}

/// Connects to the database, applies migrations, grants the configured
/// superadmins, and brings every storage directory in step with the
/// database.
pub async fn build_app(config: &ServerConfig) -> Result<Arc<App>, String> {
    let metrics = metrics::Metrics::new();
    let options = StoreOptions {
        max_connections: config.db_max_connections,
        busy_timeout: config.db_busy_timeout,
        metrics: metrics.store(),
        cache_entries: config.cache_entries,
        read_wait: config.admission.read_wait,
        ..StoreOptions::default()
    };
    let store = store::connect(&config.database_url, &options).await?;
    store
        .migrate(&|phase: &str| tracing::info!(phase, "applying migrations"))
        .await
        .map_err(|e| format!("applying migrations: {}", e.message))?;
    for raw in &config.superadmins {
        if raw.trim().is_empty() {
            continue;
        }
        let email = Email::parse("ORGD_SUPERADMINS", raw).map_err(|e| e.message)?;
        store.set_superadmin(&email, true).await.map_err(|e| e.message)?;
    }
    std::fs::create_dir_all(&config.storage_root)
        .map_err(|e| format!("creating storage root {}: {e}", config.storage_root.display()))?;
    let auth = Arc::new(Authenticator::new(&config.auth, store.clone())?);
    let mut app = App::new(
        store,
        Some(auth),
        Storage::new(config.storage_root.clone()),
        Arc::new(config.audit_signer.clone()),
    );
    app.audit_retention = config.audit_retention;
    app.metrics = metrics;
    app.limits = Arc::new(ratelimit::RateLimits::new(config.rate_limits));
    app.soft_delete_window = config.soft_delete_window;
    app.admission = config.admission;
    let reconciled = app.reconcile_storage().await?;
    tracing::debug!(organizations = reconciled, "storage directories reconciled");
    Ok(Arc::new(app))
}

/// Accepted connections, with Nagle's algorithm off: small gRPC replies
/// must not wait for the peer's delayed ACK (40 ms).
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn
            && let Err(e) = stream.set_nodelay(true)
        {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        conn
    })
}

/// The snapshot's sync task on a thread with a runtime of its own; it
/// stops when this is dropped.
struct SyncThread {
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl SyncThread {
    fn start(sync: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = std::thread::Builder::new()
            .name("orgd-snapshot".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "the snapshot's runtime did not start; it stays off");
                        return;
                    }
                };
                runtime.block_on(async {
                    tokio::select! {
                        () = sync => {}
                        _ = stopped => {}
                    }
                });
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "the snapshot's thread did not start; it stays off");
        }
        Self { _stop: stop }
    }
}

/// Serves every orgd service, health and reflection (v1 and v1alpha) on
/// `listener` until `shutdown` completes.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    use proto::aggregation_service_server::AggregationServiceServer;
    use proto::organization_service_server::OrganizationServiceServer;
    use proto::space_service_server::SpaceServiceServer;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<OrganizationServiceServer<api::organizations::OrganizationApi>>()
        .await;
    health
        .set_serving::<SpaceServiceServer<api::spaces::SpaceApi>>()
        .await;
    health
        .set_serving::<AggregationServiceServer<api::aggregation::AggregationApi>>()
        .await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| tracing::error!(error = %e, "reflection v1 unavailable"))
        .ok();
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| tracing::error!(error = %e, "reflection v1alpha unavailable"))
        .ok();

    // Health follows the database: NOT_SERVING while it does not answer.
    let watched = app.store.clone();
    let reporter = health.clone();
    let watcher = tokio::spawn(async move {
        let mut serving = true;
        loop {
            // Checked every second, each check bounded by a second: an
            // outage shows within 2 s, and so does the recovery.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(1), watched.ping()).await,
                Ok(Ok(()))
            );
            if ok != serving {
                serving = ok;
                let status = if ok {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                for service in SERVICE_NAMES.iter().copied().chain([""]) {
                    reporter.set_service_status(service, status).await;
                }
            }
        }
    });

    let retrier = {
        let app = app.clone();
        tokio::spawn(async move { app.retry_storage_forever().await })
    };
    // Request ids are remembered for a day (AIP-155); older ones go hourly.
    let forgetter = {
        let store = app.store.clone();
        tokio::spawn(async move {
            loop {
                match store.prune_request_ids().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(forgotten = n, "expired request ids pruned"),
                    Err(e) => tracing::warn!(error = %e, "could not prune expired request ids"),
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        })
    };
    let purger = {
        let app = app.clone();
        tokio::spawn(async move { app.purge_forever().await })
    };
    let folder = {
        let app = app.clone();
        tokio::spawn(async move { app.fold_expiries_forever().await })
    };
    // The snapshot of hot reads answers only while this keeps it in step.
    // It runs on a thread of its own: under a load of thousands of calls,
    // a task among them would wait its turn past the snapshot's bound, and
    // every read would go to the database just when it is busiest.
    let syncer = app.store.snapshot_sync().map(SyncThread::start);
    let pruner = app.audit_retention.map(|retention| {
        let app = app.clone();
        tokio::spawn(async move { app.prune_forever(retention).await })
    });

    let result = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        .layer(api::errors::ErrorShapeLayer::new(app.metrics.clone()))
        .layer(api::admission::AdmissionLayer::new(
            app.admission,
            app.metrics.clone(),
        ))
        .layer(api::authn::AuthLayer::new(
            app.auth.clone(),
            app.limits.clone(),
            app.metrics.clone(),
        ))
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(OrganizationServiceServer::new(
            api::organizations::OrganizationApi::new(app.clone()),
        ))
        .add_service(
            SpaceServiceServer::new(api::spaces::SpaceApi::new(app.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(AggregationServiceServer::new(
            api::aggregation::AggregationApi::new(app.clone()),
        ))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await;
    watcher.abort();
    retrier.abort();
    forgetter.abort();
    purger.abort();
    if let Some(pruner) = pruner {
        pruner.abort();
    }
    folder.abort();
    drop(syncer);
    result
}
