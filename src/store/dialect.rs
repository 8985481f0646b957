//! What differs between SQLite and PostgreSQL, declared once: row locks,
//! null-safe comparison, text search, prefix matches, visible-space
//! filters, query plans and migrations. The shared SQL in `sql.rs` and
//! `content_sql.rs` is ordinary generic Rust over a `Dialect`.

use std::future::Future;

use sqlx::migrate::{Migrate, Migrator};
use sqlx::{Database, Pool, QueryBuilder};
use uuid::Uuid;

use crate::domain::{Error, Result};
use crate::progress::Reporter;

pub trait Dialect: Database {
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
    /// Whether aggregated lists filter by a list of visible space ids
    /// fetched first (PostgreSQL) rather than by a subquery (SQLite).
    const SPACE_ID_LISTS: bool;

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

    /// ` AND <column> starts with <prefix>`, served by an index.
    fn push_prefix(qb: &mut QueryBuilder<Self>, column: &str, prefix: &str);
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

/// The store over one backend: a pool for writes and one for reads (the
/// same pool on PostgreSQL; SQLite has one writer connection).
pub struct SqlStore<DB: Database> {
    pub(super) writer: Pool<DB>,
    pub(super) reader: Pool<DB>,
    /// Whether changes append audit events. Always true in service; the
    /// audit benchmark turns it off to measure what the trail costs.
    pub(super) audit_trail: bool,
    pub(super) metrics: crate::metrics::StoreMetrics,
}

impl<DB: Dialect> SqlStore<DB> {
    /// A transaction on the writer pool, for a change.
    pub(super) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, DB>> {
        let started = std::time::Instant::now();
        let tx = self.writer.begin_with(DB::BEGIN_WRITE).await;
        self.metrics
            .write_acquire
            .observe(started.elapsed().as_secs_f64());
        Ok(tx?)
    }
}

impl<DB: Database> SqlStore<DB> {
    pub(super) fn writer(&self) -> &Pool<DB> {
        &self.writer
    }

    pub(super) fn reader(&self) -> &Pool<DB> {
        &self.reader
    }
}
