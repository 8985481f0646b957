//! OrganizationService: organizations, their members and their spaces, and
//! the audit trail. Handlers turn messages into validated values, call the
//! one path in `App`, and turn the result back into messages.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{
    bare_list, caller, count, created, etag_of, invitation, label_update, member, no_content, non_empty,
    organization_details, organization_summary, request_key, resource, space,
};
use crate::App;
use crate::app::{ChainRef, MAX_PROOF_EVENTS, actor};
use crate::domain::access::OrgAction;
use crate::domain::audit::{ActionFilter, EventFilter, Outcome};
use crate::domain::batch;
use crate::domain::content::search_term;
use crate::domain::labels::{LabelFilter, Labels};
use crate::domain::model::InvitationState;
use crate::domain::page::PageRequest;
use crate::domain::types::{Description, Email, Name, OrgRole, Slug, parse_id};
use crate::domain::{Error, Result};
use crate::proto::organization_service_server::OrganizationService;
use crate::proto::*;
use crate::store::{MemberFilter, NewInvitation, NewOrganization, OrganizationChanges, OrganizationFilter};

pub struct OrganizationApi {
    app: Arc<App>,
}

impl OrganizationApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

/// How long an invitation stays valid (microseconds): 7 days unless given,
/// at most 30.
fn invitation_ttl(ttl: Option<&prost_types::Duration>) -> Result<i64> {
    const DAY: i64 = 86_400;
    let Some(ttl) = ttl else {
        return Ok(7 * DAY * 1_000_000);
    };
    let micros = ttl
        .seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(i64::from(ttl.nanos) / 1_000));
    match micros {
        Some(m) if m > 0 && m <= 30 * DAY * 1_000_000 => Ok(m),
        _ => Err(Error::invalid(
            "INVALID_TTL",
            "ttl",
            "ttl must be more than 0 and at most 30 days (e.g. \"604800s\")",
        )),
    }
}

/// The chain named by a slug or, when the slug is empty, an organization id.
fn chain_ref(slug: &str, organization_id: &str) -> Result<ChainRef> {
    if !slug.trim().is_empty() {
        return Ok(ChainRef::Slug(required_slug(slug)?.to_owned()));
    }
    if organization_id.trim().is_empty() {
        return Err(Error::missing(
            "slug",
            "organization slug (or organization_id) is required",
        ));
    }
    Ok(ChainRef::Id(parse_id("organization_id", organization_id)?))
}

fn event_filter(req: &ListAuditEventsRequest) -> Result<EventFilter> {
    Ok(EventFilter {
        action: ActionFilter::parse("action", &req.action)?,
        actor: non_empty(&req.actor).map(|a| parse_id("actor", &a)).transpose()?,
        result: non_empty(&req.result)
            .map(|r| Outcome::parse("result", &r))
            .transpose()?,
        since: req
            .since
            .as_ref()
            .map(|t| super::content::micros("since", t))
            .transpose()?,
        until: req
            .until
            .as_ref()
            .map(|t| super::content::micros("until", t))
            .transpose()?,
    })
}

