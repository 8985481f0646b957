//! The one path of every operation: what the gRPC handlers (and `orgd
//! generate`) call once they have turned a request into validated values.
//!
//! A change is one store call that decides the caller's rights, makes the
//! change and records its audit event in one transaction; after it commits,
//! the organization's storage directory is brought in step with the database.
//! A read resolves what the caller may see and records a refusal.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use crate::auth::Authenticator;
use crate::domain::access::{Caller, OrgAction, SpaceAction, check_org, check_space};
use crate::domain::audit::{self, Actor, Checkpoint, Draft, Event, EventFilter, Head, Verifier};
use crate::domain::content::{
    ContentKind, ContractInput, IssueInput, ProductInput, QualityCheckInput, Scope,
};
use crate::domain::model::{
    Accepted, Invitation, Member, OrgAccess, OrganizationDetails, Page, Space, SpaceAccess,
};
use crate::domain::page::PageRequest;
use crate::domain::types::{Email, OrgRole, SpaceRole};
use crate::domain::{Error, Result};
use crate::ratelimit::RateLimits;
use crate::signing::AuditSigner;
use crate::storage::Storage;
use crate::store::{
    NewInvitation, NewOrganization, NewSpace, OrganizationChanges, SpaceChanges, Store, targets,
};

/// Organizations whose directories are written one at a time (striped by id).
const STORAGE_STRIPES: usize = 64;
/// Events read per query while verifying a chain.
const VERIFY_PAGE: i64 = 10_000;
/// How long deleted resources can be restored by default (SPEC §7).
pub const DEFAULT_SOFT_DELETE_WINDOW: Duration = Duration::from_secs(30 * 86_400);
/// Events per chunk of an export.
const EXPORT_PAGE: i64 = 1_000;
/// Events read per query by a watcher.
const WATCH_PAGE: i64 = 256;

/// What every handler shares.
pub struct App {
    pub store: Arc<dyn Store>,
    /// Checks bearer tokens; `None` in command-line tools, which serve no
    /// requests (a server without one refuses every call).
    pub auth: Option<Arc<Authenticator>>,
    pub storage: Storage,
    /// Signs audit checkpoints.
    pub signer: Arc<AuditSigner>,
    /// How long audit events are kept (`serve` prunes older ones); `None`
    /// keeps them forever.
    pub audit_retention: Option<Duration>,
    /// This server's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How long deleted organizations and spaces can be restored before
    /// they are purged; zero purges at once.
    pub soft_delete_window: Duration,
    /// Calls served at once (see `api::admission`).
    pub admission: crate::api::admission::AdmissionConfig,
    /// Rate limits per caller (charged by the authentication layer) and per
    /// organization (charged here, once the organization is known).
    pub limits: Arc<RateLimits>,
    /// Which organization a slug or space belongs to, for charging writes
    /// to the organization's limit without a query each time.
    owners: OwnerCache,
    storage_locks: Vec<tokio::sync::Mutex<()>>,
    /// Organizations whose directory could not be brought in step; retried.
    storage_retry: Mutex<HashSet<Uuid>>,
    /// Bumped after every change this instance makes: wakes WatchEvents
    /// streams at once (streams also poll, for other instances' changes).
    changes: tokio::sync::watch::Sender<u64>,
}

/// Which audit chain a caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainRef {
    /// A live organization, by slug.
    Slug(String),
    /// Any chain by organization id: a live or deleted organization, or the
    /// nil id for spaces without an organization.
    Id(Uuid),
}

/// The outcome of walking a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub organization_id: Uuid,
    pub valid: bool,
    pub checked: i64,
    pub head_seq: i64,
    pub head_hash: String,
    pub first_invalid_seq: Option<i64>,
    pub reason: String,
    /// Where the walk started when older events were pruned.
    pub base: Option<Checkpoint>,
}

/// The answer to "does the chain still extend my checkpoint?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub consistent: bool,
    pub first_invalid_seq: Option<i64>,
    pub reason: String,
    /// The events after the client's checkpoint, in order (at most the
    /// requested number).
    pub events: Vec<Event>,
    /// A checkpoint signed now for the last event returned (the client's
    /// own when there is none): the start of the next proof.
    pub checkpoint: Checkpoint,
    /// Whether `events` reach the chain's head.
    pub complete: bool,
}

/// The most events a proof returns at once.
pub const MAX_PROOF_EVENTS: i64 = 10_000;

