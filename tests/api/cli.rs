//! The real `orgd` binary: `token`, `superadmin`, `migrate`, `descriptor`,
//! and grpcurl against the in-process server.
//!
//! Subprocesses run through tokio::process (never a blocking wait), and every
//! test uses the multi-threaded runtime, so the in-process server keeps
//! answering while a child process waits for it.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use orgd::auth::{Claims, Secret, issue_token};
use orgd::proto::*;
use prost::Message;
use sqlx::Connection;
use tokio::process::Command;
use tonic::{Code, Status};

use crate::helpers::{SUPERADMIN, TestApp, assert_error, backend, fresh_database_url, req, token};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `orgd` with none of the caller's orgd settings in its environment.
pub(crate) fn orgd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orgd"));
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("ORGD_") || k == "DATABASE_URL" {
            cmd.env_remove(&key);
        }
    }
    // Named explicitly too, in case they appear only in the child's view.
    for key in [
        "ORGD_JWT_SECRET",
        "ORGD_JWT_PUBLIC_KEY",
        "ORGD_JWT_ISSUER",
        "ORGD_JWT_AUDIENCE",
        "ORGD_DATA_DIR",
        "DATABASE_URL",
    ] {
        cmd.env_remove(key);
    }
    cmd
}

/// Runs a command to completion without blocking the runtime; a child that
/// hangs is killed and fails the test instead of hanging it.
pub(crate) async fn run(mut cmd: Command) -> Output {
    let shown = format!("{:?}", cmd.as_std());
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{shown} did not finish"))
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The counts of a phase's last progress line (`[ 0.1s] NAME: DONE/TOTAL
/// (100%), R/s, done`, or `NAME: DONE, R/s, done` without a total), as a
/// command writes them when stderr is not a terminal.
#[track_caller]
pub(crate) fn finished_phase(out: &Output, name: &str) -> (u64, Option<u64>) {
    let text = stderr(out);
    let started = text.lines().any(|l| l.starts_with(&format!("{name}: starting")));
    let last = text
        .lines()
        .find(|l| l.starts_with('[') && l.contains(&format!("] {name}: ")) && l.ends_with(", done"));
    let (true, Some(last)) = (started, last) else {
        panic!("no progress of '{name}' in:\n{text}");
    };
    let counts = last
        .split_once(&format!("{name}: "))
        .and_then(|(_, rest)| rest.split([',', ' ']).next())
        .unwrap_or_default();
    let number = |s: &str| s.parse::<u64>().unwrap_or_else(|_| panic!("bad count in {last}"));
    match counts.split_once('/') {
        Some((done, total)) => (number(done), Some(number(total))),
        None => (number(counts), None),
    }
}

#[track_caller]
pub(crate) fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// `orgd token --email EMAIL --data-dir DIR [extra...]`; returns the token.
async fn cli_token(data_dir: &Path, email: &str, extra: &[&str]) -> String {
    let mut cmd = orgd();
    cmd.arg("token")
        .arg("--email")
        .arg(email)
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra);
    let out = run(cmd).await;
    assert_success(&out, "orgd token");
    let printed = stdout(&out);
    let tok = printed.trim();
    assert_eq!(tok.split('.').count(), 3, "not a JWT: {printed:?}");
    assert!(!tok.contains(char::is_whitespace), "{printed:?}");
    tok.to_owned()
}

fn read_secret(data_dir: &Path) -> String {
    let path = data_dir.join("jwt_secret");
    let contents =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    contents.trim().to_owned()
}

/// A server that trusts the HS256 secret in `data_dir/jwt_secret`.
async fn spawn_with_secret_of(data_dir: &Path) -> TestApp {
    let secret = read_secret(data_dir);
    TestApp::spawn_with(move |c| c.auth.hs256_secret = Secret::new(secret)).await
}

async fn list(app: &TestApp, tok: &str) -> Result<ListOrganizationsResponse, Status> {
    app.orgs()
        .list_organizations(req(tok, ListOrganizationsRequest::default()))
        .await
        .map(tonic::Response::into_inner)
}

