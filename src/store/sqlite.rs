//! SQLite: the embedded default. One writer connection (SQLite runs one
//! writer at a time anyway; a single connection avoids busy errors and makes
//! read-then-write transactions safe) and a pool of readers, in WAL mode.

use std::str::FromStr;
use std::time::Duration;

use std::future::Future;
use std::sync::Arc;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Pool, QueryBuilder, Sqlite};
use uuid::Uuid;

use super::StoreOptions;
use super::dialect::{Dialect, SqlStore, run_migrations};
use super::snapshot::{SYNC_INTERVAL, Snapshot, Tag, decode_tags};
use crate::domain::Result;
use crate::progress::Reporter;

pub type SqliteStore = SqlStore<Sqlite>;

/// One FTS5 string: the whole term as a phrase.
fn fts_phrase(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// The token content rows of organization `org` carry in their FTS5
/// index (`search_org`, migrations 0017 and 0018): three characters of the private
/// use area from the last nine hex digits of the id, each three digits
/// `d1 d2 d3` (their ASCII codes less 48, so 0 to 22) giving
/// U+F0000 + d1 * 529 + d2 * 23 + d3. Upserts write it with each row;
/// the triggers of 0018 compute the same from `hex(organization_id)` when
/// a row changes organization (the tests compare the two on every row).
fn search_token(org: Uuid) -> String {
    let mut buffer = Uuid::encode_buffer();
    let hex = org.simple().encode_upper(&mut buffer);
    hex.as_bytes()[23..]
        .chunks(3)
        .map(|d| {
            let code = 0xF0000 + (d[0] as u32 - 48) * 529 + (d[1] as u32 - 48) * 23 + (d[2] as u32 - 48);
            char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
        })
        .collect()
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

impl Dialect for Sqlite {
    const BACKEND: &'static str = "sqlite";
    const LOCK: &'static str = "";
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const CONCURRENT_WRITERS: bool = false;
    const DISTINCT: &'static str = "IS NOT";
    const EXPLAIN: &'static str = "EXPLAIN QUERY PLAN ";
    const EXPLAIN_COLUMN: &'static str = "detail";
    const NOT_INDEXED: &'static str = "+";
    const SEARCH_COUNTED_WITH_PAGE: bool = true;

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn publish(conn: &mut SqliteConnection, tags: &str) -> std::result::Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO cache_changes (tags, created_at) VALUES ($1, $2)")
            .bind(tags)
            .bind(super::now_micros())
            .execute(conn)
            .await?;
        Ok(())
    }

    fn sync(store: &SqlStore<Self>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(sync(
            store.reader.clone(),
            store.writer.clone(),
            store.snapshot.clone(),
        ))
    }

    async fn migrate(pool: &Pool<Self>, progress: &dyn Reporter) -> Result<()> {
        run_migrations(&MIGRATOR, pool, progress).await
    }

    fn push_space_in(qb: &mut QueryBuilder<Self>, column: &str, ids: &[Uuid]) {
        if ids.is_empty() {
            qb.push(" AND 0 = 1");
            return;
        }
        qb.push(format!(" AND {column} IN ("));
        let mut list = qb.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        qb.push(")");
    }

    /// FTS5's trigram index for terms of 3+ characters, LIKE for shorter
    /// ones.
    fn push_search(qb: &mut QueryBuilder<Self>, alias: &str, fts: &str, columns: [&str; 2], term: &str) {
        if term.chars().count() >= 3 {
            qb.push(format!(
                " AND {alias}.rowid IN (SELECT rowid FROM {fts} WHERE {fts} MATCH "
            ));
            qb.push_bind(fts_phrase(term));
            qb.push(")");
        } else {
            let pattern = super::like_pattern(term);
            let [first, second] = columns;
            qb.push(format!(" AND ({alias}.{first} LIKE "));
            qb.push_bind(pattern.clone());
            qb.push(format!(" ESCAPE '\\' OR {alias}.{second} LIKE "));
            qb.push_bind(pattern);
            qb.push(" ESCAPE '\\')");
        }
    }

    /// FTS5 asked for the term in `columns` of the rows that carry the
    /// organization's token (migration 0017), so that it never hands back
    /// another organization's matches to be looked up and dropped.
    fn push_org_search(
        qb: &mut QueryBuilder<Self>,
        alias: &str,
        fts: &str,
        columns: [&str; 2],
        term: &str,
        org: Uuid,
    ) {
        if term.chars().count() < 3 {
            return Self::push_search(qb, alias, fts, columns, term);
        }
        let [first, second] = columns;
        qb.push(format!(
            " AND {alias}.rowid IN (SELECT rowid FROM {fts} WHERE {fts} MATCH "
        ));
        qb.push_bind(format!(
            "search_org : \"{}\" AND {{{first} {second}}} : {}",
            search_token(org),
            fts_phrase(term)
        ));
        qb.push(")");
    }

    fn search_org_value(org: Option<Uuid>) -> Option<String> {
        Some(org.map(search_token).unwrap_or_default())
    }

    /// SQLite already looks each space up from the memberships.
    const OWN_SPACES: &'static str = "space_members sm JOIN spaces s ON s.id = sm.space_id";

    /// `CROSS JOIN`, which SQLite never reorders.
    fn push_by_ids(qb: &mut QueryBuilder<Self>, table: &str, space: Uuid) {
        qb.push(format!(
            ") AS v CROSS JOIN {table} p WHERE p.id = v.column1 AND p.space_id = "
        ));
        qb.push_bind(space);
    }

    /// A range over the column's binary order, which an index serves.
    fn push_prefix(qb: &mut QueryBuilder<Self>, column: &str, prefix: &str) {
        qb.push(format!(" AND {column} >= "));
        qb.push_bind(prefix.to_owned());
        if let Some(upper) = super::prefix_upper_bound(prefix) {
            qb.push(format!(" AND {column} < "));
            qb.push_bind(upper);
        }
    }
}

impl SqlStore<Sqlite> {
    pub async fn connect(url: &str, options: &StoreOptions) -> std::result::Result<Self, String> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| format!("the database URL {url} is invalid: {e}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A commit returns once its WAL frames are on disk: NORMAL
            // (fsync only at checkpoints) may lose acknowledged changes to
            // a power cut or an OS crash. One fsync per change.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma(
                "cache_size",
                format!("-{}", page_cache_kib(options.max_connections)),
            )
            // Reads map the database file instead of copying its pages into
            // each connection's cache: the kernel's page cache is shared by
            // every connection (the pool hands connections out in turn, so
            // per-connection caches would each hold a copy of the same hot
            // pages), and it is reclaimable. SQLite writes through write(),
            // never through the map, and never shrinks the file under it
            // (no auto_vacuum or VACUUM here).
            .pragma("mmap_size", MMAP_BYTES.to_string());
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            // A connection whose transaction did not end cleanly is closed,
            // never reused. When a COMMIT fails (a full disk), SQLite may
            // have rolled the transaction back already, the ROLLBACK that
            // follows fails, and sqlx would count the connection as still
            // inside a transaction: every later BEGIN would become a
            // SAVEPOINT inside it, acknowledged and never committed.
            // Closing the connection ends whatever SQLite still holds.
            .after_release(|conn, _| {
                Box::pin(async move {
                    // Runs after the rollback a dropped transaction queued.
                    conn.ping().await?;
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!("closing a database connection left inside a transaction");
                    }
                    Ok(clean)
                })
            })
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect.clone())
            .await
            .map_err(|e| format!("cannot open the database {url}: {e}"))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect)
            .await
            .map_err(|e| format!("cannot open the database {url}: {e}"))?;
        Ok(Self {
            writer,
            reader,
            audit_trail: options.audit_trail,
            metrics: options.metrics.clone(),
            snapshot: std::sync::Arc::new(super::snapshot::Snapshot::new(
                options.cache_entries,
                options.metrics.cache.clone(),
            )),
            read_wait: options.read_wait,
            readers_in_use: Default::default(),
            writers_in_use: Default::default(),
        })
    }
}