impl App {
    pub fn new(
        store: Arc<dyn Store>,
        auth: Option<Arc<Authenticator>>,
        storage: Storage,
        signer: Arc<AuditSigner>,
    ) -> Self {
        Self {
            store,
            auth,
            storage,
            signer,
            audit_retention: None,
            metrics: crate::metrics::Metrics::new(),
            soft_delete_window: DEFAULT_SOFT_DELETE_WINDOW,
            admission: Default::default(),
            limits: Arc::new(RateLimits::off()),
            owners: OwnerCache::default(),
            changes: tokio::sync::watch::channel(0).0,
            storage_locks: (0..STORAGE_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            storage_retry: Mutex::new(HashSet::new()),
        }
    }

    // ---- storage directories -------------------------------------------------

    /// Brings the organization's directory in step with the committed state.
    /// A failure is logged and retried in the background (and at the next
    /// start); the change itself has committed and stays acknowledged.
    pub async fn sync_storage(&self, org: Uuid) {
        if let Err(e) = self.try_sync_storage(org).await {
            tracing::error!(org = %org, error = %e, "storage directory out of step; will retry");
            if let Ok(mut retry) = self.storage_retry.lock() {
                retry.insert(org);
            }
        }
    }

    async fn try_sync_storage(&self, org: Uuid) -> std::result::Result<(), String> {
        let stripe = (org.as_u128() % STORAGE_STRIPES as u128) as usize;
        let _serialized = self.storage_locks[stripe].lock().await;
        // Read after taking the lock: the last writer always applies the
        // latest committed state.
        let state = self.store.storage_state(org).await.map_err(|e| e.message)?;
        self.storage
            .apply(org, state.as_ref())
            .await
            .map_err(|e| e.to_string())
    }

    /// After a change to one space of the organization (attach, detach):
    /// brings that space's directory in step, in time independent of the
    /// organization's other spaces. A failure is retried as a full sync.
    pub async fn sync_space_storage(&self, org: Uuid, space: Uuid) {
        if let Err(e) = self.try_sync_space_storage(org, space).await {
            tracing::error!(org = %org, space = %space, error = %e, "storage directory out of step; will retry");
            if let Ok(mut retry) = self.storage_retry.lock() {
                retry.insert(org);
            }
        }
    }

    async fn try_sync_space_storage(&self, org: Uuid, space: Uuid) -> std::result::Result<(), String> {
        let stripe = (org.as_u128() % STORAGE_STRIPES as u128) as usize;
        let _serialized = self.storage_locks[stripe].lock().await;
        // Read after taking the lock, as `try_sync_storage`.
        let state = self
            .store
            .space_storage_state(org, space)
            .await
            .map_err(|e| e.message)?;
        let (org_state, attached) = match &state {
            Some((o, attached)) => (Some(o), *attached),
            None => (None, false),
        };
        self.storage
            .apply_space(org, org_state, space, attached)
            .await
            .map_err(|e| e.to_string())
    }

    /// Retries the directories that failed, until shut down.
    pub async fn retry_storage_forever(&self) {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let pending: Vec<Uuid> = match self.storage_retry.lock() {
                Ok(mut retry) => retry.drain().collect(),
                Err(_) => Vec::new(),
            };
            for org in pending {
                self.sync_storage(org).await;
            }
        }
    }

    /// Makes every directory match the database: creates missing ones,
    /// rewrites stale ones, removes those of organizations that are gone.
    /// Run at start, before serving.
    pub async fn reconcile_storage(&self) -> std::result::Result<usize, String> {
        let mut after = None;
        let mut count = 0;
        loop {
            let ids = self
                .store
                .organization_ids(after, 1_000)
                .await
                .map_err(|e| e.message)?;
            let Some(last) = ids.last().copied() else { break };
            for id in ids {
                self.try_sync_storage(id)
                    .await
                    .map_err(|e| format!("storage directory of organization {id}: {e}"))?;
                count += 1;
            }
            after = Some(last);
        }
        let on_disk = self
            .storage
            .org_ids()
            .await
            .map_err(|e| format!("reading the storage root: {e}"))?;
        for id in on_disk {
            self.try_sync_storage(id)
                .await
                .map_err(|e| format!("storage directory of organization {id}: {e}"))?;
        }
        Ok(count)
    }

    // ---- rate limits ----------------------------------------------------------

    /// Charges a call to an organization's rate limit.
    pub fn charge_org(&self, org: Uuid) -> Result<()> {
        self.limits.organization(org).inspect_err(|e| {
            if let Some(limited) = &e.rate_limited {
                self.metrics.rate_limited(limited.scope);
            }
        })
    }

    /// Charges a change to the organization a slug names (nothing for an
    /// unknown slug: the change itself answers NOT_FOUND).
    async fn charge_slug(&self, slug: &str) -> Result<()> {
        if !self.limits.limits_organizations() {
            return Ok(());
        }
        let key = OwnerKey::Slug(slug.to_ascii_lowercase());
        let owner = match self.owners.get(&key) {
            Some(owner) => owner,
            None => {
                let owner = self
                    .store
                    .organization_access(slug, Uuid::nil())
                    .await?
                    .map(|a| a.org.id);
                self.owners.put(key, owner);
                owner
            }
        };
        owner.map_or(Ok(()), |org| self.charge_org(org))
    }

    /// Charges a change to the organization a space belongs to (nothing for
    /// a space without one).
    async fn charge_space(&self, space: Uuid) -> Result<()> {
        if !self.limits.limits_organizations() {
            return Ok(());
        }
        let key = OwnerKey::Space(space);
        let owner = match self.owners.get(&key) {
            Some(owner) => owner,
            None => {
                let owner = self
                    .store
                    .space_access(space, Uuid::nil())
                    .await?
                    .and_then(|a| a.space.organization_id);
                self.owners.put(key, owner);
                owner
            }
        };
        owner.map_or(Ok(()), |org| self.charge_org(org))
    }

    // ---- access for reads ---------------------------------------------------

    /// Resolves an organization by slug and checks the caller may do
    /// `action`: NOT_FOUND for an unknown slug, PERMISSION_DENIED (recorded
    /// in the organization's trail) for one the caller may not see or change.
    pub async fn org_access(
        &self,
        caller: &Caller,
        rpc: &'static str,
        slug: &str,
        action: OrgAction,
        attempt: &'static str,
    ) -> Result<OrgAccess> {
        let slug = crate::domain::types::lookup_slug(slug)?;
        let access = self
            .store
            .organization_access(slug, caller.user_id)
            .await?
            .ok_or_else(|| Error::org_not_found(slug))?;
        self.admit_org(caller, rpc, &access, action, attempt).await?;
        Ok(access)
    }