async fn create_org_as(app: &TestApp, tok: &str, name: &str) -> Result<OrganizationDetails, Status> {
    app.orgs()
        .create_organization(req(
            tok,
            CreateOrganizationRequest {
                name: name.into(),
                slug: None,
                description: String::new(),
                admin_email: String::new(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().organization.expect("organization in response"))
}

fn decode_claims(tok: &str, secret: &str) -> Claims {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Claims>(tok, &DecodingKey::from_secret(secret.as_bytes()), &validation)
        .expect("the printed token verifies with the secret")
        .claims
}

// ---------------------------------------------------------------------------
// orgd token
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_generates_a_secret_in_the_data_dir_that_the_server_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    assert!(!data.join("jwt_secret").exists());

    let tok = cli_token(
        &data,
        "cli-user@orgd.test",
        &["--name", "Cli User", "--ttl", "1h"],
    )
    .await;
    let secret = read_secret(&data);
    assert!(
        secret.len() >= 16,
        "a weak generated secret: {} characters",
        secret.len()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("jwt_secret"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "jwt_secret is readable by others: {mode:o}");
    }

    let app = spawn_with_secret_of(&data).await;
    let page = list(&app, &tok).await.expect("the server accepts the CLI token");
    assert_eq!(page.total, 0);

    // The name went into the token: the provisioned user carries it. (This
    // server does not trust helpers::SECRET, so the superadmin's token is
    // signed with the generated secret.)
    let root = issue_token(
        &Secret::new(secret),
        &Claims {
            email: SUPERADMIN.into(),
            exp: chrono::Utc::now().timestamp() + 3600,
            name: None,
            sub: None,
            iat: None,
            iss: None,
            aud: None,
        },
    )
    .expect("sign");
    let org = create_org_as(&app, &root, "Cli Org").await.expect("create");
    let member = app
        .orgs()
        .add_user(req(
            &root,
            AddUserRequest {
                slug: org.slug,
                user_email: "cli-user@orgd.test".into(),
                role: "member".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("add user")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(member.display_name, "Cli User");

    // A server with another secret does not.
    let other = TestApp::spawn().await;
    assert_error(list(&other, &tok).await, Code::Unauthenticated, "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reuses_the_secret_already_in_the_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = cli_token(dir.path(), SUPERADMIN, &[]).await;
    let secret = read_secret(dir.path());
    let second = cli_token(dir.path(), SUPERADMIN, &[]).await;
    assert_eq!(read_secret(dir.path()), secret, "the secret was regenerated");

    let app = spawn_with_secret_of(dir.path()).await;
    list(&app, &first).await.expect("first token accepted");
    create_org_as(&app, &second, "Second Token Corp")
        .await
        .expect("second token is the superadmin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_honours_the_ttl_and_lowercases_the_email() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (ttl, seconds) in [
        ("2h", 7200),
        ("45m", 2700),
        ("3d", 259_200),
        ("90s", 90),
        ("600", 600),
    ] {
        let tok = cli_token(dir.path(), "Mixed@Case.Test", &["--ttl", ttl]).await;
        let claims = decode_claims(&tok, &read_secret(dir.path()));
        let iat = claims.iat.expect("iat is set");
        assert_eq!(claims.exp - iat, seconds, "--ttl {ttl}");
        assert_eq!(claims.email, "mixed@case.test");
        assert_eq!(claims.name, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_uses_orgd_jwt_secret_when_it_is_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = orgd();
    cmd.args(["token", "--email", SUPERADMIN, "--data-dir"])
        .arg(dir.path())
        .env("ORGD_JWT_SECRET", crate::helpers::SECRET);
    let out = run(cmd).await;
    assert_success(&out, "orgd token with ORGD_JWT_SECRET");
    assert!(
        !dir.path().join("jwt_secret").exists(),
        "a secret file was written although one was given"
    );

    let app = TestApp::spawn().await; // trusts helpers::SECRET
    create_org_as(&app, stdout(&out).trim(), "Env Secret Corp")
        .await
        .expect("accepted as the superadmin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_rejects_invalid_ttls() {
    let dir = tempfile::tempdir().expect("tempdir");
    for ttl in ["0h", "5w", "abc", "-1h", "0"] {
        let mut cmd = orgd();
        cmd.args(["token", "--email", "someone@orgd.test", "--data-dir"])
            .arg(dir.path())
            .arg(format!("--ttl={ttl}"));
        let out = run(cmd).await;
        assert!(!out.status.success(), "--ttl {ttl} succeeded: {}", stdout(&out));
        assert!(
            stdout(&out).trim().is_empty(),
            "--ttl {ttl} printed {:?}",
            stdout(&out)
        );
        let err = stderr(&out);
        assert!(!err.trim().is_empty(), "--ttl {ttl}: nothing on stderr");
        assert!(
            err.contains("duration") || err.contains("ttl") || err.contains("argument"),
            "--ttl {ttl}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_rejects_an_invalid_email() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = orgd();
    cmd.args(["token", "--email", "not-an-email", "--data-dir"])
        .arg(dir.path());
    let out = run(cmd).await;
    assert!(!out.status.success(), "succeeded: {}", stdout(&out));
    assert!(stdout(&out).trim().is_empty());
    assert!(stderr(&out).contains("email"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// orgd superadmin
// ---------------------------------------------------------------------------

async fn superadmin(action: &str, email: &str, app: &TestApp) -> Output {
    let mut cmd = orgd();
    cmd.args(["superadmin", action, email, "--data-dir"])
        .arg(app.dir.path().join("cli-data"))
        .arg("--database-url")
        .arg(&app.database_url);
    run(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superadmin_grant_and_revoke_change_who_may_create_organizations() {
    let app = TestApp::spawn().await;
    let chief = token("chief@orgd.test");
    assert_error(
        create_org_as(&app, &chief, "Before Grant").await,
        Code::PermissionDenied,
        "NOT_AUTHORIZED",
    );

    let out = superadmin("grant", "Chief@ORGD.test", &app).await;
    assert_success(&out, "orgd superadmin grant");
    assert!(
        stdout(&out).contains("chief@orgd.test is a superadmin"),
        "{}",
        stdout(&out)
    );
    let org = create_org_as(&app, &chief, "Granted Corp")
        .await
        .expect("a granted superadmin creates");
    assert_eq!(org.slug, "granted-corp");

    let out = superadmin("revoke", "chief@orgd.test", &app).await;
    assert_success(&out, "orgd superadmin revoke");
    assert!(
        stdout(&out).contains("no longer a superadmin"),
        "{}",
        stdout(&out)
    );
    assert_error(
        create_org_as(&app, &chief, "After Revoke").await,
        Code::PermissionDenied,
        "NOT_AUTHORIZED",
    );

    // The configured superadmin was not touched.
    create_org_as(&app, &crate::helpers::root(), "Root Still Corp")
        .await
        .expect("root still superadmin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superadmin_grant_rejects_an_invalid_email() {
    let app = TestApp::spawn().await;
    let out = superadmin("grant", "nobody-at-all", &app).await;
    assert!(!out.status.success(), "succeeded: {}", stdout(&out));
    assert!(stderr(&out).contains("email"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// orgd migrate
// ---------------------------------------------------------------------------

async fn applied_sqlite_migrations(db: &Path) -> i64 {
    let url = format!("sqlite://{}", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open the SQLite database");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .expect("count migrations");
    conn.close().await.ok();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_default_sqlite_database_and_can_run_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let migrate = || {
        let mut cmd = orgd();
        cmd.arg("migrate").arg("--data-dir").arg(&data);
        cmd
    };

    let out = run(migrate()).await;
    assert_success(&out, "first orgd migrate");
    let db = data.join("orgd.db");
    assert!(db.is_file(), "{} was not created", db.display());
    let applied = applied_sqlite_migrations(&db).await;
    assert!(applied > 0, "no migrations recorded");
    let n = u64::try_from(applied).expect("count");
    assert_eq!(
        finished_phase(&out, "migrations"),
        (n, Some(n)),
        "one step per migration"
    );
    let organizations: (i64,) = {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("open");
        sqlx::query_as("SELECT COUNT(*) FROM organizations")
            .fetch_one(&mut conn)
            .await
            .expect("organizations table")
    };
    assert_eq!(organizations.0, 0);

    let out = run(migrate()).await;
    assert_success(&out, "second orgd migrate");
    assert_eq!(
        applied_sqlite_migrations(&db).await,
        applied,
        "migrations re-applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_to_the_database_url_given_and_can_run_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database_url(dir.path()).await;
    for attempt in ["first", "second"] {
        let mut cmd = orgd();
        cmd.arg("migrate")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--database-url")
            .arg(&url);
        let out = run(cmd).await;
        assert_success(&out, &format!("{attempt} orgd migrate --database-url"));
        assert!(stdout(&out).contains(&backend()), "{}", stdout(&out));
    }
    let count = match backend().as_str() {
        "postgres" => {
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut conn)
                .await
                .expect("count migrations");
            conn.close().await.ok();
            n
        }
        _ => applied_sqlite_migrations(&dir.path().join("orgd.db")).await,
    };
    assert!(count > 0, "no migrations recorded in {}", backend());
}

// ---------------------------------------------------------------------------
// orgd descriptor
// ---------------------------------------------------------------------------

/// Just enough of descriptor.proto to read the google.api.http option, which
/// prost_types drops as an unknown extension.
mod raw {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileSet {
        #[prost(message, repeated, tag = "1")]
        pub file: Vec<File>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct File {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(message, repeated, tag = "6")]
        pub service: Vec<Service>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Service {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(message, repeated, tag = "2")]
        pub method: Vec<Method>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Method {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(message, optional, tag = "4")]
        pub options: Option<MethodOptions>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MethodOptions {
        /// (google.api.http)
        #[prost(message, optional, tag = "72295728")]
        pub http: Option<HttpRule>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpRule {
        #[prost(string, optional, tag = "2")]
        pub get: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub put: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub post: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub delete: Option<String>,
        #[prost(string, optional, tag = "6")]
        pub patch: Option<String>,
        #[prost(string, optional, tag = "7")]
        pub body: Option<String>,
    }

    impl HttpRule {
        /// (verb, path) of the binding.
        pub fn binding(&self) -> Option<(&'static str, &str)> {
            [
                ("GET", &self.get),
                ("PUT", &self.put),
                ("POST", &self.post),
                ("DELETE", &self.delete),
                ("PATCH", &self.patch),
            ]
            .into_iter()
            .find_map(|(verb, path)| path.as_deref().map(|p| (verb, p)))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_writes_a_complete_descriptor_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_file: PathBuf = dir.path().join("orgd.pb");
    let mut cmd = orgd();
    cmd.arg("descriptor").arg("--out").arg(&out_file);
    let out = run(cmd).await;
    assert_success(&out, "orgd descriptor");
    let bytes = std::fs::read(&out_file).expect("descriptor file written");

    let set = prost_types::FileDescriptorSet::decode(bytes.as_slice()).expect("a FileDescriptorSet");
    let file = |name: &str| {
        set.file.iter().find(|f| f.name() == name).unwrap_or_else(|| {
            panic!(
                "{name} missing from {:?}",
                set.file.iter().map(|f| f.name()).collect::<Vec<_>>()
            )
        })
    };

    let mut services: Vec<&str> = set
        .file
        .iter()
        .filter(|f| f.package() == "orgd.v1")
        .flat_map(|f| f.service.iter().map(|s| s.name()))
        .collect();
    services.sort_unstable();
    assert_eq!(
        services,
        ["AggregationService", "OrganizationService", "SpaceService"]
    );

    let error_details = file("google/rpc/error_details.proto");
    assert_eq!(error_details.package(), "google.rpc");
    assert!(
        error_details.message_type.iter().any(|m| m.name() == "ErrorInfo"),
        "no google.rpc.ErrorInfo"
    );
    assert_eq!(file("google/rpc/status.proto").package(), "google.rpc");
    // Imports are included, so the set stands alone.
    file("google/api/annotations.proto");
    file("google/api/http.proto");

    let organizations = file("orgd/v1/organization_service.proto");
    let service = &organizations.service[0];
    assert_eq!(service.name(), "OrganizationService");
    assert!(!service.method.is_empty());
    for method in &service.method {
        assert!(method.options.is_some(), "{} has no options", method.name());
    }

    // Every RPC has an HTTP binding, with the paths the proto declares.
    let raw = raw::FileSet::decode(bytes.as_slice()).expect("raw descriptor set");
    let mut bindings = std::collections::HashMap::new();
    for file in raw
        .file
        .iter()
        .filter(|f| f.name.as_deref().is_some_and(|n| n.starts_with("orgd/v1/")))
    {
        for service in &file.service {
            for method in &service.method {
                let name = format!(
                    "{}/{}",
                    service.name.as_deref().unwrap_or(""),
                    method.name.as_deref().unwrap_or("")
                );
                let http = method.options.as_ref().and_then(|o| o.http.as_ref());
                let binding = http.and_then(raw::HttpRule::binding);
                let (verb, path) = binding.unwrap_or_else(|| panic!("{name} has no google.api.http binding"));
                bindings.insert(name, (verb, path.to_owned(), http.and_then(|h| h.body.clone())));
            }
        }
    }
    assert_eq!(bindings.len(), 25 + 20 + 5, "{bindings:?}");
    assert_eq!(
        bindings["OrganizationService/ListOrganizations"],
        ("GET", "/organizations".into(), None)
    );
    assert_eq!(
        bindings["OrganizationService/CreateOrganization"],
        ("POST", "/organizations".into(), Some("*".into()))
    );
    assert_eq!(
        bindings["OrganizationService/GetOrganization"],
        ("GET", "/organizations/{slug}".into(), None)
    );
    assert_eq!(bindings["OrganizationService/DeleteOrganization"].0, "DELETE");
    assert_eq!(
        bindings["OrganizationService/ListAuditEvents"],
        ("GET", "/organizations/{slug}/audit".into(), None)
    );
    assert_eq!(
        bindings["OrganizationService/ProveAuditChain"],
        (
            "POST",
            "/organizations/{slug}/audit:prove".into(),
            Some("*".into())
        )
    );
    assert_eq!(
        bindings["OrganizationService/WatchEvents"],
        ("GET", "/organizations/{slug}/audit:watch".into(), None)
    );
}

// ---------------------------------------------------------------------------
// grpcurl
// ---------------------------------------------------------------------------

fn grpcurl_path() -> PathBuf {
    if let Some(path) = std::env::var_os("ORGD_TEST_GRPCURL").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let fallback = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/grpcurl");
    if fallback.is_file() {
        return fallback;
    }
    panic!(
        "grpcurl not found: ORGD_TEST_GRPCURL is unset and {} does not exist; run scripts/test.sh \
         (or `source scripts/tools.sh && ensure_grpcurl`) to install it",
        fallback.display()
    );
}

fn grpcurl(app: &TestApp) -> (Command, String) {
    let mut cmd = Command::new(grpcurl_path());
    cmd.args(["-plaintext", "-connect-timeout", "10", "-max-time", "30"]);
    (cmd, app.addr.to_string())
}

async fn grpcurl_call(app: &TestApp, tok: Option<&str>, method: &str, body: &str) -> Output {
    let (mut cmd, addr) = grpcurl(app);
    if let Some(tok) = tok {
        cmd.arg("-H").arg(format!("authorization: Bearer {tok}"));
    }
    cmd.arg("-d")
        .arg(body)
        .arg(addr)
        .arg(format!("orgd.v1.OrganizationService/{method}"));
    run(cmd).await
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_the_services_through_reflection() {
    let app = TestApp::spawn().await;
    let (mut cmd, addr) = grpcurl(&app);
    cmd.arg(addr).arg("list");
    let out = run(cmd).await;
    assert_success(&out, "grpcurl list");
    let listed = stdout(&out);
    let services: Vec<&str> = listed.lines().map(str::trim).collect();
    for expected in [
        "orgd.v1.OrganizationService",
        "orgd.v1.SpaceService",
        "orgd.v1.AggregationService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(&expected), "{expected} missing from:\n{listed}");
    }

    let (mut cmd, addr) = grpcurl(&app);
    cmd.arg(addr).arg("list").arg("orgd.v1.OrganizationService");
    let out = run(cmd).await;
    assert_success(&out, "grpcurl list orgd.v1.OrganizationService");
    assert!(
        stdout(&out).contains("orgd.v1.OrganizationService.CreateOrganization"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_creates_and_gets_an_organization_with_a_cli_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = cli_token(dir.path(), SUPERADMIN, &[]).await;
    let app = spawn_with_secret_of(dir.path()).await;

    let out = grpcurl_call(
        &app,
        Some(&tok),
        "CreateOrganization",
        r#"{"name":"Grpcurl Corp"}"#,
    )
    .await;
    assert_success(&out, "grpcurl CreateOrganization");
    assert!(
        stdout(&out).contains(r#""slug": "grpcurl-corp""#),
        "{}",
        stdout(&out)
    );
    let created = json(&out);
    let id = created["organization"]["id"]
        .as_str()
        .expect("organization.id")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(created["organization"]["name"], "Grpcurl Corp");

    let out = grpcurl_call(&app, Some(&tok), "GetOrganization", r#"{"slug":"grpcurl-corp"}"#).await;
    assert_success(&out, "grpcurl GetOrganization");
    let got = json(&out);
    assert_eq!(got["organization"]["id"].as_str(), Some(id.as_str()), "{got}");
    assert_eq!(got["organization"]["slug"], "grpcurl-corp");

    // The same organization through the Rust client.
    let details = app
        .orgs()
        .get_organization(req(
            &tok,
            GetOrganizationRequest {
                slug: "grpcurl-corp".into(),
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("organization");
    assert_eq!(details.id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_without_a_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let out = grpcurl_call(&app, None, "ListOrganizations", "{}").await;
    assert!(!out.status.success(), "succeeded: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("Unauthenticated"), "{err}");
}

// ---------------------------------------------------------------------------
// API contracts (buf)
// ---------------------------------------------------------------------------

fn buf_path() -> PathBuf {
    std::env::var_os("ORGD_TEST_BUF")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/buf/node_modules/.bin/buf"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn buf_breaking_refuses_a_change_that_breaks_wire_or_json_compatibility() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let released = root.join("api-released/proto");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(root.join("buf.yaml"), dir.path().join("buf.yaml")).expect("buf.yaml");
    copy_dir(&root.join("proto"), &dir.path().join("proto"));
    let check = || {
        let mut cmd = Command::new(buf_path());
        cmd.current_dir(dir.path())
            .args(["breaking", "proto", "--against"])
            .arg(&released);
        cmd
    };
    let today = run(check()).await;
    assert!(
        today.status.success(),
        "the protos break the released API: {}",
        stdout(&today)
    );

    // Renaming a field changes its JSON name: REST callers would break.
    let file = dir.path().join("proto/orgd/v1/space_service.proto");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &file,
        text.replacen("int32 upserted = 1;", "int32 upserted_count = 1;", 1),
    )
    .expect("write");
    let renamed = run(check()).await;
    assert!(!renamed.status.success(), "a renamed field passed buf breaking");
    assert!(
        stdout(&renamed).contains("upserted_count"),
        "{}",
        stdout(&renamed)
    );
}
