//! What differs between SQLite and PostgreSQL, declared once: row locks,
//! null-safe comparison, text search, prefix matches, visible-space
//! filters, query plans and migrations. The shared SQL in `sql.rs` and
//! `content_sql.rs` is ordinary generic Rust over a `Dialect`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::migrate::{Migrate, Migrator};
use sqlx::{Database, Pool, QueryBuilder};
use uuid::Uuid;

use super::snapshot::{Snapshot, Tag, encode_tags};
use crate::domain::{Error, Result};
use crate::progress::Reporter;

pub trait Dialect: Database + sqlx::database::HasStatementCache {
    /// "sqlite" or "postgres".
    const BACKEND: &'static str;
    /// Appended to a SELECT that must lock its rows until the transaction
    /// ends (PostgreSQL); empty where one writer runs at a time (SQLite).
    const LOCK: &'static str;
    /// Begins a transaction that will write: SQLite takes the write lock at
    /// once (`BEGIN IMMEDIATE`), so a lock held elsewhere is waited for up to
    /// the busy timeout instead of failing at the first write.
    const BEGIN_WRITE: &'static str;
    /// Whether other transactions write at the same time (PostgreSQL), so
    /// that what a transaction checked before writing may have changed by
    /// the time it writes; SQLite runs one writer at a time.
    const CONCURRENT_WRITERS: bool;
    /// Null-safe "differs from".
    const DISTINCT: &'static str;
    /// The prefix that turns a query into its plan.
    const EXPLAIN: &'static str;
    /// The column of a plan's text.
    const EXPLAIN_COLUMN: &'static str;
    /// Written before a term to keep the planner from using an index for it
    /// (SQLite, whose planner would otherwise sort instead of walking the
    /// organization's index); empty on PostgreSQL.
    const NOT_INDEXED: &'static str;
    /// Whether a content search's first page counts its matches in the
    /// same statement (`count(*) OVER ()`): on SQLite both statements are
    /// driven by the text index, so one pass halves the work; PostgreSQL
    /// pages a search by walking the organization's index newest first
    /// (few rows) and counts over the trigram index, and a window over
    /// every match costs it more than the two.
    const SEARCH_COUNTED_WITH_PAGE: bool;

    /// Rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// Applies the backend's pending migrations, one at a time, telling
    /// `progress` as each is done.
    fn migrate(pool: &Pool<Self>, progress: &dyn Reporter) -> impl Future<Output = Result<()>> + Send;

    /// ` AND <column> IN (<ids>)`.
    fn push_space_in(qb: &mut QueryBuilder<Self>, column: &str, ids: &[Uuid]);

    /// ` AND (<alias>.<first> or <alias>.<second> contains <term>)`, ignoring
    /// case, served by the backend's text index (`fts` names SQLite's FTS5
    /// table for the alias's table).
    fn push_search(qb: &mut QueryBuilder<Self>, alias: &str, fts: &str, columns: [&str; 2], term: &str);

    /// `push_search` over content rows of organization `org` alone: the
    /// text index itself is asked for that organization's matches only
    /// (PostgreSQL's trigram indexes lead with `organization_id`, so the
    /// plain search already is; SQLite's FTS5 tables index a token of the
    /// organization, see `search_token`). The caller still scopes the rows
    /// by `organization_id`: the index narrows, the scope decides.
    fn push_org_search(
        qb: &mut QueryBuilder<Self>,
        alias: &str,
        fts: &str,
        columns: [&str; 2],
        term: &str,
        _org: Uuid,
    ) {
        Self::push_search(qb, alias, fts, columns, term);
    }

    /// The search token a content row of organization `org` is written
    /// with, where the backend's text index keeps one (SQLite, column
    /// `search_org`, migration 0018); None where there is no such column.
    fn search_org_value(_org: Option<Uuid>) -> Option<String> {
        None
    }

