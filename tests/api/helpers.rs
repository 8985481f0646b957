//! The real server on port 0, per test, on the backend named by
//! `ORGD_TEST_BACKEND` (`sqlite`, the default, or `postgres` with
//! `DATABASE_URL` pointing at a server where databases may be created).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Once;

use orgd::auth::{AuthConfig, Claims, Secret, issue_token};
use orgd::proto::organization_service_client::OrganizationServiceClient;
use orgd::proto::space_service_client::SpaceServiceClient;
use orgd::proto::*;
use orgd::{ServerConfig, build_app, serve};
use sqlx::Connection;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

pub const SUPERADMIN: &str = "root@orgd.test";
pub const SECRET: &str = "test-secret-0123456789abcdef";

pub fn backend() -> String {
    std::env::var("ORGD_TEST_BACKEND").unwrap_or_else(|_| "sqlite".into())
}

fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            orgd::telemetry::init("debug");
        }
    });
}

/// A fresh, empty database for one test.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match backend().as_str() {
        "postgres" => {
            let base = std::env::var("DATABASE_URL")
                .expect("ORGD_TEST_BACKEND=postgres needs DATABASE_URL (scripts/test.sh starts a cluster)");
            let name = format!("orgd_t_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(&base)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .expect("create test database");
            admin.close().await.ok();
            let (prefix, _) = base.rsplit_once('/').expect("DATABASE_URL has a database name");
            format!("{prefix}/{name}")
        }
        "sqlite" => format!("sqlite://{}", dir.join("orgd.db").display()),
        other => panic!("unknown ORGD_TEST_BACKEND {other}"),
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where this server's metrics are served.
    pub metrics_addr: SocketAddr,
    pub channel: Channel,
    pub dir: TempDir,
    pub storage_root: PathBuf,
    pub database_url: String,
    config: ServerConfig,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// A running server: where it listens, and how to stop it.
struct Running {
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    metrics: tokio::task::JoinHandle<()>,
    channel: Channel,
    shutdown: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

/// Builds the app from `config` (migrations, superadmins, storage
/// reconciliation) and serves it on a fresh port.
async fn launch(config: &ServerConfig) -> Running {
    let app = build_app(config).await.expect("build app");
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let metrics_addr = metrics_listener.local_addr().expect("addr");
    let metrics = tokio::spawn(orgd::metrics::serve(
        metrics_listener,
        app.clone(),
        std::future::pending::<()>(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (shutdown, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve(app, listener, async {
            let _ = rx.await;
        })
        .await
        .expect("server");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    Running {
        addr,
        metrics_addr,
        metrics,
        channel,
        shutdown,
        server,
    }
}

fn test_config(database_url: &str, storage_root: PathBuf) -> ServerConfig {
    ServerConfig {
        database_url: database_url.to_owned(),
        storage_root,
        auth: AuthConfig {
            hs256_secret: Secret::new(SECRET),
            public_key_pem: None,
            issuer: None,
            audience: None,
        },
        superadmins: vec![SUPERADMIN.into()],
        db_max_connections: 4,
        db_busy_timeout: std::time::Duration::from_secs(10),
        audit_signer: orgd::signing::AuditSigner::ephemeral(),
        audit_retention: None,
        soft_delete_window: orgd::app::DEFAULT_SOFT_DELETE_WINDOW,
        // Tests run many calls at once on a loaded machine: a read waits for
        // a reader as long as it must, except where overload is under test
        // (`overload.rs`).
        admission: orgd::api::admission::AdmissionConfig {
            read_wait: std::time::Duration::from_secs(10),
            ..Default::default()
        },
        rate_limits: orgd::ratelimit::RateLimitConfig::default(),
        cache_entries: orgd::store::DEFAULT_CACHE_ENTRIES,
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the server after letting the test adjust its configuration.
    pub async fn spawn_with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        init_logging();
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = fresh_database_url(dir.path()).await;
        let storage_root = dir.path().join("storage");
        let mut config = test_config(&database_url, storage_root);
        tweak(&mut config);
        Self::start(dir, config).await
    }

    /// Serves an existing database and storage root (e.g. one `orgd
    /// generate` filled), with the test superadmin and secret.
    pub async fn spawn_on(database_url: &str, storage_root: &std::path::Path) -> Self {
        init_logging();
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start(dir, test_config(database_url, storage_root.to_owned())).await
    }

    async fn start(dir: TempDir, config: ServerConfig) -> Self {
        let running = launch(&config).await;
        Self {
            addr: running.addr,
            metrics_addr: running.metrics_addr,
            metrics_task: Some(running.metrics),
            channel: running.channel,
            dir,
            storage_root: config.storage_root.clone(),
            database_url: config.database_url.clone(),
            config,
            shutdown: Some(running.shutdown),
            server: Some(running.server),
        }
    }

    /// Stops the server and builds a new one on the same database and
    /// storage root (as a restart of `orgd serve` would), on a new port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let running = launch(&self.config).await;
        self.addr = running.addr;
        self.metrics_addr = running.metrics_addr;
        self.metrics_task = Some(running.metrics);
        self.channel = running.channel;
        self.shutdown = Some(running.shutdown);
        self.server = Some(running.server);
    }

    /// Stops the server, keeping its directory (and a SQLite database in it).
    pub async fn stop(&mut self) {
        if let Some(task) = self.metrics_task.take() {
            task.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    pub fn orgs(&self) -> OrganizationServiceClient<Channel> {
        OrganizationServiceClient::new(self.channel.clone())
    }

    pub fn spaces(&self) -> SpaceServiceClient<Channel> {
        SpaceServiceClient::new(self.channel.clone())
    }

    /// Creates an organization as the superadmin, with `admin` as its admin.
    pub async fn create_org(&self, name: &str, slug: &str, admin: &str) -> OrganizationDetails {
        self.orgs()
            .create_organization(req(
                &root(),
                CreateOrganizationRequest {
                    name: name.into(),
                    slug: Some(slug.into()),
                    description: String::new(),
                    admin_email: admin.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("create organization")
            .into_inner()
            .organization
            .expect("organization in response")
    }

    pub async fn add_user(&self, slug: &str, email: &str, role: &str) -> Member {
        self.orgs()
            .add_user(req(
                &root(),
                AddUserRequest {
                    slug: slug.into(),
                    user_email: email.into(),
                    role: role.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("add user")
            .into_inner()
            .member
            .expect("member in response")
    }

    /// Creates a space as the superadmin, with `admin` as its space admin.
    pub async fn create_space(&self, name: &str, visibility: &str, admin: &str) -> Space {
        self.spaces()
            .create_space(req(
                &root(),
                CreateSpaceRequest {
                    name: name.into(),
                    slug: None,
                    description: String::new(),
                    visibility: visibility.into(),
                    repo: String::new(),
                    agent: None,
                    admin_email: admin.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("create space")
            .into_inner()
            .space
            .expect("space in response")
    }

    pub async fn attach(&self, slug: &str, space_id: &str) {
        self.orgs()
            .add_space(req(
                &root(),
                AddSpaceRequest {
                    slug: slug.into(),
                    space_id: space_id.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("add space");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = self.metrics_task.take() {
            task.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A valid HS256 token for `email`, one hour long.
pub fn token(email: &str) -> String {
    token_with(Claims {
        email: email.into(),
        exp: chrono::Utc::now().timestamp() + 3600,
        name: None,
        sub: None,
        iat: None,
        iss: None,
        aud: None,
    })
}

pub fn token_with(claims: Claims) -> String {
    issue_token(&Secret::new(SECRET), &claims).expect("sign")
}

pub fn root() -> String {
    token(SUPERADMIN)
}

/// A request carrying `authorization: Bearer <token>` (none when empty).
pub fn req<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if !token.is_empty() {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    request
}

/// The ErrorInfo reason of a status, checking its domain.
pub fn reason(status: &Status) -> String {
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "orgd");
    info.reason.clone()
}

/// The ErrorInfo metadata value for `key`.
pub fn info_meta(status: &Status, key: &str) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .and_then(|i| i.metadata.get(key).cloned())
}

/// Asserts a failure with this code and reason.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    expected_reason: &str,
) -> Status {
    match result {
        Ok(v) => panic!("expected {code:?}/{expected_reason}, got success: {v:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert_eq!(reason(&status), expected_reason, "{status:?}");
            status
        }
    }
}

/// A unique slug for tests that need many organizations.
pub fn unique_slug(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A value bound to a raw SQL statement.
#[derive(Debug, Clone)]
pub enum Arg {
    Uuid(uuid::Uuid),
    I64(i64),
    Text(String),
}

/// A direct connection to a test database, bypassing orgd: for looking
/// things up and for tampering. Statements use `$n` placeholders, which both
/// backends accept; ids bind as `uuid::Uuid` (a BLOB on SQLite, a UUID on
/// PostgreSQL), as orgd stores them.
pub enum Db {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::Uuid(v) => q.bind(*v),
                Arg::I64(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.clone()),
            };
        }
        q
    }};
}

impl Db {
    pub async fn connect(database_url: &str) -> Self {
        match backend().as_str() {
            "postgres" => Db::Postgres(
                sqlx::PgConnection::connect(database_url)
                    .await
                    .expect("connect to the test database"),
            ),
            _ => Db::Sqlite(
                sqlx::SqliteConnection::connect(database_url)
                    .await
                    .expect("open the test database"),
            ),
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, args: &[Arg]) -> u64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Db::Sqlite(c) => bind_all!(sqlx::query(sql), args)
                .execute(&mut *c)
                .await
                .expect("execute")
                .rows_affected(),
            Db::Postgres(c) => bind_all!(sqlx::query(sql), args)
                .execute(&mut *c)
                .await
                .expect("execute")
                .rows_affected(),
        }
    }

    /// Runs a statement that may fail, and says how.
    pub async fn try_execute(&mut self, sql: &str) -> Result<u64, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Db::Sqlite(c) => sqlx::query(sql).execute(&mut *c).await.map(|r| r.rows_affected()),
            Db::Postgres(c) => sqlx::query(sql).execute(&mut *c).await.map(|r| r.rows_affected()),
        }
    }

    /// The ids a query returns in its first column.
    pub async fn ids(&mut self, sql: &str, args: &[Arg]) -> Vec<uuid::Uuid> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Db::Sqlite(c) => bind_all!(sqlx::query_scalar::<_, uuid::Uuid>(sql), args)
                .fetch_all(&mut *c)
                .await
                .expect("query ids"),
            Db::Postgres(c) => bind_all!(sqlx::query_scalar::<_, uuid::Uuid>(sql), args)
                .fetch_all(&mut *c)
                .await
                .expect("query ids"),
        }
    }

    /// The strings a query returns in its first column.
    pub async fn strings(&mut self, sql: &str, args: &[Arg]) -> Vec<String> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Db::Sqlite(c) => bind_all!(sqlx::query_scalar::<_, String>(sql), args)
                .fetch_all(&mut *c)
                .await
                .expect("query strings"),
            Db::Postgres(c) => bind_all!(sqlx::query_scalar::<_, String>(sql), args)
                .fetch_all(&mut *c)
                .await
                .expect("query strings"),
        }
    }

    /// Every column of the one row a query returns, each selected as
    /// text.
    pub async fn row(&mut self, sql: &str, args: &[Arg]) -> Vec<String> {
        use sqlx::Row;
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Db::Sqlite(c) => {
                let row = bind_all!(sqlx::query(sql), args)
                    .fetch_one(&mut *c)
                    .await
                    .expect("query row");
                (0..row.len()).map(|i| row.get::<String, _>(i)).collect()
            }
            Db::Postgres(c) => {
                let row = bind_all!(sqlx::query(sql), args)
                    .fetch_one(&mut *c)
                    .await
                    .expect("query row");
                (0..row.len()).map(|i| row.get::<String, _>(i)).collect()
            }
        }
    }

    pub async fn close(self) {
        match self {
            Db::Sqlite(c) => c.close().await.ok(),
            Db::Postgres(c) => c.close().await.ok(),
        };
    }
}

/// The id orgd gave the user with this email (the user must exist).
pub async fn user_id(database_url: &str, email: &str) -> String {
    let mut db = Db::connect(database_url).await;
    let ids = db
        .ids(
            "SELECT id FROM users WHERE email = $1",
            &[Arg::Text(email.to_owned())],
        )
        .await;
    db.close().await;
    assert_eq!(ids.len(), 1, "no user {email}");
    ids[0].to_string()
}
