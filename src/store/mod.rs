//! Persistence: one `Store` trait, one implementation per backend, chosen
//! once from the database URL. Both implementations share their SQL text
//! (see `sql.rs`); each mutation is one transaction, and the invariants
//! (unique slugs, one membership per user, one organization per space, at
//! least one admin per organization) are held by the schema itself.

mod content_sql;
mod dialect;
mod postgres;
pub mod snapshot;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::audit::{Actor, Checkpoint, Draft, Event, EventFilter, Head};
use crate::domain::content::{
    ContentKind, ContractFilter, ContractInput, IssueFilter, IssueInput, ProductFilter, ProductInput,
    QualityCheckFilter, QualityCheckInput, Scope,
};
use crate::domain::labels::{LabelFilter, Labels};
use crate::domain::model::{
    Accepted, Invitation, InvitationState, Member, OrgAccess, Organization, OrganizationDetails,
    OrganizationSummary, Page, Space, SpaceAccess, User,
};
use crate::domain::model::{Contract, Issue, Product, QualityCheck, Stats};
use crate::domain::page::PageRequest;
use crate::domain::types::{Agent, Description, Email, Name, OrgRole, Slug, SpaceRole, Visibility};
use crate::domain::{Error, Result};

pub use content_sql::EXPIRY_DAY;
pub use dialect::{Dialect, SqlStore};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A new organization with its first admin.
#[derive(Debug, Clone)]
pub struct NewOrganization {
    pub id: Uuid,
    pub name: Name,
    pub slug: Slug,
    pub description: Description,
    pub admin_email: Email,
    pub labels: Labels,
}

/// A new invitation.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub id: Uuid,
    pub email: Email,
    pub role: OrgRole,
    /// Microseconds since the epoch.
    pub expires_at: i64,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct OrganizationChanges {
    pub name: Option<Name>,
    pub slug: Option<Slug>,
    pub description: Option<Description>,
    /// Replaces every label.
    pub labels: Option<Labels>,
    /// Applies the change only if the organization's etag is still this.
    pub etag: Option<String>,
}

impl OrganizationChanges {
    /// Whether nothing would change (the etag is a condition, not a change).
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.slug.is_none() && self.description.is_none() && self.labels.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct NewSpace {
    pub id: Uuid,
    pub name: Name,
    pub slug: Slug,
    pub description: Description,
    pub visibility: Visibility,
    pub repo: String,
    pub agent: Option<Agent>,
    pub admin_email: Email,
    pub labels: Labels,
}

#[derive(Debug, Clone, Default)]
pub struct SpaceChanges {
    pub name: Option<Name>,
    pub slug: Option<Slug>,
    pub description: Option<Description>,
    pub visibility: Option<Visibility>,
    pub repo: Option<String>,
    /// `Some(None)` removes the agent.
    pub agent: Option<Option<Agent>>,
    /// Replaces every label.
    pub labels: Option<Labels>,
    /// Applies the change only if the space's etag is still this.
    pub etag: Option<String>,
}

impl SpaceChanges {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.slug.is_none()
            && self.description.is_none()
            && self.visibility.is_none()
            && self.repo.is_none()
            && self.agent.is_none()
            && self.labels.is_none()
    }
}

/// Which organizations to list.
#[derive(Debug, Clone, Default)]
pub struct OrganizationFilter {
    /// Only organizations this user belongs to (`None`: all, for superadmins).
    pub member: Option<Uuid>,
    pub search: Option<String>,
    /// Every one of these labels must be set.
    pub labels: LabelFilter,
    /// Also soft-deleted organizations: all of them for superadmins (no
    /// `member`), else those `member` administers.
    pub show_deleted: bool,
}

#[derive(Debug, Clone, Default)]
pub struct MemberFilter {
    pub search: Option<String>,
    pub role: Option<OrgRole>,
}

/// Which spaces to list.
#[derive(Debug, Clone, Default)]
pub struct SpaceFilter {
    /// Only spaces this user may see (`None`: all, for superadmins).
    pub visible_to: Option<Uuid>,
    pub search: Option<String>,
    pub organization_id: Option<Uuid>,
    /// Every one of these labels must be set.
    pub labels: LabelFilter,
    /// Also soft-deleted spaces: all of them for superadmins (no
    /// `visible_to`), else those `visible_to` administers.
    pub show_deleted: bool,
}