/// SQLite's page caches of all connections together (KiB): each
/// connection has its own, so the budget is shared out, and memory stays
/// bounded however busy the pool gets. Reads of the mapped file (see
/// `MMAP_BYTES`) do not go through these caches; they hold the pages a
/// connection writes and what lies beyond the map.
const PAGE_CACHE_BUDGET_KIB: u32 = 16 * 1024;

/// How much of the database file reads may map (bytes).
const MMAP_BYTES: u64 = 256 * 1024 * 1024;

/// The page cache of one connection (KiB), for `readers` readers and the
/// writer (at least 256 KiB, which only pools of more than 62 readers
/// reach).
fn page_cache_kib(readers: u32) -> u32 {
    (PAGE_CACHE_BUDGET_KIB / (readers.max(1) + 1)).max(256)
}

/// Feed rows read per round.
const FEED_PAGE: i64 = 1_000;
/// How long feed rows are kept: far longer than any instance may fall
/// behind before it starts over (`RESTART_AFTER`).
const FEED_KEPT: Duration = Duration::from_secs(60);
const RESTART_AFTER: Duration = Duration::from_secs(20);

/// Keeps `snapshot` in step with the `cache_changes` feed, which every
/// process writing this database appends to inside its changes. SQLite runs
/// one writer at a time, so feed rows commit in `seq` order: a round that
/// starts at `t` and reads past the last row it saw has applied every
/// change committed before `t`. A round that fails confirms nothing, so the
/// snapshot stops answering within its bound; an instance that fell behind
/// for long starts over from an empty snapshot.
async fn sync(reader: Pool<Sqlite>, writer: Pool<Sqlite>, snapshot: Arc<Snapshot>) {
    // A reader of its own: calls waiting for the pool's readers never
    // delay the feed.
    let reader = SqlitePoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with((*reader.connect_options()).clone());
    let following = async {
        let mut cursor: Option<i64> = None;
        let mut last_round = std::time::Instant::now();
        let mut failing = false;
        loop {
            if last_round.elapsed() > RESTART_AFTER {
                cursor = None;
            }
            let at = snapshot.clock();
            let round = match cursor {
                None => sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(seq), 0) FROM cache_changes")
                    .fetch_one(&reader)
                    .await
                    .map(|head| {
                        snapshot.invalidate(&[Tag::All], "remote");
                        cursor = Some(head);
                        true
                    }),
                Some(after) => sqlx::query_as::<_, (i64, String)>(
                    "SELECT seq, tags FROM cache_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(FEED_PAGE)
                .fetch_all(&reader)
                .await
                .map(|rows| {
                    let complete = (rows.len() as i64) < FEED_PAGE;
                    for (seq, tags) in rows {
                        snapshot.invalidate(&decode_tags(&tags), "remote");
                        cursor = Some(seq);
                    }
                    complete
                }),
            };
            match round {
                Ok(complete) => {
                    last_round = std::time::Instant::now();
                    if failing {
                        failing = false;
                        tracing::info!("the snapshot's change feed is readable again");
                    }
                    if complete {
                        snapshot.synced(at);
                    } else {
                        continue;
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "the snapshot cannot read the change feed; it stops answering until it can");
                }
                Err(_) => {}
            }
            tokio::time::sleep(SYNC_INTERVAL).await;
        }
    };
    let pruning = async {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let cutoff = super::now_micros() - FEED_KEPT.as_micros() as i64;
            if let Err(e) = sqlx::query("DELETE FROM cache_changes WHERE created_at < $1")
                .bind(cutoff)
                .execute(&writer)
                .await
            {
                tracing::debug!(error = %e, "could not prune the change feed");
            }
        }
    };
    tokio::join!(following, pruning);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_caches_of_a_pool_stay_within_the_budget() {
        for readers in [1, 4, 16, 63] {
            let total = page_cache_kib(readers) * (readers + 1);
            assert!(total <= PAGE_CACHE_BUDGET_KIB, "{readers} readers: {total} KiB");
            assert!(page_cache_kib(readers) >= 256);
        }
        assert_eq!(page_cache_kib(15), 1024);
    }

    /// An acknowledged change is on disk (its WAL frames synced at commit),
    /// not only in the OS's cache.
    #[tokio::test]
    async fn commits_sync_the_write_ahead_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("durable.db").display());
        let store = SqlStore::<Sqlite>::connect(&url, &StoreOptions::default())
            .await
            .expect("open");
        let mut tx = store.write_tx().await.expect("writer");
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *tx)
            .await
            .expect("pragma");
        assert_eq!(synchronous, 2, "synchronous = FULL on the writer");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *tx)
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
    }

    /// With every reader held, a read is refused OVERLOADED (and counted)
    /// after the read wait instead of queueing for the pool's 30 s; once a
    /// reader is free again, reads are served.
    #[tokio::test]
    async fn a_read_finding_every_reader_busy_is_refused_overloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("busy.db").display());
        let options = StoreOptions {
            max_connections: 2,
            read_wait: Duration::from_millis(50),
            ..StoreOptions::default()
        };
        let store = SqlStore::<Sqlite>::connect(&url, &options).await.expect("open");
        let held = [
            store.read().await.expect("first reader"),
            store.read().await.expect("second reader"),
        ];
        let refused = match store.read().await {
            Ok(_) => panic!("a third reader was handed out of a pool of two"),
            Err(e) => e,
        };
        assert_eq!(refused.kind, crate::domain::ErrorKind::ResourceExhausted);
        assert_eq!(refused.reason, "OVERLOADED");
        assert!(refused.rate_limited.is_some(), "tells when to retry");
        assert_eq!(options.metrics.overloaded.get(), 1);
        drop(held);
        let mut conn = store.read().await.expect("a reader once they are free");
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *conn)
            .await
            .expect("read");
        assert_eq!(one, 1);
    }
}
