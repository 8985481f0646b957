//! SQLite: the embedded default. One writer connection (SQLite runs one
//! writer at a time anyway; a single connection avoids busy errors and makes
//! read-then-write transactions safe) and a pool of readers, in WAL mode.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Pool, QueryBuilder, Sqlite};
use uuid::Uuid;

use super::StoreOptions;
use super::dialect::{Dialect, SqlStore, run_migrations};
use crate::domain::Result;
use crate::progress::Reporter;

pub type SqliteStore = SqlStore<Sqlite>;

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
    const SPACE_ID_LISTS: bool = false;

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
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
            // One FTS5 string: the whole term as a phrase.
            qb.push_bind(format!("\"{}\"", term.replace('"', "\"\"")));
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
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-65536");
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
        })
    }
}