/// The content half: batch upserts and deletes by internal writers, and the
/// aggregated, visibility-scoped reads. Writes check the actor's rights and
/// record their audit event inside their transaction.
#[async_trait]
pub trait ContentStore: Send + Sync + 'static {
    /// Each returns the number of items in the batch (inserted or replaced).
    async fn upsert_products(&self, actor: &Actor, space: Uuid, items: &[ProductInput]) -> Result<u64>;
    async fn upsert_contracts(&self, actor: &Actor, space: Uuid, items: &[ContractInput]) -> Result<u64>;
    async fn upsert_issues(&self, actor: &Actor, space: Uuid, items: &[IssueInput]) -> Result<u64>;
    async fn upsert_quality_checks(
        &self,
        actor: &Actor,
        space: Uuid,
        items: &[QualityCheckInput],
    ) -> Result<u64>;
    async fn delete_content(&self, actor: &Actor, kind: ContentKind, space: Uuid, id: Uuid) -> Result<()>;

    async fn list_products(
        &self,
        scope: &Scope,
        filter: &ProductFilter,
        page: PageRequest,
    ) -> Result<Page<Product>>;
    async fn list_contracts(
        &self,
        scope: &Scope,
        filter: &ContractFilter,
        page: PageRequest,
    ) -> Result<Page<Contract>>;
    async fn list_issues(
        &self,
        scope: &Scope,
        filter: &IssueFilter,
        page: PageRequest,
    ) -> Result<Page<Issue>>;
    async fn list_quality_checks(
        &self,
        scope: &Scope,
        filter: &QualityCheckFilter,
        page: PageRequest,
    ) -> Result<Page<QualityCheck>>;
    async fn stats(&self, scope: &Scope) -> Result<Stats>;
    /// Folds the active contracts of expiry days before `today` (days since
    /// the epoch) into their spaces' lapsed counters; returns the spaces
    /// folded. Upkeep `serve` runs every minute.
    async fn fold_expiries(&self, today: i64) -> Result<u64>;
    /// The query plans of the main aggregation queries (docs and benchmarks).
    async fn explain(&self, scope: &Scope, search: &str) -> Result<Vec<(String, String)>>;
}

#[async_trait]
pub trait Store: ContentStore {
    /// Which backend this is ("sqlite" or "postgres").
    fn backend(&self) -> &'static str;
    /// Applies pending migrations, telling `progress` how far it got.
    async fn migrate(&self, progress: &dyn crate::progress::Reporter) -> Result<()>;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
    /// The task that keeps the snapshot of hot reads in step with changes
    /// made anywhere (`serve` runs it; without it the snapshot never
    /// answers); `None` when the snapshot is off.
    fn snapshot_sync(&self) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>;
    /// The connection pools' sizes, for metrics.
    fn pool_stats(&self) -> Vec<crate::metrics::PoolStats>;
    /// Refreshes the planner's statistics (after a bulk load).
    async fn analyze(&self) -> Result<()>;

    async fn user_by_email(&self, email: &Email) -> Result<Option<User>>;
    /// Returns the user with this email, creating it when unknown, and fills
    /// an empty display name.
    async fn provision_user(&self, email: &Email, display_name: &str) -> Result<User>;
    async fn set_superadmin(&self, email: &Email, superadmin: bool) -> Result<User>;

