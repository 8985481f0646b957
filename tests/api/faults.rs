//! Faults from below: a disk that fills up. No acknowledged write may be
//! missing afterwards.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
