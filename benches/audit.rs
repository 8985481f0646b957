//! Audit trail benchmark, per backend, in one run:
//!
//! 1. Write throughput with the audit trail against the same writes without
//!    it: the same workload through the same write path (`App`), once on a
//!    store that appends events and once on one that does not, each on a
//!    fresh database. Reported as the ratio with/without.
//! 2. VerifyAuditChain over one organization's chain of `--events` events
//!    (default 1,000,000), loaded directly into the database.
//!
//! Run it as `cargo bench --bench audit -- [--backends sqlite,postgres]
//! [--events 1000000] [--writers 8] [--batches 40]`.
//!
//! PostgreSQL needs DATABASE_URL (scripts/bench.sh starts a throwaway
//! cluster).

use std::sync::Arc;
use std::time::Instant;

use orgd::App;
use orgd::domain::audit::{Actor, Draft, Event, GENESIS};
use orgd::domain::content::ProductInput;
use orgd::domain::types::{Description, Email, Name, OrgRole, Slug, Visibility};
use orgd::signing::AuditSigner;
use orgd::storage::Storage;
use orgd::store::{NewOrganization, NewSpace, StoreOptions};
use sqlx::Connection;
use uuid::Uuid;

mod common;

struct Options {
    backends: Vec<String>,
    events: i64,
    writers: usize,
    batches: usize,
}

fn options() -> Options {
    let mut o = Options {
        backends: vec!["sqlite".into(), "postgres".into()],
        events: 1_000_000,
        writers: 8,
        batches: 40,
    };
    common::flags(|name, value| {
        match name {
            "--backends" => o.backends = common::backends(value),
            "--events" => o.events = value.parse().expect("--events takes a number"),
            "--writers" => o.writers = value.parse().expect("--writers takes a number"),
            "--batches" => o.batches = value.parse().expect("--batches takes a number"),
            _ => return false,
        }
        true
    });
    o
}

async fn app(backend: &str, dir: &std::path::Path, name: &str, audit_trail: bool) -> (Arc<App>, String) {
    let url = common::database_url(backend, dir, name).await;
    let options = StoreOptions {
        max_connections: 16,
        audit_trail,
        ..StoreOptions::default()
    };
    let store = orgd::store::connect(&url, &options).await.expect("connect");
    store.migrate(&|_: &str| {}).await.expect("migrate");
    let app = App::new(
        store,
        None,
        Storage::new(dir.join(format!("{name}-storage"))),
        Arc::new(AuditSigner::ephemeral()),
    );
    (Arc::new(app), url)
}

/// What one workload achieved.
struct Throughput {
    changes: usize,
    rows: usize,
    secs: f64,
}

/// One organization, one space per writer; each writer upserts `batches`
/// batches of 100 new products into its space and adds 10 members, all
/// writers at once (so the appends of one chain contend).
async fn workload(app: Arc<App>, writers: usize, batches: usize) -> Throughput {
    let actor = Actor::system("benchmark");
    let parse = |s: &str| Slug::parse("slug", s).expect("slug");
    app.create_organization(
        &actor,
        NewOrganization {
            labels: Default::default(),
            id: Uuid::now_v7(),
            name: Name::parse("organization", "name", "Bench").expect("name"),
            slug: parse("bench"),
            description: Description::default(),
            admin_email: Email::parse("email", "admin@bench.test").expect("email"),
        },
    )
    .await
    .expect("organization");
    let mut spaces = Vec::new();
    for w in 0..writers {
        let space = app
            .create_space(
                &actor,
                NewSpace {
                    labels: Default::default(),
                    id: Uuid::now_v7(),
                    name: Name::parse("space", "name", &format!("Space {w}")).expect("name"),
                    slug: parse(&format!("space-{w}")),
                    description: Description::default(),
                    visibility: Visibility::Organization,
                    repo: String::new(),
                    agent: None,
                    admin_email: Email::parse("email", "admin@bench.test").expect("email"),
                },
            )
            .await
            .expect("space");
        app.add_space(&actor, "bench", space.id).await.expect("attach");
        spaces.push(space.id);
    }
    let started = Instant::now();
    let tasks: Vec<_> = spaces
        .into_iter()
        .enumerate()
        .map(|(w, space)| {
            let app = app.clone();
            tokio::spawn(async move {
                let actor = Actor::system("benchmark");
                let mut rows = 0;
                let mut changes = 0;
                for b in 0..batches {
                    let items: Vec<ProductInput> = (0..100)
                        .map(|i| ProductInput {
                            id: Uuid::new_v4(),
                            name: format!("product {w}-{b}-{i}"),
                            slug: String::new(),
                            description: "benchmark product".into(),
                            product_type: "table".into(),
                            provider: "bench".into(),
                            tags: vec!["bench".into()],
                            quality_score: Some(0.5),
                            is_archived: false,
                            created_at: None,
                            updated_at: None,
                        })
                        .collect();
                    rows += app.upsert_products(&actor, space, &items).await.expect("upsert") as usize;
                    changes += 1;
                    if b % (batches / 10).max(1) == 0 {
                        let email = Email::parse("email", &format!("w{w}-{b}@bench.test")).expect("email");
                        app.add_member(&actor, "bench", &email, OrgRole::Member)
                            .await
                            .expect("member");
                        changes += 1;
                    }
                }
                (changes, rows)
            })
        })
        .collect();
    let mut total = Throughput {
        changes: 0,
        rows: 0,
        secs: 0.0,
    };
    for t in tasks {
        let (changes, rows) = t.await.expect("writer");
        total.changes += changes;
        total.rows += rows;
    }
    total.secs = started.elapsed().as_secs_f64();
    total
}

