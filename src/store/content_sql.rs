//! The content half of the store (batch upserts, deletes, aggregated lists,
//! statistics), generic over the [`Dialect`] like `sql.rs`. Backend hooks:
//! `DB::DISTINCT` (null-safe "differs"), `DB::push_search` (FTS5 trigram /
//! pg_trgm) and `DB::push_space_in` (id lists).

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type};
use uuid::Uuid;

use crate::domain::access::SpaceAction;
use crate::domain::audit::{self, Actor, Draft};
use crate::domain::model::{Page, SpaceRef};
use crate::domain::page::PageRequest;
use crate::domain::{Error, Result};
use crate::store::{is_unique_violation, now_micros, targets};

use super::dialect::{Dialect, SqlStore};
use super::sql::Tx;
use crate::domain::content::{
    ContentKind, ContractFilter, ContractInput, IssueFilter, IssueInput, ProductFilter, ProductInput,
    QualityCheckFilter, QualityCheckInput, Scope,
};
use crate::domain::model::{Contract, Issue, Product, QualityCheck, Stats};
use crate::domain::types::{ContractStatus, IssueStatus, Visibility};
use crate::store::ContentStore;

/// Microseconds in a day: contracts' expiries are counted per day of
/// `expires_at / EXPIRY_DAY` (truncated, the same in SQL and in Rust).
pub const EXPIRY_DAY: i64 = 86_400_000_000;

/// What some rows count into their space's counters: one total per
/// counter column of their kind, and for contracts the active ones by day
/// of expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Counts {
    totals: Vec<i64>,
    days: BTreeMap<i64, i64>,
}

const PRODUCT_COLUMNS: &str = "p.id, p.name, p.slug, p.description, p.product_type, p.provider, p.tags, \
     p.quality_score, p.is_archived, p.created_at, p.updated_at";

const CONTRACT_COLUMNS: &str = "p.id, p.name, p.description, p.status, p.producer_id, p.producer_name, \
     p.consumer_id, p.consumer_name, p.freshness_hours, p.availability_percent, p.quality_score_min, \
     p.response_time_hours, p.created_at, p.expires_at";

const ISSUE_COLUMNS: &str = "p.id, p.title, p.description, p.status, p.priority, p.product_id, \
     p.assignee_id, p.reporter_id, p.created_at, p.updated_at";

const CHECK_COLUMNS: &str = "p.id, p.name, p.check_type, p.severity, p.product_ids, p.last_status, \
     p.last_run_at, p.is_archived, p.created_at";

