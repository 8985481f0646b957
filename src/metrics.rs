//! Metrics in the Prometheus/OpenMetrics text format (prometheus-client),
//! served on `--metrics-addr` when set.
//!
//! - `grpc_server_started_total`, `grpc_server_handled_total` (with
//!   `grpc_code`) and the `grpc_server_handling_seconds` histogram, labelled
//!   `grpc_service`, `grpc_method` and `grpc_type`: the names dashboards for
//!   gRPC servers already use.
//! - `orgd_db_pool_connections{pool, state="idle"|"in_use"}`.
//! - `orgd_db_write_acquire_seconds`: how long a change waited for the
//!   database to begin its transaction (a connection, and on SQLite the
//!   write lock).
//! - `orgd_db_statement_seconds{kind}`: SQL statement latency by kind
//!   (`SELECT`, `INSERT`, ...), from sqlx's statement events, when the
//!   process's subscriber is installed (`orgd serve`).
//! - `orgd_audit_appends_total`: audit events written.
//! - `orgd_cache_lookups_total{cache, result}` and
//!   `orgd_cache_invalidations_total{source}`: the in-process snapshot of
//!   hot reads (`store::snapshot`).
//! - `orgd_build_info{version}`: always 1.
//!
//! Each server has its own registry (no process-wide state), so several in
//! one process — the tests — count apart.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::Code;

/// The buckets of gRPC handling times (seconds), as client_golang's
/// defaults.
const RPC_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_type: String,
    grpc_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatementLabels {
    kind: String,
}

/// SQL statement latencies by kind, from sqlx's statement events: one
/// process-wide family (the events are process-wide), registered in every
/// server's registry.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn statements() -> &'static Histograms<StatementLabels> {
    static STATEMENTS: std::sync::OnceLock<Histograms<StatementLabels>> = std::sync::OnceLock::new();
    STATEMENTS.get_or_init(|| Family::new_with_constructor(rpc_histogram))
}

/// The histogram of one kind of statement (`SELECT`, `INSERT`, ...).
pub fn statement_seconds(kind: &str) -> Histogram {
    statements()
        .get_or_create(&StatementLabels {
            kind: kind.to_owned(),
        })
        .clone()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// What the store records: shared handles into the server's registry.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    pub write_acquire: Histogram,
    pub audit_appends: Counter,
    pub cache: crate::store::snapshot::CacheMetrics,
    /// Calls refused at capacity: by admission, or because no database
    /// reader came free within the read wait.
    pub overloaded: Counter,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            write_acquire: Histogram::new(RPC_BUCKETS),
            audit_appends: Counter::default(),
            cache: Default::default(),
            overloaded: Counter::default(),
        }
    }
}

/// One database pool's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub name: &'static str,
    pub size: u32,
    pub idle: usize,
}

