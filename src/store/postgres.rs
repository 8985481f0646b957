//! PostgreSQL: the production backend. One pool; changes lock the rows they
//! decide on (the organization, the space, the audit chain's head) so that
//! concurrent changes of one organization serialize.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Pool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::StoreOptions;
use super::dialect::{Dialect, SqlStore, run_migrations};
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
    /// Visible spaces go in as one array parameter, checked per index entry
    /// by hashing, so the newest-first index walk stays a walk.
    const SPACE_ID_LISTS: bool = true;

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn migrate(pool: &Pool<Self>, progress: &dyn Reporter) -> Result<()> {
        run_migrations(&MIGRATOR, pool, progress).await
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

/// How long a pooled connection may sit idle before it is checked.
const IDLE_CHECK_AFTER: Duration = Duration::from_millis(500);

impl SqlStore<Postgres> {
    pub async fn connect(url: &str, options: &StoreOptions) -> std::result::Result<Self, String> {
        let shown = crate::config::redact_url(url);
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| format!("the database URL {shown} is invalid: {e}"))?
            .application_name("orgd")
            // Lists are built from optional filters and search patterns;
            // a plan made for the actual values beats a generic one that
            // cannot see whether a pattern is selective.
            .options([("plan_cache_mode", "force_custom_plan")]);
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
            .connect_with(connect)
            .await
            .map_err(|e| format!("cannot reach the database {shown}: {e}"))?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
            audit_trail: options.audit_trail,
            metrics: options.metrics.clone(),
        })
    }
}