/// Counts and pages one aggregated list: `filters` appends the
/// kind's conditions after the scope; the page of ids is taken
/// over the covering index, then joined for the full rows.
/// How one kind of content is listed.
struct Listing<T, R> {
    table: &'static str,
    columns: &'static str,
    decode: fn(&R) -> std::result::Result<T, sqlx::Error>,
    cursor: fn(&T) -> crate::domain::page::Cursor,
}

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> Uuid: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Uuid>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<f64>: Encode<'q, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    const PRODUCTS: Listing<Product, DB::Row> = Listing {
        table: "products",
        columns: PRODUCT_COLUMNS,
        decode: Self::product_from,
        cursor: Product::cursor,
    };

    const CONTRACTS: Listing<Contract, DB::Row> = Listing {
        table: "contracts",
        columns: CONTRACT_COLUMNS,
        decode: Self::contract_from,
        cursor: Contract::cursor,
    };

    const ISSUES: Listing<Issue, DB::Row> = Listing {
        table: "issues",
        columns: ISSUE_COLUMNS,
        decode: Self::issue_from,
        cursor: Issue::cursor,
    };

    const CHECKS: Listing<QualityCheck, DB::Row> = Listing {
        table: "quality_checks",
        columns: CHECK_COLUMNS,
        decode: Self::check_from,
        cursor: QualityCheck::cursor,
    };

    fn space_of(row: &DB::Row) -> std::result::Result<SpaceRef, sqlx::Error> {
        Ok(SpaceRef {
            id: row.try_get("space_id")?,
            name: row.try_get("space_name")?,
            slug: row.try_get("space_slug")?,
        })
    }

    fn json_list<T: serde::de::DeserializeOwned>(raw: &str) -> std::result::Result<Vec<T>, sqlx::Error> {
        serde_json::from_str(raw).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }

    fn product_from(row: &DB::Row) -> std::result::Result<Product, sqlx::Error> {
        let tags: String = row.try_get("tags")?;
        Ok(Product {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            slug: row.try_get("slug")?,
            description: row.try_get("description")?,
            product_type: row.try_get("product_type")?,
            provider: row.try_get("provider")?,
            tags: Self::json_list(&tags)?,
            quality_score: row.try_get("quality_score")?,
            is_archived: row.try_get("is_archived")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            space: Self::space_of(row)?,
        })
    }

    fn contract_from(row: &DB::Row) -> std::result::Result<Contract, sqlx::Error> {
        Ok(Contract {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            status: row.try_get("status")?,
            producer_id: row.try_get("producer_id")?,
            producer_name: row.try_get("producer_name")?,
            consumer_id: row.try_get("consumer_id")?,
            consumer_name: row.try_get("consumer_name")?,
            freshness_hours: row.try_get("freshness_hours")?,
            availability_percent: row.try_get("availability_percent")?,
            quality_score_min: row.try_get("quality_score_min")?,
            response_time_hours: row.try_get("response_time_hours")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            space: Self::space_of(row)?,
        })
    }

    fn issue_from(row: &DB::Row) -> std::result::Result<Issue, sqlx::Error> {
        Ok(Issue {
            id: row.try_get("id")?,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            status: row.try_get("status")?,
            priority: row.try_get("priority")?,
            product_id: row.try_get("product_id")?,
            assignee_id: row.try_get("assignee_id")?,
            reporter_id: row.try_get("reporter_id")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            space: Self::space_of(row)?,
        })
    }

    fn check_from(row: &DB::Row) -> std::result::Result<QualityCheck, sqlx::Error> {
        let ids: String = row.try_get("product_ids")?;
        Ok(QualityCheck {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            check_type: row.try_get("check_type")?,
            severity: row.try_get("severity")?,
            product_ids: Self::json_list(&ids)?,
            last_status: row.try_get("last_status")?,
            last_run_at: row.try_get("last_run_at")?,
            is_archived: row.try_get("is_archived")?,
            created_at: row.try_get("created_at")?,
            space: Self::space_of(row)?,
        })
    }

    /// The `space_stats` columns a kind's rows count into, each with the
    /// condition under which a row counts.
    fn counters(kind: ContentKind) -> &'static [(&'static str, &'static str)] {
        match kind {
            ContentKind::Product => &[
                ("products_active", "NOT is_archived"),
                ("products_archived", "is_archived"),
            ],
            ContentKind::Contract => &[
                ("contracts_draft", "status = 'draft'"),
                ("contracts_active", "status = 'active'"),
                ("contracts_expired", "status = 'expired'"),
                ("contracts_deprecated", "status = 'deprecated'"),
            ],
            ContentKind::Issue => &[
                ("issues_status_open", "status = 'open'"),
                ("issues_status_in_progress", "status = 'in_progress'"),
                ("issues_status_resolved", "status = 'resolved'"),
                ("issues_status_wont_fix", "status = 'wont_fix'"),
            ],
            ContentKind::QualityCheck => &[
                ("checks_active", "NOT is_archived"),
                ("checks_archived", "is_archived"),
                ("checks_ran", "NOT is_archived AND last_status IS NOT NULL"),
                ("checks_passed", "NOT is_archived AND last_status = 'pass'"),
            ],
        }
    }

    /// What the rows `ids` of the space count into the space's counters
    /// now (index lookups on (space_id, id): the cost of a batch, not of
    /// the space), and for contracts, the active ones by day of expiry.
    async fn counted(tx: &mut Tx<DB>, kind: ContentKind, space: Uuid, ids: &[Uuid]) -> Result<Counts> {
        let counters = Self::counters(kind);
        if ids.is_empty() {
            return Ok(Counts {
                totals: vec![0; counters.len()],
                days: BTreeMap::new(),
            });
        }
        let sums: Vec<String> = counters
            .iter()
            .map(|(column, when)| {
                format!("CAST(COALESCE(SUM(CASE WHEN {when} THEN 1 ELSE 0 END), 0) AS BIGINT) AS {column}")
            })
            .collect();
        // Each id of the list looked up on (space_id, id): the cost of the
        // batch, not of the space (see `Dialect::push_by_ids`).
        let by_ids = |select: String| {
            let mut qb = QueryBuilder::<DB>::new(select);
            qb.push(" FROM (");
            qb.push_values(ids, |mut row, id| {
                row.push_bind(*id);
            });
            DB::push_by_ids(&mut qb, kind.table(), space);
            qb
        };
        let row = by_ids(format!("SELECT {}", sums.join(", ")))
            .build()
            .fetch_one(&mut **tx)
            .await?;
        let totals = counters
            .iter()
            .map(|(column, _)| row.try_get::<i64, _>(*column))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut days = BTreeMap::new();
        if kind == ContentKind::Contract {
            let mut qb = by_ids(format!(
                "SELECT p.expires_at / {EXPIRY_DAY} AS day, CAST(count(*) AS BIGINT) AS n"
            ));
            qb.push(format!(
                " AND p.status = 'active' AND p.expires_at IS NOT NULL GROUP BY p.expires_at / {EXPIRY_DAY}"
            ));
            for row in qb.build().fetch_all(&mut **tx).await? {
                days.insert(row.try_get::<i64, _>("day")?, row.try_get::<i64, _>("n")?);
            }
        }
        Ok(Counts { totals, days })
    }

    /// Columns saying what one row counts into its space's counters
    /// (`k0`, `k1`, …: 1 or 0 per counter of the kind, see
    /// [`Self::counters`]; `day`: an active contract's expiry day, else
    /// NULL), over the row's own columns, unqualified.
    fn count_columns(kind: ContentKind) -> String {
        let mut columns: Vec<String> = Self::counters(kind)
            .iter()
            .enumerate()
            .map(|(i, (_, when))| format!("CAST(CASE WHEN {when} THEN 1 ELSE 0 END AS BIGINT) AS k{i}"))
            .collect();
        columns.push(if kind == ContentKind::Contract {
            format!(
                "CASE WHEN status = 'active' AND expires_at IS NOT NULL THEN expires_at / {EXPIRY_DAY} END AS day"
            )
        } else {
            "CAST(NULL AS BIGINT) AS day".to_owned()
        });
        columns.join(", ")
    }

    /// Adds (`sign` 1) or takes off (-1) what a row read with
    /// [`Self::count_columns`] counts.
    fn tally(counts: &mut Counts, row: &DB::Row, sign: i64) -> std::result::Result<(), sqlx::Error> {
        for (i, total) in counts.totals.iter_mut().enumerate() {
            *total += sign * row.try_get::<i64, _>(format!("k{i}").as_str())?;
        }
        if let Some(day) = row.try_get::<Option<i64>, _>("day")? {
            *counts.days.entry(day).or_insert(0) += sign;
        }
        Ok(())
    }

    /// Moves the space's counters and expiry days by `moved`.
    async fn apply_moves(tx: &mut Tx<DB>, kind: ContentKind, space: Uuid, moved: Counts) -> Result<()> {
        let counters = Self::counters(kind);
        if moved.totals.iter().any(|n| *n != 0) {
            let columns: Vec<&str> = counters.iter().map(|(c, _)| *c).collect();
            let mut qb = QueryBuilder::<DB>::new(format!(
                "INSERT INTO space_stats (space_id, {}) VALUES (",
                columns.join(", ")
            ));
            qb.push_bind(space);
            for n in &moved.totals {
                qb.push(", ");
                qb.push_bind(*n);
            }
            let sets: Vec<String> = columns
                .iter()
                .map(|c| format!("{c} = space_stats.{c} + excluded.{c}"))
                .collect();
            qb.push(format!(
                ") ON CONFLICT (space_id) DO UPDATE SET {}",
                sets.join(", ")
            ));
            qb.build().execute(&mut **tx).await?;
        }
        // Expiry days after the counters (the order every writer and the
        // fold take their locks in).
        let mut days = moved.days;
        days.retain(|_, n| *n != 0);
        if !days.is_empty() {
            let mut qb = QueryBuilder::<DB>::new("INSERT INTO contract_expiries (space_id, day, n) ");
            qb.push_values(&days, |mut row, (day, n)| {
                row.push_bind(space).push_bind(*day).push_bind(*n);
            });
            qb.push(" ON CONFLICT (space_id, day) DO UPDATE SET n = contract_expiries.n + excluded.n");
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Moves the space's counters by what a change did to the rows `ids`
    /// (`before` is [`Self::counted`] ahead of the change): the counters
    /// follow the rows by deltas, never by recounting the space.
    async fn apply_counts(
        tx: &mut Tx<DB>,
        kind: ContentKind,
        space: Uuid,
        ids: &[Uuid],
        before: &Counts,
    ) -> Result<()> {
        let mut moved = Self::counted(tx, kind, space, ids).await?;
        for (total, old) in moved.totals.iter_mut().zip(&before.totals) {
            *total -= old;
        }
        for (day, n) in &before.days {
            *moved.days.entry(*day).or_insert(0) -= n;
        }
        Self::apply_moves(tx, kind, space, moved).await
    }

    /// The spaces of the scope's organization the caller may see
    /// (alias `s`), narrowed to the scope's space if any.
    fn push_visible_spaces(qb: &mut QueryBuilder<DB>, scope: &Scope) {
        qb.push(" s.organization_id = ");
        qb.push_bind(scope.org);
        if let Some(user) = scope.member {
            qb.push(
                " AND (s.visibility = 'organization' OR s.id IN \
                 (SELECT space_id FROM space_members WHERE user_id = ",
            );
            qb.push_bind(user);
            qb.push("))");
        }
        if let Some(space) = scope.space {
            qb.push(" AND s.id = ");
            qb.push_bind(space);
        }
    }

    /// A list total from the counters: `expr` sums counter columns
    /// (alias `st`) over the visible spaces.
    async fn counted_total(conn: &mut DB::Connection, scope: &Scope, expr: &str) -> Result<i64> {
        let mut qb = QueryBuilder::<DB>::new("");
        qb.push("SELECT CAST(COALESCE(SUM(x), 0) AS BIGINT) FROM (");
        Self::push_counter_rows(&mut qb, scope, &format!("{expr} AS x"), false);
        qb.push(") counted");
        Ok(qb.build_query_scalar().fetch_one(conn).await?)
    }

    /// Rows whose sums are the visible spaces' counters, selecting
    /// `select` over counter columns (alias `st`; each is a column of
    /// `space_stats`, `organization_stats` and `member_stats`; NULL for a
    /// space with no counters yet), and first a `spaces` column when
    /// `with_spaces`.
    ///
    /// A scope of one space reads its counters. Otherwise the
    /// organization's rows by visibility class (migration 0014) stand for
    /// its spaces: both for an admin; for a plain member the open one,
    /// plus its own row of the restricted spaces it belongs to (migration
    /// 0015). At most two rows, whatever the number of spaces.
    fn push_counter_rows(qb: &mut QueryBuilder<DB>, scope: &Scope, select: &str, with_spaces: bool) {
        let (org_spaces, one_space) = if with_spaces {
            ("st.spaces AS spaces, ", "1 AS spaces, ")
        } else {
            ("", "")
        };
        if scope.space.is_some() {
            qb.push(format!(
                "SELECT {one_space}{select} FROM spaces s \
                 LEFT JOIN space_stats st ON st.space_id = s.id WHERE"
            ));
            Self::push_visible_spaces(qb, scope);
            return;
        }
        qb.push(format!(
            "SELECT {org_spaces}{select} FROM organization_stats st WHERE st.organization_id = "
        ));
        qb.push_bind(scope.org);
        if let Some(user) = scope.member {
            qb.push(format!(
                " AND st.open = TRUE UNION ALL SELECT {org_spaces}{select} FROM member_stats st \
                 WHERE st.organization_id = "
            ));
            qb.push_bind(scope.org);
            qb.push(" AND st.user_id = ");
            qb.push_bind(user);
        }
    }

    /// Rows whose sums are the visible spaces' active contracts with an
    /// expiry day before `today` not yet folded (column `n`), like
    /// [`Self::push_counter_rows`].
    fn push_expiry_rows(qb: &mut QueryBuilder<DB>, scope: &Scope, today: i64) {
        if scope.space.is_some() {
            qb.push("SELECT e.n FROM spaces s JOIN contract_expiries e ON e.space_id = s.id WHERE e.day < ");
            qb.push_bind(today);
            qb.push(" AND");
            Self::push_visible_spaces(qb, scope);
            return;
        }
        qb.push("SELECT e.n FROM organization_expiries e WHERE e.organization_id = ");
        qb.push_bind(scope.org);
        if scope.member.is_some() {
            qb.push(" AND e.open = TRUE");
        }
        qb.push(" AND e.day < ");
        qb.push_bind(today);
        if let Some(user) = scope.member {
            qb.push(" UNION ALL SELECT e.n FROM member_expiries e WHERE e.organization_id = ");
            qb.push_bind(scope.org);
            qb.push(" AND e.user_id = ");
            qb.push_bind(user);
            qb.push(" AND e.day < ");
            qb.push_bind(today);
        }
    }

    /// The counter columns of the given statuses (all when none).
    fn status_counters<T: ToString>(prefix: &str, all: &[T], chosen: &[T]) -> String {
        let pick = if chosen.is_empty() { all } else { chosen };
        pick.iter()
            .map(|s| format!("st.{prefix}{}", s.to_string()))
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// `SET a = excluded.a, ... WHERE <row differs>`, for an upsert that
    /// leaves identical rows untouched.
    fn push_update(qb: &mut QueryBuilder<DB>, table: &str, columns: &[&str]) {
        // Ids are unique per space: the same id in another space is another
        // item.
        qb.push(" ON CONFLICT (space_id, id) DO UPDATE SET ");
        let sets: Vec<String> = columns.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        qb.push(sets.join(", "));
        qb.push(" WHERE (");
        let compared: Vec<String> = columns
            .iter()
            .filter(|c| **c != "updated_at")
            .map(|c| format!("{table}.{c} {} excluded.{c}", DB::DISTINCT))
            .collect();
        qb.push(compared.join(" OR "));
        qb.push(")");
    }

    fn unique_name(e: &sqlx::Error, kind: ContentKind) -> Option<Error> {
        is_unique_violation(e).then(|| {
            Error::already_exists(
                "NAME_TAKEN",
                format!(
                    "another {} of this space already has one of these names",
                    kind.noun()
                ),
            )
            .with("field", "items[].name")
        })
    }

    /// The organization and visibility conditions every aggregated
    /// list and count starts from (content alias `c`).
    ///
    /// A content row carries its space's organization (kept in step on
    /// attach and detach) and `space_open`, whether its space's
    /// visibility is 'organization' (kept in step by a trigger, migration
    /// 0014), both in the organization's indexes. An admin's scope is the
    /// organization alone; a plain member's adds, per index entry, "open,
    /// or a space the member belongs to" (the member's spaces hashed once
    /// per statement). A page costs the index entries it walks, not a
    /// pass over the organization's spaces to collect the visible ones.
    fn push_scope(qb: &mut QueryBuilder<DB>, scope: &Scope) {
        qb.push(" WHERE c.organization_id = ");
        qb.push_bind(scope.org);
        if let Some(space) = scope.space {
            // Checked to be visible before, and again per row below (its
            // visibility may have changed since).
            qb.push(" AND c.space_id = ");
            qb.push_bind(space);
        }
        if let Some(user) = scope.member {
            // `+`: the per-space index must not drive the list (the
            // organization's index serves its order).
            qb.push(format!(
                " AND (c.space_open = TRUE OR {}c.space_id IN \
                 (SELECT sm.space_id FROM space_members sm WHERE sm.user_id = ",
                DB::NOT_INDEXED
            ));
            qb.push_bind(user);
            qb.push("))");
        }
    }

    fn push_in<T: ToString>(qb: &mut QueryBuilder<DB>, column: &str, values: &[T]) {
        if values.is_empty() {
            return;
        }
        qb.push(format!(" AND {column} IN ("));
        let mut list = qb.separated(", ");
        for v in values {
            list.push_bind(v.to_string());
        }
        qb.push(")");
    }

    /// The count and the page query of one aggregated list, each
    /// starting with `prefix` (empty, or EXPLAIN for the plans). With
    /// `found` (no cursor), the page query also carries the number of
    /// rows the conditions match (column `found`), counted in the same
    /// pass: the matches are gathered once, counted, and paged, and the
    /// count sits on a row that is left-joined to the page, so a page
    /// past the last match still answers it, as a single row whose
    /// columns are NULL (`list_of` drops it).
    fn list_queries<T>(
        prefix: &str,
        listing: &Listing<T, DB::Row>,
        page: &PageRequest,
        scope: &Scope,
        filters: &dyn Fn(&mut QueryBuilder<DB>),
        found: bool,
    ) -> (QueryBuilder<DB>, QueryBuilder<DB>) {
        let (table, columns) = (listing.table, listing.columns);
        let mut count = QueryBuilder::<DB>::new(format!("{prefix}SELECT count(*) FROM {table} c"));
        Self::push_scope(&mut count, scope);
        filters(&mut count);
        let found = found && page.after.is_none();
        // The page of ids comes from the covering index, once
        // (MATERIALIZED: as an IN list, SQLite ran it again for each
        // table it joined); only those rows are read in full.
        let (head, created, id) = if found {
            (
                "found AS MATERIALIZED (SELECT c.space_id, c.id, c.created_at",
                "f.created_at",
                "f.id",
            )
        } else {
            (
                "page AS MATERIALIZED (SELECT c.space_id, c.id",
                "c.created_at",
                "c.id",
            )
        };
        let mut rows = QueryBuilder::<DB>::new(format!("{prefix}WITH {head} FROM {table} c"));
        Self::push_scope(&mut rows, scope);
        filters(&mut rows);
        if found {
            rows.push("), page AS MATERIALIZED (SELECT f.space_id, f.id FROM found f");
        }
        Self::push_page(&mut rows, created, id, page);
        let (carried, from, join) = if found {
            (
                ", n.found AS found",
                "(SELECT count(*) AS found FROM found) n LEFT JOIN page ON 1 = 1 LEFT ",
                "LEFT JOIN",
            )
        } else {
            ("", "page ", "JOIN")
        };
        rows.push(format!(
            ") SELECT {columns}, p.space_id, s.name AS space_name, s.slug AS space_slug{carried} \
             FROM {from}JOIN {table} p ON p.space_id = page.space_id AND p.id = page.id \
             {join} spaces s ON s.id = p.space_id ORDER BY p.created_at DESC, p.id DESC"
        ));
        (count, rows)
    }

    /// The column an insert names for `Dialect::search_org_value`'s
    /// token, if the backend keeps one.
    fn token_column(token: &Option<String>) -> &'static str {
        if token.is_some() { ", search_org" } else { "" }
    }

    /// Counts and pages one aggregated list: `filters` appends the
    /// kind's conditions after the scope.
    /// `counters`, when the filters allow, is the `space_stats` sum
    /// that gives the total without counting index entries.
    async fn list_of<T>(
        store: &Self,
        listing: &Listing<T, DB::Row>,
        page: PageRequest,
        scope: &Scope,
        filters: impl Fn(&mut QueryBuilder<DB>),
        counters: Option<String>,
        searching: bool,
    ) -> Result<Page<T>> {
        // One reader for the call's statements: a call waits for a reader
        // (and may be refused, see `SqlStore::read`) once, never after
        // part of its work is done.
        let mut conn = store.read().await?;
        // A search without a cursor counts its matches in the pass that
        // pages them where that pays (`SEARCH_COUNTED_WITH_PAGE`): the
        // text index is read once per call, not twice.
        let found = DB::SEARCH_COUNTED_WITH_PAGE && searching && counters.is_none() && page.after.is_none();
        let (mut count, mut rows) = Self::list_queries("", listing, &page, scope, &filters, found);
        // A search is planned for its pattern (a one-shot statement gets a
        // custom plan on PostgreSQL); other lists reuse prepared plans.
        let mut raw = rows.build().persistent(!searching).fetch_all(&mut *conn).await?;
        let counted: Option<i64> = match raw.first() {
            Some(row) if found => Some(row.try_get("found")?),
            _ => None,
        };
        if found {
            // The row that only carries the count of a page past the
            // last match.
            let mut kept = Vec::with_capacity(raw.len());
            for row in raw {
                if row.try_get::<Option<Uuid>, _>("id")?.is_some() {
                    kept.push(row);
                }
            }
            raw = kept;
        }
        let total: i64 = match (counted, counters) {
            (Some(n), _) => n,
            (None, Some(expr)) => Self::counted_total(&mut conn, scope, &expr).await?,
            (None, None) => {
                count
                    .build_query_scalar()
                    .persistent(!searching)
                    .fetch_one(&mut *conn)
                    .await?
            }
        };
        let rows = raw
            .iter()
            .map(listing.decode)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self::page_of(&page, rows, total, listing.cursor))
    }

    /// The plans of the main aggregation queries, for the docs.
    async fn explain_all(store: &Self, scope: &Scope, search: &str) -> Result<Vec<(String, String)>> {
        let deep = PageRequest::parse(Some(500), 20, "")?;
        let first = PageRequest::parse(None, 20, "")?;
        let no_filter = |_: &mut QueryBuilder<DB>| {};
        let live = |qb: &mut QueryBuilder<DB>| {
            qb.push(" AND c.is_archived = ");
            qb.push_bind(false);
        };
        let searched = |qb: &mut QueryBuilder<DB>| {
            qb.push(" AND c.is_archived = ");
            qb.push_bind(false);
            DB::push_org_search(
                qb,
                "c",
                "products_fts",
                ["name", "description"],
                search,
                scope.org,
            );
        };
        let open = |qb: &mut QueryBuilder<DB>| Self::push_in(qb, "c.status", &["open", "in_progress"]);
        let mut plans = Vec::new();
        let prefix = DB::EXPLAIN;
        let (c, r) = Self::list_queries(prefix, &Self::PRODUCTS, &first, scope, &live, false);
        plans.push(("ListProducts: total".to_owned(), c));
        plans.push(("ListProducts: page 1".to_owned(), r));
        let (_, r) = Self::list_queries(prefix, &Self::PRODUCTS, &deep, scope, &live, false);
        plans.push(("ListProducts: page 500".to_owned(), r));
        let (c, r) = Self::list_queries(
            prefix,
            &Self::PRODUCTS,
            &first,
            scope,
            &searched,
            DB::SEARCH_COUNTED_WITH_PAGE,
        );
        plans.push((
            format!("ListProducts: search '{search}', total (after a page token)"),
            c,
        ));
        plans.push((
            format!("ListProducts: search '{search}', page 1 (with its total)"),
            r,
        ));
        let (_, r) = Self::list_queries(prefix, &Self::ISSUES, &deep, scope, &open, false);
        plans.push(("ListIssues: status open,in_progress, page 500".to_owned(), r));
        let (_, r) = Self::list_queries(prefix, &Self::CONTRACTS, &deep, scope, &no_filter, false);
        plans.push(("ListContracts: page 500".to_owned(), r));
        let mut out = Vec::new();
        for (name, mut qb) in plans {
            let lines = qb
                .build()
                .fetch_all(&mut *store.read().await?)
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>(DB::EXPLAIN_COLUMN))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            out.push((name, lines.join("\n")));
        }
        Ok(out)
    }

    /// One batch upsert, in one transaction: lock the space and check
    /// the actor may write it, refuse ids of other spaces,
    /// insert-or-replace with the statement `insert` builds (given the
    /// space's organization), refresh the counters, record the event.
    async fn upsert_batch(
        store: &Self,
        actor: &Actor,
        kind: ContentKind,
        space: Uuid,
        ids: Vec<Uuid>,
        names: &[(Uuid, &str)],
        insert: impl FnOnce(Option<Uuid>, bool) -> QueryBuilder<DB>,
    ) -> Result<u64> {
        let action = kind.upsert_action();
        let target = |s: Uuid| targets::content(s, kind.collection(), None);
        let (mut tx, _, access) = store
            .space_guard(actor, space, SpaceAction::WriteContent, action, target)
            .await?;
        let org = access.space.organization_id;
        // Rows carry their space's organization and whether every member
        // sees it (the space is locked: neither changes before commit).
        let open = access.space.visibility == Visibility::Organization;
        if !ids.is_empty() {
            // The counters follow the rows the statement inserts or
            // changes (RETURNING: an identical row is left alone and not
            // returned), each counted after less what it counted before,
            // from one lookup of the batch's ids.
            let (before, renamed) = Self::batch_before(&mut tx, kind, space, &ids, names).await?;
            Self::release_names(&mut tx, kind, space, &renamed).await?;
            let mut qb = insert(org, open);
            qb.push(format!(" RETURNING id, {}", Self::count_columns(kind)));
            let written = match qb.build().fetch_all(&mut *tx).await {
                Ok(rows) => rows,
                Err(e) => return Err(Self::unique_name(&e, kind).unwrap_or_else(|| e.into())),
            };
            let mut moved = Counts {
                totals: vec![0; Self::counters(kind).len()],
                days: BTreeMap::new(),
            };
            for row in &written {
                Self::tally(&mut moved, row, 1)?;
                if let Some(old) = before.get(&row.try_get::<Uuid, _>("id")?) {
                    Self::tally(&mut moved, old, -1)?;
                }
            }
            Self::apply_moves(&mut tx, kind, space, moved).await?;
        }
        let draft = Draft::success(actor, action, target(space))
            .with("space_id", space.to_string())
            .with("count", ids.len().to_string())
            .with("ids_sha256", audit::ids_digest(&ids));
        store
            .append(&mut tx, org.unwrap_or(audit::SYSTEM_CHAIN), draft)
            .await?;
        let upserted = ids.len() as u64;
        store.finish(tx, actor, &upserted).await?;
        Ok(upserted)
    }

    /// The batch's rows already in the space, by id, each with what it
    /// counts ([`Self::count_columns`]), and those the batch renames
    /// (`names`, when the kind's names are unique): one lookup per id
    /// (see `Dialect::push_by_ids`), the cost of the batch, not of the
    /// space.
    async fn batch_before(
        tx: &mut Tx<DB>,
        kind: ContentKind,
        space: Uuid,
        ids: &[Uuid],
        names: &[(Uuid, &str)],
    ) -> Result<(std::collections::HashMap<Uuid, DB::Row>, Vec<Uuid>)> {
        let renaming = if names.is_empty() {
            "0"
        } else {
            "CASE WHEN p.name <> v.column2 THEN 1 ELSE 0 END"
        };
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT p.id AS id, CAST({renaming} AS BIGINT) AS renamed, {} FROM (",
            Self::count_columns(kind)
        ));
        if names.is_empty() {
            qb.push_values(ids, |mut row, id| {
                row.push_bind(*id);
            });
        } else {
            qb.push_values(names, |mut row, (id, name)| {
                row.push_bind(*id).push_bind((*name).to_owned());
            });
        }
        DB::push_by_ids(&mut qb, kind.table(), space);
        let mut before = std::collections::HashMap::new();
        let mut renamed = Vec::new();
        for row in qb.build().fetch_all(&mut **tx).await? {
            let id: Uuid = row.try_get("id")?;
            if row.try_get::<i64, _>("renamed")? != 0 {
                renamed.push(id);
            }
            before.insert(id, row);
        }
        Ok((before, renamed))
    }

    /// Names are unique within a space, checked row by row: a batch that
    /// swaps two names (a valid end state) would collide with itself. The
    /// rows the batch renames (`renamed`, found by [`Self::batch_before`])
    /// first take a placeholder no real name can be (it starts with a
    /// control character), so only a collision with a row outside the
    /// batch remains, and is NAME_TAKEN.
    async fn release_names(tx: &mut Tx<DB>, kind: ContentKind, space: Uuid, renamed: &[Uuid]) -> Result<()> {
        if renamed.is_empty() {
            return Ok(());
        }
        let table = kind.table();
        let mut qb = QueryBuilder::<DB>::new(format!("UPDATE {table} SET name = v.column2 FROM ("));
        qb.push_values(renamed, |mut row, id| {
            row.push_bind(*id).push_bind(format!("\u{1}{id}"));
        });
        qb.push(format!(
            ") AS v WHERE {table}.id = v.column1 AND {table}.space_id = "
        ));
        qb.push_bind(space);
        qb.build().execute(&mut **tx).await?;
        Ok(())
    }

    fn micros_or(value: Option<i64>, default: i64) -> i64 {
        value.unwrap_or(default)
    }
}

