//! The SQL shared by both backends, as ordinary generic Rust over a
//! [`Dialect`]: both accept `$n` placeholders and the same schema shape, and
//! what differs (row locks, text search, prefix matches, migrations) is
//! declared by the dialect. The bounds below say which Rust types each
//! backend binds and decodes; SQLite and PostgreSQL meet them.
//!
//! Every change runs in one transaction that reads the actor's rights from
//! rows it locks (`org_guard`, `space_guard`), makes the change and appends
//! its audit event (`append`), so a change never commits without its event
//! and a revoked right cannot complete a change.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type};
use uuid::Uuid;

use super::dialect::{Dialect, SqlStore};
use super::snapshot::Tag;
use crate::domain::access::{Caller, OrgAction, SpaceAction, check_org, check_space};
use crate::domain::audit::{self, Actor, Draft, Event, EventFilter, Head};
use crate::domain::labels::{LabelFilter, Labels};
use crate::domain::model::{
    Accepted, Invitation, InvitationState, Member, OrgAccess, Organization, OrganizationDetails,
    OrganizationSummary, Page, Space, SpaceAccess, SpaceRef, User, check_etag, etag,
};
use crate::domain::page::PageRequest;
use crate::domain::types::{Agent, AgentStatus, Email, OrgRole, SpaceRole, Visibility};
use crate::domain::{Error, Result};
use crate::progress::Reporter;
use crate::store::{
    MAX_EMBEDDED, MAX_EMBEDDED_LISTED, MemberFilter, NewInvitation, NewOrganization, NewSpace,
    OrganizationChanges, OrganizationFilter, RequestRecord, SpaceChanges, SpaceFilter, StorageState, Store,
    is_unique_violation, last_admin, now_micros, targets,
};

/// Which resource's labels.
#[derive(Debug, Clone, Copy)]
pub(super) enum LabelOwner {
    Organization,
    Space,
}

pub(super) const INVITATION_SELECT: &str = "SELECT i.id, i.organization_id, o.slug AS organization_slug, i.email, \
     i.role, i.state, i.invited_by, i.created_at, i.expires_at, i.accepted_at, i.revoked_at \
     FROM invitations i JOIN organizations o ON o.id = i.organization_id";

/// The one audit event of a batch of additions: how many, and who with
/// which role.
fn batch_added(actor: &Actor, action: &'static str, target: String, added: &[Member]) -> Draft {
    let listed: Vec<serde_json::Value> = added
        .iter()
        .map(|m| serde_json::json!({"user_id": m.user_id.to_string(), "email": m.email, "role": m.role}))
        .collect();
    Draft::success(actor, action, target)
        .with("count", added.len().to_string())
        .with("members", serde_json::Value::Array(listed).to_string())
}

/// The one audit event of a batch of removals: how many, and who had which
/// role.
fn batch_removed(
    actor: &Actor,
    action: &'static str,
    target: String,
    users: &[Uuid],
    roles: &[String],
) -> Draft {
    let listed: Vec<serde_json::Value> = users
        .iter()
        .zip(roles)
        .map(|(u, r)| serde_json::json!({"user_id": u.to_string(), "role": r}))
        .collect();
    Draft::success(actor, action, target)
        .with("count", roles.len().to_string())
        .with("members", serde_json::Value::Array(listed).to_string())
}

/// Which memberships: of organizations or of spaces.
#[derive(Debug, Clone, Copy)]
pub(super) enum MemberTable {
    Organization,
    Space,
}

impl MemberTable {
    /// The table, its owner column and the select of a member.
    fn sql(self) -> (&'static str, &'static str, &'static str) {
        match self {
            MemberTable::Organization => ("memberships", "organization_id", MEMBER_SELECT),
            MemberTable::Space => ("space_members", "space_id", SPACE_MEMBER_SELECT),
        }
    }
}

pub(super) use super::dialect::Tx;

/// GetOrganization in one statement: the organization with the caller's
/// role and the member and space counts (kind `o`), its newest 1,000
/// spaces (`s`) and its newest 1,000 members (`m`), as one union of rows with the columns of all three
/// (NULL where a kind has none), so each kind decodes as everywhere else.
/// Read in one statement, the parts are one consistent state. `$1` is the
/// slug, `$2` the caller.
fn view_sql() -> sqlx::AssertSqlSafe<&'static str> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        // Each column with its type, for the NULLs of the kinds without it
        // (PostgreSQL resolves a union's types pair by pair).
        const COLUMNS: [(&str, &str); 23] = [
            ("id", "UUID"),
            ("name", "TEXT"),
            ("slug", "TEXT"),
            ("description", "TEXT"),
            ("visibility", "TEXT"),
            ("repo", "TEXT"),
            ("agent_id", "TEXT"),
            ("agent_status", "TEXT"),
            ("agent_autonomy", "INTEGER"),
            ("organization_id", "UUID"),
            ("created_at", "BIGINT"),
            ("updated_at", "BIGINT"),
            ("labels", "TEXT"),
            ("version", "BIGINT"),
            ("deleted_at", "BIGINT"),
            ("purge_at", "BIGINT"),
            ("role", "TEXT"),
            ("user_count", "BIGINT"),
            ("space_count", "BIGINT"),
            ("user_id", "UUID"),
            ("email", "TEXT"),
            ("display_name", "TEXT"),
            ("joined_at", "BIGINT"),
        ];
        let branch = |kind: &str, alias: &str, own: &[&str], extra: &[(&str, &str)], from: &str| {
            let list: Vec<String> = COLUMNS
                .iter()
                .map(|(c, ty)| {
                    let expr = if let Some((_, e)) = extra.iter().find(|(name, _)| name == c) {
                        (*e).to_owned()
                    } else if own.contains(c) {
                        format!("{alias}.{c}")
                    } else {
                        format!("CAST(NULL AS {ty})")
                    };
                    format!("{expr} AS {c}")
                })
                .collect();
            format!("SELECT '{kind}' AS kind, {} FROM {from}", list.join(", "))
        };
        let org = "(SELECT id FROM organizations WHERE slug = $1 AND deleted_at IS NULL)";
        let head = branch(
            "o",
            "o",
            &[
                "id",
                "name",
                "slug",
                "description",
                "created_at",
                "updated_at",
                "labels",
                "version",
                "deleted_at",
                "purge_at",
            ],
            &[
                ("role", "m.role"),
                (
                    "user_count",
                    "COALESCE((SELECT c.members FROM organization_member_counts c \
                     WHERE c.organization_id = o.id), 0)",
                ),
                (
                    "space_count",
                    "(SELECT CAST(COALESCE(SUM(c.spaces), 0) AS BIGINT) FROM organization_stats c \
                     WHERE c.organization_id = o.id)",
                ),
            ],
            "organizations o LEFT JOIN memberships m ON m.organization_id = o.id AND m.user_id = $2 \
             WHERE o.slug = $1 AND o.deleted_at IS NULL",
        );
        let spaces = branch(
            "s",
            "s",
            &[
                "id",
                "name",
                "slug",
                "description",
                "visibility",
                "repo",
                "agent_id",
                "agent_status",
                "agent_autonomy",
                "organization_id",
                "created_at",
                "updated_at",
                "labels",
                "version",
                "deleted_at",
                "purge_at",
            ],
            &[],
            &format!(
                "(SELECT * FROM spaces ss WHERE ss.organization_id = {org} \
                 ORDER BY ss.created_at DESC, ss.id DESC LIMIT {MAX_EMBEDDED}) s"
            ),
        );
        let members = branch(
            "m",
            "x",
            &["user_id", "email", "display_name", "role", "joined_at", "version"],
            &[],
            &format!(
                "(SELECT u.id AS user_id, u.email, u.display_name, mm.role, mm.created_at AS joined_at, \
                 mm.version FROM memberships mm JOIN users u ON u.id = mm.user_id \
                 WHERE mm.organization_id = {org} \
                 ORDER BY mm.created_at DESC, mm.user_id DESC LIMIT {MAX_EMBEDDED}) x"
            ),
        );
        format!("{head} UNION ALL {spaces} UNION ALL {members}")
    });
    sqlx::AssertSqlSafe(sql.as_str())
}

/// Whether a change recorded as `action` changes what the snapshot holds
/// of its organization: the organization itself, its members (and the
/// roles that decide access), its spaces. Content, space members and
/// invitations that were not accepted do not.
fn touches_snapshot(action: &str) -> bool {
    action.starts_with("organization.")
        || action.starts_with("member.")
        || action.starts_with("space.")
        || action == "invitation.accept"
}

pub(super) const ORG_COLUMNS: &str = "o.id, o.name, o.slug, o.description, o.created_at, o.updated_at, o.labels, o.version, o.deleted_at, o.purge_at";

pub(super) const SPACE_COLUMNS: &str = "s.id, s.name, s.slug, s.description, s.visibility, s.repo, s.agent_id, \
     s.agent_status, s.agent_autonomy, s.organization_id, s.created_at, s.updated_at, s.labels, s.version, \
     s.deleted_at, s.purge_at";

/// Which spaces a ListSpaces caller reaches through its organizations.
enum SpaceReach {
    /// Every space (a superadmin, no organization filter).
    All,
    /// These (organization, visibility) pairs: one index walk each.
    Pairs(Vec<(Uuid, &'static str)>),
    /// A caller in more organizations than `MAX_SPACE_WALKS` walks: one
    /// join over its memberships (sorted as a whole, not merged).
    Joined(Uuid),
}

/// The most index walks one ListSpaces merges (SQLite allows 500 terms in
/// a compound statement; each walk binds a few parameters).
const MAX_SPACE_WALKS: usize = 64;

pub(super) const SPACE_RETURNING: &str = "id, name, slug, description, visibility, repo, agent_id, agent_status, \
     agent_autonomy, organization_id, created_at, updated_at, labels, version, deleted_at, purge_at";

pub(super) const MEMBER_SELECT: &str = "SELECT u.id AS user_id, u.email, u.display_name, m.role, m.created_at AS joined_at, m.version \
     FROM memberships m JOIN users u ON u.id = m.user_id";

pub(super) const SPACE_MEMBER_SELECT: &str = "SELECT u.id AS user_id, u.email, u.display_name, m.role, m.created_at AS joined_at, m.version \
     FROM space_members m JOIN users u ON u.id = m.user_id";

pub(super) const EVENT_COLUMNS: &str =
    "organization_id, seq, id, actor, action, result, target, metadata, created_at, prev_hash, hash";

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
    pub(super) fn decode_err(what: &str, value: &str) -> sqlx::Error {
        sqlx::Error::Decode(format!("unexpected {what} in database: {value}").into())
    }

    pub(super) fn user_from(row: &DB::Row) -> std::result::Result<User, sqlx::Error> {
        Ok(User {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            display_name: row.try_get("display_name")?,
            is_superadmin: row.try_get("is_superadmin")?,
            created_at: row.try_get("created_at")?,
        })
    }

    pub(super) fn labels_from(row: &DB::Row) -> std::result::Result<Labels, sqlx::Error> {
        let raw: String = row.try_get("labels")?;
        Labels::from_json(&raw).map_err(|_| Self::decode_err("labels", &raw))
    }

    pub(super) fn org_from(row: &DB::Row) -> std::result::Result<Organization, sqlx::Error> {
        let id = row.try_get("id")?;
        let created_at = row.try_get("created_at")?;
        Ok(Organization {
            id,
            name: row.try_get("name")?,
            slug: row.try_get("slug")?,
            description: row.try_get("description")?,
            created_at,
            updated_at: row.try_get("updated_at")?,
            labels: Self::labels_from(row)?,
            etag: etag(id, created_at, row.try_get("version")?),
            deleted_at: row.try_get("deleted_at")?,
            purge_at: row.try_get("purge_at")?,
        })
    }

    pub(super) fn space_from(row: &DB::Row) -> std::result::Result<Space, sqlx::Error> {
        let visibility: String = row.try_get("visibility")?;
        let agent_id: Option<String> = row.try_get("agent_id")?;
        let agent = match agent_id {
            None => None,
            Some(agent_id) => {
                let status: String = row.try_get("agent_status")?;
                let autonomy_level: i32 = row.try_get("agent_autonomy")?;
                Some(Agent {
                    agent_id,
                    status: status
                        .parse::<AgentStatus>()
                        .map_err(|_| Self::decode_err("agent status", &status))?,
                    autonomy_level,
                })
            }
        };
        let id = row.try_get("id")?;
        let created_at = row.try_get("created_at")?;
        Ok(Space {
            id,
            name: row.try_get("name")?,
            slug: row.try_get("slug")?,
            description: row.try_get("description")?,
            visibility: visibility
                .parse::<Visibility>()
                .map_err(|_| Self::decode_err("visibility", &visibility))?,
            repo: row.try_get("repo")?,
            agent,
            organization_id: row.try_get("organization_id")?,
            created_at,
            updated_at: row.try_get("updated_at")?,
            labels: Self::labels_from(row)?,
            etag: etag(id, created_at, row.try_get("version")?),
            deleted_at: row.try_get("deleted_at")?,
            purge_at: row.try_get("purge_at")?,
        })
    }

    pub(super) fn member_from(row: &DB::Row) -> std::result::Result<Member, sqlx::Error> {
        let user_id = row.try_get("user_id")?;
        let joined_at = row.try_get("joined_at")?;
        Ok(Member {
            user_id,
            email: row.try_get("email")?,
            display_name: row.try_get("display_name")?,
            role: row.try_get("role")?,
            joined_at,
            etag: etag(user_id, joined_at, row.try_get("version")?),
        })
    }

    pub(super) fn org_role(raw: Option<String>) -> std::result::Result<Option<OrgRole>, sqlx::Error> {
        raw.map(|r| {
            r.parse::<OrgRole>()
                .map_err(|_| Self::decode_err("organization role", &r))
        })
        .transpose()
    }

    pub(super) fn space_role(raw: Option<String>) -> std::result::Result<Option<SpaceRole>, sqlx::Error> {
        raw.map(|r| {
            r.parse::<SpaceRole>()
                .map_err(|_| Self::decode_err("space role", &r))
        })
        .transpose()
    }

    pub(super) fn org_slug_taken(slug: &str) -> Error {
        Error::already_exists(
            "ORG_ALREADY_EXISTS",
            format!("an organization with slug '{slug}' already exists"),
        )
        .with("slug", slug)
    }

    pub(super) fn space_slug_taken(slug: &str) -> Error {
        Error::already_exists(
            "SPACE_ALREADY_EXISTS",
            format!("a space with slug '{slug}' already exists"),
        )
        .with("slug", slug)
    }

    pub(super) fn space_not_found(id: Uuid) -> Error {
        Error::not_found("SPACE_NOT_FOUND", format!("space {id} not found")).with("space_id", id.to_string())
    }

    pub(super) fn member_not_found(user: Uuid) -> Error {
        Error::not_found("MEMBER_NOT_FOUND", format!("user {user} is not a member"))
            .with("user_id", user.to_string())
    }

    /// Appends the keyset condition and the order/limit of a newest-first
    /// list over `created`/`id` columns.
    /// `aggregate` (a count or a sum) over `table`'s rows of each of the
    /// organizations, by organization id (absent: no rows).
    async fn sum_by_org(
        conn: &mut DB::Connection,
        aggregate: &str,
        table: &str,
        orgs: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, i64>> {
        let mut counts = std::collections::HashMap::new();
        if orgs.is_empty() {
            return Ok(counts);
        }
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT organization_id, CAST({aggregate} AS BIGINT) AS n FROM {table} WHERE organization_id IN ("
        ));
        let mut ids = qb.separated(", ");
        for org in orgs {
            ids.push_bind(*org);
        }
        qb.push(") GROUP BY organization_id");
        for row in qb.build().fetch_all(&mut *conn).await? {
            counts.insert(row.try_get("organization_id")?, row.try_get("n")?);
        }
        Ok(counts)
    }

    /// `(s.organization_id = o AND s.visibility = v)` for each of the
    /// (organization, visibility) pairs, into an OR list.
    fn push_pairs(
        or: &mut sqlx::query_builder::Separated<'_, DB, &'static str>,
        pairs: &[(Uuid, &'static str)],
    ) {
        for (org, visibility) in pairs {
            or.push("(s.organization_id = ");
            or.push_bind_unseparated(*org);
            or.push_unseparated(" AND s.visibility = ");
            or.push_bind_unseparated(*visibility);
            or.push_unseparated(")");
        }
    }

    pub(super) fn push_page(qb: &mut QueryBuilder<DB>, created: &str, id: &str, page: &PageRequest) {
        if let Some(after) = page.after {
            qb.push(format!(" AND ({created}, {id}) < ("));
            qb.push_bind(after.created_at);
            qb.push(", ");
            qb.push_bind(after.id);
            qb.push(")");
        }
        qb.push(format!(" ORDER BY {created} DESC, {id} DESC LIMIT "));
        qb.push_bind(page.fetch());
        qb.push(" OFFSET ");
        qb.push_bind(page.offset());
    }

    pub(super) fn page_of<T>(
        page: &PageRequest,
        rows: Vec<T>,
        total: i64,
        cursor: impl Fn(&T) -> crate::domain::page::Cursor,
    ) -> Page<T> {
        let (items, next_page_token) = page.finish(rows, cursor);
        Page {
            items,
            total,
            page: page.page,
            size: page.size,
            next_page_token,
        }
    }

    /// Finds or creates the user with this email inside a transaction.
    pub(super) async fn upsert_user(tx: &mut Tx<DB>, email: &Email) -> Result<Uuid> {
        sqlx::query(
            "INSERT INTO users (id, email, display_name, is_superadmin, created_at) \
             VALUES ($1, $2, '', $3, $4) ON CONFLICT (email) DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(email.as_str().to_owned())
        .bind(false)
        .bind(now_micros())
        .execute(&mut **tx)
        .await?;
        let id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(email.as_str().to_owned())
            .fetch_one(&mut **tx)
            .await?;
        Ok(id)
    }

    pub(super) async fn org_member(tx: &mut Tx<DB>, org: Uuid, user: Uuid) -> Result<Member> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{MEMBER_SELECT} WHERE m.organization_id = $1 AND m.user_id = $2"
        )))
        .bind(org)
        .bind(user)
        .fetch_optional(&mut **tx)
        .await?;
        row.as_ref()
            .map(Self::member_from)
            .transpose()?
            .ok_or_else(|| Self::member_not_found(user))
    }