    /// Charges the organization's rate limit and checks the caller may do
    /// `action`; a refusal is recorded in the organization's trail.
    async fn admit_org(
        &self,
        caller: &Caller,
        rpc: &'static str,
        access: &OrgAccess,
        action: OrgAction,
        attempt: &'static str,
    ) -> Result<()> {
        self.charge_org(access.org.id)?;
        if let Err(e) = check_org(caller, access, action) {
            let draft = Draft::denied(&actor(caller, rpc), attempt, targets::org(access.org.id));
            self.record_refusal(access.org.id, draft, &e).await;
            return Err(e);
        }
        Ok(())
    }

    /// GetOrganization: the organization by slug with its spaces and
    /// members, for a caller who may read it (one statement, or none when
    /// the snapshot holds it).
    pub async fn organization(
        &self,
        caller: &Caller,
        rpc: &'static str,
        slug: &str,
    ) -> Result<Arc<OrganizationDetails>> {
        let slug = crate::domain::types::lookup_slug(slug)?;
        let (access, details) = self
            .store
            .organization_view(slug, caller.user_id)
            .await?
            .ok_or_else(|| Error::org_not_found(slug))?;
        self.admit_org(caller, rpc, &access, OrgAction::Read, "organization.read")
            .await?;
        Ok(details)
    }

    /// Resolves a space and checks the caller may do `action`; a refusal is
    /// recorded in the trail of the space's organization.
    pub async fn space_access(
        &self,
        caller: &Caller,
        rpc: &'static str,
        space: Uuid,
        action: SpaceAction,
        attempt: &'static str,
    ) -> Result<SpaceAccess> {
        let access = self
            .store
            .space_access(space, caller.user_id)
            .await?
            .ok_or_else(|| space_not_found(space))?;
        if let Some(org) = access.space.organization_id {
            self.charge_org(org)?;
        }
        if let Err(e) = check_space(caller, &access, action) {
            let chain = access.space.organization_id.unwrap_or(audit::SYSTEM_CHAIN);
            let draft = Draft::denied(&actor(caller, rpc), attempt, targets::space(space));
            self.record_refusal(chain, draft, &e).await;
            return Err(e);
        }
        Ok(access)
    }

    /// The part of an organization's content the caller may see: every
    /// space for its admins and superadmins, else the spaces that are not
    /// restricted and those the caller belongs to (applied in SQL).
    pub async fn content_scope(&self, caller: &Caller, rpc: &'static str, slug: &str) -> Result<Scope> {
        let access = self
            .org_access(caller, rpc, slug, OrgAction::Read, "content.read")
            .await?;
        let sees_all = caller.is_superadmin || access.role == Some(OrgRole::Admin);
        Ok(Scope {
            org: access.org.id,
            member: (!sees_all).then_some(caller.user_id),
            space: None,
        })
    }

    /// Narrows a content scope to one space of its organization that the
    /// caller may read; a refusal is recorded.
    pub async fn narrow_to_space(
        &self,
        caller: &Caller,
        rpc: &'static str,
        scope: &mut Scope,
        space: Uuid,
    ) -> Result<()> {
        let not_in_org = || {
            Error::not_found(
                "SPACE_NOT_IN_ORGANIZATION",
                format!("space {space} does not belong to this organization"),
            )
            .with("space_id", space.to_string())
        };
        let access = self
            .store
            .space_access(space, caller.user_id)
            .await?
            .ok_or_else(not_in_org)?;
        if access.space.organization_id != Some(scope.org) {
            return Err(not_in_org());
        }
        if let Err(e) = check_space(caller, &access, SpaceAction::Read) {
            let draft = Draft::denied(&actor(caller, rpc), "content.read", targets::space(space));
            self.record_refusal(scope.org, draft, &e).await;
            return Err(e);
        }
        scope.space = Some(space);
        Ok(())
    }

    async fn record_refusal(&self, chain: Uuid, draft: Draft, error: &Error) {
        if let Err(e) = self
            .store
            .record_denied(chain, draft.with("reason", error.reason))
            .await
        {
            tracing::error!(chain = %chain, error = %e, "could not record a denied attempt");
        }
    }

    // ---- organizations ------------------------------------------------------

    pub async fn create_organization(
        &self,
        actor: &Actor,
        new: NewOrganization,
    ) -> Result<Arc<OrganizationDetails>> {
        let org = self
            .notify(actor, || self.store.create_organization(actor, new.clone()))
            .await?;
        self.sync_storage(org.id).await;
        tracing::info!(org = %org.id, slug = %org.slug, actor = %actor.user_id, "organization created");
        self.store.organization_details(org).await
    }

    pub async fn update_organization(
        &self,
        actor: &Actor,
        slug: &str,
        changes: OrganizationChanges,
    ) -> Result<Arc<OrganizationDetails>> {
        self.charge_slug(slug).await?;
        let renamed = changes.name.is_some() || changes.slug.is_some();
        let org = self
            .notify(actor, || {
                self.store.update_organization(actor, slug, changes.clone())
            })
            .await?;
        if renamed {
            self.sync_storage(org.id).await;
        }
        self.store.organization_details(org).await
    }

    /// When something deleted now is purged.
    fn purge_at(&self) -> i64 {
        crate::store::now_micros()
            .saturating_add(i64::try_from(self.soft_delete_window.as_micros()).unwrap_or(i64::MAX))
    }

