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
use crate::domain::audit::{self, Actor, Draft, Event, EventFilter, Verifier};
use crate::domain::content::{ContentKind, ContractInput, IssueInput, ProductInput, QualityCheckInput};
use crate::domain::model::{Member, OrgAccess, OrganizationDetails, Page, Space, SpaceAccess};
use crate::domain::page::PageRequest;
use crate::domain::types::{Email, OrgRole, SpaceRole};
use crate::domain::{Error, Result};
use crate::storage::Storage;
use crate::store::{NewOrganization, NewSpace, OrganizationChanges, SpaceChanges, Store, targets};

/// Organizations whose directories are written one at a time (striped by id).
const STORAGE_STRIPES: usize = 64;
/// Events read per query while verifying a chain.
const VERIFY_PAGE: i64 = 10_000;

/// What every handler shares.
pub struct App {
    pub store: Arc<dyn Store>,
    /// Checks bearer tokens; `None` in command-line tools, which serve no
    /// requests (a server without one refuses every call).
    pub auth: Option<Arc<Authenticator>>,
    pub storage: Storage,
    storage_locks: Vec<tokio::sync::Mutex<()>>,
    /// Organizations whose directory could not be brought in step; retried.
    storage_retry: Mutex<HashSet<Uuid>>,
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
}