    pub(super) async fn space_member(tx: &mut Tx<DB>, space: Uuid, user: Uuid) -> Result<Member> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SPACE_MEMBER_SELECT} WHERE m.space_id = $1 AND m.user_id = $2"
        )))
        .bind(space)
        .bind(user)
        .fetch_optional(&mut **tx)
        .await?;
        row.as_ref()
            .map(Self::member_from)
            .transpose()?
            .ok_or_else(|| Self::member_not_found(user))
    }

    /// Locks the organization row (PostgreSQL) so that membership changes
    /// of one organization run one after another. Returns the user's
    /// current role.
    pub(super) async fn lock_membership(tx: &mut Tx<DB>, org: Uuid, user: Uuid) -> Result<Option<OrgRole>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM organizations WHERE id = $1{}",
            DB::LOCK
        )))
        .bind(org)
        .fetch_optional(&mut **tx)
        .await?;
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM memberships WHERE organization_id = $1 AND user_id = $2")
                .bind(org)
                .bind(user)
                .fetch_optional(&mut **tx)
                .await?;
        Ok(Self::org_role(role)?)
    }

    /// Keeps the organization carried by a space's content in step with
    /// the space.
    pub(super) async fn set_content_org(tx: &mut Tx<DB>, space: Uuid, org: Option<Uuid>) -> Result<()> {
        for table in crate::store::CONTENT_TABLES {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET organization_id = $1 WHERE space_id = $2"
            )))
            .bind(org)
            .bind(space)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    pub(super) async fn admin_count(tx: &mut Tx<DB>, org: Uuid) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM memberships WHERE organization_id = $1 AND role = 'admin'",
        )
        .bind(org)
        .fetch_one(&mut **tx)
        .await?)
    }

    pub(super) fn event_from(row: &DB::Row) -> std::result::Result<Event, sqlx::Error> {
        let metadata: String = row.try_get("metadata")?;
        Ok(Event {
            organization_id: row.try_get("organization_id")?,
            seq: row.try_get("seq")?,
            id: row.try_get("id")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            result: row.try_get("result")?,
            target: row.try_get("target")?,
            metadata: Event::parse_metadata(&metadata).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            created_at: row.try_get("created_at")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        })
    }

    /// The actor as this transaction sees them: the superadmin flag is
    /// read here, not trusted from the request.
    pub(super) async fn caller_in(tx: &mut Tx<DB>, actor: &Actor) -> Result<Caller> {
        if actor.is_system() {
            return Ok(Caller {
                user_id: actor.user_id,
                email: String::new(),
                is_superadmin: true,
            });
        }
        let row = sqlx::query("SELECT id, email, is_superadmin FROM users WHERE id = $1")
            .bind(actor.user_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| Error::unauthenticated("the caller's account no longer exists"))?;
        Ok(Caller {
            user_id: row.try_get("id")?,
            email: row.try_get("email")?,
            is_superadmin: row.try_get("is_superadmin")?,
        })
    }

    /// Locks the organization with this slug (a row lock on PostgreSQL;
    /// SQLite runs one writer) and reads the user's role in it, both in
    /// the transaction that will make the change.
    pub(super) async fn lock_org(tx: &mut Tx<DB>, slug: &str, user: Uuid) -> Result<OrgAccess> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, name, slug, description, created_at, updated_at, labels, version, deleted_at, purge_at \
             FROM organizations WHERE slug = $1 AND deleted_at IS NULL{}",
            DB::LOCK
        )))
        .bind(slug.to_owned())
        .fetch_optional(&mut **tx)
        .await?;
        let org = row
            .as_ref()
            .map(Self::org_from)
            .transpose()?
            .ok_or_else(|| Error::org_not_found(slug))?;
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM memberships WHERE organization_id = $1 AND user_id = $2")
                .bind(org.id)
                .bind(user)
                .fetch_optional(&mut **tx)
                .await?;
        Ok(OrgAccess {
            org,
            role: Self::org_role(role)?,
        })
    }

    /// Locks the space (PostgreSQL) and reads what the user holds in it
    /// and in its organization, in the transaction of the change.
    pub(super) async fn lock_space_access(tx: &mut Tx<DB>, space: Uuid, user: Uuid) -> Result<SpaceAccess> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SPACE_RETURNING} FROM spaces WHERE id = $1 AND deleted_at IS NULL{}",
            DB::LOCK
        )))
        .bind(space)
        .fetch_optional(&mut **tx)
        .await?;
        let space = row
            .as_ref()
            .map(Self::space_from)
            .transpose()?
            .ok_or_else(|| Self::space_not_found(space))?;
        let roles = sqlx::query(
            "SELECT (SELECT role FROM space_members WHERE space_id = $1 AND user_id = $2) AS space_role, \
             (SELECT role FROM memberships WHERE organization_id = $3 AND user_id = $2) AS org_role",
        )
        .bind(space.id)
        .bind(user)
        .bind(space.organization_id)
        .fetch_one(&mut **tx)
        .await?;
        Ok(SpaceAccess {
            space_role: Self::space_role(roles.try_get("space_role")?)?,
            org_role: Self::org_role(roles.try_get("org_role")?)?,
            space,
        })
    }

    /// Appends an event to the chain of `org` inside the transaction of
    /// the change it records. Taking the chain's head (a row lock on
    /// PostgreSQL) orders the appends of one chain; every transaction
    /// takes it last, after the rows it changes.
    pub(super) async fn append(&self, tx: &mut Tx<DB>, org: Uuid, draft: Draft) -> Result<()> {
        if draft.result == audit::Outcome::Success && touches_snapshot(draft.action) {
            tx.touch(Tag::Org(org));
        }
        if !self.audit_trail {
            return Ok(());
        }
        let head = sqlx::query(
            "INSERT INTO audit_heads (organization_id, seq, hash) VALUES ($1, 0, '0') \
             ON CONFLICT (organization_id) DO UPDATE SET seq = audit_heads.seq RETURNING seq, hash",
        )
        .bind(org)
        .fetch_one(&mut **tx)
        .await?;
        let seq: i64 = head.try_get("seq")?;
        let prev: String = head.try_get("hash")?;
        let event = Event::seal(draft, org, seq + 1, &prev, now_micros());
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        )))
        .bind(event.organization_id)
        .bind(event.seq)
        .bind(event.id)
        .bind(event.actor)
        .bind(event.action.clone())
        .bind(event.result.clone())
        .bind(event.target.clone())
        .bind(event.metadata_json())
        .bind(event.created_at)
        .bind(event.prev_hash.clone())
        .bind(event.hash.clone())
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE audit_heads SET seq = $2, hash = $3 WHERE organization_id = $1")
            .bind(org)
            .bind(event.seq)
            .bind(event.hash.clone())
            .execute(&mut **tx)
            .await?;
        // Counted before the commit: a change whose commit fails is counted
        // too (rare; the counter is a rate, not a ledger).
        self.metrics.audit_appends.inc();
        Ok(())
    }

    /// Records a refused attempt, commits that record alone, and returns
    /// the refusal.
    pub(super) async fn refuse<T>(
        &self,
        mut tx: Tx<DB>,
        actor: &Actor,
        org: Uuid,
        draft: Draft,
        error: Error,
    ) -> Result<T> {
        self.append(&mut tx, org, draft.with("reason", error.reason))
            .await?;
        if let Some(key) = actor.request {
            sqlx::query("UPDATE request_ids SET error = $3 WHERE caller = $1 AND request_id = $2")
                .bind(actor.user_id)
                .bind(key.request_id)
                .bind(error.to_json())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Err(error)
    }

    /// Begins the transaction of a change. With a request id, its record
    /// is claimed first: a retry whose first attempt committed (or is
    /// committing: the claim waits for it) gets `REQUEST_REPLAY` and
    /// answers from the record instead.
    pub(super) async fn begin_change(&self, actor: &Actor) -> Result<Tx<DB>> {
        let mut tx = self.write_tx().await?;
        if let Some(key) = actor.request {
            let now = now_micros();
            sqlx::query("DELETE FROM request_ids WHERE caller = $1 AND request_id = $2 AND created_at < $3")
                .bind(actor.user_id)
                .bind(key.request_id)
                .bind(now - crate::store::REQUEST_ID_TTL_MICROS)
                .execute(&mut *tx)
                .await?;
            let claimed = sqlx::query(
                "INSERT INTO request_ids (caller, request_id, rpc, fingerprint, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (caller, request_id) DO NOTHING",
            )
            .bind(actor.user_id)
            .bind(key.request_id)
            .bind(actor.rpc)
            .bind(key.fingerprint_hex())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if DB::rows_affected(&claimed) == 0 {
                return Err(crate::store::request_replay());
            }
        }
        Ok(tx)
    }

    /// Commits a change, recording its outcome with its request id (in the
    /// same transaction: a committed change always has its answer).
    pub(super) async fn finish<T: serde::Serialize>(
        &self,
        mut tx: Tx<DB>,
        actor: &Actor,
        outcome: &T,
    ) -> Result<()> {
        if let Some(key) = actor.request {
            let json = serde_json::to_string(outcome)
                .map_err(|e| Error::internal("recording a change's outcome", e))?;
            sqlx::query("UPDATE request_ids SET outcome = $3 WHERE caller = $1 AND request_id = $2")
                .bind(actor.user_id)
                .bind(key.request_id)
                .bind(json)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Begins the transaction of an organization change: the caller, the
    /// locked organization and the caller's role in it, and the decision,
    /// all inside it. A refusal is recorded as a `denied` event.
    pub(super) async fn org_guard(
        &self,
        actor: &Actor,
        slug: &str,
        action: OrgAction,
        attempt: &'static str,
    ) -> Result<(Tx<DB>, Caller, OrgAccess)> {
        let mut tx = self.begin_change(actor).await?;
        let caller = Self::caller_in(&mut tx, actor).await?;
        let access = Self::lock_org(&mut tx, slug, caller.user_id).await?;
        if let Err(e) = check_org(&caller, &access, action) {
            let draft = Draft::denied(actor, attempt, targets::org(access.org.id));
            return self.refuse(tx, actor, access.org.id, draft, e).await;
        }
        Ok((tx, caller, access))
    }

    /// The same for a space change; the chain is the one of the space's
    /// organization (or of spaces without one).
    pub(super) async fn space_guard(
        &self,
        actor: &Actor,
        space: Uuid,
        action: SpaceAction,
        attempt: &'static str,
        target: impl FnOnce(Uuid) -> String,
    ) -> Result<(Tx<DB>, Caller, SpaceAccess)> {
        let mut tx = self.begin_change(actor).await?;
        let caller = Self::caller_in(&mut tx, actor).await?;
        let access = Self::lock_space_access(&mut tx, space, caller.user_id).await?;
        if let Err(e) = check_space(&caller, &access, action) {
            let chain = access.space.organization_id.unwrap_or(audit::SYSTEM_CHAIN);
            return self
                .refuse(tx, actor, chain, Draft::denied(actor, attempt, target(space)), e)
                .await;
        }
        Ok((tx, caller, access))
    }

    /// Replaces the labels of an organization or a space: the JSON on its
    /// row and the rows its label filters search.
    pub(super) async fn set_labels(
        tx: &mut Tx<DB>,
        owner: LabelOwner,
        id: Uuid,
        labels: &Labels,
    ) -> Result<()> {
        let (table, side, column) = match owner {
            LabelOwner::Organization => ("organizations", "organization_labels", "organization_id"),
            LabelOwner::Space => ("spaces", "space_labels", "space_id"),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET labels = $2 WHERE id = $1"
        )))
        .bind(id)
        .bind(labels.to_json())
        .execute(&mut **tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {side} WHERE {column} = $1"
        )))
        .bind(id)
        .execute(&mut **tx)
        .await?;
        if labels.is_empty() {
            return Ok(());
        }
        let mut qb = QueryBuilder::<DB>::new(format!("INSERT INTO {side} ({column}, key, value) "));
        qb.push_values(labels.iter(), |mut row, (key, value)| {
            row.push_bind(id)
                .push_bind(key.to_owned())
                .push_bind(value.to_owned());
        });
        qb.build().execute(&mut **tx).await?;
        Ok(())
    }

    /// Pushes `AND` conditions requiring every label of `filter` on the
    /// rows of `alias` (an organization or a space), served by the
    /// (key, value) index of the side table.
    pub(super) fn push_label_filter(
        qb: &mut QueryBuilder<DB>,
        owner: LabelOwner,
        alias: &str,
        filter: &LabelFilter,
    ) {
        let (side, column) = match owner {
            LabelOwner::Organization => ("organization_labels", "organization_id"),
            LabelOwner::Space => ("space_labels", "space_id"),
        };
        for (key, value) in filter.iter() {
            qb.push(format!(
                " AND {alias}.id IN (SELECT l.{column} FROM {side} l WHERE l.key = "
            ));
            qb.push_bind(key.to_owned());
            qb.push(" AND l.value = ");
            qb.push_bind(value.to_owned());
            qb.push(")");
        }
    }

    /// ListSpaces with `show_deleted` (an administrator's view, rare):
    /// the visibility rule as one condition over every space.
    async fn list_spaces_with_deleted(
        conn: &mut DB::Connection,
        filter: &SpaceFilter,
        page: PageRequest,
    ) -> Result<Page<Space>> {
        let build = |select: &str| {
            let mut qb = QueryBuilder::<DB>::new(select);
            qb.push(" FROM spaces s WHERE 1 = 1");
            if let Some(user) = filter.visible_to {
                // Space members; organization admins; organization
                // members for spaces that are not restricted.
                qb.push(" AND (s.id IN (SELECT space_id FROM space_members WHERE user_id = ");
                qb.push_bind(user);
                qb.push(
                    ") OR s.organization_id IN (SELECT organization_id FROM memberships WHERE user_id = ",
                );
                qb.push_bind(user);
                qb.push(" AND (role = 'admin' OR s.visibility = 'organization')))");
            }
            if let Some(org) = filter.organization_id {
                qb.push(" AND s.organization_id = ");
                qb.push_bind(org);
            }
            if let Some(term) = &filter.search {
                DB::push_search(&mut qb, "s", "spaces_fts", ["name", "slug"], term);
            }
            Self::push_label_filter(&mut qb, LabelOwner::Space, "s", &filter.labels);
            match (filter.show_deleted, filter.visible_to) {
                (false, _) => {
                    qb.push(" AND s.deleted_at IS NULL");
                }
                // Deleted spaces are listed to their admins.
                (true, Some(user)) => {
                    qb.push(
                        " AND (s.deleted_at IS NULL OR s.id IN \
                         (SELECT space_id FROM space_members WHERE role = 'admin' AND user_id = ",
                    );
                    qb.push_bind(user);
                    qb.push("))");
                }
                (true, None) => {}
            }
            qb
        };
        let total: i64 = build("SELECT count(*)")
            .build_query_scalar()
            .persistent(filter.search.is_none())
            .fetch_one(&mut *conn)
            .await?;
        let mut qb = build(&format!("SELECT {SPACE_COLUMNS}"));
        Self::push_page(&mut qb, "s.created_at", "s.id", &page);
        let rows = qb
            .build()
            .persistent(filter.search.is_none())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(Self::space_from)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self::page_of(&page, rows, total, Space::cursor))
    }

    /// A new version of the organization: its etag changes.
    pub(super) async fn bump_org(tx: &mut Tx<DB>, org: Uuid) -> Result<()> {
        sqlx::query("UPDATE organizations SET version = version + 1 WHERE id = $1")
            .bind(org)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// A new version of the space: its etag changes.
    pub(super) async fn bump_space(tx: &mut Tx<DB>, space: Uuid) -> Result<()> {
        sqlx::query("UPDATE spaces SET version = version + 1 WHERE id = $1")
            .bind(space)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Inserts memberships for every entry, or none: users are found or
    /// created in one statement, an entry already a member is ALREADY_EXISTS
    /// naming it. Returns the members in entry order.
    pub(super) async fn insert_members(
        tx: &mut Tx<DB>,
        table: MemberTable,
        owner: Uuid,
        entries: &[(&Email, &'static str)],
    ) -> Result<Vec<Member>> {
        let (members, column, select) = table.sql();
        let now = now_micros();
        let mut qb = QueryBuilder::<DB>::new(
            "INSERT INTO users (id, email, display_name, is_superadmin, created_at) ",
        );
        qb.push_values(entries, |mut row, (email, _)| {
            row.push_bind(Uuid::now_v7())
                .push_bind(email.as_str().to_owned())
                .push_bind("")
                .push_bind(false)
                .push_bind(now);
        });
        qb.push(" ON CONFLICT (email) DO NOTHING");
        qb.build().execute(&mut **tx).await?;
        let mut qb = QueryBuilder::<DB>::new("SELECT id, email FROM users WHERE email IN (");
        let mut list = qb.separated(", ");
        for (email, _) in entries {
            list.push_bind(email.as_str().to_owned());
        }
        qb.push(")");
        let mut ids = std::collections::HashMap::with_capacity(entries.len());
        for row in qb.build().fetch_all(&mut **tx).await? {
            let email: String = row.try_get("email")?;
            ids.insert(email, row.try_get::<Uuid, _>("id")?);
        }
        let users = entries
            .iter()
            .map(|(email, _)| {
                ids.get(email.as_str()).copied().ok_or_else(|| {
                    Error::internal("batch add", format!("user {email} not found after insert"))
                })
            })
            .collect::<Result<Vec<Uuid>>>()?;
        let mut qb = QueryBuilder::<DB>::new(format!("SELECT user_id FROM {members} WHERE {column} = "));
        qb.push_bind(owner);
        Self::push_ids(&mut qb, " AND user_id IN (", &users);
        let existing: std::collections::HashSet<Uuid> = qb
            .build_query_scalar()
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .collect();
        if let Some(i) = users.iter().position(|u| existing.contains(u)) {
            let email = entries[i].0.as_str();
            return Err(Error::already_exists(
                "MEMBER_ALREADY_EXISTS",
                format!("entries[{i}]: {email} is already a member"),
            )
            .with("field", format!("entries[{i}].user_email"))
            .with("user_email", email));
        }
        let mut qb = QueryBuilder::<DB>::new(format!(
            "INSERT INTO {members} ({column}, user_id, role, created_at) "
        ));
        qb.push_values(users.iter().zip(entries), |mut row, (user, (_, role))| {
            row.push_bind(owner)
                .push_bind(*user)
                .push_bind(*role)
                .push_bind(now);
        });
        qb.build().execute(&mut **tx).await?;
        let mut qb = QueryBuilder::<DB>::new(format!("{select} WHERE m.{column} = "));
        qb.push_bind(owner);
        Self::push_ids(&mut qb, " AND m.user_id IN (", &users);
        let mut found = std::collections::HashMap::with_capacity(users.len());
        for row in qb.build().fetch_all(&mut **tx).await? {
            let member = Self::member_from(&row)?;
            found.insert(member.user_id, member);
        }
        users
            .iter()
            .map(|u| {
                found.remove(u).ok_or_else(|| {
                    Error::internal("batch add", format!("membership of {u} not found after insert"))
                })
            })
            .collect()
    }

    /// Deletes the memberships of every user, or none: a user who is not a
    /// member is NOT_FOUND naming the entry. Returns each removed role.
    pub(super) async fn delete_members(
        tx: &mut Tx<DB>,
        table: MemberTable,
        owner: Uuid,
        users: &[Uuid],
    ) -> Result<Vec<String>> {
        let (members, column, _) = table.sql();
        let mut qb =
            QueryBuilder::<DB>::new(format!("SELECT user_id, role FROM {members} WHERE {column} = "));
        qb.push_bind(owner);
        Self::push_ids(&mut qb, " AND user_id IN (", users);
        let mut roles = std::collections::HashMap::with_capacity(users.len());
        for row in qb.build().fetch_all(&mut **tx).await? {
            roles.insert(
                row.try_get::<Uuid, _>("user_id")?,
                row.try_get::<String, _>("role")?,
            );
        }
        let removed = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                roles
                    .remove(u)
                    .ok_or_else(|| Self::member_not_found(*u).with("field", format!("entries[{i}].user_id")))
            })
            .collect::<Result<Vec<String>>>()?;
        if matches!(table, MemberTable::Organization) {
            let admins_removed = removed
                .iter()
                .filter(|r| r.as_str() == OrgRole::Admin.as_str())
                .count() as i64;
            if admins_removed > 0 && Self::admin_count(tx, owner).await? <= admins_removed {
                return Err(last_admin());
            }
        }
        let mut qb = QueryBuilder::<DB>::new(format!("DELETE FROM {members} WHERE {column} = "));
        qb.push_bind(owner);
        Self::push_ids(&mut qb, " AND user_id IN (", users);
        qb.build().execute(&mut **tx).await?;
        Ok(removed)
    }

    /// `<prefix>$1, $2, ...)`: a list of ids.
    pub(super) fn push_ids(qb: &mut QueryBuilder<DB>, prefix: &str, ids: &[Uuid]) {
        qb.push(prefix);
        let mut list = qb.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        qb.push(")");
    }

    pub(super) fn invitation_from(row: &DB::Row) -> std::result::Result<Invitation, sqlx::Error> {
        let role: String = row.try_get("role")?;
        let state: String = row.try_get("state")?;
        Ok(Invitation {
            id: row.try_get("id")?,
            organization_id: row.try_get("organization_id")?,
            organization_slug: row.try_get("organization_slug")?,
            email: row.try_get("email")?,
            role: role
                .parse()
                .map_err(|_| Self::decode_err("invitation role", &role))?,
            stored: InvitationState::parse("state", &state)
                .map_err(|_| Self::decode_err("invitation state", &state))?,
            invited_by: row.try_get("invited_by")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            accepted_at: row.try_get("accepted_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }

    /// An invitation of an organization, locked for the change.
    pub(super) async fn lock_invitation(tx: &mut Tx<DB>, id: Uuid) -> Result<Invitation> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM invitations WHERE id = $1{}",
            DB::LOCK
        )))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{INVITATION_SELECT} WHERE i.id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        row.as_ref()
            .map(Self::invitation_from)
            .transpose()?
            .ok_or_else(|| {
                Error::not_found("INVITATION_NOT_FOUND", format!("invitation {id} not found"))
                    .with("invitation_id", id.to_string())
            })
    }

    pub(super) fn chain_of(space: &Space) -> Uuid {
        space.organization_id.unwrap_or(audit::SYSTEM_CHAIN)
    }
}

#[async_trait]
impl<DB> Store for SqlStore<DB>
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
    fn backend(&self) -> &'static str {
        DB::BACKEND
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "migrate"))]
    async fn migrate(&self, progress: &dyn Reporter) -> Result<()> {
        DB::migrate(self.writer(), progress).await
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "analyze"))]
    async fn analyze(&self) -> Result<()> {
        sqlx::query("ANALYZE").execute(self.writer()).await?;
        Ok(())
    }

    fn pool_stats(&self) -> Vec<crate::metrics::PoolStats> {
        let mut pools = vec![crate::metrics::PoolStats {
            name: "writer",
            size: self.writer().size(),
            idle: self.writer().num_idle(),
        }];
        if DB::CONCURRENT_WRITERS {
            // One pool serves reads and writes.
            pools[0].name = "main";
        } else {
            pools.push(crate::metrics::PoolStats {
                name: "reader",
                size: self.reader().size(),
                idle: self.reader().num_idle(),
            });
        }
        pools
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }

    fn snapshot_sync(&self) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        self.snapshot.enabled().then(|| DB::sync(self))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "user_by_email"))]
    async fn user_by_email(&self, email: &Email) -> Result<Option<User>> {
        if let Some(user) = self.snapshot.user(email.as_str()) {
            return Ok(Some(user));
        }
        let ticket = self.snapshot.ticket();
        let row = sqlx::query(
            "SELECT id, email, display_name, is_superadmin, created_at FROM users WHERE email = $1",
        )
        .bind(email.as_str().to_owned())
        .fetch_optional(&mut *self.read().await?)
        .await?;
        let user = row.as_ref().map(Self::user_from).transpose()?;
        if let Some(user) = &user {
            self.snapshot.put_user(ticket, user);
        }
        Ok(user)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "provision_user"))]
    async fn provision_user(&self, email: &Email, display_name: &str) -> Result<User> {
        let mut tx = self.write_tx().await?;
        let id = Self::upsert_user(&mut tx, email).await?;
        if !display_name.is_empty() {
            let named = sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2 AND display_name = ''")
                .bind(display_name.to_owned())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if DB::rows_affected(&named) > 0 {
                // The name shows in the organizations the user is in.
                let orgs: Vec<Uuid> =
                    sqlx::query_scalar("SELECT organization_id FROM memberships WHERE user_id = $1")
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                tx.touch(Tag::User(id));
                for org in orgs {
                    tx.touch(Tag::Org(org));
                }
            }
        }
        let row =
            sqlx::query("SELECT id, email, display_name, is_superadmin, created_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Self::user_from(&row)?)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "set_superadmin"))]
    async fn set_superadmin(&self, email: &Email, superadmin: bool) -> Result<User> {
        // Upkeep (at start, or `orgd superadmin`), not a change a caller
        // made: outside the change metrics.
        let mut tx = self.upkeep_tx().await?;
        let row = sqlx::query(
            "INSERT INTO users (id, email, display_name, is_superadmin, created_at) VALUES ($1, $2, '', $3, $4) \
             ON CONFLICT (email) DO UPDATE SET is_superadmin = excluded.is_superadmin \
             RETURNING id, email, display_name, is_superadmin, created_at",
        )
        .bind(Uuid::now_v7())
        .bind(email.as_str().to_owned())
        .bind(superadmin)
        .bind(now_micros())
        .fetch_one(&mut *tx)
        .await?;
        let user = Self::user_from(&row)?;
        tx.touch(Tag::User(user.id));
        tx.commit().await?;
        Ok(user)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "create_organization"))]
    async fn create_organization(&self, actor: &Actor, new: NewOrganization) -> Result<Organization> {
        let now = now_micros();
        let mut tx = self.begin_change(actor).await?;
        Self::caller_in(&mut tx, actor)
            .await?
            .require_superadmin("create organizations")?;
        let inserted = sqlx::query(
            "INSERT INTO organizations (id, name, slug, description, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(new.id)
        .bind(new.name.as_str().to_owned())
        .bind(new.slug.as_str().to_owned())
        .bind(new.description.as_str().to_owned())
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(Self::org_slug_taken(new.slug.as_str())),
            other => other?,
        };
        if !new.labels.is_empty() {
            Self::set_labels(&mut tx, LabelOwner::Organization, new.id, &new.labels).await?;
        }
        let admin = Self::upsert_user(&mut tx, &new.admin_email).await?;
        sqlx::query(
            "INSERT INTO memberships (organization_id, user_id, role, created_at) VALUES ($1, $2, 'admin', $3)",
        )
        .bind(new.id)
        .bind(admin)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let draft = Draft::success(actor, "organization.create", targets::org(new.id))
            .with("name", new.name.as_str())
            .with("slug", new.slug.as_str())
            .with("admin_email", new.admin_email.as_str());
        let draft = if new.labels.is_empty() {
            draft
        } else {
            draft.with("labels", new.labels.to_json())
        };
        self.append(&mut tx, new.id, draft).await?;
        let created = Organization {
            id: new.id,
            name: new.name.as_str().to_owned(),
            slug: new.slug.as_str().to_owned(),
            description: new.description.as_str().to_owned(),
            created_at: now,
            updated_at: now,
            etag: etag(new.id, now, 1),
            labels: new.labels,
            deleted_at: None,
            purge_at: None,
        };
        self.finish(tx, actor, &created).await?;
        Ok(created)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "organization_access"))]
    async fn organization_access(&self, slug: &str, user: Uuid) -> Result<Option<OrgAccess>> {
        if let Some(access) = self.snapshot.access(slug, user) {
            return Ok(Some(access));
        }
        let ticket = self.snapshot.ticket();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORG_COLUMNS}, m.role FROM organizations o \
             LEFT JOIN memberships m ON m.organization_id = o.id AND m.user_id = $2 \
             WHERE o.slug = $1 AND o.deleted_at IS NULL"
        )))
        .bind(slug.to_owned())
        .bind(user)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let access = OrgAccess {
            org: Self::org_from(&row)?,
            role: Self::org_role(row.try_get("role")?)?,
        };
        self.snapshot.put_access(ticket, slug, user, &access);
        Ok(Some(access))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "organization_view"))]
    async fn organization_view(
        &self,
        slug: &str,
        user: Uuid,
    ) -> Result<Option<(OrgAccess, Arc<OrganizationDetails>)>> {
        if let Some(access) = self.snapshot.access(slug, user)
            && let Some(details) = self.snapshot.details(access.org.id)
        {
            return Ok(Some((access, details)));
        }
        let ticket = self.snapshot.ticket();
        let rows = sqlx::query(view_sql())
            .bind(slug.to_owned())
            .bind(user)
            .fetch_all(&mut *self.read().await?)
            .await?;
        let mut head = None;
        let (mut spaces, mut members) = (Vec::new(), Vec::new());
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            match kind.as_str() {
                "o" => {
                    let access = OrgAccess {
                        org: Self::org_from(row)?,
                        role: Self::org_role(row.try_get("role")?)?,
                    };
                    let counts: (i64, i64) = (row.try_get("user_count")?, row.try_get("space_count")?);
                    head = Some((access, counts));
                }
                "s" => spaces.push(Self::space_from(row)?),
                _ => members.push(Self::member_from(row)?),
            }
        }
        // No organization row: the slug names no live organization (and
        // the other parts, which go through it, are empty).
        let Some((access, (user_count, space_count))) = head else {
            return Ok(None);
        };
        // Newest first, as every list.
        spaces.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.id)));
        members.sort_by_key(|m| std::cmp::Reverse((m.joined_at, m.user_id)));
        let details = Arc::new(OrganizationDetails {
            org: access.org.clone(),
            spaces,
            members,
            space_count,
            user_count,
        });
        self.snapshot.put_access(ticket, slug, user, &access);
        self.snapshot.put_details(ticket, details.clone());
        Ok(Some((access, details)))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "organization_details"))]
    async fn organization_details(&self, org: Organization) -> Result<Arc<OrganizationDetails>> {
        if let Some(details) = self.snapshot.details(org.id) {
            return Ok(details);
        }
        let ticket = self.snapshot.ticket();
        // One reader for all of the call's statements (see `read`).
        let mut conn = self.read().await?;
        let spaces = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SPACE_COLUMNS} FROM spaces s WHERE s.organization_id = $1 \
             ORDER BY s.created_at DESC, s.id DESC LIMIT {MAX_EMBEDDED}"
        )))
        .bind(org.id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(Self::space_from)
        .collect::<std::result::Result<Vec<_>, _>>()?;
        let members = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{MEMBER_SELECT} WHERE m.organization_id = $1 \
             ORDER BY m.created_at DESC, m.user_id DESC LIMIT {MAX_EMBEDDED}"
        )))
        .bind(org.id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(Self::member_from)
        .collect::<std::result::Result<Vec<_>, _>>()?;
        // The organization is read again with the count: what goes into
        // the snapshot must all have been read under its ticket (the `org`
        // the caller holds may predate a change that committed since).
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORG_COLUMNS}, \
             COALESCE((SELECT m.members FROM organization_member_counts m \
               WHERE m.organization_id = o.id), 0) AS user_count, \
             (SELECT CAST(COALESCE(SUM(s.spaces), 0) AS BIGINT) FROM organization_stats s \
               WHERE s.organization_id = o.id) AS space_count \
             FROM organizations o WHERE o.id = $1"
        )))
        .bind(org.id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::org_not_found(&org.slug))?;
        let details = Arc::new(OrganizationDetails {
            org: Self::org_from(&row)?,
            spaces,
            members,
            space_count: row.try_get("space_count")?,
            user_count: row.try_get("user_count")?,
        });
        self.snapshot.put_details(ticket, details.clone());
        Ok(details)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "list_organizations"))]
    async fn list_organizations(
        &self,
        filter: &OrganizationFilter,
        page: PageRequest,
    ) -> Result<Page<OrganizationSummary>> {
        // One reader for all of the call's statements (see `read`).
        let mut conn = self.read().await?;
        let build = |select: &str| {
            let mut qb = QueryBuilder::<DB>::new(select);
            qb.push(" FROM organizations o");
            if let Some(user) = filter.member {
                qb.push(" JOIN memberships m ON m.organization_id = o.id AND m.user_id = ");
                qb.push_bind(user);
            }
            qb.push(" WHERE 1 = 1");
            if let Some(term) = &filter.search {
                DB::push_search(&mut qb, "o", "organizations_fts", ["name", "slug"], term);
            }
            Self::push_label_filter(&mut qb, LabelOwner::Organization, "o", &filter.labels);
            match (filter.show_deleted, filter.member) {
                (false, _) => {
                    qb.push(" AND o.deleted_at IS NULL");
                }
                // Members see the deleted organizations they administer.
                (true, Some(_)) => {
                    qb.push(" AND (o.deleted_at IS NULL OR m.role = 'admin')");
                }
                (true, None) => {}
            }
            qb
        };
        let total: i64 = build("SELECT count(*)")
            .build_query_scalar()
            .persistent(filter.search.is_none())
            .fetch_one(&mut *conn)
            .await?;
        let mut qb = build(&format!("SELECT {ORG_COLUMNS}"));
        Self::push_page(&mut qb, "o.created_at", "o.id", &page);
        let orgs = qb
            .build()
            .persistent(filter.search.is_none())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(Self::org_from)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let page = Self::page_of(&page, orgs, total, Organization::cursor);
        if page.items.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                total: page.total,
                page: page.page,
                size: page.size,
                next_page_token: page.next_page_token,
            });
        }

        // Three more statements for the whole page, whatever its length:
        // each organization's first spaces by name (one index walk each,
        // at most `MAX_EMBEDDED_LISTED`), and the space and member counts.
        let mut qb = QueryBuilder::<DB>::new("");
        for (i, org) in page.items.iter().enumerate() {
            if i > 0 {
                qb.push(" UNION ALL ");
            }
            qb.push(
                "SELECT * FROM (SELECT s.id, s.name, s.slug, s.organization_id FROM spaces s \
                 WHERE s.organization_id = ",
            );
            qb.push_bind(org.id);
            qb.push(format!(
                " ORDER BY s.name, s.id LIMIT {MAX_EMBEDDED_LISTED}) AS b{i}"
            ));
        }
        qb.push(" ORDER BY organization_id, name, id");
        let mut spaces: std::collections::HashMap<Uuid, Vec<SpaceRef>> = std::collections::HashMap::new();
        for row in qb.build().fetch_all(&mut *conn).await? {
            let org: Uuid = row.try_get("organization_id")?;
            spaces.entry(org).or_default().push(SpaceRef {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                slug: row.try_get("slug")?,
            });
        }
        // Spaces from the organizations' counters (migration 0014), not
        // by counting index entries; members by counting.
        let orgs: Vec<Uuid> = page.items.iter().map(|o| o.id).collect();
        let space_counts = Self::sum_by_org(&mut conn, "SUM(spaces)", "organization_stats", &orgs).await?;
        let counts = Self::sum_by_org(&mut conn, "SUM(members)", "organization_member_counts", &orgs).await?;
        let items = page
            .items
            .into_iter()
            .map(|org| OrganizationSummary {
                spaces: spaces.remove(&org.id).unwrap_or_default(),
                space_count: space_counts.get(&org.id).copied().unwrap_or(0),
                user_count: counts.get(&org.id).copied().unwrap_or(0),
                org,
            })
            .collect();
        Ok(Page {
            items,
            total: page.total,
            page: page.page,
            size: page.size,
            next_page_token: page.next_page_token,
        })
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "update_organization"))]
    async fn update_organization(
        &self,
        actor: &Actor,
        slug: &str,
        changes: OrganizationChanges,
    ) -> Result<Organization> {
        let (mut tx, _, access) = self
            .org_guard(actor, slug, OrgAction::Manage, "organization.update")
            .await?;
        let org = access.org;
        check_etag("organization", changes.etag.as_deref(), &org.etag)?;
        if changes.is_empty() {
            self.finish(tx, actor, &org).await?;
            return Ok(org);
        }
        if let Some(labels) = &changes.labels {
            Self::set_labels(&mut tx, LabelOwner::Organization, org.id, labels).await?;
        }
        let mut qb = QueryBuilder::<DB>::new("UPDATE organizations SET version = version + 1, updated_at = ");
        qb.push_bind(now_micros());
        let mut draft = Draft::success(actor, "organization.update", targets::org(org.id));
        if let Some(name) = &changes.name {
            qb.push(", name = ");
            qb.push_bind(name.as_str().to_owned());
            draft = draft.with("name", name.as_str());
        }
        if let Some(slug) = &changes.slug {
            qb.push(", slug = ");
            qb.push_bind(slug.as_str().to_owned());
            draft = draft
                .with("slug", slug.as_str())
                .with("previous_slug", org.slug.as_str());
        }
        if let Some(description) = &changes.description {
            qb.push(", description = ");
            qb.push_bind(description.as_str().to_owned());
            draft = draft.with("description", "changed");
        }
        if let Some(labels) = &changes.labels {
            draft = draft.with("labels", labels.to_json());
        }
        qb.push(" WHERE id = ");
        qb.push_bind(org.id);
        qb.push(" RETURNING id, name, slug, description, created_at, updated_at, labels, version, deleted_at, purge_at");
        let updated = match qb.build().fetch_one(&mut *tx).await {
            Ok(row) => Self::org_from(&row)?,
            Err(e) if is_unique_violation(&e) => {
                return Err(Self::org_slug_taken(
                    changes.slug.as_ref().map(|s| s.as_str()).unwrap_or_default(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        self.append(&mut tx, org.id, draft).await?;
        self.finish(tx, actor, &updated).await?;
        Ok(updated)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "delete_organization"))]
    async fn delete_organization(
        &self,
        actor: &Actor,
        slug: &str,
        etag: Option<&str>,
        purge_at: i64,
    ) -> Result<Uuid> {
        let (mut tx, _, access) = self
            .org_guard(actor, slug, OrgAction::Manage, "organization.delete")
            .await?;
        check_etag("organization", etag, &access.org.etag)?;
        let id = access.org.id;
        let now = now_micros();
        // Its spaces are detached at once (the seed's DELETE), remembering
        // where they came from for an undelete.
        let detached: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM spaces WHERE organization_id = $1{}",
            DB::LOCK
        )))
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE spaces SET organization_id = NULL, detached_from = $1, updated_at = $2, version = version + 1 \
             WHERE organization_id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for table in crate::store::CONTENT_TABLES {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET organization_id = NULL WHERE organization_id = $1"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE organizations SET deleted_at = $2, purge_at = $3, updated_at = $2, version = version + 1 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .bind(purge_at)
        .execute(&mut *tx)
        .await?;
        let draft = Draft::success(actor, "organization.delete", targets::org(id))
            .with("slug", access.org.slug.as_str())
            .with("detached_spaces", detached.len().to_string())
            .with("purge_at", purge_at.to_string());
        self.append(&mut tx, id, draft).await?;
        self.finish(tx, actor, &id).await?;
        Ok(id)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "undelete_organization"))]
    async fn undelete_organization(
        &self,
        actor: &Actor,
        slug: &str,
        etag: Option<&str>,
    ) -> Result<Organization> {
        let mut tx = self.begin_change(actor).await?;
        let caller = Self::caller_in(&mut tx, actor).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORG_COLUMNS} FROM organizations o WHERE o.slug = $1{}",
            DB::LOCK
        )))
        .bind(slug.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        let org = row
            .as_ref()
            .map(Self::org_from)
            .transpose()?
            .ok_or_else(|| Error::org_not_found(slug))?;
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM memberships WHERE organization_id = $1 AND user_id = $2")
                .bind(org.id)
                .bind(caller.user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let access = OrgAccess {
            role: Self::org_role(role)?,
            org,
        };
        if let Err(e) = check_org(&caller, &access, OrgAction::Manage) {
            let draft = Draft::denied(actor, "organization.undelete", targets::org(access.org.id));
            return self.refuse(tx, actor, access.org.id, draft, e).await;
        }
        let org = access.org;
        if org.deleted_at.is_none() {
            return Err(Error::failed_precondition(
                "ORG_NOT_DELETED",
                format!("organization '{slug}' is not deleted"),
            )
            .with("slug", slug));
        }
        check_etag("organization", etag, &org.etag)?;
        let now = now_micros();
        let returned: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE spaces SET organization_id = $1, detached_from = NULL, updated_at = $2, version = version + 1 \
             WHERE detached_from = $1 AND organization_id IS NULL AND deleted_at IS NULL RETURNING id",
        )
        .bind(org.id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for space in &returned {
            Self::set_content_org(&mut tx, *space, Some(org.id)).await?;
        }
        let row = sqlx::query(
            "UPDATE organizations SET deleted_at = NULL, purge_at = NULL, updated_at = $2, version = version + 1 \
             WHERE id = $1 RETURNING id, name, slug, description, created_at, updated_at, labels, version, deleted_at, purge_at",
        )
        .bind(org.id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let restored = Self::org_from(&row)?;
        let draft = Draft::success(actor, "organization.undelete", targets::org(org.id))
            .with("slug", slug)
            .with("restored_spaces", returned.len().to_string());
        self.append(&mut tx, org.id, draft).await?;
        self.finish(tx, actor, &restored).await?;
        Ok(restored)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "attach_space"))]
    async fn attach_space(&self, actor: &Actor, slug: &str, space: Uuid) -> Result<Space> {
        let (mut tx, caller, access) = self
            .org_guard(actor, slug, OrgAction::Manage, "space.attach")
            .await?;
        let org = access.org.id;
        let target = targets::org_space(org, space);
        let current = Self::lock_space_access(&mut tx, space, caller.user_id).await?;
        if !caller.is_superadmin && current.space_role != Some(SpaceRole::Admin) {
            let e = Error::denied("only an admin of the space may add it to an organization")
                .with("space_id", space.to_string());
            return self
                .refuse(tx, actor, org, Draft::denied(actor, "space.attach", target), e)
                .await;
        }
        match current.space.organization_id {
            None => {}
            Some(owner) if owner == org => {
                return Err(Error::already_exists(
                    "SPACE_ALREADY_ATTACHED",
                    "the space already belongs to this organization",
                )
                .with("space_id", space.to_string()));
            }
            Some(_) => {
                return Err(Error::failed_precondition(
                    "SPACE_IN_OTHER_ORGANIZATION",
                    "the space belongs to another organization; remove it there first",
                )
                .with("space_id", space.to_string()));
            }
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE spaces SET organization_id = $1, detached_from = NULL, updated_at = $3, version = version + 1 \
             WHERE id = $2 RETURNING {SPACE_RETURNING}"
        )))
        .bind(org)
        .bind(space)
        .bind(now_micros())
        .fetch_one(&mut *tx)
        .await?;
        Self::set_content_org(&mut tx, space, Some(org)).await?;
        Self::bump_org(&mut tx, org).await?;
        let draft = Draft::success(actor, "space.attach", target).with("space_id", space.to_string());
        self.append(&mut tx, org, draft).await?;
        let space = Self::space_from(&row)?;
        self.finish(tx, actor, &space).await?;
        Ok(space)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "detach_space"))]
    async fn detach_space(&self, actor: &Actor, slug: &str, space: Uuid) -> Result<Uuid> {
        let (mut tx, _, access) = self
            .org_guard(actor, slug, OrgAction::Manage, "space.detach")
            .await?;
        let org = access.org.id;
        let done = sqlx::query(
            "UPDATE spaces SET organization_id = NULL, updated_at = $3, version = version + 1 \
             WHERE id = $2 AND organization_id = $1",
        )
        .bind(org)
        .bind(space)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&done) == 0 {
            return Err(Error::not_found(
                "SPACE_NOT_IN_ORGANIZATION",
                format!("space {space} does not belong to this organization"),
            )
            .with("space_id", space.to_string()));
        }
        Self::set_content_org(&mut tx, space, None).await?;
        Self::bump_org(&mut tx, org).await?;
        let draft = Draft::success(actor, "space.detach", targets::org_space(org, space))
            .with("space_id", space.to_string());
        self.append(&mut tx, org, draft).await?;
        self.finish(tx, actor, &org).await?;
        Ok(org)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "add_member"))]
    async fn add_member(&self, actor: &Actor, slug: &str, email: &Email, role: OrgRole) -> Result<Member> {
        let (mut tx, _, access) = self
            .org_guard(actor, slug, OrgAction::Manage, "member.add")
            .await?;
        let org = access.org.id;
        let user = Self::upsert_user(&mut tx, email).await?;
        let done = sqlx::query(
            "INSERT INTO memberships (organization_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (organization_id, user_id) DO NOTHING",
        )
        .bind(org)
        .bind(user)
        .bind(role.as_str())
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&done) == 0 {
            return Err(Error::already_exists(
                "MEMBER_ALREADY_EXISTS",
                format!("{email} is already a member of this organization"),
            )
            .with("user_email", email.as_str()));
        }
        let member = Self::org_member(&mut tx, org, user).await?;
        Self::bump_org(&mut tx, org).await?;
        let draft = Draft::success(actor, "member.add", targets::org_user(org, user))
            .with("user_id", user.to_string())
            .with("email", email.as_str())
            .with("role", role.as_str());
        self.append(&mut tx, org, draft).await?;
        self.finish(tx, actor, &member).await?;
        Ok(member)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "update_member_role"))]
    async fn update_member_role(
        &self,
        actor: &Actor,
        slug: &str,
        user: Uuid,
        role: OrgRole,
        etag: Option<&str>,
    ) -> Result<Member> {
        let (mut tx, _, access) = self
            .org_guard(actor, slug, OrgAction::Manage, "member.update_role")
            .await?;
        let org = access.org.id;
        let current = Self::lock_membership(&mut tx, org, user)
            .await?
            .ok_or_else(|| Self::member_not_found(user))?;
        if etag.is_some() {
            let before = Self::org_member(&mut tx, org, user).await?;
            check_etag("membership", etag, &before.etag)?;
        }
        if current == OrgRole::Admin && role != OrgRole::Admin && Self::admin_count(&mut tx, org).await? <= 1
        {
            return Err(last_admin());
        }
        sqlx::query(
            "UPDATE memberships SET role = $3, version = version + 1 WHERE organization_id = $1 AND user_id = $2",
        )
        .bind(org)
        .bind(user)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
        let member = Self::org_member(&mut tx, org, user).await?;
        Self::bump_org(&mut tx, org).await?;
        let draft = Draft::success(actor, "member.update_role", targets::org_user(org, user))
            .with("user_id", user.to_string())
            .with("previous_role", current.as_str())
            .with("role", role.as_str());
        self.append(&mut tx, org, draft).await?;
        self.finish(tx, actor, &member).await?;
        Ok(member)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "remove_member"))]
    async fn remove_member(&self, actor: &Actor, slug: &str, user: Uuid, etag: Option<&str>) -> Result<()> {
        // Any member may leave; removing someone else takes an admin.
        let action = if user == actor.user_id {
            OrgAction::Read
        } else {
            OrgAction::Manage
        };
        let (mut tx, _, access) = self.org_guard(actor, slug, action, "member.remove").await?;
        let org = access.org.id;
        let current = Self::lock_membership(&mut tx, org, user)
            .await?
            .ok_or_else(|| Self::member_not_found(user))?;
        if etag.is_some() {
            let before = Self::org_member(&mut tx, org, user).await?;
            check_etag("membership", etag, &before.etag)?;
        }
        if current == OrgRole::Admin && Self::admin_count(&mut tx, org).await? <= 1 {
            return Err(last_admin());
        }
        sqlx::query("DELETE FROM memberships WHERE organization_id = $1 AND user_id = $2")
            .bind(org)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        Self::bump_org(&mut tx, org).await?;
        let draft = Draft::success(actor, "member.remove", targets::org_user(org, user))
            .with("user_id", user.to_string())
            .with("role", current.as_str());
        self.append(&mut tx, org, draft).await?;
        self.finish(tx, actor, &()).await?;
        Ok(())
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "batch_add_members"))]
    async fn batch_add_members(
        &self,
        actor: &Actor,
        slug: &str,
        entries: &[(Email, OrgRole)],
    ) -> Result<Vec<Member>> {
        let (mut tx, _, access) = self
            .org_guard(actor, slug, OrgAction::Manage, "member.batch_add")
            .await?;
        let org = access.org.id;
        let rows: Vec<(&Email, &'static str)> = entries.iter().map(|(e, r)| (e, r.as_str())).collect();
        let added = Self::insert_members(&mut tx, MemberTable::Organization, org, &rows).await?;
        Self::bump_org(&mut tx, org).await?;
        let draft = batch_added(actor, "member.batch_add", targets::org_users(org), &added);
        self.append(&mut tx, org, draft).await?;
        self.finish(tx, actor, &added).await?;
        Ok(added)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "batch_remove_members"))]
    async fn batch_remove_members(&self, actor: &Actor, slug: &str, users: &[Uuid]) -> Result<u64> {
        let (mut tx, _, access) = self
            .org_guard(actor, slug, OrgAction::Manage, "member.batch_remove")
            .await?;
        let org = access.org.id;
        let roles = Self::delete_members(&mut tx, MemberTable::Organization, org, users).await?;
        Self::bump_org(&mut tx, org).await?;
        let draft = batch_removed(
            actor,
            "member.batch_remove",
            targets::org_users(org),
            users,
            &roles,
        );
        self.append(&mut tx, org, draft).await?;
        let removed = roles.len() as u64;
        self.finish(tx, actor, &removed).await?;
        Ok(removed)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "batch_add_space_members"))]
    async fn batch_add_space_members(
        &self,
        actor: &Actor,
        space: Uuid,
        entries: &[(Email, SpaceRole)],
    ) -> Result<Vec<Member>> {
        let (mut tx, _, access) = self
            .space_guard(
                actor,
                space,
                SpaceAction::Manage,
                "space_member.batch_add",
                targets::space_members,
            )
            .await?;
        let rows: Vec<(&Email, &'static str)> = entries.iter().map(|(e, r)| (e, r.as_str())).collect();
        let added = Self::insert_members(&mut tx, MemberTable::Space, space, &rows).await?;
        Self::bump_space(&mut tx, space).await?;
        let draft = batch_added(
            actor,
            "space_member.batch_add",
            targets::space_members(space),
            &added,
        );
        self.append(&mut tx, Self::chain_of(&access.space), draft).await?;
        self.finish(tx, actor, &added).await?;
        Ok(added)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "batch_remove_space_members"))]
    async fn batch_remove_space_members(&self, actor: &Actor, space: Uuid, users: &[Uuid]) -> Result<u64> {
        let (mut tx, _, access) = self
            .space_guard(
                actor,
                space,
                SpaceAction::Manage,
                "space_member.batch_remove",
                targets::space_members,
            )
            .await?;
        let roles = Self::delete_members(&mut tx, MemberTable::Space, space, users).await?;
        Self::bump_space(&mut tx, space).await?;
        let draft = batch_removed(
            actor,
            "space_member.batch_remove",
            targets::space_members(space),
            users,
            &roles,
        );
        self.append(&mut tx, Self::chain_of(&access.space), draft).await?;
        let removed = roles.len() as u64;
        self.finish(tx, actor, &removed).await?;
        Ok(removed)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "create_invitation"))]
    async fn create_invitation(&self, actor: &Actor, slug: &str, new: NewInvitation) -> Result<Invitation> {
        let (mut tx, _, access) = self
            .org_guard(actor, slug, OrgAction::Manage, "invitation.create")
            .await?;
        let org = access.org.id;
        let now = now_micros();
        let member: Option<Uuid> = sqlx::query_scalar(
            "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.organization_id = $1 AND u.email = $2",
        )
        .bind(org)
        .bind(new.email.as_str().to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        if member.is_some() {
            return Err(Error::already_exists(
                "MEMBER_ALREADY_EXISTS",
                format!("{} is already a member of this organization", new.email),
            )
            .with("field", "email"));
        }
        let pending: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM invitations WHERE organization_id = $1 AND email = $2 \
             AND state = 'pending' AND expires_at > $3",
        )
        .bind(org)
        .bind(new.email.as_str().to_owned())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(pending) = pending {
            return Err(Error::already_exists(
                "INVITATION_PENDING",
                format!("{} already has a pending invitation; revoke it first", new.email),
            )
            .with("field", "email")
            .with("invitation_id", pending.to_string()));
        }
        sqlx::query(
            "INSERT INTO invitations (id, organization_id, email, role, state, invited_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7)",
        )
        .bind(new.id)
        .bind(org)
        .bind(new.email.as_str().to_owned())
        .bind(new.role.as_str())
        .bind(actor.user_id)
        .bind(now)
        .bind(new.expires_at)
        .execute(&mut *tx)
        .await?;
        let invitation = Invitation {
            id: new.id,
            organization_id: org,
            organization_slug: access.org.slug.clone(),
            email: new.email.as_str().to_owned(),
            role: new.role,
            stored: InvitationState::Pending,
            invited_by: actor.user_id,
            created_at: now,
            expires_at: new.expires_at,
            accepted_at: None,
            revoked_at: None,
        };
        let draft = Draft::success(actor, "invitation.create", targets::invitation(org, new.id))
            .with("email", new.email.as_str())
            .with("role", new.role.as_str())
            .with("expires_at", new.expires_at.to_string());
        self.append(&mut tx, org, draft).await?;
        self.finish(tx, actor, &invitation).await?;
        Ok(invitation)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "revoke_invitation"))]
    async fn revoke_invitation(&self, actor: &Actor, slug: &str, id: Uuid) -> Result<Invitation> {
        let (mut tx, _, access) = self
            .org_guard(actor, slug, OrgAction::Manage, "invitation.revoke")
            .await?;
        let org = access.org.id;
        let mut invitation = Self::lock_invitation(&mut tx, id).await?;
        if invitation.organization_id != org {
            return Err(
                Error::not_found("INVITATION_NOT_FOUND", format!("invitation {id} not found"))
                    .with("invitation_id", id.to_string()),
            );
        }
        let now = now_micros();
        if let Some(e) = invitation.not_pending(now) {
            return Err(e);
        }
        sqlx::query("UPDATE invitations SET state = 'revoked', revoked_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        invitation.stored = InvitationState::Revoked;
        invitation.revoked_at = Some(now);
        let draft = Draft::success(actor, "invitation.revoke", targets::invitation(org, id))
            .with("email", invitation.email.as_str());
        self.append(&mut tx, org, draft).await?;
        self.finish(tx, actor, &invitation).await?;
        Ok(invitation)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "accept_invitation"))]
    async fn accept_invitation(&self, actor: &Actor, id: Uuid) -> Result<Accepted> {
        let mut tx = self.begin_change(actor).await?;
        let caller = Self::caller_in(&mut tx, actor).await?;
        // The organization first (as every membership change locks it),
        // then the invitation.
        let org: Option<Uuid> = sqlx::query_scalar("SELECT organization_id FROM invitations WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(org) = org {
            Self::lock_membership(&mut tx, org, caller.user_id).await?;
        }
        let invitation = Self::lock_invitation(&mut tx, id).await?;
        let org = invitation.organization_id;
        // An organization deleted meanwhile takes no one in.
        let deleted: Option<i64> = sqlx::query_scalar("SELECT deleted_at FROM organizations WHERE id = $1")
            .bind(org)
            .fetch_one(&mut *tx)
            .await?;
        if deleted.is_some() {
            return Err(
                Error::not_found("INVITATION_NOT_FOUND", format!("invitation {id} not found"))
                    .with("invitation_id", id.to_string()),
            );
        }
        let target = targets::invitation(org, id);
        if !caller.email.eq_ignore_ascii_case(&invitation.email) {
            let e = Error::new(
                crate::domain::ErrorKind::PermissionDenied,
                "INVITATION_EMAIL_MISMATCH",
                "this invitation is for another email than the one your token carries",
            )
            .with("invitation_id", id.to_string());
            return self
                .refuse(
                    tx,
                    actor,
                    org,
                    Draft::denied(actor, "invitation.accept", target),
                    e,
                )
                .await;
        }
        let now = now_micros();
        if let Some(e) = invitation.not_pending(now) {
            return Err(e);
        }
        let done = sqlx::query(
            "INSERT INTO memberships (organization_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (organization_id, user_id) DO NOTHING",
        )
        .bind(org)
        .bind(caller.user_id)
        .bind(invitation.role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&done) == 0 {
            return Err(Error::already_exists(
                "MEMBER_ALREADY_EXISTS",
                "you are already a member of this organization",
            )
            .with("invitation_id", id.to_string()));
        }
        sqlx::query(
            "UPDATE invitations SET state = 'accepted', accepted_by = $2, accepted_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(caller.user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let member = Self::org_member(&mut tx, org, caller.user_id).await?;
        Self::bump_org(&mut tx, org).await?;
        let draft = Draft::success(actor, "invitation.accept", target)
            .with("user_id", caller.user_id.to_string())
            .with("email", invitation.email.as_str())
            .with("role", invitation.role.as_str());
        self.append(&mut tx, org, draft).await?;
        let accepted = Accepted {
            member,
            organization_id: org,
            organization_slug: invitation.organization_slug,
        };
        self.finish(tx, actor, &accepted).await?;
        Ok(accepted)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "list_invitations"))]
    async fn list_invitations(
        &self,
        org: Uuid,
        state: Option<InvitationState>,
        page: PageRequest,
    ) -> Result<Page<Invitation>> {
        // One reader for all of the call's statements (see `read`).
        let mut conn = self.read().await?;
        let now = now_micros();
        let build = |select: &str| {
            let mut qb = QueryBuilder::<DB>::new(select);
            qb.push(" WHERE i.organization_id = ");
            qb.push_bind(org);
            match state {
                None => {}
                Some(InvitationState::Pending) => {
                    qb.push(" AND i.state = 'pending' AND i.expires_at > ");
                    qb.push_bind(now);
                }
                Some(InvitationState::Expired) => {
                    qb.push(" AND i.state = 'pending' AND i.expires_at <= ");
                    qb.push_bind(now);
                }
                Some(other) => {
                    qb.push(" AND i.state = ");
                    qb.push_bind(other.as_str());
                }
            }
            qb
        };
        let total: i64 = build("SELECT count(*) FROM invitations i")
            .build_query_scalar()
            .fetch_one(&mut *conn)
            .await?;
        let mut qb = build(INVITATION_SELECT);
        Self::push_page(&mut qb, "i.created_at", "i.id", &page);
        let rows = qb
            .build()
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(Self::invitation_from)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self::page_of(&page, rows, total, Invitation::cursor))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "list_members"))]
    async fn list_members(
        &self,
        org: Uuid,
        filter: &MemberFilter,
        page: PageRequest,
    ) -> Result<Page<Member>> {
        // One reader for all of the call's statements (see `read`).
        let mut conn = self.read().await?;
        // Users are joined only for a search: the memberships index
        // serves the rest (count, order, the page's ids).
        let build = |select: &str| {
            let mut qb = QueryBuilder::<DB>::new(select);
            qb.push(" FROM memberships m");
            if filter.search.is_some() {
                qb.push(" JOIN users u ON u.id = m.user_id");
            }
            qb.push(" WHERE m.organization_id = ");
            qb.push_bind(org);
            if let Some(role) = filter.role {
                qb.push(" AND m.role = ");
                qb.push_bind(role.as_str());
            }
            if let Some(term) = &filter.search {
                DB::push_search(&mut qb, "u", "users_fts", ["email", "display_name"], term);
            }
            qb
        };
        // Unfiltered, the total is the organization's member count, kept
        // by triggers (migration 0016).
        let total: i64 = if filter.role.is_none() && filter.search.is_none() {
            sqlx::query_scalar(
                "SELECT COALESCE((SELECT members FROM organization_member_counts \
                 WHERE organization_id = $1), 0)",
            )
            .bind(org)
            .fetch_one(&mut *conn)
            .await?
        } else {
            build("SELECT count(*)")
                .build_query_scalar()
                .persistent(filter.search.is_none())
                .fetch_one(&mut *conn)
                .await?
        };
        // The page's ids first (page 500 skips 10,000 index entries, not
        // 10,000 users), then those members in full.
        let mut qb = build("WITH page AS MATERIALIZED (SELECT m.user_id, m.created_at");
        Self::push_page(&mut qb, "m.created_at", "m.user_id", &page);
        qb.push(
            ") SELECT u.id AS user_id, u.email, u.display_name, m.role, m.created_at AS joined_at, m.version \
             FROM page JOIN memberships m ON m.user_id = page.user_id AND m.organization_id = ",
        );
        qb.push_bind(org);
        qb.push(" JOIN users u ON u.id = m.user_id ORDER BY m.created_at DESC, m.user_id DESC");
        let rows = qb
            .build()
            .persistent(filter.search.is_none())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(Self::member_from)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self::page_of(&page, rows, total, Member::cursor))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "create_space"))]
    async fn create_space(&self, actor: &Actor, new: NewSpace) -> Result<Space> {
        let now = now_micros();
        let mut tx = self.begin_change(actor).await?;
        Self::caller_in(&mut tx, actor)
            .await?
            .require_superadmin("create spaces")?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO spaces (id, name, slug, description, visibility, repo, agent_id, agent_status, \
             agent_autonomy, organization_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $10) RETURNING {SPACE_RETURNING}"
        )))
        .bind(new.id)
        .bind(new.name.as_str().to_owned())
        .bind(new.slug.as_str().to_owned())
        .bind(new.description.as_str().to_owned())
        .bind(new.visibility.as_str())
        .bind(new.repo.clone())
        .bind(new.agent.as_ref().map(|a| a.agent_id.clone()))
        .bind(new.agent.as_ref().map(|a| a.status.as_str()))
        .bind(new.agent.as_ref().map(|a| a.autonomy_level))
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let mut row = match row {
            Err(e) if is_unique_violation(&e) => return Err(Self::space_slug_taken(new.slug.as_str())),
            other => other?,
        };
        if !new.labels.is_empty() {
            Self::set_labels(&mut tx, LabelOwner::Space, new.id, &new.labels).await?;
            row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SPACE_RETURNING} FROM spaces WHERE id = $1"
            )))
            .bind(new.id)
            .fetch_one(&mut *tx)
            .await?;
        }
        let admin = Self::upsert_user(&mut tx, &new.admin_email).await?;
        sqlx::query(
            "INSERT INTO space_members (space_id, user_id, role, created_at) VALUES ($1, $2, 'admin', $3)",
        )
        .bind(new.id)
        .bind(admin)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let draft = Draft::success(actor, "space.create", targets::space(new.id))
            .with("name", new.name.as_str())
            .with("slug", new.slug.as_str())
            .with("visibility", new.visibility.as_str())
            .with("admin_email", new.admin_email.as_str());
        let draft = if new.labels.is_empty() {
            draft
        } else {
            draft.with("labels", new.labels.to_json())
        };
        self.append(&mut tx, audit::SYSTEM_CHAIN, draft).await?;
        let space = Self::space_from(&row)?;
        self.finish(tx, actor, &space).await?;
        Ok(space)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "space_access"))]
    async fn space_access(&self, space: Uuid, user: Uuid) -> Result<Option<SpaceAccess>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SPACE_COLUMNS}, sm.role AS space_role, m.role AS org_role FROM spaces s \
             LEFT JOIN space_members sm ON sm.space_id = s.id AND sm.user_id = $2 \
             LEFT JOIN memberships m ON m.organization_id = s.organization_id AND m.user_id = $2 \
             WHERE s.id = $1 AND s.deleted_at IS NULL"
        )))
        .bind(space)
        .bind(user)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SpaceAccess {
            space: Self::space_from(&row)?,
            space_role: Self::space_role(row.try_get("space_role")?)?,
            org_role: Self::org_role(row.try_get("org_role")?)?,
        }))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "list_spaces"))]
    async fn list_spaces(&self, filter: &SpaceFilter, page: PageRequest) -> Result<Page<Space>> {
        // One reader for all of the call's statements (see `read`).
        let mut conn = self.read().await?;
        if filter.show_deleted {
            return Self::list_spaces_with_deleted(&mut conn, filter, page).await;
        }
        // The caller's reach: which (organization, visibility) pairs it
        // sees through its organizations. Each pair is one walk of
        // `spaces_live_by_visibility` in list order; the walks are merged,
        // never one scan of every space evaluating the visibility rule.
        let reach = match filter.visible_to {
            None => match filter.organization_id {
                None => SpaceReach::All,
                Some(org) => SpaceReach::Pairs(vec![(org, "organization"), (org, "restricted")]),
            },
            Some(user) => {
                let mut qb =
                    QueryBuilder::<DB>::new("SELECT organization_id, role FROM memberships WHERE user_id = ");
                qb.push_bind(user);
                if let Some(org) = filter.organization_id {
                    qb.push(" AND organization_id = ");
                    qb.push_bind(org);
                }
                let mut pairs = Vec::new();
                for row in qb.build().fetch_all(&mut *conn).await? {
                    let org: Uuid = row.try_get("organization_id")?;
                    let role: String = row.try_get("role")?;
                    pairs.push((org, "organization"));
                    if role == OrgRole::Admin.as_str() {
                        pairs.push((org, "restricted"));
                    }
                }
                if pairs.len() > MAX_SPACE_WALKS {
                    SpaceReach::Joined(user)
                } else {
                    SpaceReach::Pairs(pairs)
                }
            }
        };
        // Every branch: the filters, live spaces only, and the keyset
        // cursor (each branch starts after it, in its index's order).
        let conditions = |qb: &mut QueryBuilder<DB>, keyset: bool| {
            qb.push(" AND s.deleted_at IS NULL");
            if let Some(term) = &filter.search {
                DB::push_search(qb, "s", "spaces_fts", ["name", "slug"], term);
            }
            Self::push_label_filter(qb, LabelOwner::Space, "s", &filter.labels);
            if let (true, Some(after)) = (keyset, page.after) {
                qb.push(" AND (s.created_at, s.id) < (");
                qb.push_bind(after.created_at);
                qb.push(", ");
                qb.push_bind(after.id);
                qb.push(")");
            }
        };
        // The branches, disjoint, joined by UNION ALL: the reach's walks,
        // then the caller's own spaces (space member) not already reached.
        // `bound`: each walk stops after that many rows in list order
        // (the page's offset and size), so a page reads a few index entries
        // per walk instead of every space of a pair (PostgreSQL would
        // otherwise collect and sort them all).
        // `walks`: the reach's walks and the caller's own spaces; without,
        // the own spaces alone.
        let branches = |qb: &mut QueryBuilder<DB>,
                        select: &str,
                        keyset: bool,
                        bound: Option<i64>,
                        walks: bool| {
            if filter.search.is_some() {
                // A search is driven by the text index: one branch, so the
                // matches are found once per statement, then kept if the
                // caller reaches them (the walks would each look the
                // matches up again).
                qb.push(select);
                qb.push(" FROM spaces s WHERE (");
                let mut or = qb.separated(" OR ");
                match &reach {
                    SpaceReach::All => {
                        or.push("1 = 1");
                    }
                    SpaceReach::Pairs(pairs) => Self::push_pairs(&mut or, pairs),
                    SpaceReach::Joined(user) => {
                        or.push(
                            "s.organization_id IN (SELECT m.organization_id FROM memberships m WHERE m.user_id = ",
                        );
                        or.push_bind_unseparated(*user);
                        or.push_unseparated(" AND (m.role = 'admin' OR s.visibility = 'organization'))");
                    }
                }
                if let Some(user) = filter.visible_to {
                    or.push("s.id IN (SELECT space_id FROM space_members WHERE user_id = ");
                    or.push_bind_unseparated(user);
                    or.push_unseparated(")");
                } else if matches!(&reach, SpaceReach::Pairs(pairs) if pairs.is_empty()) {
                    or.push("1 = 0");
                }
                qb.push(")");
                if let Some(org) = filter.organization_id {
                    qb.push(" AND s.organization_id = ");
                    qb.push_bind(org);
                }
                conditions(qb, keyset);
                return;
            }
            let mut first = true;
            let mut union = |qb: &mut QueryBuilder<DB>| {
                if !std::mem::take(&mut first) {
                    qb.push(" UNION ALL ");
                }
                if bound.is_some() {
                    qb.push("SELECT * FROM (");
                }
                qb.push(select);
            };
            let close = |qb: &mut QueryBuilder<DB>| {
                if let Some(n) = bound {
                    qb.push(" ORDER BY s.created_at DESC, s.id DESC LIMIT ");
                    qb.push_bind(n);
                    qb.push(") AS walk");
                }
            };
            match &reach {
                _ if !walks => {}
                SpaceReach::All => {
                    union(qb);
                    qb.push(" FROM spaces s WHERE 1 = 1");
                    conditions(qb, keyset);
                    close(qb);
                }
                SpaceReach::Pairs(pairs) => {
                    for (org, visibility) in pairs {
                        union(qb);
                        qb.push(" FROM spaces s WHERE s.organization_id = ");
                        qb.push_bind(*org);
                        qb.push(" AND s.visibility = ");
                        qb.push_bind(*visibility);
                        conditions(qb, keyset);
                        close(qb);
                    }
                }
                SpaceReach::Joined(user) => {
                    union(qb);
                    qb.push(
                        " FROM memberships m JOIN spaces s ON s.organization_id = m.organization_id \
                         WHERE m.user_id = ",
                    );
                    qb.push_bind(*user);
                    qb.push(" AND (m.role = 'admin' OR s.visibility = 'organization')");
                    conditions(qb, keyset);
                    close(qb);
                }
            }
            let Some(user) = filter.visible_to else { return };
            union(qb);
            qb.push(format!(" FROM {} WHERE sm.user_id = ", DB::OWN_SPACES));
            qb.push_bind(user);
            if let Some(org) = filter.organization_id {
                qb.push(" AND s.organization_id = ");
                qb.push_bind(org);
            }
            match &reach {
                SpaceReach::Pairs(pairs) if !pairs.is_empty() => {
                    qb.push(" AND (s.organization_id IS NULL OR NOT (");
                    Self::push_pairs(&mut qb.separated(" OR "), pairs);
                    qb.push("))");
                }
                SpaceReach::Joined(_) => {
                    qb.push(
                        " AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.organization_id = s.organization_id \
                         AND m.user_id = ",
                    );
                    qb.push_bind(user);
                    qb.push(" AND (m.role = 'admin' OR s.visibility = 'organization'))");
                }
                _ => {}
            }
            conditions(qb, keyset);
            close(qb);
        };
        let persistent = filter.search.is_none();
        // The page's ids over the indexes, then only those rows in full.
        let mut ids = QueryBuilder::<DB>::new("");
        if filter.search.is_some() {
            // The matches first (over the text index), then their order:
            // given the LIMIT, PostgreSQL would rather walk every space
            // newest first and test each against the pattern.
            ids.push("WITH found AS MATERIALIZED (");
            branches(
                &mut ids,
                "SELECT s.created_at AS created_at, s.id AS id",
                true,
                None,
                true,
            );
            // A first search page counts the matches in the same pass.
            ids.push(") SELECT created_at, id, count(*) OVER () AS found FROM found");
        } else {
            let bound = page.fetch() + page.offset();
            branches(
                &mut ids,
                "SELECT s.created_at AS created_at, s.id AS id",
                true,
                Some(bound),
                true,
            );
        }
        ids.push(" ORDER BY created_at DESC, id DESC LIMIT ");
        ids.push_bind(page.fetch());
        ids.push(" OFFSET ");
        ids.push_bind(page.offset());
        let found = ids.build().persistent(persistent).fetch_all(&mut *conn).await?;
        let ids: Vec<Uuid> = found
            .iter()
            .map(|row| row.try_get("id"))
            .collect::<std::result::Result<_, _>>()?;
        // A search's total came with its page, unless the page started
        // after the matches (a cursor, or an offset past them).
        let searched: Option<i64> = match found.first() {
            Some(row) if filter.search.is_some() && page.after.is_none() => Some(row.try_get("found")?),
            None if filter.search.is_some() && page.after.is_none() && page.offset() == 0 => Some(0),
            _ => None,
        };
        let total: i64 = match &reach {
            _ if let Some(n) = searched => n,
            SpaceReach::Pairs(pairs) if filter.search.is_none() && filter.labels.is_empty() => {
                // The pairs' live spaces are counted by visibility class
                // (migration 0014): only the caller's own spaces beyond
                // them are counted here.
                let mut qb = QueryBuilder::<DB>::new(
                    "SELECT CAST(COALESCE(SUM(st.spaces), 0) AS BIGINT) FROM organization_stats st WHERE 1 = 0",
                );
                for (org, visibility) in pairs {
                    qb.push(" OR (st.organization_id = ");
                    qb.push_bind(*org);
                    qb.push(" AND st.open = ");
                    qb.push_bind(*visibility == Visibility::Organization.as_str());
                    qb.push(")");
                }
                let reached: i64 = qb.build_query_scalar().fetch_one(&mut *conn).await?;
                let own: i64 = if filter.visible_to.is_some() {
                    let mut count = QueryBuilder::<DB>::new("SELECT count(*) FROM (");
                    branches(&mut count, "SELECT s.id", false, None, false);
                    count.push(") AS v");
                    count.build_query_scalar().fetch_one(&mut *conn).await?
                } else {
                    0
                };
                reached + own
            }
            _ => {
                let mut count = QueryBuilder::<DB>::new("SELECT count(*) FROM (");
                branches(&mut count, "SELECT s.id", false, None, true);
                count.push(") AS v");
                count
                    .build_query_scalar()
                    .persistent(persistent)
                    .fetch_one(&mut *conn)
                    .await?
            }
        };
        let mut rows = Vec::with_capacity(ids.len());
        if !ids.is_empty() {
            let mut qb =
                QueryBuilder::<DB>::new(format!("SELECT {SPACE_COLUMNS} FROM spaces s WHERE s.id IN ("));
            let mut list = qb.separated(", ");
            for id in &ids {
                list.push_bind(*id);
            }
            qb.push(")");
            let mut by_id: std::collections::HashMap<Uuid, Space> = qb
                .build()
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|row| Self::space_from(row).map(|space| (space.id, space)))
                .collect::<std::result::Result<_, _>>()?;
            // In the page's order; a space deleted between the two
            // statements is left out.
            rows.extend(ids.iter().filter_map(|id| by_id.remove(id)));
        }
        Ok(Self::page_of(&page, rows, total, Space::cursor))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "update_space"))]
    async fn update_space(&self, actor: &Actor, id: Uuid, changes: SpaceChanges) -> Result<Space> {
        let (mut tx, _, access) = self
            .space_guard(actor, id, SpaceAction::Manage, "space.update", targets::space)
            .await?;
        check_etag("space", changes.etag.as_deref(), &access.space.etag)?;
        if changes.is_empty() {
            self.finish(tx, actor, &access.space).await?;
            return Ok(access.space);
        }
        let mut draft = Draft::success(actor, "space.update", targets::space(id));
        if let Some(labels) = &changes.labels {
            Self::set_labels(&mut tx, LabelOwner::Space, id, labels).await?;
            draft = draft.with("labels", labels.to_json());
        }
        let mut qb = QueryBuilder::<DB>::new("UPDATE spaces SET version = version + 1, updated_at = ");
        qb.push_bind(now_micros());
        if let Some(name) = &changes.name {
            qb.push(", name = ");
            qb.push_bind(name.as_str().to_owned());
            draft = draft.with("name", name.as_str());
        }
        if let Some(slug) = &changes.slug {
            qb.push(", slug = ");
            qb.push_bind(slug.as_str().to_owned());
            draft = draft
                .with("slug", slug.as_str())
                .with("previous_slug", access.space.slug.as_str());
        }
        if let Some(description) = &changes.description {
            qb.push(", description = ");
            qb.push_bind(description.as_str().to_owned());
            draft = draft.with("description", "changed");
        }
        if let Some(visibility) = changes.visibility {
            qb.push(", visibility = ");
            qb.push_bind(visibility.as_str());
            draft = draft.with("visibility", visibility.as_str());
        }
        if let Some(repo) = &changes.repo {
            qb.push(", repo = ");
            qb.push_bind(repo.clone());
            draft = draft.with("repo", repo.as_str());
        }
        if let Some(agent) = &changes.agent {
            qb.push(", agent_id = ");
            qb.push_bind(agent.as_ref().map(|a| a.agent_id.clone()));
            qb.push(", agent_status = ");
            qb.push_bind(agent.as_ref().map(|a| a.status.as_str()));
            qb.push(", agent_autonomy = ");
            qb.push_bind(agent.as_ref().map(|a| a.autonomy_level));
            draft = match agent {
                Some(a) => draft
                    .with("agent_id", a.agent_id.as_str())
                    .with("agent_status", a.status.as_str())
                    .with("agent_autonomy_level", a.autonomy_level.to_string()),
                None => draft.with("agent", "removed"),
            };
        }
        qb.push(" WHERE id = ");
        qb.push_bind(id);
        qb.push(format!(" RETURNING {SPACE_RETURNING}"));
        let updated = match qb.build().fetch_one(&mut *tx).await {
            Ok(row) => Self::space_from(&row)?,
            Err(e) if is_unique_violation(&e) => {
                return Err(Self::space_slug_taken(
                    changes.slug.as_ref().map(|s| s.as_str()).unwrap_or_default(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        self.append(&mut tx, Self::chain_of(&access.space), draft).await?;
        self.finish(tx, actor, &updated).await?;
        Ok(updated)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "delete_space"))]
    async fn delete_space(
        &self,
        actor: &Actor,
        id: Uuid,
        etag: Option<&str>,
        purge_at: i64,
    ) -> Result<Option<Uuid>> {
        let (mut tx, _, access) = self
            .space_guard(actor, id, SpaceAction::Manage, "space.delete", targets::space)
            .await?;
        check_etag("space", etag, &access.space.etag)?;
        let now = now_micros();
        let org = access.space.organization_id;
        sqlx::query(
            "UPDATE spaces SET deleted_at = $2, purge_at = $3, organization_id = NULL, \
             detached_from = COALESCE($4, detached_from), updated_at = $2, version = version + 1 WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .bind(purge_at)
        .bind(org)
        .execute(&mut *tx)
        .await?;
        if let Some(org) = org {
            Self::set_content_org(&mut tx, id, None).await?;
            Self::bump_org(&mut tx, org).await?;
        }
        let draft = Draft::success(actor, "space.delete", targets::space(id))
            .with("slug", access.space.slug.as_str())
            .with("purge_at", purge_at.to_string());
        self.append(&mut tx, Self::chain_of(&access.space), draft).await?;
        self.finish(tx, actor, &org).await?;
        Ok(org)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "undelete_space"))]
    async fn undelete_space(&self, actor: &Actor, id: Uuid, etag: Option<&str>) -> Result<Space> {
        let mut tx = self.begin_change(actor).await?;
        let caller = Self::caller_in(&mut tx, actor).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SPACE_RETURNING}, detached_from FROM spaces WHERE id = $1{}",
            DB::LOCK
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(Self::space_not_found(id));
        };
        let space = Self::space_from(&row)?;
        let home: Option<Uuid> = row.try_get("detached_from")?;
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM space_members WHERE space_id = $1 AND user_id = $2")
                .bind(id)
                .bind(caller.user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let access = SpaceAccess {
            space_role: Self::space_role(role)?,
            org_role: None,
            space,
        };
        let chain = home.unwrap_or(audit::SYSTEM_CHAIN);
        if let Err(e) = check_space(&caller, &access, SpaceAction::Manage) {
            let draft = Draft::denied(actor, "space.undelete", targets::space(id));
            return self.refuse(tx, actor, chain, draft, e).await;
        }
        if access.space.deleted_at.is_none() {
            return Err(Error::failed_precondition(
                "SPACE_NOT_DELETED",
                format!("space {id} is not deleted"),
            )
            .with("space_id", id.to_string()));
        }
        check_etag("space", etag, &access.space.etag)?;
        // Back into its organization when that is live; else it stays free.
        let live_home: Option<Uuid> = match home {
            Some(org) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT id FROM organizations WHERE id = $1 AND deleted_at IS NULL{}",
                    DB::LOCK
                )))
                .bind(org)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        let now = now_micros();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE spaces SET deleted_at = NULL, purge_at = NULL, organization_id = $2, \
             detached_from = CASE WHEN $2 IS NULL THEN detached_from ELSE NULL END, \
             updated_at = $3, version = version + 1 WHERE id = $1 RETURNING {SPACE_RETURNING}"
        )))
        .bind(id)
        .bind(live_home)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(org) = live_home {
            Self::set_content_org(&mut tx, id, Some(org)).await?;
            Self::bump_org(&mut tx, org).await?;
        }
        let restored = Self::space_from(&row)?;
        let draft = Draft::success(actor, "space.undelete", targets::space(id))
            .with("slug", restored.slug.as_str())
            .with(
                "organization_id",
                live_home.map(|o| o.to_string()).unwrap_or_default(),
            );
        self.append(&mut tx, live_home.unwrap_or(chain), draft).await?;
        self.finish(tx, actor, &restored).await?;
        Ok(restored)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "purge_due"))]
    async fn purge_due(&self, now: i64) -> Result<Vec<Uuid>> {
        let system = Actor::system("purge");
        let spaces: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM spaces WHERE purge_at IS NOT NULL AND purge_at <= $1 ORDER BY purge_at LIMIT 500",
        )
        .bind(now)
        .fetch_all(&mut *self.read().await?)
        .await?;
        for space in spaces {
            let mut tx = self.write_tx().await?;
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT slug, detached_from FROM spaces WHERE id = $1 AND purge_at IS NOT NULL AND purge_at <= $2{}",
                DB::LOCK
            )))
            .bind(space)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { continue };
            let slug: String = row.try_get("slug")?;
            let home: Option<Uuid> = row.try_get("detached_from")?;
            sqlx::query("DELETE FROM spaces WHERE id = $1")
                .bind(space)
                .execute(&mut *tx)
                .await?;
            let chain = match home {
                Some(org) => {
                    let exists: Option<Uuid> =
                        sqlx::query_scalar("SELECT id FROM organizations WHERE id = $1")
                            .bind(org)
                            .fetch_optional(&mut *tx)
                            .await?;
                    exists.unwrap_or(audit::SYSTEM_CHAIN)
                }
                None => audit::SYSTEM_CHAIN,
            };
            let draft = Draft::success(&system, "space.purge", targets::space(space)).with("slug", slug);
            self.append(&mut tx, chain, draft).await?;
            tx.commit().await?;
        }
        let orgs: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM organizations WHERE purge_at IS NOT NULL AND purge_at <= $1 ORDER BY purge_at LIMIT 500",
        )
        .bind(now)
        .fetch_all(&mut *self.read().await?)
        .await?;
        let mut purged = Vec::with_capacity(orgs.len());
        for org in orgs {
            let mut tx = self.write_tx().await?;
            let slug: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT slug FROM organizations WHERE id = $1 AND purge_at IS NOT NULL AND purge_at <= $2{}",
                DB::LOCK
            )))
            .bind(org)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(slug) = slug else { continue };
            sqlx::query("UPDATE spaces SET detached_from = NULL WHERE detached_from = $1")
                .bind(org)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM organizations WHERE id = $1")
                .bind(org)
                .execute(&mut *tx)
                .await?;
            let draft = Draft::success(&system, "organization.purge", targets::org(org)).with("slug", slug);
            self.append(&mut tx, org, draft).await?;
            sqlx::query("UPDATE audit_heads SET deleted_at = $2 WHERE organization_id = $1")
                .bind(org)
                .bind(now_micros())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            purged.push(org);
        }
        Ok(purged)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "list_space_members"))]
    async fn list_space_members(&self, space: Uuid, page: PageRequest) -> Result<Page<Member>> {
        // One reader for all of the call's statements (see `read`).
        let mut conn = self.read().await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM space_members WHERE space_id = $1")
            .bind(space)
            .fetch_one(&mut *conn)
            .await?;
        let mut qb = QueryBuilder::<DB>::new(SPACE_MEMBER_SELECT);
        qb.push(" WHERE m.space_id = ");
        qb.push_bind(space);
        Self::push_page(&mut qb, "m.created_at", "m.user_id", &page);
        let rows = qb
            .build()
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(Self::member_from)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self::page_of(&page, rows, total, Member::cursor))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "add_space_member"))]
    async fn add_space_member(
        &self,
        actor: &Actor,
        space: Uuid,
        email: &Email,
        role: SpaceRole,
    ) -> Result<Member> {
        let target = |s: Uuid| targets::space_members(s);
        let (mut tx, _, access) = self
            .space_guard(actor, space, SpaceAction::Manage, "space_member.add", target)
            .await?;
        let user = Self::upsert_user(&mut tx, email).await?;
        let done = sqlx::query(
            "INSERT INTO space_members (space_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (space_id, user_id) DO NOTHING",
        )
        .bind(space)
        .bind(user)
        .bind(role.as_str())
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&done) == 0 {
            return Err(Error::already_exists(
                "MEMBER_ALREADY_EXISTS",
                format!("{email} is already a member of this space"),
            )
            .with("user_email", email.as_str()));
        }
        let member = Self::space_member(&mut tx, space, user).await?;
        Self::bump_space(&mut tx, space).await?;
        let draft = Draft::success(actor, "space_member.add", targets::space_member(space, user))
            .with("user_id", user.to_string())
            .with("email", email.as_str())
            .with("role", role.as_str());
        self.append(&mut tx, Self::chain_of(&access.space), draft).await?;
        self.finish(tx, actor, &member).await?;
        Ok(member)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "update_space_member"))]
    async fn update_space_member(
        &self,
        actor: &Actor,
        space: Uuid,
        user: Uuid,
        role: SpaceRole,
        etag: Option<&str>,
    ) -> Result<Member> {
        let target = |s: Uuid| targets::space_member(s, user);
        let (mut tx, _, access) = self
            .space_guard(
                actor,
                space,
                SpaceAction::Manage,
                "space_member.update_role",
                target,
            )
            .await?;
        let previous: Option<String> =
            sqlx::query_scalar("SELECT role FROM space_members WHERE space_id = $1 AND user_id = $2")
                .bind(space)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
        let previous = previous.ok_or_else(|| Self::member_not_found(user))?;
        if etag.is_some() {
            let before = Self::space_member(&mut tx, space, user).await?;
            check_etag("membership", etag, &before.etag)?;
        }
        sqlx::query(
            "UPDATE space_members SET role = $3, version = version + 1 WHERE space_id = $1 AND user_id = $2",
        )
        .bind(space)
        .bind(user)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
        let member = Self::space_member(&mut tx, space, user).await?;
        Self::bump_space(&mut tx, space).await?;
        let draft = Draft::success(
            actor,
            "space_member.update_role",
            targets::space_member(space, user),
        )
        .with("user_id", user.to_string())
        .with("previous_role", previous)
        .with("role", role.as_str());
        self.append(&mut tx, Self::chain_of(&access.space), draft).await?;
        self.finish(tx, actor, &member).await?;
        Ok(member)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "remove_space_member"))]
    async fn remove_space_member(
        &self,
        actor: &Actor,
        space: Uuid,
        user: Uuid,
        etag: Option<&str>,
    ) -> Result<()> {
        // Members may leave a space they can see; removing others takes
        // a space admin.
        let action = if user == actor.user_id {
            SpaceAction::Read
        } else {
            SpaceAction::Manage
        };
        let target = |s: Uuid| targets::space_member(s, user);
        let (mut tx, _, access) = self
            .space_guard(actor, space, action, "space_member.remove", target)
            .await?;
        if etag.is_some() {
            let before = Self::space_member(&mut tx, space, user).await?;
            check_etag("membership", etag, &before.etag)?;
        }
        let removed: Option<String> = sqlx::query_scalar(
            "DELETE FROM space_members WHERE space_id = $1 AND user_id = $2 RETURNING role",
        )
        .bind(space)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        let role = removed.ok_or_else(|| Self::member_not_found(user))?;
        Self::bump_space(&mut tx, space).await?;
        let draft = Draft::success(actor, "space_member.remove", targets::space_member(space, user))
            .with("user_id", user.to_string())
            .with("role", role);
        self.append(&mut tx, Self::chain_of(&access.space), draft).await?;
        self.finish(tx, actor, &()).await?;
        Ok(())
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "request_record"))]
    async fn request_record(&self, caller: Uuid, request_id: Uuid) -> Result<Option<RequestRecord>> {
        let row = sqlx::query(
            "SELECT rpc, fingerprint, outcome, error FROM request_ids \
             WHERE caller = $1 AND request_id = $2 AND created_at >= $3",
        )
        .bind(caller)
        .bind(request_id)
        .bind(now_micros() - crate::store::REQUEST_ID_TTL_MICROS)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(RequestRecord {
            rpc: row.try_get("rpc")?,
            fingerprint: row.try_get("fingerprint")?,
            outcome: row.try_get("outcome")?,
            error: row.try_get("error")?,
        }))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "record_request_error"))]
    async fn record_request_error(&self, actor: &Actor, error: &Error) -> Result<()> {
        let Some(key) = actor.request else { return Ok(()) };
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO request_ids (caller, request_id, rpc, fingerprint, error, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (caller, request_id) DO NOTHING",
        )
        .bind(actor.user_id)
        .bind(key.request_id)
        .bind(actor.rpc)
        .bind(key.fingerprint_hex())
        .bind(error.to_json())
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "prune_request_ids"))]
    async fn prune_request_ids(&self) -> Result<u64> {
        // Upkeep, not a change: one statement on the writer, outside the
        // change metrics.
        let done = sqlx::query("DELETE FROM request_ids WHERE created_at < $1")
            .bind(now_micros() - crate::store::REQUEST_ID_TTL_MICROS)
            .execute(self.writer())
            .await?;
        Ok(DB::rows_affected(&done))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "record_denied"))]
    async fn record_denied(&self, chain: Uuid, draft: Draft) -> Result<()> {
        let mut tx = self.write_tx().await?;
        self.append(&mut tx, chain, draft).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "storage_state"))]
    async fn storage_state(&self, org: Uuid) -> Result<Option<StorageState>> {
        // One reader for all of the call's statements (see `read`).
        let mut conn = self.read().await?;
        let row = sqlx::query(
            "SELECT id, name, slug, description, created_at, updated_at, labels, version, deleted_at, purge_at \
             FROM organizations WHERE id = $1",
        )
        .bind(org)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let spaces: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM spaces WHERE organization_id = $1")
            .bind(org)
            .fetch_all(&mut *conn)
            .await?;
        Ok(Some(StorageState {
            org: Self::org_from(&row)?,
            spaces,
        }))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "space_storage_state"))]
    async fn space_storage_state(&self, org: Uuid, space: Uuid) -> Result<Option<(Organization, bool)>> {
        let row = sqlx::query(
            "SELECT id, name, slug, description, created_at, updated_at, labels, version, deleted_at, purge_at, \
             EXISTS (SELECT 1 FROM spaces s WHERE s.id = $2 AND s.organization_id = $1) AS attached \
             FROM organizations WHERE id = $1",
        )
        .bind(org)
        .bind(space)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((Self::org_from(&row)?, row.try_get("attached")?)))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "organization_ids"))]
    async fn organization_ids(&self, after: Option<Uuid>, limit: i64) -> Result<Vec<Uuid>> {
        let mut qb = QueryBuilder::<DB>::new("SELECT id FROM organizations");
        if let Some(after) = after {
            qb.push(" WHERE id > ");
            qb.push_bind(after);
        }
        qb.push(" ORDER BY id LIMIT ");
        qb.push_bind(limit);
        Ok(qb
            .build_query_scalar()
            .fetch_all(&mut *self.read().await?)
            .await?)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "audit_head"))]
    async fn audit_head(&self, org: Uuid) -> Result<Option<Head>> {
        let row = sqlx::query(
            "SELECT organization_id, seq, hash, base_seq, base_hash, base_signed_at, base_key_id, \
             base_signature, deleted_at FROM audit_heads WHERE organization_id = $1",
        )
        .bind(org)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let base_seq: i64 = row.try_get("base_seq")?;
        let base_hash: String = row.try_get("base_hash")?;
        let signed_at: Option<i64> = row.try_get("base_signed_at")?;
        let key_id: Option<String> = row.try_get("base_key_id")?;
        let signature: Option<String> = row.try_get("base_signature")?;
        let base_checkpoint = match (signed_at, key_id, signature) {
            (Some(signed_at), Some(key_id), Some(signature)) => Some(audit::Checkpoint {
                organization_id: org,
                seq: base_seq,
                hash: base_hash.clone(),
                signed_at,
                key_id,
                signature,
            }),
            _ => None,
        };
        Ok(Some(Head {
            organization_id: row.try_get("organization_id")?,
            seq: row.try_get("seq")?,
            hash: row.try_get("hash")?,
            base_seq,
            base_hash,
            base_checkpoint,
            deleted_at: row.try_get("deleted_at")?,
        }))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "audit_chain_ids"))]
    async fn audit_chain_ids(&self, after: Option<Uuid>, limit: i64) -> Result<Vec<Uuid>> {
        let mut qb = QueryBuilder::<DB>::new("SELECT organization_id FROM audit_heads");
        if let Some(after) = after {
            qb.push(" WHERE organization_id > ");
            qb.push_bind(after);
        }
        qb.push(" ORDER BY organization_id LIMIT ");
        qb.push_bind(limit);
        Ok(qb
            .build_query_scalar()
            .fetch_all(&mut *self.read().await?)
            .await?)
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "newest_event_before"))]
    async fn newest_event_before(&self, chain: Uuid, cutoff: i64) -> Result<Option<(i64, String)>> {
        let row = sqlx::query(
            "SELECT seq, hash FROM audit_events WHERE organization_id = $1 AND created_at < $2 \
             ORDER BY created_at DESC, seq DESC LIMIT 1",
        )
        .bind(chain)
        .bind(cutoff)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        Ok(match row {
            Some(row) => Some((row.try_get("seq")?, row.try_get("hash")?)),
            None => None,
        })
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "prune_audit"))]
    async fn prune_audit(&self, checkpoint: &audit::Checkpoint) -> Result<u64> {
        let chain = checkpoint.organization_id;
        let mut tx = self.write_tx().await?;
        let head = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT seq, base_seq, deleted_at FROM audit_heads WHERE organization_id = $1{}",
            DB::LOCK
        )))
        .bind(chain)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(head) = head else { return Ok(0) };
        let (head_seq, base_seq): (i64, i64) = (head.try_get("seq")?, head.try_get("base_seq")?);
        let deleted_at: Option<i64> = head.try_get("deleted_at")?;
        if checkpoint.seq <= base_seq || checkpoint.seq > head_seq {
            return Ok(0);
        }
        let hash: Option<String> =
            sqlx::query_scalar("SELECT hash FROM audit_events WHERE organization_id = $1 AND seq = $2")
                .bind(chain)
                .bind(checkpoint.seq)
                .fetch_optional(&mut *tx)
                .await?;
        if hash.as_deref() != Some(checkpoint.hash.as_str()) {
            return Err(Error::internal(
                "pruning the audit trail",
                format!(
                    "chain {chain}: event {} is not the one the checkpoint names",
                    checkpoint.seq
                ),
            ));
        }
        let done = sqlx::query("DELETE FROM audit_events WHERE organization_id = $1 AND seq <= $2")
            .bind(chain)
            .bind(checkpoint.seq)
            .execute(&mut *tx)
            .await?;
        if deleted_at.is_some() && checkpoint.seq == head_seq {
            // A deleted organization's trail, wholly expired.
            sqlx::query("DELETE FROM audit_heads WHERE organization_id = $1")
                .bind(chain)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "UPDATE audit_heads SET base_seq = $2, base_hash = $3, base_signed_at = $4, base_key_id = $5, \
                 base_signature = $6 WHERE organization_id = $1",
            )
            .bind(chain)
            .bind(checkpoint.seq)
            .bind(checkpoint.hash.clone())
            .bind(checkpoint.signed_at)
            .bind(checkpoint.key_id.clone())
            .bind(checkpoint.signature.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(DB::rows_affected(&done))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "list_audit_events"))]
    async fn list_audit_events(
        &self,
        org: Uuid,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<Page<Event>> {
        // One reader for all of the call's statements (see `read`).
        let mut conn = self.read().await?;
        let build = |select: &str| {
            let mut qb = QueryBuilder::<DB>::new(select);
            qb.push(" FROM audit_events e WHERE e.organization_id = ");
            qb.push_bind(org);
            match &filter.action {
                Some(audit::ActionFilter::Exact(a)) => {
                    qb.push(" AND e.action = ");
                    qb.push_bind(a.clone());
                }
                Some(audit::ActionFilter::Prefix(p)) => DB::push_prefix(&mut qb, "e.action", p),
                None => {}
            }
            if let Some(actor) = filter.actor {
                qb.push(" AND e.actor = ");
                qb.push_bind(actor);
            }
            if let Some(result) = filter.result {
                qb.push(" AND e.result = ");
                qb.push_bind(result.as_str());
            }
            if let Some(since) = filter.since {
                qb.push(" AND e.created_at >= ");
                qb.push_bind(since);
            }
            if let Some(until) = filter.until {
                qb.push(" AND e.created_at < ");
                qb.push_bind(until);
            }
            qb
        };
        let total: i64 = build("SELECT count(*)")
            .build_query_scalar()
            .fetch_one(&mut *conn)
            .await?;
        let mut qb = build(&format!("SELECT {EVENT_COLUMNS}"));
        if let Some(after) = page.after {
            qb.push(" AND e.seq < ");
            qb.push_bind(after.created_at);
        }
        qb.push(" ORDER BY e.seq DESC LIMIT ");
        qb.push_bind(page.fetch());
        qb.push(" OFFSET ");
        qb.push_bind(page.offset());
        let rows = qb
            .build()
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(Self::event_from)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self::page_of(&page, rows, total, |e: &Event| {
            crate::domain::page::Cursor {
                created_at: e.seq,
                id: e.id,
            }
        }))
    }

    #[tracing::instrument(level = "info", name = "db", skip_all, fields(db.system = DB::BACKEND, db.operation = "audit_events_after"))]
    async fn audit_events_after(&self, org: Uuid, after_seq: i64, limit: i64) -> Result<Vec<Event>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE organization_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        )))
        .bind(org)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        Ok(rows
            .iter()
            .map(Self::event_from)
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }
}
