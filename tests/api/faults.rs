//! Faults from below: a disk that fills up. No acknowledged write may be
//! missing afterwards.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orgd::proto::aggregation_service_client::AggregationServiceClient;
use orgd::proto::*;
use tonic::Code;

use crate::helpers::*;

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs failed");
        Self {
            path: dir.path().to_owned(),
            _dir: dir,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Fills the file system holding `dir` with one file, leaving `keep` bytes.
fn fill(dir: &Path, keep: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 16 * 1024];
    let mut written: u64 = 0;
    while file.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = file.flush();
    file.set_len(written.saturating_sub(keep)).expect("shrink filler");
    file.sync_all().ok();
    path
}

async fn create(app: &TestApp, slug: &str) -> Result<(), tonic::Status> {
    app.orgs()
        .create_organization(req(
            &root(),
            CreateOrganizationRequest {
                name: format!("Org {slug} with a long enough name to take some room"),
                slug: Some(slug.into()),
                description: "x".repeat(2000),
                admin_email: format!("admin@{slug}.test"),
                ..Default::default()
            },
        ))
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_loses_no_acknowledged_write_and_recovers() {
    if backend() != "sqlite" {
        // The PostgreSQL server's disk is not the test's to fill.
        return;
    }
    if !running_as_root() {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let disk = Tmpfs::mount("3m");
    let url = format!("sqlite://{}", disk.path.join("orgd.db").display());
    let mut app = TestApp::spawn_with(move |c| c.database_url = url).await;
    create(&app, "before-full").await.expect("room at first");

    let filler = fill(&disk.path, 96 * 1024);
    let mut acknowledged = vec!["before-full".to_owned()];
    let mut refusals = 0;
    for i in 0..200 {
        let slug = format!("org-{i}");
        match create(&app, &slug).await {
            Ok(()) => acknowledged.push(slug),
            Err(status) => {
                assert_eq!(
                    (status.code(), reason(&status).as_str()),
                    (Code::ResourceExhausted, "STORAGE_FULL"),
                    "{status:?}"
                );
                refusals += 1;
                if refusals >= 5 {
                    break;
                }
            }
        }
    }
    assert!(refusals >= 1, "the disk never filled up");

    // Space comes back: writes succeed again, on the same connection pool.
    std::fs::remove_file(&filler).expect("free the disk");
    let mut recovered = false;
    for attempt in 0..50 {
        let slug = format!("after-{attempt}");
        if create(&app, &slug).await.is_ok() {
            acknowledged.push(slug);
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "writes did not resume once space was freed");
    for i in 0..5 {
        let slug = format!("later-{i}");
        create(&app, &slug).await.expect("writes keep working");
        acknowledged.push(slug);
    }

    // Every acknowledged write survives a restart, with its audit chain.
    app.restart().await;
    for slug in &acknowledged {
        let got = app
            .orgs()
            .get_organization(req(&root(), GetOrganizationRequest { slug: slug.clone() }))
            .await;
        assert!(
            got.is_ok(),
            "acknowledged {slug} is missing after a restart: {got:?}"
        );
        let v = app
            .orgs()
            .verify_audit_chain(req(
                &root(),
                VerifyAuditChainRequest {
                    slug: slug.clone(),
                    organization_id: String::new(),
                },
            ))
            .await
            .expect("verify")
            .into_inner();
        assert!(v.valid && v.head_seq == 1, "{slug}: {v:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_lock_held_by_another_process_is_waited_for_then_unavailable() {
    use sqlx::Connection;
    if backend() != "sqlite" {
        return;
    }
    let app = TestApp::spawn_with(|c| c.db_busy_timeout = Duration::from_millis(1500)).await;
    create(&app, "first").await.expect("create");

    // Someone else (a backup, the sqlite3 shell) takes the write lock.
    let mut other = sqlx::SqliteConnection::connect(&app.database_url)
        .await
        .expect("open the database");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("take the write lock");
    let orgs = app.orgs();
    let waiting = tokio::spawn(async move {
        let mut orgs = orgs;
        orgs.create_organization(req(
            &root(),
            CreateOrganizationRequest {
                name: "Waited".into(),
                slug: Some("waited".into()),
                ..Default::default()
            },
        ))
        .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("release the lock");
    let waited = waiting.await.expect("task");
    assert!(waited.is_ok(), "a write should wait for the lock: {waited:?}");

    // Held for longer than the busy timeout: UNAVAILABLE, nothing written.
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("take the write lock again");
    let refused = create(&app, "blocked").await;
    assert_error(refused, Code::Unavailable, "UNAVAILABLE");
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("release the lock");
    create(&app, "blocked")
        .await
        .expect("the refused write left nothing behind and may be repeated");
}

// ---------------------------------------------------------------------------
// PostgreSQL going away and coming back
// ---------------------------------------------------------------------------

/// `scripts/tools.sh` with these arguments; its output.
fn tools(args: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tools.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run scripts/tools.sh");
    assert!(
        out.status.success(),
        "scripts/tools.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A PostgreSQL cluster of this test's own, so that stopping it disturbs no
/// other test.
struct OwnCluster {
    url: String,
    dir: String,
}

impl OwnCluster {
    fn start() -> Self {
        Self::start_in(None)
    }

    /// A cluster whose files live under `parent` (e.g. a small tmpfs).
    fn start_in(parent: Option<&Path>) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tools.sh");
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(script).arg("start_pg_cluster").env_remove("DATABASE_URL");
        if let Some(parent) = parent {
            // The cluster's owner must be able to enter it.
            let _ = std::process::Command::new("chmod")
                .arg("755")
                .arg(parent)
                .status();
            cmd.env("ORGD_PG_TMPDIR", parent);
        }
        let out = cmd.output().expect("run scripts/tools.sh");
        assert!(
            out.status.success(),
            "start_pg_cluster failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("export DATABASE_URL="))
            .expect("the cluster's URL")
            .to_owned();
        let dir = text
            .lines()
            .find_map(|l| l.split("stop_pg_cluster ").nth(1))
            .expect("the cluster's directory")
            .trim()
            .to_owned();
        Self { url, dir }
    }

    fn pause(&self) {
        tools(&["pause_pg_cluster", &self.dir]);
    }

    fn resume(&self) {
        tools(&["resume_pg_cluster", &self.dir]);
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tools.sh"))
            .args(["stop_pg_cluster", &self.dir])
            .output();
    }
}

async fn health(app: &TestApp) -> Option<i32> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: "orgd.v1.OrganizationService".into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

async fn wait_for_health(app: &TestApp, wanted: tonic_health::pb::health_check_response::ServingStatus) {
    for _ in 0..150 {
        if health(app).await == Some(wanted as i32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health never became {wanted:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_going_away_is_unavailable_and_loses_no_acknowledged_write() {
    use tonic_health::pb::health_check_response::ServingStatus;
    if backend() != "postgres" {
        return;
    }
    let cluster = OwnCluster::start();
    let url = cluster.url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.database_url = url;
        // As served by default: a read that gets no connection within the
        // short read wait must still be told the database is away, not
        // that the server is busy.
        c.admission.read_wait = orgd::store::DEFAULT_READ_WAIT;
    })
    .await;
    app.create_org("Steady", "steady", "admin@steady.test").await;

    // Writers keep adding members while the database goes away and back.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let orgs = app.orgs();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut errors = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let email = format!("w{w}-{i}@steady.test");
                    i += 1;
                    let mut request = req(
                        &root(),
                        AddUserRequest {
                            slug: "steady".into(),
                            user_email: email.clone(),
                            role: "member".into(),
                            ..Default::default()
                        },
                    );
                    request.set_timeout(Duration::from_secs(5));
                    match orgs.clone().add_user(request).await {
                        Ok(_) => acknowledged.push(email),
                        Err(status) => {
                            errors.push(status.code());
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                (acknowledged, errors)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    cluster.pause();
    // Calls fail fast and retryably, never hang or answer INTERNAL.
    for _ in 0..3 {
        let mut request = req(
            &root(),
            GetOrganizationRequest {
                slug: "steady".into(),
            },
        );
        request.set_timeout(Duration::from_secs(5));
        let e = app.orgs().get_organization(request).await;
        assert_error(e, Code::Unavailable, "UNAVAILABLE");
    }
    wait_for_health(&app, ServingStatus::NotServing).await;

    cluster.resume();
    wait_for_health(&app, ServingStatus::Serving).await;
    app.add_user("steady", "after@steady.test", "member").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut acknowledged = vec!["after@steady.test".to_owned()];
    let mut refused = 0;
    for w in writers {
        let (ok, errors) = w.await.expect("writer");
        for code in &errors {
            assert_eq!(
                *code,
                Code::Unavailable,
                "only retryable errors while away: {errors:?}"
            );
        }
        refused += errors.len();
        acknowledged.extend(ok);
    }
    assert!(refused > 0, "the outage refused no write");
    let members = app
        .orgs()
        .list_users(req(
            &root(),
            ListUsersRequest {
                slug: "steady".into(),
                size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    let mut present: std::collections::HashSet<String> =
        members.items.iter().map(|m| m.email.clone()).collect();
    let mut token = members.next_page_token;
    while !token.is_empty() {
        let page = app
            .orgs()
            .list_users(req(
                &root(),
                ListUsersRequest {
                    slug: "steady".into(),
                    size: 100,
                    page_token: token,
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner();
        present.extend(page.items.iter().map(|m| m.email.clone()));
        token = page.next_page_token;
    }
    for email in &acknowledged {
        assert!(present.contains(email), "acknowledged member {email} is missing");
    }
    let v = app
        .orgs()
        .verify_audit_chain(req(
            &root(),
            VerifyAuditChainRequest {
                slug: "steady".into(),
                organization_id: String::new(),
            },
        ))
        .await
        .expect("verify")
        .into_inner();
    assert!(v.valid, "{v:?}");
}

// ---------------------------------------------------------------------------
// Racing writers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_same_new_ids_upserted_into_two_spaces_at_once_are_stored_in_both() {
    let app = TestApp::spawn().await;
    app.create_org("Race", "race", "admin@race.test").await;
    let first = app
        .create_space("Race one", "organization", "admin@race.test")
        .await;
    let second = app
        .create_space("Race two", "organization", "admin@race.test")
        .await;
    app.attach("race", &first.id).await;
    app.attach("race", &second.id).await;
    let mut agg = AggregationServiceClient::new(app.channel.clone());
    let stored = |space: String| {
        let mut agg = agg.clone();
        async move {
            agg.list_products(req(
                &root(),
                ListProductsRequest {
                    slug: "race".into(),
                    space_id: space,
                    size: 100,
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner()
            .total
        }
    };
    let mut expected = [0, 0];
    for round in 0..20 {
        let items: Vec<Product> = (0..50)
            .map(|i| Product {
                id: uuid::Uuid::new_v4().to_string(),
                name: format!("round {round} item {i}"),
                ..Default::default()
            })
            .collect();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = [first.id.clone(), second.id.clone()]
            .into_iter()
            .map(|space| {
                let mut spaces = app.spaces();
                let items = items.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    spaces
                        .batch_upsert_products(req(
                            &root(),
                            BatchUpsertProductsRequest {
                                space_id: space,
                                items,
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(|r| r.into_inner().upserted)
                })
            })
            .collect();
        // Ids are unique per space: both batches are accepted, whole.
        for (k, task) in tasks.into_iter().enumerate() {
            let n = task.await.expect("task").expect("the batch is accepted");
            assert_eq!(n, 50);
            expected[k] += 50;
        }
        // Every acknowledged batch is stored, whole, in its own space.
        assert_eq!(
            [stored(first.id.clone()).await, stored(second.id.clone()).await],
            expected,
            "round {round}"
        );
    }
    let _ = &mut agg;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_names_the_database_it_cannot_reach_without_its_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens on port 1.
    let mut cmd = crate::cli::orgd();
    cmd.args(["serve", "--grpc-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("DATABASE_URL", "postgres://orgd:s3cret-pw@127.0.0.1:1/orgd");
    let out = crate::cli::run(cmd).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:1/orgd"), "{err}");
    assert!(!err.contains("s3cret-pw"), "the password leaked: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_under_postgres_loses_no_acknowledged_write_and_recovers() {
    use sqlx::Connection;
    if backend() != "postgres" {
        return;
    }
    if !running_as_root() {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let disk = Tmpfs::mount("200m");
    let cluster = OwnCluster::start_in(Some(&disk.path));
    // The test clusters trade durability for speed; this one must not.
    let mut admin = sqlx::PgConnection::connect(&cluster.url).await.expect("connect");
    for setting in ["fsync = on", "synchronous_commit = on", "full_page_writes = on"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("ALTER SYSTEM SET {setting}")))
            .execute(&mut admin)
            .await
            .expect("durable settings");
    }
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut admin)
        .await
        .expect("reload");
    let _ = admin.close().await;

    let url = cluster.url.clone();
    let app = TestApp::spawn_with(move |c| c.database_url = url).await;
    create(&app, "before-full").await.expect("room at first");

    let filler = fill(&disk.path, 256 * 1024);
    let mut acknowledged = vec!["before-full".to_owned()];
    let mut refusals = 0;
    for i in 0..400 {
        let slug = format!("org-{i}");
        let mut request = req(
            &root(),
            CreateOrganizationRequest {
                name: format!("Org {slug} with a long enough name to take some room"),
                slug: Some(slug.clone()),
                description: "x".repeat(2000),
                admin_email: format!("admin@{slug}.test"),
                ..Default::default()
            },
        );
        request.set_timeout(Duration::from_secs(10));
        match app.orgs().create_organization(request).await {
            Ok(_) => acknowledged.push(slug),
            Err(status) => {
                assert!(
                    matches!(status.code(), Code::ResourceExhausted | Code::Unavailable),
                    "a full disk answers RESOURCE_EXHAUSTED or UNAVAILABLE: {status:?}"
                );
                refusals += 1;
                if refusals >= 5 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(refusals >= 1, "the disk never filled up");

    // Space comes back; so do writes (PostgreSQL may have restarted itself,
    // or stopped: then it is started again).
    std::fs::remove_file(&filler).expect("free the disk");
    let mut recovered = false;
    for attempt in 0..300 {
        if attempt == 100 {
            let _ = std::process::Command::new("bash")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tools.sh"))
                .args(["resume_pg_cluster", &cluster.dir])
                .output();
        }
        let slug = format!("after-{attempt}");
        if create(&app, &slug).await.is_ok() {
            acknowledged.push(slug);
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "writes did not resume once space was freed");

    for slug in &acknowledged {
        let got = app
            .orgs()
            .get_organization(req(&root(), GetOrganizationRequest { slug: slug.clone() }))
            .await;
        assert!(got.is_ok(), "acknowledged {slug} is missing: {got:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadlock_is_retried_inside_orgd_and_never_answered_internal() {
    use sqlx::Connection;
    if backend() != "postgres" {
        return;
    }
    let app = TestApp::spawn().await;
    let org = app.create_org("Locked", "locked", "admin@locked.test").await;
    let org_id = uuid::Uuid::parse_str(&org.id).expect("id");

    // Another session holds the organization's audit head (what a change
    // locks last) and, once orgd's change holds the organization row and
    // waits for the head, asks for that row: a deadlock. Its own deadlock
    // check comes late, so orgd's session is the one PostgreSQL aborts.
    let mut other = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("connect");
    sqlx::query("SET deadlock_timeout = '30s'")
        .execute(&mut other)
        .await
        .expect("set");
    sqlx::query("BEGIN").execute(&mut other).await.expect("begin");
    sqlx::query("SELECT seq FROM audit_heads WHERE organization_id = $1 FOR UPDATE")
        .bind(org_id)
        .execute(&mut other)
        .await
        .expect("lock the head");
    let mut orgs = app.orgs();
    let change = tokio::spawn(async move {
        orgs.update_organization(req(
            &root(),
            UpdateOrganizationRequest {
                slug: "locked".into(),
                description: Some("after a deadlock".into()),
                ..Default::default()
            },
        ))
        .await
    });
    // Let orgd take the organization row and queue for the head.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("SELECT id FROM organizations WHERE id = $1 FOR UPDATE")
        .bind(org_id)
        .execute(&mut other)
        .await
        .expect("the organization row, once orgd's first attempt is aborted");
    sqlx::query("COMMIT").execute(&mut other).await.expect("commit");

    let answered = change.await.expect("task");
    let updated = answered
        .expect("the change succeeds on its second attempt")
        .into_inner();
    assert_eq!(
        updated.organization.map(|o| o.description).as_deref(),
        Some("after a deadlock")
    );
    let v = app
        .orgs()
        .verify_audit_chain(req(
            &root(),
            VerifyAuditChainRequest {
                slug: "locked".into(),
                organization_id: String::new(),
            },
        ))
        .await
        .expect("verify")
        .into_inner();
    assert!(v.valid && v.head_seq == 2, "one event for the one change: {v:?}");
}

// ---------------------------------------------------------------------------
// Request ids across outages: a transient failure is not remembered
// ---------------------------------------------------------------------------

fn add_with_id(slug: &str, email: &str, request_id: &str) -> AddUserRequest {
    AddUserRequest {
        slug: slug.into(),
        user_email: email.into(),
        role: "member".into(),
        request_id: request_id.into(),
    }
}

/// The change a retry answers, and how often it happened.
async fn members_named(app: &TestApp, slug: &str, email: &str) -> usize {
    app.orgs()
        .list_users(req(
            &root(),
            ListUsersRequest {
                slug: slug.into(),
                size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("list users")
        .into_inner()
        .items
        .iter()
        .filter(|m| m.email == email)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_refused_by_a_held_write_lock_applies_once_on_retry() {
    use sqlx::Connection;
    if backend() != "sqlite" {
        return;
    }
    let app = TestApp::spawn_with(|c| c.db_busy_timeout = Duration::from_millis(500)).await;
    app.create_org("Locked", "locked", "admin@locked.test").await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut other = sqlx::SqliteConnection::connect(&app.database_url)
        .await
        .expect("open the database");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("take the write lock");
    let refused = app
        .orgs()
        .add_user(req(&root(), add_with_id("locked", "late@locked.test", &id)))
        .await;
    assert_error(refused, Code::Unavailable, "UNAVAILABLE");
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("release the lock");
    // The refusal was transient: the retry runs, once.
    let first = app
        .orgs()
        .add_user(req(&root(), add_with_id("locked", "late@locked.test", &id)))
        .await
        .expect("the retry applies")
        .into_inner();
    let again = app
        .orgs()
        .add_user(req(&root(), add_with_id("locked", "late@locked.test", &id)))
        .await
        .expect("a further retry answers the same")
        .into_inner();
    assert_eq!(first, again);
    assert_eq!(members_named(&app, "locked", "late@locked.test").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_refused_while_postgres_is_away_applies_once_when_it_returns() {
    use tonic_health::pb::health_check_response::ServingStatus;
    if backend() != "postgres" {
        return;
    }
    let cluster = OwnCluster::start();
    let url = cluster.url.clone();
    let app = TestApp::spawn_with(move |c| c.database_url = url).await;
    app.create_org("Away", "away", "admin@away.test").await;
    let id = uuid::Uuid::new_v4().to_string();
    cluster.pause();
    let mut request = req(&root(), add_with_id("away", "late@away.test", &id));
    request.set_timeout(Duration::from_secs(5));
    let refused = app.orgs().add_user(request).await;
    assert_error(refused, Code::Unavailable, "UNAVAILABLE");
    cluster.resume();
    wait_for_health(&app, ServingStatus::Serving).await;
    // Retried as a client retries UNAVAILABLE: connections that died with
    // the server can fail a call or two more before the pool drops them.
    let mut transient = Vec::new();
    let first = loop {
        match app
            .orgs()
            .add_user(req(&root(), add_with_id("away", "late@away.test", &id)))
            .await
        {
            Ok(reply) => break reply.into_inner(),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                transient.push(status);
                assert!(transient.len() < 40, "never applied: {transient:?}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let again = app
        .orgs()
        .add_user(req(&root(), add_with_id("away", "late@away.test", &id)))
        .await
        .expect("a further retry answers the same")
        .into_inner();
    assert_eq!(first, again);
    assert_eq!(members_named(&app, "away", "late@away.test").await, 1);
}

/// The snapshot of hot reads across a PostgreSQL restart: while the database
/// is away it stops answering within its bound (a change it cannot hear
/// about could be committed by then), and after the restart a change made
/// on another instance still reaches it within the bound (its listener
/// reconnects and starts from an empty snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_snapshot_keeps_its_bound_across_a_postgres_restart() {
    use orgd::store::snapshot::STALENESS_BOUND;
    use tonic_health::pb::health_check_response::ServingStatus;
    if backend() != "postgres" {
        return;
    }
    let cluster = OwnCluster::start();
    let url = cluster.url.clone();
    let first = TestApp::spawn_with(move |c| c.database_url = url).await;
    let second = TestApp::spawn_on(&first.database_url, &first.storage_root).await;
    first
        .create_org("Restarted", "restarted", "admin@restarted.test")
        .await;
    let member = "member@restarted.test";
    let member_id = first.add_user("restarted", member, "member").await.user_id;
    let read = |app: &TestApp| {
        let mut orgs = app.orgs();
        async move {
            let mut request = req(
                &token(member),
                GetOrganizationRequest {
                    slug: "restarted".into(),
                },
            );
            request.set_timeout(Duration::from_secs(5));
            orgs.get_organization(request).await
        }
    };
    // Read until the second instance answers from its snapshot.
    let hits = || async {
        crate::observability::sample(
            &crate::observability::scrape(&second).await,
            "orgd_cache_lookups_total",
            &[("cache", "access"), ("result", "hit")],
        )
        .unwrap_or(0.0)
    };
    let mut warmed = false;
    for _ in 0..200 {
        read(&second).await.expect("a member reads");
        if hits().await > 0.0 {
            warmed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(warmed, "the second instance never answered from its snapshot");

    cluster.pause();
    tokio::time::sleep(STALENESS_BOUND * 2).await;
    assert_error(read(&second).await, Code::Unavailable, "UNAVAILABLE");
    cluster.resume();
    wait_for_health(&first, ServingStatus::Serving).await;
    wait_for_health(&second, ServingStatus::Serving).await;

    // Removed on the first instance (retried while dead pooled connections
    // fail a call or two)...
    let mut attempts = 0;
    loop {
        let removed = first
            .orgs()
            .remove_user(req(
                &root(),
                RemoveUserRequest {
                    slug: "restarted".into(),
                    user_id: member_id.clone(),
                    ..Default::default()
                },
            ))
            .await;
        match removed {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                attempts += 1;
                assert!(attempts < 40, "the removal never went through");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    // ...and refused on the second once the bound has passed.
    tokio::time::sleep(STALENESS_BOUND).await;
    let mut attempts = 0;
    loop {
        match read(&second).await {
            Err(status) if status.code() == Code::Unavailable => {
                attempts += 1;
                assert!(attempts < 40, "the second instance never came back");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => {
                assert_error(other, Code::PermissionDenied, "NOT_AUTHORIZED");
                break;
            }
        }
    }
}