impl App {
    pub fn new(store: Arc<dyn Store>, auth: Option<Arc<Authenticator>>, storage: Storage) -> Self {
        Self {
            store,
            auth,
            storage,
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
        let slug = slug.trim();
        if slug.is_empty() {
            return Err(Error::missing("slug", "organization slug is required"));
        }
        let access = self
            .store
            .organization_access(slug, caller.user_id)
            .await?
            .ok_or_else(|| Error::org_not_found(slug))?;
        if let Err(e) = check_org(caller, &access, action) {
            let draft = Draft::denied(&actor(caller, rpc), attempt, targets::org(access.org.id));
            self.record_refusal(access.org.id, draft, &e).await;
            return Err(e);
        }
        Ok(access)
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
        if let Err(e) = check_space(caller, &access, action) {
            let chain = access.space.organization_id.unwrap_or(audit::SYSTEM_CHAIN);
            let draft = Draft::denied(&actor(caller, rpc), attempt, targets::space(space));
            self.record_refusal(chain, draft, &e).await;
            return Err(e);
        }
        Ok(access)
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

    pub async fn details(&self, access: OrgAccess) -> Result<OrganizationDetails> {
        self.store.organization_details(access.org).await
    }

    pub async fn create_organization(
        &self,
        actor: &Actor,
        new: NewOrganization,
    ) -> Result<OrganizationDetails> {
        let org = self.store.create_organization(actor, new).await?;
        self.sync_storage(org.id).await;
        tracing::info!(org = %org.id, slug = %org.slug, actor = %actor.user_id, "organization created");
        self.store.organization_details(org).await
    }

    pub async fn update_organization(
        &self,
        actor: &Actor,
        slug: &str,
        changes: OrganizationChanges,
    ) -> Result<OrganizationDetails> {
        let renamed = changes.name.is_some() || changes.slug.is_some();
        let org = self.store.update_organization(actor, slug, changes).await?;
        if renamed {
            self.sync_storage(org.id).await;
        }
        self.store.organization_details(org).await
    }

    pub async fn delete_organization(&self, actor: &Actor, slug: &str) -> Result<()> {
        let id = self.store.delete_organization(actor, slug).await?;
        self.sync_storage(id).await;
        tracing::info!(org = %id, actor = %actor.user_id, "organization deleted");
        Ok(())
    }

    pub async fn add_space(&self, actor: &Actor, slug: &str, space: Uuid) -> Result<Space> {
        let attached = self.store.attach_space(actor, slug, space).await?;
        if let Some(org) = attached.organization_id {
            self.sync_storage(org).await;
        }
        Ok(attached)
    }

    pub async fn remove_space(&self, actor: &Actor, slug: &str, space: Uuid) -> Result<()> {
        let org = self.store.detach_space(actor, slug, space).await?;
        self.sync_storage(org).await;
        Ok(())
    }

    pub async fn add_member(
        &self,
        actor: &Actor,
        slug: &str,
        email: &Email,
        role: OrgRole,
    ) -> Result<Member> {
        self.store.add_member(actor, slug, email, role).await
    }

    pub async fn update_member_role(
        &self,
        actor: &Actor,
        slug: &str,
        user: Uuid,
        role: OrgRole,
    ) -> Result<Member> {
        self.store.update_member_role(actor, slug, user, role).await
    }

    pub async fn remove_member(&self, actor: &Actor, slug: &str, user: Uuid) -> Result<()> {
        self.store.remove_member(actor, slug, user).await
    }

    // ---- spaces ---------------------------------------------------------------

    pub async fn create_space(&self, actor: &Actor, new: NewSpace) -> Result<Space> {
        self.store.create_space(actor, new).await
    }

    pub async fn update_space(&self, actor: &Actor, id: Uuid, changes: SpaceChanges) -> Result<Space> {
        self.store.update_space(actor, id, changes).await
    }

    pub async fn delete_space(&self, actor: &Actor, id: Uuid) -> Result<()> {
        if let Some(org) = self.store.delete_space(actor, id).await? {
            self.sync_storage(org).await;
        }
        Ok(())
    }

    pub async fn add_space_member(
        &self,
        actor: &Actor,
        space: Uuid,
        email: &Email,
        role: SpaceRole,
    ) -> Result<Member> {
        self.store.add_space_member(actor, space, email, role).await
    }

    pub async fn update_space_member(
        &self,
        actor: &Actor,
        space: Uuid,
        user: Uuid,
        role: SpaceRole,
    ) -> Result<Member> {
        self.store.update_space_member(actor, space, user, role).await
    }

    pub async fn remove_space_member(&self, actor: &Actor, space: Uuid, user: Uuid) -> Result<()> {
        self.store.remove_space_member(actor, space, user).await
    }

    // ---- content --------------------------------------------------------------

    pub async fn upsert_products(&self, actor: &Actor, space: Uuid, items: &[ProductInput]) -> Result<u64> {
        self.store.upsert_products(actor, space, items).await
    }

    pub async fn upsert_contracts(&self, actor: &Actor, space: Uuid, items: &[ContractInput]) -> Result<u64> {
        self.store.upsert_contracts(actor, space, items).await
    }

    pub async fn upsert_issues(&self, actor: &Actor, space: Uuid, items: &[IssueInput]) -> Result<u64> {
        self.store.upsert_issues(actor, space, items).await
    }

    pub async fn upsert_quality_checks(
        &self,
        actor: &Actor,
        space: Uuid,
        items: &[QualityCheckInput],
    ) -> Result<u64> {
        self.store.upsert_quality_checks(actor, space, items).await
    }

    pub async fn delete_content(
        &self,
        actor: &Actor,
        kind: ContentKind,
        space: Uuid,
        id: Uuid,
    ) -> Result<()> {
        self.store.delete_content(actor, kind, space, id).await
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
                if let Some(state) = self.store.storage_state(*id).await? {
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
    /// event) to the head recorded when the walk began, in keyset pages.
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
            });
        };
        let mut verifier = Verifier::new(chain, head.base_seq, &head.base_hash);
        let mut after = head.base_seq;
        'walk: while after < head.seq {
            let limit = VERIFY_PAGE.min(head.seq - after);
            let events = self.store.audit_events_after(chain, after, limit).await?;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            for event in &events {
                if !verifier.push(event) {
                    break 'walk;
                }
            }
            after = last;
        }
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
        })
    }
}

/// The actor of a request: the caller, acting through `rpc`.
pub fn actor(caller: &Caller, rpc: &'static str) -> Actor {
    Actor {
        user_id: caller.user_id,
        rpc,
    }
}

fn space_not_found(id: Uuid) -> Error {
    Error::not_found("SPACE_NOT_FOUND", format!("space {id} not found")).with("space_id", id.to_string())
}