    // Every mutation below runs in one transaction that reads the actor's
    // rights (their superadmin flag, their role in the locked organization or
    // space), makes the change and appends its audit event. A refusal commits
    // only its `denied` event and returns PERMISSION_DENIED; any other failure
    // commits nothing.
    async fn create_organization(&self, actor: &Actor, new: NewOrganization) -> Result<Organization>;
    async fn update_organization(
        &self,
        actor: &Actor,
        slug: &str,
        changes: OrganizationChanges,
    ) -> Result<Organization>;
    /// Soft-deletes the organization until `purge_at` (its spaces are
    /// detached, remembering it); returns its id.
    async fn delete_organization(
        &self,
        actor: &Actor,
        slug: &str,
        etag: Option<&str>,
        purge_at: i64,
    ) -> Result<Uuid>;
    /// Restores a soft-deleted organization, with the spaces its deletion
    /// detached that are still free.
    async fn undelete_organization(
        &self,
        actor: &Actor,
        slug: &str,
        etag: Option<&str>,
    ) -> Result<Organization>;
    async fn attach_space(&self, actor: &Actor, slug: &str, space: Uuid) -> Result<Space>;
    /// Detaches the space; returns the organization's id.
    async fn detach_space(&self, actor: &Actor, slug: &str, space: Uuid) -> Result<Uuid>;
    async fn add_member(&self, actor: &Actor, slug: &str, email: &Email, role: OrgRole) -> Result<Member>;
    async fn update_member_role(
        &self,
        actor: &Actor,
        slug: &str,
        user: Uuid,
        role: OrgRole,
        etag: Option<&str>,
    ) -> Result<Member>;
    async fn remove_member(&self, actor: &Actor, slug: &str, user: Uuid, etag: Option<&str>) -> Result<()>;
    /// Adds every entry or none (one audit event); the members in entry order.
    async fn batch_add_members(
        &self,
        actor: &Actor,
        slug: &str,
        entries: &[(Email, OrgRole)],
    ) -> Result<Vec<Member>>;
    /// Removes every user or none (one audit event); how many were removed.
    async fn batch_remove_members(&self, actor: &Actor, slug: &str, users: &[Uuid]) -> Result<u64>;
    async fn batch_add_space_members(
        &self,
        actor: &Actor,
        space: Uuid,
        entries: &[(Email, SpaceRole)],
    ) -> Result<Vec<Member>>;
    async fn batch_remove_space_members(&self, actor: &Actor, space: Uuid, users: &[Uuid]) -> Result<u64>;
    async fn create_invitation(&self, actor: &Actor, slug: &str, new: NewInvitation) -> Result<Invitation>;
    async fn revoke_invitation(&self, actor: &Actor, slug: &str, id: Uuid) -> Result<Invitation>;
    /// Makes the actor a member, if the invitation is theirs and pending.
    async fn accept_invitation(&self, actor: &Actor, id: Uuid) -> Result<Accepted>;
    async fn list_invitations(
        &self,
        org: Uuid,
        state: Option<InvitationState>,
        page: PageRequest,
    ) -> Result<Page<Invitation>>;
    async fn create_space(&self, actor: &Actor, new: NewSpace) -> Result<Space>;
    async fn update_space(&self, actor: &Actor, id: Uuid, changes: SpaceChanges) -> Result<Space>;
    /// Soft-deletes the space until `purge_at` (detaching it, remembering
    /// its organization); returns the organization it belonged to.
    async fn delete_space(
        &self,
        actor: &Actor,
        id: Uuid,
        etag: Option<&str>,
        purge_at: i64,
    ) -> Result<Option<Uuid>>;
    /// Restores a soft-deleted space (back into its organization if that is
    /// live); returns it.
    async fn undelete_space(&self, actor: &Actor, id: Uuid, etag: Option<&str>) -> Result<Space>;
    /// Purges what was soft-deleted with a `purge_at` before `now`; the
    /// organizations purged (their directories go next).
    async fn purge_due(&self, now: i64) -> Result<Vec<Uuid>>;
    async fn add_space_member(
        &self,
        actor: &Actor,
        space: Uuid,
        email: &Email,
        role: SpaceRole,
    ) -> Result<Member>;
    async fn update_space_member(
        &self,
        actor: &Actor,
        space: Uuid,
        user: Uuid,
        role: SpaceRole,
        etag: Option<&str>,
    ) -> Result<Member>;
    async fn remove_space_member(
        &self,
        actor: &Actor,
        space: Uuid,
        user: Uuid,
        etag: Option<&str>,
    ) -> Result<()>;
    /// Records a refused read (reads decide outside a write transaction).
    async fn record_denied(&self, chain: Uuid, draft: Draft) -> Result<()>;

    /// The record of a request id (unexpired), if any.
    async fn request_record(&self, caller: Uuid, request_id: Uuid) -> Result<Option<RequestRecord>>;
    /// Remembers a definitive refusal of a change made with a request id
    /// (a change that failed wrote nothing, its record included).
    async fn record_request_error(&self, actor: &Actor, error: &Error) -> Result<()>;
    /// Forgets request ids older than a day; how many went.
    async fn prune_request_ids(&self) -> Result<u64>;

    /// The organization with this slug and the user's role in it.
    async fn organization_access(&self, slug: &str, user: Uuid) -> Result<Option<OrgAccess>>;
    async fn organization_details(&self, org: Organization) -> Result<Arc<OrganizationDetails>>;
    /// What GetOrganization answers and what the caller holds in it, in
    /// one statement when the snapshot misses; `None` for an unknown slug.
    async fn organization_view(
        &self,
        slug: &str,
        user: Uuid,
    ) -> Result<Option<(OrgAccess, Arc<OrganizationDetails>)>>;
    async fn list_organizations(
        &self,
        filter: &OrganizationFilter,
        page: PageRequest,
    ) -> Result<Page<OrganizationSummary>>;
    async fn list_members(&self, org: Uuid, filter: &MemberFilter, page: PageRequest)
    -> Result<Page<Member>>;
    /// The space and what the user holds in it and in its organization.
    async fn space_access(&self, space: Uuid, user: Uuid) -> Result<Option<SpaceAccess>>;
    async fn list_spaces(&self, filter: &SpaceFilter, page: PageRequest) -> Result<Page<Space>>;
    async fn list_space_members(&self, space: Uuid, page: PageRequest) -> Result<Page<Member>>;