    /// Closes a `FROM (VALUES <ids>, ...` list and joins to it, as `p`,
    /// the rows of `table` in `space` with those ids (`v.column1`), each
    /// looked up on (space_id, id), followed by a WHERE clause that more
    /// conditions may extend with ` AND ...`. The lookups are forced: left
    /// to choose, both planners may walk the whole space's rows and probe
    /// the list instead, since their statistics say spaces are small, and
    /// the batch's cost would grow with its space.
    fn push_by_ids(qb: &mut QueryBuilder<Self>, table: &str, space: Uuid);

    /// `FROM` the caller's space memberships (`sm`) and their spaces (`s`),
    /// each space looked up by id: a caller belongs to few spaces of many,
    /// but PostgreSQL's estimate may rather scan every space and hash.
    const OWN_SPACES: &'static str;

    /// ` AND <column> starts with <prefix>`, served by an index.
    fn push_prefix(qb: &mut QueryBuilder<Self>, column: &str, prefix: &str);

    /// Tells every instance, when the transaction commits (and only then),
    /// which cached entries the change made stale (see `snapshot`).
    fn publish(
        conn: &mut Self::Connection,
        tags: &str,
    ) -> impl Future<Output = std::result::Result<(), sqlx::Error>> + Send;

    /// Keeps the store's snapshot in step with changes committed anywhere,
    /// confirming every `SYNC_INTERVAL` how far it has caught up. Runs until
    /// dropped.
    fn sync(store: &SqlStore<Self>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// A change's transaction: the tags of what it touched travel with it,
/// are published inside it, and are dropped from this instance's snapshot
/// as soon as it has committed.
pub struct Tx<DB: Dialect> {
    inner: sqlx::Transaction<'static, DB>,
    touched: Vec<Tag>,
    snapshot: Arc<Snapshot>,
    _held: Held,
}

impl<DB: Dialect> std::ops::Deref for Tx<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<DB: Dialect> std::ops::DerefMut for Tx<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl<DB: Dialect> Tx<DB> {
    /// Marks cached entries of `tag` stale once this transaction commits.
    pub fn touch(&mut self, tag: Tag) {
        if !self.touched.contains(&tag) {
            self.touched.push(tag);
        }
    }

    /// Publishes what the change touched, commits, and drops it from this
    /// instance's snapshot (also when the commit failed: its outcome may
    /// be unknown, and a wider invalidation is always safe).
    pub async fn commit(mut self) -> std::result::Result<(), sqlx::Error> {
        if self.touched.is_empty() {
            return self.inner.commit().await;
        }
        DB::publish(&mut self.inner, &encode_tags(&self.touched)).await?;
        let committed = self.inner.commit().await;
        self.snapshot.invalidate(&self.touched, "local");
        committed
    }
}

/// Runs `migrator`'s migrations in order, each in its own step, so that a
/// long one (an index over a large table) shows where the run stands.
pub(crate) async fn run_migrations<DB>(
    migrator: &Migrator,
    pool: &Pool<DB>,
    progress: &dyn Reporter,
) -> Result<()>
where
    DB: Database,
    DB::Connection: Migrate,
{
    let versions: Vec<i64> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect();
    progress.phase("migrations", versions.len() as u64);
    for version in versions {
        migrator
            .run_to(version, pool)
            .await
            .map_err(|e| Error::internal("migrations", e))?;
        progress.advance(1);
    }
    Ok(())
}

/// How many of a pool's connections callers hold now: what tells a pool
/// that is busy (every connection in use) from one that cannot connect.
#[derive(Clone, Default)]
pub(super) struct InUse(Arc<AtomicUsize>);

impl InUse {
    fn hold(&self) -> Held {
        self.0.fetch_add(1, Ordering::Relaxed);
        Held(self.0.clone())
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One connection counted in an `InUse` until dropped.
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A reader connection (see `SqlStore::read`).
pub(super) struct ReadConn<DB: Database> {
    conn: sqlx::pool::PoolConnection<DB>,
    _held: Held,
}

impl<DB: Database> std::ops::Deref for ReadConn<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl<DB: Database> std::ops::DerefMut for ReadConn<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

/// The store over one backend: a pool for writes and one for reads (the
/// same pool on PostgreSQL; SQLite has one writer connection).
pub struct SqlStore<DB: Database> {
    pub(super) writer: Pool<DB>,
    pub(super) reader: Pool<DB>,
    /// Whether changes append audit events. Always true in service; the
    /// audit benchmark turns it off to measure what the trail costs.
    pub(super) audit_trail: bool,
    pub(super) metrics: crate::metrics::StoreMetrics,
    /// Hot reads kept in memory (see `snapshot`).
    pub(super) snapshot: Arc<Snapshot>,
    /// How long a read waits for a reader connection (see `read`).
    pub(super) read_wait: Duration,
    /// Connections of `reader` and of `writer` held now (one count on
    /// PostgreSQL, where they are one pool).
    pub(super) readers_in_use: InUse,
    pub(super) writers_in_use: InUse,
}

impl<DB: Dialect> SqlStore<DB> {
    /// A transaction on the writer pool, for a change.
    pub(super) async fn write_tx(&self) -> Result<Tx<DB>> {
        let started = std::time::Instant::now();
        let tx = self.writer.begin_with(DB::BEGIN_WRITE).await;
        self.metrics
            .write_acquire
            .observe(started.elapsed().as_secs_f64());
        Ok(Tx {
            inner: tx?,
            touched: Vec::new(),
            snapshot: self.snapshot.clone(),
            _held: self.writers_in_use.hold(),
        })
    }

    /// A transaction on the writer pool for upkeep, outside the metrics of
    /// the changes callers make.
    pub(super) async fn upkeep_tx(&self) -> Result<Tx<DB>> {
        Ok(Tx {
            inner: self.writer.begin_with(DB::BEGIN_WRITE).await?,
            touched: Vec::new(),
            snapshot: self.snapshot.clone(),
            _held: self.writers_in_use.hold(),
        })
    }
}

impl<DB: Database> SqlStore<DB> {
    pub(super) fn writer(&self) -> &Pool<DB> {
        &self.writer
    }

    pub(super) fn reader(&self) -> &Pool<DB> {
        &self.reader
    }

    /// A reader connection, for the statements of one read. A read that
    /// finds every reader in use and none free within `read_wait` is
    /// refused `OVERLOADED` (SPEC §5, overload): waiting longer would only
    /// add its latency to the queue's, and the caller is better told to
    /// retry. One that cannot get a connection because the database cannot
    /// be reached is `UNAVAILABLE`, as before.
    pub(super) async fn read(&self) -> Result<ReadConn<DB>> {
        match tokio::time::timeout(self.read_wait, self.reader.acquire()).await {
            Ok(Ok(conn)) => Ok(ReadConn {
                conn,
                _held: self.readers_in_use.hold(),
            }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) if self.busy() => {
                self.metrics.overloaded.inc();
                Err(Error::overloaded())
            }
            Err(_) => Err(Error::unavailable(format!(
                "no reader connection within {:?}: {} open of {}, {} in use",
                self.read_wait,
                self.reader.size(),
                self.reader.options().get_max_connections(),
                self.readers_in_use.count(),
            ))),
        }
    }

    /// Whether a read that got no connection found the pool busy rather
    /// than the database away: every connection is open or being opened,
    /// none is idle, and callers hold some (the rest may be on their way
    /// back to the pool). When the database cannot be reached, callers
    /// hold none: connecting fails, and what they held failed and was
    /// dropped.
    fn busy(&self) -> bool {
        self.reader.size() >= self.reader.options().get_max_connections()
            && self.reader.num_idle() == 0
            && self.readers_in_use.count() > 0
    }
}