pub struct Metrics {
    registry: Registry,
    started: Family<RpcLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling: Histograms<RpcLabels>,
    pools: Family<PoolLabels, Gauge>,
    store: StoreMetrics,
    rate_limited: Family<LimitLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn rpc_histogram() -> Histogram {
    Histogram::new(RPC_BUCKETS)
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let started = Family::<RpcLabels, Counter>::default();
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            started.clone(),
        );
        let handled = Family::<HandledLabels, Counter>::default();
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, by status code",
            handled.clone(),
        );
        let handling: Histograms<RpcLabels> = Family::new_with_constructor(rpc_histogram);
        registry.register(
            "grpc_server_handling_seconds",
            "Time until the server answered an RPC (its response headers)",
            handling.clone(),
        );
        let pools = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "orgd_db_pool_connections",
            "Database connections by pool and state",
            pools.clone(),
        );
        let store = StoreMetrics::default();
        registry.register(
            "orgd_db_write_acquire_seconds",
            "Time a change waited for its transaction to begin",
            store.write_acquire.clone(),
        );
        registry.register(
            "orgd_audit_appends",
            "Audit events written",
            store.audit_appends.clone(),
        );
        registry.register(
            "orgd_cache_lookups",
            "Lookups in the in-process snapshot by cache (caller, access, organization) and result \
             (hit, miss, bypass: the snapshot was not known to be fresh)",
            store.cache.lookups.clone(),
        );
        registry.register(
            "orgd_cache_invalidations",
            "Invalidations of the in-process snapshot by source (local: this instance's changes; \
             remote: the database's change feed)",
            store.cache.invalidations.clone(),
        );
        registry.register(
            "orgd_db_statement_seconds",
            "SQL statement latency by kind (process-wide)",
            statements().clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "orgd_rate_limited",
            "Calls refused by a rate limit, by limit (caller, organization)",
            rate_limited.clone(),
        );
        registry.register(
            "orgd_overloaded",
            "Calls refused because the server was at capacity (--max-in-flight, or no database \
             reader free within --db-read-wait-ms)",
            store.overloaded.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("orgd_build_info", "orgd's version", build);
        Arc::new(Self {
            registry,
            started,
            handled,
            handling,
            pools,
            store,
            rate_limited,
        })
    }

    /// A call refused at capacity.
    pub fn overloaded(&self) {
        self.store.overloaded.inc();
    }

    /// A call a rate limit refused.
    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited.get_or_create(&LimitLabels { limit }).inc();
    }

    /// The handles the store records into.
    pub fn store(&self) -> StoreMetrics {
        self.store.clone()
    }

    pub fn rpc_started(&self, path: &str) {
        if let Some(labels) = rpc_labels(path) {
            self.started.get_or_create(&labels).inc();
        }
    }

    pub fn rpc_handled(&self, path: &str, code: Code, seconds: f64) {
        let Some(labels) = rpc_labels(path) else { return };
        self.handling.get_or_create(&labels).observe(seconds);
        self.handled
            .get_or_create(&HandledLabels {
                grpc_service: labels.grpc_service,
                grpc_method: labels.grpc_method,
                grpc_type: labels.grpc_type,
                grpc_code: code_name(code),
            })
            .inc();
    }

    /// The text a scrape returns, with the pool gauges read now.
    pub fn render(&self, pools: &[PoolStats]) -> String {
        for pool in pools {
            let idle = i64::try_from(pool.idle).unwrap_or(i64::MAX);
            let in_use = i64::from(pool.size) - idle;
            for (state, value) in [("idle", idle), ("in_use", in_use.max(0))] {
                self.pools
                    .get_or_create(&PoolLabels {
                        pool: pool.name.to_owned(),
                        state: state.to_owned(),
                    })
                    .set(value);
            }
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

/// `/orgd.v1.OrganizationService/GetOrganization` -> labels; None for a
/// path that is not a gRPC method.
fn rpc_labels(path: &str) -> Option<RpcLabels> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    let streaming = matches!(
        (service, method),
        ("orgd.v1.OrganizationService", "ExportAuditEvents" | "WatchEvents")
            | ("grpc.health.v1.Health", "Watch")
            | (_, "ServerReflectionInfo")
    );
    Some(RpcLabels {
        grpc_service: service.to_owned(),
        grpc_method: method.to_owned(),
        grpc_type: if streaming { "server_stream" } else { "unary" }.to_owned(),
    })
}

/// Status codes as gRPC servers in other languages name them ("OK",
/// "NotFound", ...).
fn code_name(code: Code) -> String {
    match code {
        Code::Ok => "OK".to_owned(),
        other => format!("{other:?}"),
    }
}

/// Serves `GET /metrics` (any path, in fact) on `listener` until shut down.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<crate::App>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request| {
                let body = app.metrics.render(&app.store.pool_stats());
                async move {
                    hyper::Response::builder()
                        .header(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )
                        .body(Full::new(Bytes::from(body)))
                }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
}