    /// What the organization's storage directory must hold (committed
    /// state); `None` when the organization does not exist.
    async fn storage_state(&self, org: Uuid) -> Result<Option<StorageState>>;
    /// The organization and whether `space` is attached to it (committed
    /// state), for syncing one space's directory; `None` when the
    /// organization does not exist.
    async fn space_storage_state(&self, org: Uuid, space: Uuid) -> Result<Option<(Organization, bool)>>;
    /// Organization ids in id order, after `after`.
    async fn organization_ids(&self, after: Option<Uuid>, limit: i64) -> Result<Vec<Uuid>>;

    /// Where a chain stands; `None` when it has no event.
    async fn audit_head(&self, chain: Uuid) -> Result<Option<Head>>;
    /// A chain's events, newest first.
    async fn list_audit_events(
        &self,
        chain: Uuid,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<Page<Event>>;
    /// Up to `limit` events of a chain after `after_seq`, in chain order.
    async fn audit_events_after(&self, chain: Uuid, after_seq: i64, limit: i64) -> Result<Vec<Event>>;
    /// Chain ids in id order, after `after`.
    async fn audit_chain_ids(&self, after: Option<Uuid>, limit: i64) -> Result<Vec<Uuid>>;
    /// The seq and hash of the newest event created before `cutoff`.
    async fn newest_event_before(&self, chain: Uuid, cutoff: i64) -> Result<Option<(i64, String)>>;
    /// Deletes the chain's events up to the checkpoint's seq and makes the
    /// checkpoint the chain's base; a deleted organization's chain pruned to
    /// its head goes entirely. Returns the number of events deleted.
    async fn prune_audit(&self, checkpoint: &Checkpoint) -> Result<u64>;
}

/// What an organization's storage directory must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageState {
    pub org: Organization,
    pub spaces: Vec<Uuid>,
}

/// How long a request id is remembered (AIP-155: at least a day).
/// At most this many spaces and members are embedded in an organization
/// (GetOrganization, ListOrganizations); `space_count` and `user_count`
/// are the totals, and ListSpaces / ListUsers page through all of them.
/// Keeps a response of an organization of 100,000 spaces within what a
/// client accepts by default (4 MiB for gRPC).
pub const MAX_EMBEDDED: i64 = 1000;

/// At most this many spaces are embedded in each organization of a
/// ListOrganizations page (the first by name): a page of 20 organizations
/// stays a page, not 20,000 spaces.
pub const MAX_EMBEDDED_LISTED: i64 = 100;

pub const REQUEST_ID_TTL_MICROS: i64 = 24 * 3600 * 1_000_000;

/// What a change made with a request id left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub rpc: String,
    pub fingerprint: String,
    /// JSON of the result, for a change that succeeded.
    pub outcome: Option<String>,
    /// JSON of the refusal, for one that did not.
    pub error: Option<String>,
}

/// The signal that a change's request id was claimed by an earlier attempt
/// that committed: the caller answers from the record.
pub(crate) fn request_replay() -> Error {
    Error::new(
        crate::domain::ErrorKind::Aborted,
        "REQUEST_REPLAY",
        "this request was already made; its first answer applies",
    )
}

/// Audit event targets, named like resources (`organizations/<id>/users/<id>`).
pub mod targets {
    use uuid::Uuid;

    pub fn org(org: Uuid) -> String {
        format!("organizations/{org}")
    }

    pub fn org_user(org: Uuid, user: Uuid) -> String {
        format!("organizations/{org}/users/{user}")
    }

    pub fn org_space(org: Uuid, space: Uuid) -> String {
        format!("organizations/{org}/spaces/{space}")
    }

    pub fn space(space: Uuid) -> String {
        format!("spaces/{space}")
    }

    pub fn org_users(org: Uuid) -> String {
        format!("organizations/{org}/users")
    }

    pub fn invitation(org: Uuid, invitation: Uuid) -> String {
        format!("organizations/{org}/invitations/{invitation}")
    }

    pub fn space_members(space: Uuid) -> String {
        format!("spaces/{space}/members")
    }

    pub fn space_member(space: Uuid, user: Uuid) -> String {
        format!("spaces/{space}/members/{user}")
    }

    /// A kind of content of a space (`spaces/<id>/products`), or one item.
    pub fn content(space: Uuid, collection: &str, item: Option<Uuid>) -> String {
        match item {
            Some(id) => format!("spaces/{space}/{collection}/{id}"),
            None => format!("spaces/{space}/{collection}"),
        }
    }
}