    pub async fn delete_organization(&self, actor: &Actor, slug: &str, etag: Option<&str>) -> Result<()> {
        self.charge_slug(slug).await?;
        let purge_at = self.purge_at();
        let id = self
            .notify(actor, || {
                self.store.delete_organization(actor, slug, etag, purge_at)
            })
            .await?;
        self.sync_storage(id).await;
        tracing::info!(org = %id, actor = %actor.user_id, "organization deleted");
        if self.soft_delete_window.is_zero() {
            self.purge().await;
            // The background purge may have taken this organization first;
            // either way its directory is gone before the call answers.
            self.sync_storage(id).await;
        }
        Ok(())
    }

    pub async fn undelete_organization(
        &self,
        actor: &Actor,
        slug: &str,
        etag: Option<&str>,
    ) -> Result<Arc<OrganizationDetails>> {
        let org = self
            .notify(actor, || self.store.undelete_organization(actor, slug, etag))
            .await?;
        self.sync_storage(org.id).await;
        tracing::info!(org = %org.id, actor = %actor.user_id, "organization restored");
        self.store.organization_details(org).await
    }

    /// Purges what is due; the storage directories of purged organizations
    /// go with them. Failures are logged and retried on the next round.
    pub async fn purge(&self) -> usize {
        match self.store.purge_due(crate::store::now_micros()).await {
            Ok(orgs) => {
                for org in &orgs {
                    self.sync_storage(*org).await;
                    tracing::info!(org = %org, "soft-deleted organization purged");
                }
                if !orgs.is_empty() {
                    self.changed();
                }
                orgs.len()
            }
            Err(e) => {
                tracing::warn!(error = %e, "purging soft-deleted resources failed; will retry");
                0
            }
        }
    }

