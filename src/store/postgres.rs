//! PostgreSQL: the production backend. One pool; changes lock the rows they
//! decide on (the organization, the space, the audit chain's head) so that
//! concurrent changes of one organization serialize.

use std::str::FromStr;
use std::time::Duration;

use std::future::Future;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPoolOptions};
use sqlx::{Pool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::StoreOptions;
use super::dialect::{Dialect, SqlStore, run_migrations};
use super::snapshot::{SYNC_INTERVAL, Snapshot, Tag, decode_tags};
use crate::domain::Result;
use crate::progress::Reporter;

pub type PostgresStore = SqlStore<Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Dialect for Postgres {
    const BACKEND: &'static str = "postgres";
    const LOCK: &'static str = " FOR UPDATE";
    const BEGIN_WRITE: &'static str = "BEGIN";
    const CONCURRENT_WRITERS: bool = true;
    const DISTINCT: &'static str = "IS DISTINCT FROM";
    const EXPLAIN: &'static str = "EXPLAIN (ANALYZE, BUFFERS) ";
    const EXPLAIN_COLUMN: &'static str = "QUERY PLAN";
    const NOT_INDEXED: &'static str = "";
    const SEARCH_COUNTED_WITH_PAGE: bool = false;

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn migrate(pool: &Pool<Self>, progress: &dyn Reporter) -> Result<()> {
        run_migrations(&MIGRATOR, pool, progress).await
    }

    async fn publish(conn: &mut PgConnection, tags: &str) -> std::result::Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify('orgd_cache', $1)")
            .bind(tags)
            .execute(conn)
            .await?;
        Ok(())
    }

    fn sync(store: &SqlStore<Self>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(sync(store.writer.clone(), store.snapshot.clone()))
    }

    fn push_space_in(qb: &mut QueryBuilder<Self>, column: &str, ids: &[Uuid]) {
        qb.push(format!(" AND {column} = ANY("));
        qb.push_bind(ids.to_vec());
        qb.push(")");
    }

    /// ILIKE, which the pg_trgm GIN indexes serve for terms of 3+
    /// characters.
    fn push_search(qb: &mut QueryBuilder<Self>, alias: &str, _fts: &str, columns: [&str; 2], term: &str) {
        let pattern = super::like_pattern(term);
        let [first, second] = columns;
        qb.push(format!(" AND ({alias}.{first} ILIKE "));
        qb.push_bind(pattern.clone());
        qb.push(format!(" ESCAPE '\\' OR {alias}.{second} ILIKE "));
        qb.push_bind(pattern);
        qb.push(" ESCAPE '\\')");
    }

    /// A LATERAL lookup per membership (`OFFSET 0` fences it).
    const OWN_SPACES: &'static str =
        "space_members sm CROSS JOIN LATERAL (SELECT * FROM spaces s0 WHERE s0.id = sm.space_id OFFSET 0) s";

    /// A LATERAL subquery evaluated once per id of the list (`OFFSET 0`
    /// keeps the planner from flattening it into a join it may reorder).
    fn push_by_ids(qb: &mut QueryBuilder<Self>, table: &str, space: Uuid) {
        qb.push(format!(
            ") AS v CROSS JOIN LATERAL (SELECT * FROM {table} x WHERE x.space_id = "
        ));
        qb.push_bind(space);
        qb.push(" AND x.id = v.column1 OFFSET 0) p WHERE true");
    }

    /// LIKE with the prefix escaped, which a `text_pattern_ops` index serves
    /// whatever the collation.
    fn push_prefix(qb: &mut QueryBuilder<Self>, column: &str, prefix: &str) {
        let mut pattern = super::like_pattern(prefix);
        pattern.remove(0);
        qb.push(format!(" AND {column} LIKE "));
        qb.push_bind(pattern);
        qb.push(" ESCAPE '\\'");
    }
}

/// How long startup waits for the database to accept a first connection.
const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// How long a pooled connection may sit idle before it is checked.
const IDLE_CHECK_AFTER: Duration = Duration::from_millis(500);