/// Pool sizes and the like.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// Whether changes append audit events: always in service. Only the
    /// audit benchmark turns it off, to measure the same writes without the
    /// trail.
    pub audit_trail: bool,
    /// SQLite: how long a write waits for a write lock held elsewhere (a
    /// backup, the sqlite3 shell) before answering UNAVAILABLE.
    pub busy_timeout: std::time::Duration,
    /// Where the store records its metrics.
    pub metrics: crate::metrics::StoreMetrics,
    /// Entries of the in-process snapshot of hot reads (per kind; the
    /// organization details hold a tenth); 0 turns it off. It answers only
    /// while `serve` keeps it in step with the database.
    pub cache_entries: usize,
    /// How long a read waits for a reader connection when every one is in
    /// use before it is refused `OVERLOADED` (see `SqlStore::read`).
    pub read_wait: std::time::Duration,
}

/// How long a read waits for a free reader by default.
pub const DEFAULT_READ_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Entries of the snapshot of hot reads by default.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            audit_trail: true,
            busy_timeout: std::time::Duration::from_secs(10),
            metrics: crate::metrics::StoreMetrics::default(),
            cache_entries: DEFAULT_CACHE_ENTRIES,
            read_wait: DEFAULT_READ_WAIT,
        }
    }
}

/// Connects to the database named by `url` (`sqlite:` or `postgres:`).
/// Errors are for the operator: they name the database (without its
/// password) and what went wrong.
pub async fn connect(url: &str, options: &StoreOptions) -> std::result::Result<Arc<dyn Store>, String> {
    let store: Arc<dyn Store> = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(PostgresStore::connect(url, options).await?)
    } else if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::connect(url, options).await?)
    } else {
        return Err("the database URL must start with sqlite: or postgres://".into());
    };
    Ok(store)
}

/// Connections a server opens by default: 16 to PostgreSQL; on SQLite,
/// twice the cores (at least 2, at most 16) readers. SQLite's readers run
/// in this process, so readers beyond the cores only take turns on them,
/// each with a smaller share of the page cache: on 2 cores a search's
/// capacity was 95/s with 4 readers against 81/s with 16, and at twice
/// that load 4 readers kept 90% of it where 16 kept 77% (one run each;
/// docs/benchmarks.md).
pub fn default_max_connections(url: &str) -> u32 {
    if url.starts_with("sqlite:") {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        (2 * cores).clamp(2, 16)
    } else {
        16
    }
}

/// The current time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// `%term%` for LIKE, with LIKE's wildcards escaped (escape character `\`).
pub(crate) fn like_pattern(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The smallest string greater than every string starting with `prefix`
/// (in byte order), if there is one.
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => Error::unavailable(e),
            sqlx::Error::Database(d) if d.message().contains("LAST_ADMIN") => last_admin(),
            sqlx::Error::Database(d) => match d.code().as_deref() {
                // SQLITE_FULL; PostgreSQL's disk_full.
                Some("13" | "53100") => storage_full(e),
                // SQLITE_BUSY (also its extended codes) and SQLITE_LOCKED: the
                // write lock stayed taken for the whole busy timeout.
                // PostgreSQL shutting down or refusing connections.
                Some("5" | "261" | "517" | "6" | "57P01" | "57P02" | "57P03") => Error::unavailable(e),
                // PostgreSQL's connection exceptions.
                Some(code) if code.starts_with("08") => Error::unavailable(e),
                // Serialization failures and deadlocks: nothing was written.
                Some("40001" | "40P01") => {
                    tracing::warn!(error = %e, "transaction aborted by the database");
                    Error::new(
                        crate::domain::ErrorKind::Aborted,
                        "CONFLICT",
                        "the change conflicted with a concurrent one and was not made; try again",
                    )
                }
                _ => Error::internal("database", e),
            },
            _ => Error::internal("database", e),
        }
    }
}

/// The database cannot grow: nothing was written; retrying after space is
/// freed succeeds.
fn storage_full(e: impl std::fmt::Display) -> Error {
    tracing::error!(error = %e, "the database's storage is full");
    Error::new(
        crate::domain::ErrorKind::ResourceExhausted,
        "STORAGE_FULL",
        "the service's storage is full; nothing was written, try again later",
    )
}

pub(crate) fn last_admin() -> Error {
    Error::failed_precondition("LAST_ADMIN", "an organization must keep at least one admin")
}

/// The tables holding space content; each row carries its space's
/// organization.
pub(crate) const CONTENT_TABLES: [&str; 4] = ["products", "contracts", "issues", "quality_checks"];

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}