    /// Purges due resources now and then regularly (a quarter of the
    /// window, between a second and an hour), until shut down.
    pub async fn purge_forever(&self) {
        let every = (self.soft_delete_window / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        loop {
            self.purge().await;
            tokio::time::sleep(every).await;
        }
    }

    pub async fn add_space(&self, actor: &Actor, slug: &str, space: Uuid) -> Result<Space> {
        self.charge_slug(slug).await?;
        let attached = self
            .notify(actor, || self.store.attach_space(actor, slug, space))
            .await?;
        if let Some(org) = attached.organization_id {
            self.sync_space_storage(org, space).await;
        }
        Ok(attached)
    }

    pub async fn remove_space(&self, actor: &Actor, slug: &str, space: Uuid) -> Result<()> {
        self.charge_slug(slug).await?;
        let org = self
            .notify(actor, || self.store.detach_space(actor, slug, space))
            .await?;
        self.sync_space_storage(org, space).await;
        Ok(())
    }

    pub async fn add_member(
        &self,
        actor: &Actor,
        slug: &str,
        email: &Email,
        role: OrgRole,
    ) -> Result<Member> {
        self.charge_slug(slug).await?;
        self.notify(actor, || self.store.add_member(actor, slug, email, role))
            .await
    }

    pub async fn update_member_role(
        &self,
        actor: &Actor,
        slug: &str,
        user: Uuid,
        role: OrgRole,
        etag: Option<&str>,
    ) -> Result<Member> {
        self.charge_slug(slug).await?;
        self.notify(actor, || {
            self.store.update_member_role(actor, slug, user, role, etag)
        })
        .await
    }

    pub async fn remove_member(
        &self,
        actor: &Actor,
        slug: &str,
        user: Uuid,
        etag: Option<&str>,
    ) -> Result<()> {
        self.charge_slug(slug).await?;
        self.notify(actor, || self.store.remove_member(actor, slug, user, etag))
            .await
    }

    pub async fn batch_add_members(
        &self,
        actor: &Actor,
        slug: &str,
        entries: &[(Email, OrgRole)],
    ) -> Result<Vec<Member>> {
        self.charge_slug(slug).await?;
        self.notify(actor, || self.store.batch_add_members(actor, slug, entries))
            .await
    }

    pub async fn batch_remove_members(&self, actor: &Actor, slug: &str, users: &[Uuid]) -> Result<u64> {
        self.charge_slug(slug).await?;
        self.notify(actor, || self.store.batch_remove_members(actor, slug, users))
            .await
    }

    pub async fn create_invitation(
        &self,
        actor: &Actor,
        slug: &str,
        new: NewInvitation,
    ) -> Result<Invitation> {
        self.charge_slug(slug).await?;
        self.notify(actor, || self.store.create_invitation(actor, slug, new.clone()))
            .await
    }

    pub async fn revoke_invitation(&self, actor: &Actor, slug: &str, id: Uuid) -> Result<Invitation> {
        self.charge_slug(slug).await?;
        self.notify(actor, || self.store.revoke_invitation(actor, slug, id))
            .await
    }

    pub async fn accept_invitation(&self, actor: &Actor, id: Uuid) -> Result<Accepted> {
        self.notify(actor, || self.store.accept_invitation(actor, id))
            .await
    }

    // ---- spaces ---------------------------------------------------------------

    pub async fn create_space(&self, actor: &Actor, new: NewSpace) -> Result<Space> {
        self.notify(actor, || self.store.create_space(actor, new.clone()))
            .await
    }

    pub async fn update_space(&self, actor: &Actor, id: Uuid, changes: SpaceChanges) -> Result<Space> {
        self.charge_space(id).await?;
        self.notify(actor, || self.store.update_space(actor, id, changes.clone()))
            .await
    }

    pub async fn delete_space(&self, actor: &Actor, id: Uuid, etag: Option<&str>) -> Result<()> {
        self.charge_space(id).await?;
        let purge_at = self.purge_at();
        if let Some(org) = self
            .notify(actor, || self.store.delete_space(actor, id, etag, purge_at))
            .await?
        {
            self.sync_storage(org).await;
        }
        if self.soft_delete_window.is_zero() {
            self.purge().await;
        }
        Ok(())
    }

    pub async fn undelete_space(&self, actor: &Actor, id: Uuid, etag: Option<&str>) -> Result<Space> {
        let space = self
            .notify(actor, || self.store.undelete_space(actor, id, etag))
            .await?;
        if let Some(org) = space.organization_id {
            self.sync_storage(org).await;
        }
        Ok(space)
    }

    pub async fn add_space_member(
        &self,
        actor: &Actor,
        space: Uuid,
        email: &Email,
        role: SpaceRole,
    ) -> Result<Member> {
        self.charge_space(space).await?;
        self.notify(actor, || self.store.add_space_member(actor, space, email, role))
            .await
    }

    pub async fn update_space_member(
        &self,
        actor: &Actor,
        space: Uuid,
        user: Uuid,
        role: SpaceRole,
        etag: Option<&str>,
    ) -> Result<Member> {
        self.charge_space(space).await?;
        self.notify(actor, || {
            self.store.update_space_member(actor, space, user, role, etag)
        })
        .await
    }

    pub async fn remove_space_member(
        &self,
        actor: &Actor,
        space: Uuid,
        user: Uuid,
        etag: Option<&str>,
    ) -> Result<()> {
        self.charge_space(space).await?;
        self.notify(actor, || self.store.remove_space_member(actor, space, user, etag))
            .await
    }

    pub async fn batch_add_space_members(
        &self,
        actor: &Actor,
        space: Uuid,
        entries: &[(Email, SpaceRole)],
    ) -> Result<Vec<Member>> {
        self.charge_space(space).await?;
        self.notify(actor, || {
            self.store.batch_add_space_members(actor, space, entries)
        })
        .await
    }

    pub async fn batch_remove_space_members(
        &self,
        actor: &Actor,
        space: Uuid,
        users: &[Uuid],
    ) -> Result<u64> {
        self.charge_space(space).await?;
        self.notify(actor, || {
            self.store.batch_remove_space_members(actor, space, users)
        })
        .await
    }

    // ---- content --------------------------------------------------------------

    pub async fn upsert_products(&self, actor: &Actor, space: Uuid, items: &[ProductInput]) -> Result<u64> {
        self.charge_space(space).await?;
        self.notify(actor, || self.store.upsert_products(actor, space, items))
            .await
    }

    pub async fn upsert_contracts(&self, actor: &Actor, space: Uuid, items: &[ContractInput]) -> Result<u64> {
        self.charge_space(space).await?;
        self.notify(actor, || self.store.upsert_contracts(actor, space, items))
            .await
    }

    pub async fn upsert_issues(&self, actor: &Actor, space: Uuid, items: &[IssueInput]) -> Result<u64> {
        self.charge_space(space).await?;
        self.notify(actor, || self.store.upsert_issues(actor, space, items))
            .await
    }

    pub async fn upsert_quality_checks(
        &self,
        actor: &Actor,
        space: Uuid,
        items: &[QualityCheckInput],
    ) -> Result<u64> {
        self.charge_space(space).await?;
        self.notify(actor, || self.store.upsert_quality_checks(actor, space, items))
            .await
    }

    pub async fn delete_content(
        &self,
        actor: &Actor,
        kind: ContentKind,
        space: Uuid,
        id: Uuid,
    ) -> Result<()> {
        self.charge_space(space).await?;
        self.notify(actor, || self.store.delete_content(actor, kind, space, id))
            .await
    }

    // ---- the audit trail ------------------------------------------------------

    /// The chain a caller asks for, once their right to read it is checked:
    /// an organization's admins and superadmins; a deleted organization's
    /// trail and the chain of spaces without an organization: superadmins.
    pub async fn audit_chain(&self, caller: &Caller, rpc: &'static str, chain: &ChainRef) -> Result<Uuid> {
        match chain {
            ChainRef::Slug(slug) => Ok(self
                .org_access(caller, rpc, slug, OrgAction::Manage, "audit.read")
                .await?
                .org
                .id),
            ChainRef::Id(id) => {
                if let Some(state) = self
                    .store
                    .storage_state(*id)
                    .await?
                    .filter(|s| s.org.deleted_at.is_none())
                {
                    return Ok(self
                        .org_access(caller, rpc, &state.org.slug, OrgAction::Manage, "audit.read")
                        .await?
                        .org
                        .id);
                }
                let exists = self.store.audit_head(*id).await?.is_some();
                if !exists && *id != audit::SYSTEM_CHAIN {
                    return Err(Error::not_found(
                        "AUDIT_TRAIL_NOT_FOUND",
                        format!("no audit trail for organization {id}"),
                    )
                    .with("organization_id", id.to_string()));
                }
                if !caller.is_superadmin {
                    return Err(Error::denied(
                        "only a superadmin may read the trail of a deleted organization or of spaces without one",
                    )
                    .with("organization_id", id.to_string()));
                }
                Ok(*id)
            }
        }
    }

    pub async fn list_audit_events(
        &self,
        chain: Uuid,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<Page<Event>> {
        self.store.list_audit_events(chain, filter, page).await
    }

    /// Recomputes a chain from its base (the genesis, or the newest pruned
    /// event, whose signed checkpoint is checked first) to the head recorded
    /// when the walk began, in keyset pages.
    pub async fn verify_chain(&self, chain: Uuid) -> Result<Verification> {
        let Some(head) = self.store.audit_head(chain).await? else {
            return Ok(Verification {
                organization_id: chain,
                valid: true,
                checked: 0,
                head_seq: 0,
                head_hash: audit::GENESIS.to_owned(),
                first_invalid_seq: None,
                reason: String::new(),
                base: None,
            });
        };
        let mut verifier = Verifier::new(chain, head.base_seq, &head.base_hash);
        if let Some(broken) = self.check_base(&head) {
            verifier.fail_at(head.base_seq, broken);
        }
        self.walk(chain, &mut verifier, head.base_seq, head.seq).await?;
        verifier.finish(head.seq, &head.hash);
        let broken = verifier.broken().cloned();
        Ok(Verification {
            organization_id: chain,
            valid: broken.is_none(),
            checked: verifier.checked(),
            head_seq: head.seq,
            head_hash: head.hash,
            first_invalid_seq: broken.as_ref().map(|b| b.seq),
            reason: broken.map(|b| b.reason).unwrap_or_default(),
            base: head.base_checkpoint,
        })
    }

    /// A pruned chain starts from a base only a signed checkpoint vouches
    /// for; a base moved by hand has none that verifies.
    fn check_base(&self, head: &Head) -> Option<String> {
        if head.base_seq == 0 && head.base_hash == audit::GENESIS {
            return None;
        }
        match &head.base_checkpoint {
            Some(cp) if cp.seq == head.base_seq && cp.hash == head.base_hash && self.signer.verify(cp) => {
                None
            }
            Some(_) => Some("the checkpoint of the pruned events does not verify".into()),
            None => Some("events were removed without a signed checkpoint".into()),
        }
    }

    /// Feeds the events after `after` up to `upto` to the verifier, in
    /// keyset pages; the next page is read while this one is checked.
    async fn walk(&self, chain: Uuid, verifier: &mut Verifier, after: i64, upto: i64) -> Result<()> {
        let fetch = |after: i64| {
            let store = self.store.clone();
            let limit = VERIFY_PAGE.min(upto - after);
            tokio::spawn(async move { store.audit_events_after(chain, after, limit).await })
        };
        let mut pending = (after < upto).then(|| fetch(after));
        while let Some(page) = pending.take() {
            let events = page
                .await
                .map_err(|e| Error::internal("verifying an audit chain", e))??;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            if last < upto {
                pending = Some(fetch(last));
            }
            for event in &events {
                if event.seq > upto || !verifier.push(event) {
                    break;
                }
            }
            if verifier.broken().is_some() {
                break;
            }
        }
        Ok(())
    }

    /// A checkpoint of the chain's head, signed now.
    pub async fn checkpoint(&self, chain: Uuid) -> Result<Checkpoint> {
        let (seq, hash) = match self.store.audit_head(chain).await? {
            Some(head) => (head.seq, head.hash),
            None => (0, audit::GENESIS.to_owned()),
        };
        Ok(self.signer.sign(chain, seq, &hash, crate::store::now_micros()))
    }

    /// Shows whether the chain still extends `old`, a checkpoint this
    /// service signed: the event at its seq must still carry its hash, and
    /// every later event must chain from it. A history rewritten before the
    /// checkpoint fails here even when every hash was recomputed.
    pub async fn prove(&self, chain: Uuid, old: &Checkpoint, max_events: i64) -> Result<Proof> {
        if old.organization_id != chain || !self.signer.verify(old) {
            return Err(Error::invalid(
                "INVALID_CHECKPOINT",
                "checkpoint",
                "the checkpoint was not signed by this service for this organization",
            ));
        }
        let head = self.store.audit_head(chain).await?;
        let (head_seq, base_seq, base_hash) = match &head {
            Some(h) => (h.seq, h.base_seq, h.base_hash.clone()),
            None => (0, 0, audit::GENESIS.to_owned()),
        };
        let refuse = |seq: i64, reason: String| Proof {
            consistent: false,
            first_invalid_seq: Some(seq),
            reason,
            events: Vec::new(),
            checkpoint: old.clone(),
            complete: false,
        };
        if old.seq > head_seq {
            return Ok(refuse(
                head_seq + 1,
                format!(
                    "the chain ends at {head_seq}, before the checkpoint's {}",
                    old.seq
                ),
            ));
        }
        if old.seq < base_seq {
            return Err(Error::failed_precondition(
                "CHECKPOINT_PRUNED",
                format!("events up to {base_seq} were pruned; prove from a later checkpoint"),
            )
            .with("base_seq", base_seq.to_string()));
        }
        let anchored = if old.seq == base_seq {
            base_hash == old.hash
        } else if old.seq == 0 {
            old.hash == audit::GENESIS
        } else {
            let at = self.store.audit_events_after(chain, old.seq - 1, 1).await?;
            at.first().is_some_and(|e| e.seq == old.seq && e.hash == old.hash)
        };
        if !anchored {
            return Ok(refuse(
                old.seq,
                format!("event {} no longer has the hash the checkpoint recorded", old.seq),
            ));
        }
        let limit = max_events.clamp(1, MAX_PROOF_EVENTS);
        let upto = head_seq.min(old.seq.saturating_add(limit));
        let mut verifier = Verifier::new(chain, old.seq, &old.hash);
        let events = self
            .store
            .audit_events_after(chain, old.seq, upto - old.seq)
            .await?;
        for e in &events {
            if !verifier.push(e) {
                break;
            }
        }
        if verifier.checked() < upto - old.seq && verifier.broken().is_none() {
            let missing = verifier.position().0 + 1;
            verifier.fail_at(missing, format!("event {missing} is missing"));
        }
        if let Some(b) = verifier.broken().cloned() {
            return Ok(refuse(b.seq, b.reason));
        }
        let checkpoint = match events.last() {
            Some(last) => self
                .signer
                .sign(chain, last.seq, &last.hash, crate::store::now_micros()),
            None => old.clone(),
        };
        Ok(Proof {
            consistent: true,
            first_invalid_seq: None,
            reason: String::new(),
            complete: upto == head_seq,
            events,
            checkpoint,
        })
    }

    /// Removes events older than `cutoff` from every chain, leaving a signed
    /// checkpoint of the newest removed event as the chain's base, so the
    /// rest still verifies. Returns the number of events removed.
    pub async fn prune_audit(&self, cutoff: i64) -> Result<u64> {
        let mut removed = 0;
        let mut after = None;
        loop {
            let chains = self.store.audit_chain_ids(after, 1_000).await?;
            let Some(last) = chains.last().copied() else { break };
            for chain in chains {
                if let Some((seq, hash)) = self.store.newest_event_before(chain, cutoff).await? {
                    let checkpoint = self.signer.sign(chain, seq, &hash, crate::store::now_micros());
                    removed += self.store.prune_audit(&checkpoint).await?;
                }
            }
            after = Some(last);
        }
        Ok(removed)
    }

    /// Prunes events older than `retention` now and then every hour, until
    /// shut down.
    pub async fn prune_forever(&self, retention: Duration) {
        loop {
            let cutoff =
                crate::store::now_micros() - i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
            match self.prune_audit(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "pruned expired audit events"),
                Err(e) => tracing::error!(error = %e, "pruning the audit trail failed"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    /// Streams the chain as NDJSON chunks into `out`: the header (with a
    /// head checkpoint signed now), then the events from the base to that
    /// head in pages. Stops early when the receiver goes away.
    pub async fn export(&self, chain: Uuid, out: tokio::sync::mpsc::Sender<Vec<u8>>) -> Result<()> {
        use crate::export::{CheckpointLine, FORMAT, Header, event_line, header_line};
        let head = self.store.audit_head(chain).await?;
        let (base_seq, base_hash, base_checkpoint, head_seq, head_hash) = match &head {
            Some(h) => (
                h.base_seq,
                h.base_hash.clone(),
                h.base_checkpoint.clone(),
                h.seq,
                h.hash.clone(),
            ),
            None => (0, audit::GENESIS.to_owned(), None, 0, audit::GENESIS.to_owned()),
        };
        let checkpoint = self
            .signer
            .sign(chain, head_seq, &head_hash, crate::store::now_micros());
        let header = Header {
            format: FORMAT.to_owned(),
            organization_id: chain,
            base_seq,
            base_hash,
            base_checkpoint: base_checkpoint.as_ref().map(CheckpointLine::from),
            head_checkpoint: CheckpointLine::from(&checkpoint),
            public_key: self.signer.public_key_hex(),
        };
        if out.send(header_line(&header).into_bytes()).await.is_err() {
            return Ok(());
        }
        let mut after = base_seq;
        while after < head_seq {
            let events = self
                .store
                .audit_events_after(chain, after, EXPORT_PAGE.min(head_seq - after))
                .await?;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            let mut chunk = Vec::with_capacity(events.len() * 400);
            for e in events.iter().filter(|e| e.seq <= head_seq) {
                chunk.extend_from_slice(event_line(e).as_bytes());
            }
            if out.send(chunk).await.is_err() {
                return Ok(());
            }
            after = last;
        }
        Ok(())
    }

    /// Delivers the chain's events after `after_seq` into `out`, in order,
    /// then each new one as it commits: woken at once by this instance's
    /// changes and every second for other instances'. The caller's right to
    /// read the trail is checked again while idle. Ends when the receiver
    /// goes away, after an organization.delete event, or with the error that
    /// ends the caller's right.
    pub async fn watch(
        &self,
        caller: &Caller,
        rpc: &'static str,
        chain: Uuid,
        after_seq: i64,
        out: tokio::sync::mpsc::Sender<Result<Event>>,
    ) {
        let mut changes = self.subscribe_changes();
        let mut cursor = after_seq.max(0);
        let mut idle_rounds = 0u32;
        loop {
            let events = match self.store.audit_events_after(chain, cursor, WATCH_PAGE).await {
                Ok(events) => events,
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
            };
            let full = events.len() as i64 == WATCH_PAGE;
            for event in events {
                cursor = event.seq;
                let last = event.action == "organization.delete";
                if out.send(Ok(event)).await.is_err() || last {
                    return;
                }
            }
            if full {
                continue;
            }
            idle_rounds += 1;
            if idle_rounds.is_multiple_of(5)
                && let Err(e) = self.audit_chain(caller, rpc, &ChainRef::Id(chain)).await
            {
                let _ = out.send(Err(e)).await;
                return;
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = out.closed() => return,
            }
        }
    }

    /// Folds passed contract expiry days into the counters GetStats reads,
    /// at start and then every minute.
    pub async fn fold_expiries_forever(&self) {
        loop {
            let today = crate::store::now_micros() / crate::store::EXPIRY_DAY;
            match self.store.fold_expiries(today).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(spaces = n, "passed contract expiries folded into the counters"),
                Err(e) => tracing::warn!(error = %e, "could not fold passed contract expiries"),
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }

    /// A receiver that changes after every change this instance makes.
    pub fn subscribe_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Makes a change (once more if the database aborted it), then wakes
    /// the watchers, whatever the outcome (a refusal appends an event too).
    /// Runs a change (once more if the database aborted it), wakes the
    /// watchers, and with a request id (AIP-155) makes it happen at most
    /// once: a retry of a change that committed, or of a refusal, answers
    /// what the first attempt answered.
    async fn notify<T, F, Fut>(&self, actor: &Actor, change: F) -> Result<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let Some(key) = actor.request else {
            let result = retry_conflict_once(change).await;
            self.changed();
            return result;
        };
        if let Some(record) = self.store.request_record(actor.user_id, key.request_id).await? {
            return replay(actor, &key, record);
        }
        let result = retry_conflict_once(change).await;
        self.changed();
        match result {
            Err(e) if e.reason == "REQUEST_REPLAY" => {
                // Another attempt claimed the id and has committed by now.
                let record = self
                    .store
                    .request_record(actor.user_id, key.request_id)
                    .await?
                    .ok_or_else(|| Error::internal("request id", "a claimed request id has no record"))?;
                replay(actor, &key, record)
            }
            Err(e) if !e.is_transient() => {
                if let Err(failed) = self.store.record_request_error(actor, &e).await {
                    tracing::warn!(error = %failed, "could not remember a refusal for its request id");
                }
                Err(e)
            }
            other => other,
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The first answer to a request id, or REQUEST_ID_REUSED when the id came
/// with another request.
fn replay<T: serde::de::DeserializeOwned>(
    actor: &Actor,
    key: &crate::domain::audit::RequestKey,
    record: crate::store::RequestRecord,
) -> Result<T> {
    if record.rpc != actor.rpc || record.fingerprint != key.fingerprint_hex() {
        return Err(Error::failed_precondition(
            "REQUEST_ID_REUSED",
            "this request_id was already used with a different request; use a new id for a new request",
        )
        .with("field", "request_id")
        .with("request_id", key.request_id.to_string()));
    }
    tracing::info!(request_id = %key.request_id, rpc = actor.rpc, "answering a retried request from its record");
    if let Some(error) = &record.error {
        return Err(Error::from_json(error)
            .unwrap_or_else(|| Error::internal("request id", "a recorded refusal does not decode")));
    }
    match &record.outcome {
        Some(outcome) => serde_json::from_str(outcome).map_err(|e| Error::internal("request id", e)),
        None => Err(Error::internal(
            "request id",
            "a request id was recorded without its outcome",
        )),
    }
}

/// Runs `change`, and once more when the database aborted it (a
/// serialization failure or a deadlock: nothing was written, so running it
/// again is safe for every change).
pub async fn retry_conflict_once<T, F, Fut>(change: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    match change().await {
        Err(e) if e.kind == crate::domain::ErrorKind::Aborted && e.reason == "CONFLICT" => {
            // A short, random pause first: the transaction that won keeps
            // its locks until it commits, and an immediate retry can walk
            // into the same deadlock with it.
            let pause = Duration::from_millis(rand::random_range(20..=100));
            tracing::info!(
                pause_ms = pause.as_millis() as u64,
                "the database aborted a change; trying it once more"
            );
            tokio::time::sleep(pause).await;
            change().await
        }
        other => other,
    }
}

/// The actor of a request: the caller, acting through `rpc`.
pub fn actor(caller: &Caller, rpc: &'static str) -> Actor {
    Actor {
        user_id: caller.user_id,
        rpc,
        request: None,
    }
}

fn space_not_found(id: Uuid) -> Error {
    Error::not_found("SPACE_NOT_FOUND", format!("space {id} not found")).with("space_id", id.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::domain::ErrorKind;

    fn conflict() -> Error {
        Error::new(ErrorKind::Aborted, "CONFLICT", "conflict")
    }

    #[tokio::test]
    async fn a_change_the_database_aborted_is_tried_once_more_and_only_once() {
        let calls = AtomicUsize::new(0);
        let once = retry_conflict_once(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(conflict()),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!((once, calls.load(Ordering::SeqCst)), (Ok(7), 2));

        let calls = AtomicUsize::new(0);
        let twice: Result<i32> = retry_conflict_once(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(conflict())
        })
        .await;
        assert_eq!(twice.map_err(|e| e.reason), Err("CONFLICT"));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "retried once, not more");

        let calls = AtomicUsize::new(0);
        let other: Result<i32> = retry_conflict_once(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::denied("no"))
        })
        .await;
        assert!(other.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "other errors are not retried");
    }
}

/// What the owner cache is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum OwnerKey {
    Slug(String),
    Space(Uuid),
}

/// Which organization a slug or a space belonged to a moment ago. Only rate
/// limiting reads it: a stale entry (a renamed slug, a moved space) charges
/// a call to the previous owner for at most `OWNER_TTL`.
#[derive(Default)]
struct OwnerCache {
    entries: Mutex<std::collections::HashMap<OwnerKey, (Option<Uuid>, std::time::Instant)>>,
}

const OWNER_TTL: Duration = Duration::from_secs(10);
const OWNER_CAPACITY: usize = 100_000;

impl OwnerCache {
    fn get(&self, key: &OwnerKey) -> Option<Option<Uuid>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < OWNER_TTL)
            .map(|(owner, _)| *owner)
    }

    fn put(&self, key: OwnerKey, owner: Option<Uuid>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= OWNER_CAPACITY {
                entries.retain(|_, (_, at)| at.elapsed() < OWNER_TTL);
                if entries.len() >= OWNER_CAPACITY {
                    entries.clear();
                }
            }
            entries.insert(key, (owner, std::time::Instant::now()));
        }
    }
}
