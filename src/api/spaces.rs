//! SpaceService: the registry of spaces and their members, and the write
//! side of space content (batch upserts and deletes).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use super::{content, count, created, member, no_content, non_empty, resource, space};
use crate::App;
use crate::domain::access::{Caller, SpaceAction, check_space};
use crate::domain::content::{ContentKind, MAX_BATCH, check_batch};
use crate::domain::model::SpaceAccess;
use crate::domain::page::PageRequest;
use crate::domain::types::{
    Agent, Description, Email, Name, Slug, SpaceRole, Visibility, parse_id, parse_repo,
};
use crate::domain::{Error, Result};
use crate::proto::space_service_server::SpaceService;
use crate::proto::*;
use crate::store::{NewSpace, SpaceChanges, SpaceFilter};

pub struct SpaceApi {
    app: Arc<App>,
}

fn agent_from(a: &crate::proto::Agent) -> Result<Agent> {
    Agent::parse(&a.agent_id, &a.status, a.autonomy_level)
}

impl SpaceApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// Authenticates, and checks the caller may write the space's content.
    async fn writable<T: SpaceScoped>(&self, request: Request<T>) -> Result<(Uuid, T)> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, request.get_ref().space_id(), SpaceAction::WriteContent)
            .await?;
        Ok((access.space.id, request.into_inner()))
    }

    async fn delete(
        &self,
        kind: ContentKind,
        space: Uuid,
        field: &'static str,
        raw_id: &str,
    ) -> Result<Response<DeleteContentResponse>, Status> {
        let id = parse_id(field, raw_id)?;
        self.app.store.delete_content(kind, space, id).await?;
        Ok(no_content(DeleteContentResponse {}))
    }

    /// Resolves the space and checks the caller may do `action`.
    async fn access(&self, caller: &Caller, raw_id: &str, action: SpaceAction) -> Result<SpaceAccess> {
        let id = parse_id("space_id", raw_id)?;
        let access = self
            .app
            .store
            .space_access(id, caller.user_id)
            .await?
            .ok_or_else(|| not_found(id))?;
        check_space(caller, &access, action)?;
        Ok(access)
    }
}

/// Requests addressed to one space's content.
pub trait SpaceScoped {
    fn space_id(&self) -> &str;
}

macro_rules! space_scoped {
    ($($t:ty),+) => {$(
        impl SpaceScoped for $t {
            fn space_id(&self) -> &str {
                &self.space_id
            }
        }
    )+};
}
space_scoped!(
    BatchUpsertProductsRequest,
    BatchUpsertContractsRequest,
    BatchUpsertIssuesRequest,
    BatchUpsertQualityChecksRequest,
    DeleteProductRequest,
    DeleteContractRequest,
    DeleteIssueRequest,
    DeleteQualityCheckRequest
);

/// Validates a whole batch before anything is written: its size, every item
/// (errors name `items[i].field`), and that ids are distinct.
fn batch<P, D>(raw: &[P], parse: impl Fn(&P) -> Result<D>, id: impl Fn(&D) -> Uuid) -> Result<Vec<D>> {
    if raw.len() > MAX_BATCH {
        return Err(Error::invalid(
            "BATCH_TOO_LARGE",
            "items",
            format!("a batch holds at most {MAX_BATCH} items, got {}", raw.len()),
        ));
    }
    let items = content::items(raw, parse)?;
    check_batch(&items.iter().map(id).collect::<Vec<_>>())?;
    Ok(items)
}

fn not_found(id: Uuid) -> Error {
    Error::not_found("SPACE_NOT_FOUND", format!("space {id} not found")).with("space_id", id.to_string())
}

fn members_page(
    result: crate::domain::model::Page<crate::domain::model::Member>,
) -> ListSpaceMembersResponse {
    ListSpaceMembersResponse {
        items: result.items.iter().map(member).collect(),
        total: count(result.total),
        page: result.page as i32,
        size: result.size as i32,
        next_page_token: result.next_page_token,
    }
}