#[async_trait]
impl<DB> ContentStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> Uuid: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Uuid>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<f64>: Encode<'q, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "upsert_products"))]
    async fn upsert_products(&self, actor: &Actor, space: Uuid, items: &[ProductInput]) -> Result<u64> {
        let now = now_micros();
        let ids = items.iter().map(|i| i.id).collect();
        let names: Vec<(Uuid, &str)> = items.iter().map(|i| (i.id, i.name.as_str())).collect();
        Self::upsert_batch(self, actor, ContentKind::Product, space, ids, &names, |org, open| {
            let token = DB::search_org_value(org);
            let mut qb = QueryBuilder::<DB>::new(format!(
                "INSERT INTO products (id, space_id, organization_id, space_open, name, slug, description, product_type, \
                 provider, tags, quality_score, is_archived, created_at, updated_at{}) ",
                Self::token_column(&token)
            ));
            qb.push_values(items, |mut row, item| {
                row.push_bind(item.id)
                    .push_bind(space)
                    .push_bind(org)
                    .push_bind(open)
                    .push_bind(item.name.clone())
                    .push_bind(item.slug.clone())
                    .push_bind(item.description.clone())
                    .push_bind(item.product_type.clone())
                    .push_bind(item.provider.clone())
                    .push_bind(serde_json::to_string(&item.tags).unwrap_or_else(|_| "[]".into()))
                    .push_bind(item.quality_score)
                    .push_bind(item.is_archived)
                    .push_bind(Self::micros_or(item.created_at, now))
                    .push_bind(Self::micros_or(item.updated_at, now));
                if let Some(token) = &token {
                    row.push_bind(token.clone());
                }
            });
            Self::push_update(
                &mut qb,
                "products",
                &[
                    "name",
                    "slug",
                    "description",
                    "product_type",
                    "provider",
                    "tags",
                    "quality_score",
                    "is_archived",
                    "updated_at",
                ],
            );
            qb
        })
        .await
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "upsert_contracts"))]
    async fn upsert_contracts(&self, actor: &Actor, space: Uuid, items: &[ContractInput]) -> Result<u64> {
        let now = now_micros();
        let ids = items.iter().map(|i| i.id).collect();
        Self::upsert_batch(self, actor, ContentKind::Contract, space, ids, &[], |org, open| {
            let token = DB::search_org_value(org);
            let mut qb = QueryBuilder::<DB>::new(format!(
                "INSERT INTO contracts (id, space_id, organization_id, space_open, name, description, status, \
                 producer_id, producer_name, consumer_id, consumer_name, freshness_hours, \
                 availability_percent, quality_score_min, response_time_hours, created_at, expires_at{}) ",
                Self::token_column(&token)
            ));
            qb.push_values(items, |mut row, item| {
                row.push_bind(item.id)
                    .push_bind(space)
                    .push_bind(org)
                    .push_bind(open)
                    .push_bind(item.name.clone())
                    .push_bind(item.description.clone())
                    .push_bind(item.status.as_str())
                    .push_bind(item.producer_id.clone())
                    .push_bind(item.producer_name.clone())
                    .push_bind(item.consumer_id.clone())
                    .push_bind(item.consumer_name.clone())
                    .push_bind(item.freshness_hours)
                    .push_bind(item.availability_percent)
                    .push_bind(item.quality_score_min)
                    .push_bind(item.response_time_hours)
                    .push_bind(Self::micros_or(item.created_at, now))
                    .push_bind(item.expires_at);
                if let Some(token) = &token {
                    row.push_bind(token.clone());
                }
            });
            Self::push_update(
                &mut qb,
                "contracts",
                &[
                    "name",
                    "description",
                    "status",
                    "producer_id",
                    "producer_name",
                    "consumer_id",
                    "consumer_name",
                    "freshness_hours",
                    "availability_percent",
                    "quality_score_min",
                    "response_time_hours",
                    "expires_at",
                ],
            );
            qb
        })
        .await
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "upsert_issues"))]
    async fn upsert_issues(&self, actor: &Actor, space: Uuid, items: &[IssueInput]) -> Result<u64> {
        let now = now_micros();
        let ids = items.iter().map(|i| i.id).collect();
        Self::upsert_batch(self, actor, ContentKind::Issue, space, ids, &[], |org, open| {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO issues (id, space_id, organization_id, space_open, title, description, status, priority, \
                 product_id, assignee_id, reporter_id, created_at, updated_at) ",
            );
            qb.push_values(items, |mut row, item| {
                row.push_bind(item.id)
                    .push_bind(space)
                    .push_bind(org)
                    .push_bind(open)
                    .push_bind(item.title.clone())
                    .push_bind(item.description.clone())
                    .push_bind(item.status.as_str())
                    .push_bind(item.priority.as_str())
                    .push_bind(item.product_id)
                    .push_bind(item.assignee_id)
                    .push_bind(item.reporter_id)
                    .push_bind(Self::micros_or(item.created_at, now))
                    .push_bind(Self::micros_or(item.updated_at, now));
            });
            Self::push_update(
                &mut qb,
                "issues",
                &[
                    "title",
                    "description",
                    "status",
                    "priority",
                    "product_id",
                    "assignee_id",
                    "reporter_id",
                    "updated_at",
                ],
            );
            qb
        })
        .await
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "upsert_quality_checks"))]
    async fn upsert_quality_checks(
        &self,
        actor: &Actor,
        space: Uuid,
        items: &[QualityCheckInput],
    ) -> Result<u64> {
        let now = now_micros();
        let ids = items.iter().map(|i| i.id).collect();
        Self::upsert_batch(self, actor, ContentKind::QualityCheck, space, ids, &[], |org, open| {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO quality_checks (id, space_id, organization_id, space_open, name, check_type, severity, \
                 product_ids, last_status, last_run_at, is_archived, created_at) ",
            );
            qb.push_values(items, |mut row, item| {
                let product_ids: Vec<String> = item.product_ids.iter().map(Uuid::to_string).collect();
                row.push_bind(item.id)
                    .push_bind(space)
                    .push_bind(org)
                    .push_bind(open)
                    .push_bind(item.name.clone())
                    .push_bind(item.check_type.clone())
                    .push_bind(item.severity.as_str())
                    .push_bind(serde_json::to_string(&product_ids).unwrap_or_else(|_| "[]".into()))
                    .push_bind(item.last_status.map(|s| s.as_str()))
                    .push_bind(item.last_run_at)
                    .push_bind(item.is_archived)
                    .push_bind(Self::micros_or(item.created_at, now));
            });
            Self::push_update(
                &mut qb,
                "quality_checks",
                &[
                    "name",
                    "check_type",
                    "severity",
                    "product_ids",
                    "last_status",
                    "last_run_at",
                    "is_archived",
                ],
            );
            qb
        })
        .await
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "delete_content"))]
    async fn delete_content(&self, actor: &Actor, kind: ContentKind, space: Uuid, id: Uuid) -> Result<()> {
        let action = kind.delete_action();
        let target = |s: Uuid| targets::content(s, kind.collection(), Some(id));
        let (mut tx, _, access) = self
            .space_guard(actor, space, SpaceAction::WriteContent, action, target)
            .await?;
        let before = Self::counted(&mut tx, kind, space, &[id]).await?;
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {} WHERE id = $1 AND space_id = $2",
            kind.table()
        )))
        .bind(id)
        .bind(space)
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&done) == 0 {
            return Err(Error::not_found(
                kind.not_found_reason(),
                format!("{} {id} not found in this space", kind.noun()),
            )
            .with("id", id.to_string()));
        }
        Self::apply_counts(&mut tx, kind, space, &[id], &before).await?;
        let draft = Draft::success(actor, action, target(space)).with("space_id", space.to_string());
        self.append(
            &mut tx,
            access.space.organization_id.unwrap_or(audit::SYSTEM_CHAIN),
            draft,
        )
        .await?;
        self.finish(tx, actor, &()).await?;
        Ok(())
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "list_products"))]
    async fn list_products(
        &self,
        scope: &Scope,
        filter: &ProductFilter,
        page: PageRequest,
    ) -> Result<Page<Product>> {
        Self::list_of(
            self,
            &Self::PRODUCTS,
            page,
            scope,
            |qb| {
                if !filter.include_archived {
                    qb.push(" AND c.is_archived = ");
                    qb.push_bind(false);
                }
                if let Some(term) = &filter.search {
                    DB::push_org_search(qb, "c", "products_fts", ["name", "description"], term, scope.org);
                }
            },
            filter.search.is_none().then(|| {
                if filter.include_archived {
                    "st.products_active + st.products_archived".to_owned()
                } else {
                    "st.products_active".to_owned()
                }
            }),
            filter.search.is_some(),
        )
        .await
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "list_contracts"))]
    async fn list_contracts(
        &self,
        scope: &Scope,
        filter: &ContractFilter,
        page: PageRequest,
    ) -> Result<Page<Contract>> {
        Self::list_of(
            self,
            &Self::CONTRACTS,
            page,
            scope,
            |qb| {
                Self::push_in(qb, "c.status", &filter.statuses);
                if let Some(term) = &filter.search {
                    DB::push_org_search(qb, "c", "contracts_fts", ["name", "description"], term, scope.org);
                }
            },
            filter
                .search
                .is_none()
                .then(|| Self::status_counters("contracts_", ContractStatus::ALL, &filter.statuses)),
            filter.search.is_some(),
        )
        .await
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "list_issues"))]
    async fn list_issues(
        &self,
        scope: &Scope,
        filter: &IssueFilter,
        page: PageRequest,
    ) -> Result<Page<Issue>> {
        Self::list_of(
            self,
            &Self::ISSUES,
            page,
            scope,
            |qb| {
                Self::push_in(qb, "c.status", &filter.statuses);
                Self::push_in(qb, "c.priority", &filter.priorities);
                if let Some(assignee) = filter.assignee {
                    qb.push(" AND c.assignee_id = ");
                    qb.push_bind(assignee);
                }
            },
            (filter.priorities.is_empty() && filter.assignee.is_none())
                .then(|| Self::status_counters("issues_status_", IssueStatus::ALL, &filter.statuses)),
            false,
        )
        .await
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "list_quality_checks"))]
    async fn list_quality_checks(
        &self,
        scope: &Scope,
        filter: &QualityCheckFilter,
        page: PageRequest,
    ) -> Result<Page<QualityCheck>> {
        Self::list_of(
            self,
            &Self::CHECKS,
            page,
            scope,
            |qb| {
                if !filter.include_archived {
                    qb.push(" AND c.is_archived = ");
                    qb.push_bind(false);
                }
                Self::push_in(qb, "c.last_status", &filter.statuses);
            },
            filter.statuses.is_empty().then(|| {
                if filter.include_archived {
                    "st.checks_active + st.checks_archived".to_owned()
                } else {
                    "st.checks_active".to_owned()
                }
            }),
            false,
        )
        .await
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "explain"))]
    async fn explain(&self, scope: &Scope, search: &str) -> Result<Vec<(String, String)>> {
        Self::explain_all(self, scope, search).await
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "fold_expiries"))]
    async fn fold_expiries(&self, today: i64) -> Result<u64> {
        const SPACES_PER_ROUND: i64 = 1_000;
        let mut folded = 0u64;
        loop {
            let mut tx = self.upkeep_tx().await?;
            let spaces: Vec<Uuid> = sqlx::query_scalar(
                "SELECT DISTINCT space_id FROM contract_expiries WHERE day < $1 ORDER BY space_id LIMIT $2",
            )
            .bind(today)
            .bind(SPACES_PER_ROUND)
            .fetch_all(&mut *tx)
            .await?;
            if spaces.is_empty() {
                return Ok(folded);
            }
            // The spaces first, then their counters, in order, as every
            // writer takes them before the expiry rows: the triggers that
            // carry these changes into the organization's rows (migration
            // 0014) read each space's class, which a concurrent change of
            // the space cannot then move under them.
            for table in ["spaces", "space_stats"] {
                let column = if table == "spaces" { "id" } else { "space_id" };
                let mut lock = QueryBuilder::<DB>::new(format!("SELECT {column} FROM {table} WHERE 1 = 1"));
                DB::push_space_in(&mut lock, column, &spaces);
                lock.push(format!(" ORDER BY {column}{}", DB::LOCK));
                lock.build().fetch_all(&mut *tx).await?;
            }
            let mut gone = QueryBuilder::<DB>::new("DELETE FROM contract_expiries WHERE day < ");
            gone.push_bind(today);
            DB::push_space_in(&mut gone, "space_id", &spaces);
            gone.push(" RETURNING space_id, n");
            let mut lapsed: BTreeMap<Uuid, i64> = BTreeMap::new();
            for row in gone.build().fetch_all(&mut *tx).await? {
                *lapsed.entry(row.try_get("space_id")?).or_insert(0) += row.try_get::<i64, _>("n")?;
            }
            lapsed.retain(|_, n| *n != 0);
            if !lapsed.is_empty() {
                let mut qb = QueryBuilder::<DB>::new("INSERT INTO space_stats (space_id, contracts_lapsed) ");
                qb.push_values(&lapsed, |mut row, (space, n)| {
                    row.push_bind(*space).push_bind(*n);
                });
                qb.push(
                    " ON CONFLICT (space_id) DO UPDATE SET \
                     contracts_lapsed = space_stats.contracts_lapsed + excluded.contracts_lapsed",
                );
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            folded += spaces.len() as u64;
            if (spaces.len() as i64) < SPACES_PER_ROUND {
                return Ok(folded);
            }
        }
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "stats"))]
    async fn stats(&self, scope: &Scope) -> Result<Stats> {
        // Active contracts without counting them: the active ones, less
        // those whose expiry day has passed (folded, or not yet), less
        // today's that expired by now (one day of an index).
        let now = now_micros();
        let today = now / EXPIRY_DAY;
        let mut qb = QueryBuilder::<DB>::new("");
        qb.push(
            "SELECT CAST(COALESCE(SUM(spaces), 0) AS BIGINT) AS spaces, \
             CAST(COALESCE(SUM(products), 0) AS BIGINT) AS products, \
             CAST(COALESCE(SUM(issues), 0) AS BIGINT) AS issues, \
             CAST(COALESCE(SUM(ran), 0) AS BIGINT) AS ran, \
             CAST(COALESCE(SUM(passed), 0) AS BIGINT) AS passed, \
             CAST(COALESCE(SUM(active), 0) AS BIGINT) AS active, \
             (SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM (",
        );
        Self::push_expiry_rows(&mut qb, scope, today);
        // Today's expiries that have passed, over the index of active
        // contracts by expiry (one day of it).
        qb.push(") past) AS past, (SELECT count(*) FROM contracts c");
        Self::push_scope(&mut qb, scope);
        qb.push(" AND c.status = 'active' AND c.expires_at >= ");
        qb.push_bind(today * EXPIRY_DAY);
        qb.push(" AND c.expires_at <= ");
        qb.push_bind(now);
        qb.push(
            ") AS expired_today, COALESCE((SELECT m.members FROM organization_member_counts m \
             WHERE m.organization_id = ",
        );
        qb.push_bind(scope.org);
        qb.push("), 0) AS users FROM (");
        Self::push_counter_rows(
            &mut qb,
            scope,
            "st.products_active AS products, \
             st.issues_status_open + st.issues_status_in_progress AS issues, \
             st.checks_ran AS ran, st.checks_passed AS passed, \
             st.contracts_active - st.contracts_lapsed AS active",
            true,
        );
        qb.push(") summed");
        let mut conn = self.read().await?;
        let row = qb.build().fetch_one(&mut *conn).await?;
        let ran: i64 = row.try_get("ran")?;
        let passed: i64 = row.try_get("passed")?;
        let expired_today: i64 = row.try_get("expired_today")?;
        let active: i64 = row.try_get("active")?;
        let past: i64 = row.try_get("past")?;
        let active_contracts = active - past - expired_today;
        if active_contracts < 0 {
            tracing::error!(
                active,
                past,
                expired_today,
                "contract counters disagree; answering 0"
            );
        }
        let active_contracts = active_contracts.max(0);
        Ok(Stats {
            total_spaces: row.try_get("spaces")?,
            total_products: row.try_get("products")?,
            total_users: row.try_get("users")?,
            quality_score: (ran > 0).then(|| passed as f64 / ran as f64),
            open_issues: row.try_get("issues")?,
            active_contracts,
        })
    }
}