impl SqlStore<Postgres> {
    pub async fn connect(url: &str, options: &StoreOptions) -> std::result::Result<Self, String> {
        let shown = crate::config::redact_url(url);
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| format!("the database URL {shown} is invalid: {e}"))?
            .application_name("orgd");
        // A call waits at most a second for a connection: when the database
        // is down (or every connection busy that long) it answers
        // UNAVAILABLE at once instead of hanging.
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .test_before_acquire(false)
            // A connection that sat idle for a while is pinged before use:
            // after the server restarted, idle connections are dead, and
            // handing them out would fail one call each. Busy connections
            // skip the round trip.
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < IDLE_CHECK_AFTER {
                        return Ok(true);
                    }
                    Ok(sqlx::Connection::ping(conn).await.is_ok())
                })
            })
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy_with(connect);
        // At start the database may still be starting, or slow to accept
        // a connection under load: the first one is retried for a while
        // (each try bounded by the second above) before giving up.
        let started = std::time::Instant::now();
        loop {
            match pool.acquire().await {
                Ok(_) => break,
                Err(e) if started.elapsed() < STARTUP_WAIT => {
                    tracing::warn!(database = %shown, error = %e, "the database does not answer yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(format!("cannot reach the database {shown}: {e}")),
            }
        }
        let in_use = super::dialect::InUse::default();
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
            audit_trail: options.audit_trail,
            metrics: options.metrics.clone(),
            snapshot: std::sync::Arc::new(super::snapshot::Snapshot::new(
                options.cache_entries,
                options.metrics.cache.clone(),
            )),
            read_wait: options.read_wait,
            // One pool: reads and writes hold its connections alike.
            readers_in_use: in_use.clone(),
            writers_in_use: in_use,
        })
    }
}

/// The channel changes are published on.
const CHANGES: &str = "orgd_cache";

/// Keeps `snapshot` in step: a listener on its own connection applies the
/// tags every change publishes when it commits, while heartbeats sent on
/// this instance's own channel through the pool mark how far it has caught
/// up. PostgreSQL delivers a session's notifications in commit order, so
/// when a heartbeat sent at `t` arrives, every change committed before `t`
/// has been applied. A lost connection drops everything (notifications
/// sent meanwhile are gone), and heartbeats stop until it is back, so the
/// snapshot stops answering within its bound.
async fn sync(pool: Pool<Postgres>, snapshot: Arc<Snapshot>) {
    let beats = format!("orgd_beat_{}", Uuid::new_v4().simple());
    // Connections of its own (the listener's and the heartbeats'), made
    // where this runs (its own thread, see `lib::serve`): calls waiting
    // for the main pool never delay it.
    let own = PgPoolOptions::new()
        .max_connections(2)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with((*pool.connect_options()).clone());
    drop(pool);
    let pool = own;
    let listening = listen(&pool, &beats, &snapshot);
    let beating = async {
        let mut failing = false;
        loop {
            tokio::time::sleep(SYNC_INTERVAL).await;
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&beats)
                .bind(snapshot.clock().to_string())
                .execute(&pool)
                .await;
            match sent {
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "the snapshot's heartbeat failed; it stops answering until the database is back");
                }
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("the snapshot's heartbeat is back");
                }
                _ => {}
            }
        }
    };
    tokio::join!(listening, beating);
}

async fn listen(pool: &Pool<Postgres>, beats: &str, snapshot: &Snapshot) {
    loop {
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "the snapshot cannot listen for changes; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        listener.ignore_pool_close_event(true);
        if let Err(e) = listener.listen_all([CHANGES, beats]).await {
            tracing::warn!(error = %e, "the snapshot cannot listen for changes; retrying");
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        // Changes committed before the listener started were not heard.
        snapshot.invalidate(&[Tag::All], "remote");
        loop {
            match listener.try_recv().await {
                Ok(Some(note)) if note.channel() == beats => {
                    if let Ok(at) = note.payload().parse::<u64>() {
                        snapshot.synced(at);
                    }
                }
                Ok(Some(note)) => snapshot.invalidate(&decode_tags(note.payload()), "remote"),
                Ok(None) => {
                    // Reconnected: what was sent meanwhile is lost.
                    tracing::info!("the snapshot's listener reconnected");
                    snapshot.invalidate(&[Tag::All], "remote");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the snapshot's listener failed; reconnecting");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    break;
                }
            }
        }
    }
}