#[tonic::async_trait]
impl SpaceService for SpaceApi {
    #[instrument(skip_all, fields(rpc = "CreateSpace"))]
    async fn create_space(
        &self,
        request: Request<CreateSpaceRequest>,
    ) -> Result<Response<CreateSpaceResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        caller.require_superadmin("create spaces")?;
        let req = request.into_inner();
        let name = Name::parse("space", "name", &req.name)?;
        let slug = match req.slug.as_deref() {
            Some(s) if !s.trim().is_empty() => Slug::parse("slug", s)?,
            _ => Slug::derive("slug", name.as_str())?,
        };
        let new = NewSpace {
            id: Uuid::now_v7(),
            description: Description::parse("description", &req.description)?,
            visibility: match non_empty(&req.visibility) {
                Some(v) => Visibility::parse("visibility", &v)?,
                None => Visibility::Organization,
            },
            repo: parse_repo("repo", &req.repo)?,
            agent: req.agent.as_ref().map(agent_from).transpose()?,
            admin_email: match non_empty(&req.admin_email) {
                Some(e) => Email::parse("admin_email", &e)?,
                None => Email::parse("admin_email", &caller.email)?,
            },
            name,
            slug,
        };
        let created_space = self.app.store.create_space(new).await?;
        Ok(created(CreateSpaceResponse {
            space: Some(space(&created_space)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "ListSpaces"))]
    async fn list_spaces(
        &self,
        request: Request<ListSpacesRequest>,
    ) -> Result<Response<ListSpacesResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page, req.size, &req.page_token)?;
        let filter = SpaceFilter {
            visible_to: (!caller.is_superadmin).then_some(caller.user_id),
            search: non_empty(&req.search),
            organization_id: non_empty(&req.organization_id)
                .map(|id| parse_id("organization_id", &id))
                .transpose()?,
        };
        let result = self.app.store.list_spaces(&filter, page).await?;
        Ok(Response::new(ListSpacesResponse {
            items: result.items.iter().map(space).collect(),
            total: count(result.total),
            page: result.page as i32,
            size: result.size as i32,
            next_page_token: result.next_page_token,
        }))
    }

    #[instrument(skip_all, fields(rpc = "GetSpace"))]
    async fn get_space(
        &self,
        request: Request<GetSpaceRequest>,
    ) -> Result<Response<GetSpaceResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().space_id, SpaceAction::Read)
            .await?;
        Ok(resource(GetSpaceResponse {
            space: Some(space(&access.space)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "UpdateSpace"))]
    async fn update_space(
        &self,
        request: Request<UpdateSpaceRequest>,
    ) -> Result<Response<UpdateSpaceResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().space_id, SpaceAction::Manage)
            .await?;
        let req = request.into_inner();
        if req.remove_agent && req.agent.is_some() {
            return Err(Error::invalid(
                "CONFLICTING_FIELDS",
                "remove_agent",
                "give either agent or remove_agent, not both",
            )
            .into());
        }
        let changes = SpaceChanges {
            name: req
                .name
                .as_deref()
                .map(|n| Name::parse("space", "name", n))
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
            visibility: req
                .visibility
                .as_deref()
                .map(|v| Visibility::parse("visibility", v))
                .transpose()?,
            repo: req.repo.as_deref().map(|r| parse_repo("repo", r)).transpose()?,
            agent: if req.remove_agent {
                Some(None)
            } else {
                req.agent.as_ref().map(agent_from).transpose()?.map(Some)
            },
        };
        let updated = if changes.is_empty() {
            access.space
        } else {
            self.app.store.update_space(access.space.id, changes).await?
        };
        Ok(resource(UpdateSpaceResponse {
            space: Some(space(&updated)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "DeleteSpace"))]
    async fn delete_space(
        &self,
        request: Request<DeleteSpaceRequest>,
    ) -> Result<Response<DeleteSpaceResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().space_id, SpaceAction::Manage)
            .await?;
        if let Some(org) = self.app.store.delete_space(access.space.id).await?
            && let Err(e) = self.app.storage.detach_space(org, access.space.id).await
        {
            tracing::error!(org = %org, space = %access.space.id, error = %e, "could not remove space directory");
        }
        Ok(no_content(DeleteSpaceResponse {}))
    }

    #[instrument(skip_all, fields(rpc = "ListSpaceMembers"))]
    async fn list_space_members(
        &self,
        request: Request<ListSpaceMembersRequest>,
    ) -> Result<Response<ListSpaceMembersResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().space_id, SpaceAction::Read)
            .await?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page, req.size, &req.page_token)?;
        let result = self.app.store.list_space_members(access.space.id, page).await?;
        Ok(Response::new(members_page(result)))
    }

    #[instrument(skip_all, fields(rpc = "AddSpaceMember"))]
    async fn add_space_member(
        &self,
        request: Request<AddSpaceMemberRequest>,
    ) -> Result<Response<AddSpaceMemberResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().space_id, SpaceAction::Manage)
            .await?;
        let req = request.into_inner();
        let email = Email::parse("user_email", &req.user_email)?;
        let role = SpaceRole::parse("role", &req.role)?;
        let added = self
            .app
            .store
            .add_space_member(access.space.id, &email, role)
            .await?;
        Ok(created(AddSpaceMemberResponse {
            member: Some(member(&added)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "UpdateSpaceMember"))]
    async fn update_space_member(
        &self,
        request: Request<UpdateSpaceMemberRequest>,
    ) -> Result<Response<UpdateSpaceMemberResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().space_id, SpaceAction::Manage)
            .await?;
        let req = request.into_inner();
        let user = parse_id("user_id", &req.user_id)?;
        let role = SpaceRole::parse("role", &req.role)?;
        let updated = self
            .app
            .store
            .update_space_member(access.space.id, user, role)
            .await?;
        Ok(resource(UpdateSpaceMemberResponse {
            member: Some(member(&updated)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "RemoveSpaceMember"))]
    async fn remove_space_member(
        &self,
        request: Request<RemoveSpaceMemberRequest>,
    ) -> Result<Response<RemoveSpaceMemberResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let user = parse_id("user_id", &request.get_ref().user_id)?;
        // Members may leave a space they can see; removing others takes a
        // space admin.
        let action = if user == caller.user_id {
            SpaceAction::Read
        } else {
            SpaceAction::Manage
        };
        let access = self.access(&caller, &request.get_ref().space_id, action).await?;
        self.app.store.remove_space_member(access.space.id, user).await?;
        Ok(no_content(RemoveSpaceMemberResponse {}))
    }

    #[instrument(skip_all, fields(rpc = "BatchUpsertProducts"))]
    async fn batch_upsert_products(
        &self,
        request: Request<BatchUpsertProductsRequest>,
    ) -> Result<Response<BatchUpsertResponse>, Status> {
        let (space, req) = self.writable(request).await?;
        let items = batch(&req.items, content::product_input, |i| i.id)?;
        let upserted = self.app.store.upsert_products(space, &items).await?;
        Ok(Response::new(BatchUpsertResponse {
            upserted: count(upserted as i64),
        }))
    }

    #[instrument(skip_all, fields(rpc = "DeleteProduct"))]
    async fn delete_product(
        &self,
        request: Request<DeleteProductRequest>,
    ) -> Result<Response<DeleteContentResponse>, Status> {
        let (space, req) = self.writable(request).await?;
        self.delete(ContentKind::Product, space, "product_id", &req.product_id)
            .await
    }

    #[instrument(skip_all, fields(rpc = "BatchUpsertContracts"))]
    async fn batch_upsert_contracts(
        &self,
        request: Request<BatchUpsertContractsRequest>,
    ) -> Result<Response<BatchUpsertResponse>, Status> {
        let (space, req) = self.writable(request).await?;
        let items = batch(&req.items, content::contract_input, |i| i.id)?;
        let upserted = self.app.store.upsert_contracts(space, &items).await?;
        Ok(Response::new(BatchUpsertResponse {
            upserted: count(upserted as i64),
        }))
    }

    #[instrument(skip_all, fields(rpc = "DeleteContract"))]
    async fn delete_contract(
        &self,
        request: Request<DeleteContractRequest>,
    ) -> Result<Response<DeleteContentResponse>, Status> {
        let (space, req) = self.writable(request).await?;
        self.delete(ContentKind::Contract, space, "contract_id", &req.contract_id)
            .await
    }

    #[instrument(skip_all, fields(rpc = "BatchUpsertIssues"))]
    async fn batch_upsert_issues(
        &self,
        request: Request<BatchUpsertIssuesRequest>,
    ) -> Result<Response<BatchUpsertResponse>, Status> {
        let (space, req) = self.writable(request).await?;
        let items = batch(&req.items, content::issue_input, |i| i.id)?;
        let upserted = self.app.store.upsert_issues(space, &items).await?;
        Ok(Response::new(BatchUpsertResponse {
            upserted: count(upserted as i64),
        }))
    }

    #[instrument(skip_all, fields(rpc = "DeleteIssue"))]
    async fn delete_issue(
        &self,
        request: Request<DeleteIssueRequest>,
    ) -> Result<Response<DeleteContentResponse>, Status> {
        let (space, req) = self.writable(request).await?;
        self.delete(ContentKind::Issue, space, "issue_id", &req.issue_id)
            .await
    }

    #[instrument(skip_all, fields(rpc = "BatchUpsertQualityChecks"))]
    async fn batch_upsert_quality_checks(
        &self,
        request: Request<BatchUpsertQualityChecksRequest>,
    ) -> Result<Response<BatchUpsertResponse>, Status> {
        let (space, req) = self.writable(request).await?;
        let items = batch(&req.items, content::quality_check_input, |i| i.id)?;
        let upserted = self.app.store.upsert_quality_checks(space, &items).await?;
        Ok(Response::new(BatchUpsertResponse {
            upserted: count(upserted as i64),
        }))
    }

    #[instrument(skip_all, fields(rpc = "DeleteQualityCheck"))]
    async fn delete_quality_check(
        &self,
        request: Request<DeleteQualityCheckRequest>,
    ) -> Result<Response<DeleteContentResponse>, Status> {
        let (space, req) = self.writable(request).await?;
        self.delete(
            ContentKind::QualityCheck,
            space,
            "quality_check_id",
            &req.quality_check_id,
        )
        .await
    }
}