/// Loads a valid chain of `n` events for one organization directly (the
/// same rows `append` writes), in multi-row inserts.
async fn load_chain(backend: &str, url: &str, org: Uuid, n: i64) {
    let actor = Actor::system("benchmark");
    let mut prev = GENESIS.to_owned();
    let base_time = chrono::Utc::now().timestamp_micros() - n;
    let mut seq = 0;
    let mut pg = None;
    let mut lite = None;
    if backend == "postgres" {
        pg = Some(sqlx::PgConnection::connect(url).await.expect("connect"));
    } else {
        lite = Some(sqlx::SqliteConnection::connect(url).await.expect("connect"));
    }
    while seq < n {
        let chunk: Vec<Event> = (0..1_000.min(n - seq))
            .map(|_| {
                seq += 1;
                let draft = Draft::success(&actor, "member.add", format!("organizations/{org}/users/{seq}"))
                    .with("email", format!("user{seq}@bench.test"))
                    .with("role", "member");
                let e = Event::seal(draft, org, seq, &prev, base_time + seq);
                prev = e.hash.clone();
                e
            })
            .collect();
        macro_rules! insert {
            ($db:ty, $conn:expr) => {{
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO audit_events (organization_id, seq, id, actor, action, result, target, \
                     metadata, created_at, prev_hash, hash) ",
                );
                qb.push_values(&chunk, |mut row, e| {
                    row.push_bind(e.organization_id)
                        .push_bind(e.seq)
                        .push_bind(e.id)
                        .push_bind(e.actor)
                        .push_bind(e.action.clone())
                        .push_bind(e.result.clone())
                        .push_bind(e.target.clone())
                        .push_bind(e.metadata_json())
                        .push_bind(e.created_at)
                        .push_bind(e.prev_hash.clone())
                        .push_bind(e.hash.clone());
                });
                qb.build().execute($conn).await.expect("insert events");
            }};
        }
        match (&mut pg, &mut lite) {
            (Some(c), _) => insert!(sqlx::Postgres, &mut *c),
            (_, Some(c)) => insert!(sqlx::Sqlite, &mut *c),
            _ => unreachable!(),
        }
    }
    macro_rules! head {
        ($conn:expr) => {
            sqlx::query("INSERT INTO audit_heads (organization_id, seq, hash) VALUES ($1, $2, $3)")
                .bind(org)
                .bind(n)
                .bind(prev.clone())
                .execute($conn)
                .await
                .expect("head")
        };
    }
    match (&mut pg, &mut lite) {
        (Some(c), _) => {
            head!(&mut *c);
            sqlx::query("ANALYZE audit_events")
                .execute(&mut *c)
                .await
                .expect("analyze");
        }
        (_, Some(c)) => {
            head!(&mut *c);
            sqlx::query("ANALYZE").execute(&mut *c).await.expect("analyze");
        }
        _ => unreachable!(),
    }
}

#[tokio::main]
async fn main() {
    let o = options();
    println!(
        "# Audit trail benchmark ({} writers, {} batches of 100 each)\n",
        o.writers, o.batches
    );
    for backend in &o.backends {
        let dir = tempfile::tempdir().expect("tempdir");
        // Warm-up on a throwaway database, so neither measured run pays for
        // first-time costs alone.
        let (warm, _) = app(backend, dir.path(), "warm", true).await;
        workload(warm, o.writers, (o.batches / 4).max(1)).await;

        let (without, _) = app(backend, dir.path(), "without", false).await;
        let off = workload(without, o.writers, o.batches).await;
        let (with, _) = app(backend, dir.path(), "with", true).await;
        let on = workload(with.clone(), o.writers, o.batches).await;
        let rate = |t: &Throughput| (t.rows as f64 / t.secs, t.changes as f64 / t.secs);
        let (rows_off, changes_off) = rate(&off);
        let (rows_on, changes_on) = rate(&on);
        let verification = with
            .verify_chain(
                with.store
                    .organization_access("bench", Uuid::nil())
                    .await
                    .expect("org")
                    .expect("org exists")
                    .org
                    .id,
            )
            .await
            .expect("verify");
        assert!(verification.valid, "{verification:?}");
        println!("## {backend}\n");
        println!("| writes | without the trail | with the trail | with / without |");
        println!("|---|---|---|---|");
        println!(
            "| product rows/s | {rows_off:.0} | {rows_on:.0} | {:.2}x |",
            rows_on / rows_off
        );
        println!(
            "| changes/s (batches and member adds, {} each run) | {changes_off:.0} | {changes_on:.0} | {:.2}x |",
            on.changes,
            changes_on / changes_off
        );

        // Verification of one long chain.
        let (verifier, url) = app(backend, dir.path(), "chain", true).await;
        let org = Uuid::now_v7();
        let loading = Instant::now();
        load_chain(backend, &url, org, o.events).await;
        let load_secs = loading.elapsed().as_secs_f64();
        let started = Instant::now();
        let v = verifier.verify_chain(org).await.expect("verify");
        let secs = started.elapsed().as_secs_f64();
        assert!(v.valid && v.checked == o.events, "{v:?}");
        println!(
            "\nVerifyAuditChain over {} events: **{secs:.2} s** ({:.0} events/s; loading them took {load_secs:.0} s)\n",
            o.events,
            o.events as f64 / secs
        );
    }
}