#[tonic::async_trait]
impl OrganizationService for OrganizationApi {
    #[instrument(skip_all, fields(rpc = "ListOrganizations"))]
    async fn list_organizations(
        &self,
        request: Request<ListOrganizationsRequest>,
    ) -> Result<Response<ListOrganizationsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page, req.size, &req.page_token)?;
        let filter = OrganizationFilter {
            member: (!caller.is_superadmin).then_some(caller.user_id),
            search: search_term(&req.search)?,
            labels: LabelFilter::parse("label", &req.label)?,
            show_deleted: req.show_deleted,
        };
        let result = self.app.store.list_organizations(&filter, page).await?;
        let total = result.total;
        let list = ListOrganizationsResponse {
            items: result.items.iter().map(organization_summary).collect(),
            total: count(result.total),
            page: result.page as i32,
            size: result.size as i32,
            next_page_token: result.next_page_token,
        };
        Ok(bare_list(list, total))
    }

    #[instrument(skip_all, fields(rpc = "CreateOrganization"))]
    async fn create_organization(
        &self,
        request: Request<CreateOrganizationRequest>,
    ) -> Result<Response<CreateOrganizationResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "CreateOrganization")?;
        let req = request.into_inner();
        let name = Name::parse("organization", "name", &req.name)?;
        let slug = match req.slug.as_deref() {
            Some(s) if !s.trim().is_empty() => Slug::parse("slug", s)?,
            _ => Slug::derive("slug", name.as_str())?,
        };
        let new = NewOrganization {
            id: uuid::Uuid::now_v7(),
            description: Description::parse("description", &req.description)?,
            admin_email: match non_empty(&req.admin_email) {
                Some(e) => Email::parse("admin_email", &e)?,
                None => Email::parse("admin_email", &caller.email)?,
            },
            name,
            slug,
            labels: Labels::parse("labels", &req.labels)?,
        };
        let details = self
            .app
            .create_organization(&actor(&caller, "CreateOrganization").with_request(key), new)
            .await?;
        Ok(created(CreateOrganizationResponse {
            organization: Some(organization_details(&details)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "GetOrganization"))]
    async fn get_organization(
        &self,
        request: Request<GetOrganizationRequest>,
    ) -> Result<Response<GetOrganizationResponse>, Status> {
        let caller = caller(&request)?;
        let details = self
            .app
            .organization(&caller, "GetOrganization", &request.get_ref().slug)
            .await?;
        Ok(resource(GetOrganizationResponse {
            organization: Some(organization_details(&details)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "UpdateOrganization"))]
    async fn update_organization(
        &self,
        request: Request<UpdateOrganizationRequest>,
    ) -> Result<Response<UpdateOrganizationResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "UpdateOrganization")?;
        let etag = etag_of(&request, &request.get_ref().etag)?;
        let req = request.into_inner();
        let slug = required_slug(&req.slug)?;
        let changes = OrganizationChanges {
            name: req
                .name
                .as_deref()
                .map(|n| Name::parse("organization", "name", n))
                .transpose()?,
            slug: req
                .new_slug
                .as_deref()
                .map(|s| Slug::parse("new_slug", s))
                .transpose()?,
            description: req
                .description
                .as_deref()
                .map(|d| Description::parse("description", d))
                .transpose()?,
            labels: label_update(&req.labels, req.clear_labels)?,
            etag,
        };
        let details = self
            .app
            .update_organization(
                &actor(&caller, "UpdateOrganization").with_request(key),
                slug,
                changes,
            )
            .await?;
        Ok(resource(UpdateOrganizationResponse {
            organization: Some(organization_details(&details)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "DeleteOrganization"))]
    async fn delete_organization(
        &self,
        request: Request<DeleteOrganizationRequest>,
    ) -> Result<Response<DeleteOrganizationResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "DeleteOrganization")?;
        let slug = required_slug(&request.get_ref().slug)?;
        let etag = etag_of(&request, &request.get_ref().etag)?;
        self.app
            .delete_organization(
                &actor(&caller, "DeleteOrganization").with_request(key),
                slug,
                etag.as_deref(),
            )
            .await?;
        Ok(no_content(DeleteOrganizationResponse {}))
    }

    #[instrument(skip_all, fields(rpc = "UndeleteOrganization"))]
    async fn undelete_organization(
        &self,
        request: Request<UndeleteOrganizationRequest>,
    ) -> Result<Response<UndeleteOrganizationResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "UndeleteOrganization")?;
        let etag = etag_of(&request, &request.get_ref().etag)?;
        let slug = required_slug(&request.get_ref().slug)?;
        let details = self
            .app
            .undelete_organization(
                &actor(&caller, "UndeleteOrganization").with_request(key),
                slug,
                etag.as_deref(),
            )
            .await?;
        Ok(resource(UndeleteOrganizationResponse {
            organization: Some(organization_details(&details)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "AddSpace"))]
    async fn add_space(
        &self,
        request: Request<AddSpaceRequest>,
    ) -> Result<Response<AddSpaceResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "AddSpace")?;
        let req = request.into_inner();
        let slug = required_slug(&req.slug)?;
        let space_id = parse_id("space_id", &req.space_id)?;
        let attached = self
            .app
            .add_space(&actor(&caller, "AddSpace").with_request(key), slug, space_id)
            .await?;
        Ok(created(AddSpaceResponse {
            space: Some(space(&attached)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "RemoveSpace"))]
    async fn remove_space(
        &self,
        request: Request<RemoveSpaceRequest>,
    ) -> Result<Response<RemoveSpaceResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "RemoveSpace")?;
        let req = request.into_inner();
        let slug = required_slug(&req.slug)?;
        let space_id = parse_id("space_id", &req.space_id)?;
        self.app
            .remove_space(&actor(&caller, "RemoveSpace").with_request(key), slug, space_id)
            .await?;
        Ok(no_content(RemoveSpaceResponse {}))
    }

    #[instrument(skip_all, fields(rpc = "AddUser"))]
    async fn add_user(&self, request: Request<AddUserRequest>) -> Result<Response<AddUserResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "AddUser")?;
        let req = request.into_inner();
        let slug = required_slug(&req.slug)?;
        let email = Email::parse("user_email", &req.user_email)?;
        let role = OrgRole::parse("role", &req.role)?;
        let added = self
            .app
            .add_member(&actor(&caller, "AddUser").with_request(key), slug, &email, role)
            .await?;
        Ok(created(AddUserResponse {
            member: Some(member(&added)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "UpdateUserRole"))]
    async fn update_user_role(
        &self,
        request: Request<UpdateUserRoleRequest>,
    ) -> Result<Response<UpdateUserRoleResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "UpdateUserRole")?;
        let etag = etag_of(&request, &request.get_ref().etag)?;
        let req = request.into_inner();
        let slug = required_slug(&req.slug)?;
        let user = parse_id("user_id", &req.user_id)?;
        let role = OrgRole::parse("role", &req.role)?;
        let updated = self
            .app
            .update_member_role(
                &actor(&caller, "UpdateUserRole").with_request(key),
                slug,
                user,
                role,
                etag.as_deref(),
            )
            .await?;
        Ok(resource(UpdateUserRoleResponse {
            member: Some(member(&updated)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "RemoveUser"))]
    async fn remove_user(
        &self,
        request: Request<RemoveUserRequest>,
    ) -> Result<Response<RemoveUserResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "RemoveUser")?;
        let etag = etag_of(&request, &request.get_ref().etag)?;
        let req = request.into_inner();
        let slug = required_slug(&req.slug)?;
        let user = parse_id("user_id", &req.user_id)?;
        self.app
            .remove_member(
                &actor(&caller, "RemoveUser").with_request(key),
                slug,
                user,
                etag.as_deref(),
            )
            .await?;
        Ok(no_content(RemoveUserResponse {}))
    }

    #[instrument(skip_all, fields(rpc = "BatchAddUsers"))]
    async fn batch_add_users(
        &self,
        request: Request<BatchAddUsersRequest>,
    ) -> Result<Response<BatchAddUsersResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "BatchAddUsers")?;
        let req = request.into_inner();
        let slug = required_slug(&req.slug)?;
        let raw: Vec<(String, String)> = req.entries.into_iter().map(|e| (e.user_email, e.role)).collect();
        let entries = batch::additions(&raw, OrgRole::parse)?;
        let added = self
            .app
            .batch_add_members(&actor(&caller, "BatchAddUsers").with_request(key), slug, &entries)
            .await?;
        Ok(Response::new(BatchAddUsersResponse {
            members: added.iter().map(member).collect(),
        }))
    }

    #[instrument(skip_all, fields(rpc = "BatchRemoveUsers"))]
    async fn batch_remove_users(
        &self,
        request: Request<BatchRemoveUsersRequest>,
    ) -> Result<Response<BatchRemoveUsersResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "BatchRemoveUsers")?;
        let req = request.into_inner();
        let slug = required_slug(&req.slug)?;
        let raw: Vec<String> = req.entries.into_iter().map(|e| e.user_id).collect();
        let users = batch::removals(&raw)?;
        let removed = self
            .app
            .batch_remove_members(
                &actor(&caller, "BatchRemoveUsers").with_request(key),
                slug,
                &users,
            )
            .await?;
        Ok(Response::new(BatchRemoveUsersResponse {
            removed: count(removed as i64),
        }))
    }

    #[instrument(skip_all, fields(rpc = "CreateInvitation"))]
    async fn create_invitation(
        &self,
        request: Request<CreateInvitationRequest>,
    ) -> Result<Response<CreateInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "CreateInvitation")?;
        let req = request.into_inner();
        let slug = required_slug(&req.slug)?;
        let new = NewInvitation {
            id: uuid::Uuid::new_v4(),
            email: Email::parse("email", &req.email)?,
            role: OrgRole::parse("role", &req.role)?,
            expires_at: crate::store::now_micros() + invitation_ttl(req.ttl.as_ref())?,
        };
        let made = self
            .app
            .create_invitation(&actor(&caller, "CreateInvitation").with_request(key), slug, new)
            .await?;
        Ok(created(CreateInvitationResponse {
            invitation: Some(invitation(&made)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "ListInvitations"))]
    async fn list_invitations(
        &self,
        request: Request<ListInvitationsRequest>,
    ) -> Result<Response<ListInvitationsResponse>, Status> {
        let caller = caller(&request)?;
        let access = self
            .app
            .org_access(
                &caller,
                "ListInvitations",
                &request.get_ref().slug,
                OrgAction::Manage,
                "invitation.read",
            )
            .await?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page, req.size, &req.page_token)?;
        let state = non_empty(&req.state)
            .map(|s| InvitationState::parse("state", &s))
            .transpose()?;
        let result = self
            .app
            .store
            .list_invitations(access.org.id, state, page)
            .await?;
        Ok(Response::new(ListInvitationsResponse {
            items: result.items.iter().map(invitation).collect(),
            total: count(result.total),
            page: result.page as i32,
            size: result.size as i32,
            next_page_token: result.next_page_token,
        }))
    }

    #[instrument(skip_all, fields(rpc = "RevokeInvitation"))]
    async fn revoke_invitation(
        &self,
        request: Request<RevokeInvitationRequest>,
    ) -> Result<Response<RevokeInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "RevokeInvitation")?;
        let req = request.into_inner();
        let slug = required_slug(&req.slug)?;
        let id = parse_id("invitation_id", &req.invitation_id)?;
        let revoked = self
            .app
            .revoke_invitation(&actor(&caller, "RevokeInvitation").with_request(key), slug, id)
            .await?;
        Ok(Response::new(RevokeInvitationResponse {
            invitation: Some(invitation(&revoked)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "AcceptInvitation"))]
    async fn accept_invitation(
        &self,
        request: Request<AcceptInvitationRequest>,
    ) -> Result<Response<AcceptInvitationResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "AcceptInvitation")?;
        let id = parse_id("invitation_id", &request.get_ref().invitation_id)?;
        let accepted = self
            .app
            .accept_invitation(&actor(&caller, "AcceptInvitation").with_request(key), id)
            .await?;
        Ok(Response::new(AcceptInvitationResponse {
            member: Some(member(&accepted.member)),
            organization_id: accepted.organization_id.to_string(),
            organization_slug: accepted.organization_slug,
        }))
    }

    #[instrument(skip_all, fields(rpc = "ListUsers"))]
    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let caller = caller(&request)?;
        let access = self
            .app
            .org_access(
                &caller,
                "ListUsers",
                &request.get_ref().slug,
                OrgAction::Read,
                "organization.read",
            )
            .await?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page, req.size, &req.page_token)?;
        let filter = MemberFilter {
            search: search_term(&req.search)?,
            role: non_empty(&req.role)
                .map(|r| OrgRole::parse("role", &r))
                .transpose()?,
        };
        let result = self.app.store.list_members(access.org.id, &filter, page).await?;
        Ok(Response::new(ListUsersResponse {
            items: result.items.iter().map(member).collect(),
            total: count(result.total),
            page: result.page as i32,
            size: result.size as i32,
            next_page_token: result.next_page_token,
        }))
    }

    #[instrument(skip_all, fields(rpc = "ListAuditEvents"))]
    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let chain = chain_ref(&req.slug, &req.organization_id)?;
        let filter = event_filter(&req)?;
        let page = PageRequest::parse(req.page, req.size, &req.page_token)?;
        let chain = self.app.audit_chain(&caller, "ListAuditEvents", &chain).await?;
        let result = self.app.list_audit_events(chain, &filter, page).await?;
        Ok(Response::new(ListAuditEventsResponse {
            items: result.items.iter().map(super::audit_event).collect(),
            total: count(result.total),
            page: result.page as i32,
            size: result.size as i32,
            next_page_token: result.next_page_token,
        }))
    }

    #[instrument(skip_all, fields(rpc = "VerifyAuditChain"))]
    async fn verify_audit_chain(
        &self,
        request: Request<VerifyAuditChainRequest>,
    ) -> Result<Response<VerifyAuditChainResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let chain = chain_ref(&req.slug, &req.organization_id)?;
        let chain = self.app.audit_chain(&caller, "VerifyAuditChain", &chain).await?;
        let v = self.app.verify_chain(chain).await?;
        Ok(Response::new(VerifyAuditChainResponse {
            valid: v.valid,
            checked: count(v.checked),
            head_seq: v.head_seq,
            head_hash: v.head_hash,
            first_invalid_seq: v.first_invalid_seq,
            reason: v.reason,
            base: v.base.as_ref().map(super::checkpoint),
        }))
    }

    #[instrument(skip_all, fields(rpc = "GetAuditCheckpoint"))]
    async fn get_audit_checkpoint(
        &self,
        request: Request<GetAuditCheckpointRequest>,
    ) -> Result<Response<GetAuditCheckpointResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let chain = chain_ref(&req.slug, &req.organization_id)?;
        let chain = self
            .app
            .audit_chain(&caller, "GetAuditCheckpoint", &chain)
            .await?;
        let checkpoint = self.app.checkpoint(chain).await?;
        Ok(resource(GetAuditCheckpointResponse {
            checkpoint: Some(super::checkpoint(&checkpoint)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "ProveAuditChain"))]
    async fn prove_audit_chain(
        &self,
        request: Request<ProveAuditChainRequest>,
    ) -> Result<Response<ProveAuditChainResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let chain = chain_ref(&req.slug, &req.organization_id)?;
        let old = req
            .checkpoint
            .as_ref()
            .ok_or_else(|| Error::missing("checkpoint", "checkpoint is required"))
            .and_then(super::checkpoint_from)?;
        if req.max_events < 0 {
            return Err(Error::invalid(
                "INVALID_MAX_EVENTS",
                "max_events",
                "max_events must not be negative",
            )
            .into());
        }
        let max = if req.max_events == 0 {
            MAX_PROOF_EVENTS
        } else {
            i64::from(req.max_events)
        };
        let chain = self.app.audit_chain(&caller, "ProveAuditChain", &chain).await?;
        let proof = self.app.prove(chain, &old, max).await?;
        Ok(Response::new(ProveAuditChainResponse {
            consistent: proof.consistent,
            first_invalid_seq: proof.first_invalid_seq,
            reason: proof.reason,
            events: proof.events.iter().map(super::audit_event).collect(),
            checkpoint: Some(super::checkpoint(&proof.checkpoint)),
            complete: proof.complete,
        }))
    }

    type ExportAuditEventsStream = ResponseStream<crate::proto::google_api::HttpBody>;

    #[instrument(skip_all, fields(rpc = "ExportAuditEvents"))]
    async fn export_audit_events(
        &self,
        request: Request<ExportAuditEventsRequest>,
    ) -> Result<Response<Self::ExportAuditEventsStream>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let chain = chain_ref(&req.slug, &req.organization_id)?;
        let chain = self.app.audit_chain(&caller, "ExportAuditEvents", &chain).await?;
        let (chunks, mut received) = tokio::sync::mpsc::channel::<Vec<u8>>(STREAM_BUFFER);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let app = self.app.clone();
        tokio::spawn(async move {
            let export = app.export(chain, chunks);
            let forward = async {
                while let Some(data) = received.recv().await {
                    let body = crate::proto::google_api::HttpBody {
                        content_type: "application/x-ndjson".into(),
                        data,
                        extensions: Vec::new(),
                    };
                    if tx.send(Ok(body)).await.is_err() {
                        return;
                    }
                }
            };
            let (exported, ()) = tokio::join!(export, forward);
            if let Err(e) = exported {
                let _ = tx.send(Err(Status::from(e))).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type WatchEventsStream = ResponseStream<WatchEventsResponse>;

    #[instrument(skip_all, fields(rpc = "WatchEvents"))]
    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let chain = chain_ref(&req.slug, &req.organization_id)?;
        if req.after_seq < 0 {
            return Err(Error::invalid("INVALID_SEQ", "after_seq", "after_seq must not be negative").into());
        }
        let chain = self.app.audit_chain(&caller, "WatchEvents", &chain).await?;
        let (events, mut received) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let app = self.app.clone();
        tokio::spawn(async move {
            let watch = app.watch(&caller, "WatchEvents", chain, req.after_seq, events);
            let forward = async {
                while let Some(item) = received.recv().await {
                    let item = item
                        .map(|e| WatchEventsResponse {
                            event: Some(super::audit_event(&e)),
                        })
                        .map_err(Status::from);
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            };
            tokio::join!(watch, forward);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    #[instrument(skip_all, fields(rpc = "GetAuditSigningKey"))]
    async fn get_audit_signing_key(
        &self,
        request: Request<GetAuditSigningKeyRequest>,
    ) -> Result<Response<GetAuditSigningKeyResponse>, Status> {
        caller(&request)?;
        Ok(Response::new(GetAuditSigningKeyResponse {
            algorithm: "Ed25519".into(),
            public_key: self.app.signer.public_key_hex(),
            key_id: self.app.signer.key_id().to_owned(),
        }))
    }
}

/// A server stream's items.
type ResponseStream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// Items buffered per stream: a slow reader holds the producer back.
const STREAM_BUFFER: usize = 16;

/// A slug from a request path; one that cannot exist is NOT_FOUND.
fn required_slug(raw: &str) -> Result<&str> {
    crate::domain::types::lookup_slug(raw)
}
