//! SpaceService: the registry of spaces and their members, and the write
//! side of space content (batch upserts and deletes).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use super::{
    caller, content, count, created, etag_of, label_update, member, no_content, non_empty, request_key,
    resource, space,
};
use crate::App;
use crate::app::actor;
use crate::domain::access::SpaceAction;
use crate::domain::audit::Actor;
use crate::domain::batch;
use crate::domain::content::{ContentKind, MAX_BATCH, check_batch};
use crate::domain::labels::{LabelFilter, Labels};
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

    /// The actor and the addressed space of a content write; the store
    /// checks the actor's rights in the write's transaction.
    fn writer<T: SpaceScoped + super::Idempotent>(
        request: Request<T>,
        rpc: &'static str,
    ) -> Result<(Actor, Uuid, T)> {
        let caller = caller(&request)?;
        let key = request_key(&request, rpc)?;
        let space = parse_id("space_id", request.get_ref().space_id())?;
        Ok((actor(&caller, rpc).with_request(key), space, request.into_inner()))
    }

    async fn delete<T: SpaceScoped + super::Idempotent, R: Default>(
        &self,
        request: Request<T>,
        rpc: &'static str,
        kind: ContentKind,
        field: &'static str,
        raw_id: impl Fn(&T) -> &str,
    ) -> Result<Response<R>, Status> {
        let (actor, space, req) = Self::writer(request, rpc)?;
        let id = parse_id(field, raw_id(&req))?;
        self.app.delete_content(&actor, kind, space, id).await?;
        Ok(no_content(R::default()))
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
        let caller = caller(&request)?;
        let key = request_key(&request, "CreateSpace")?;
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
            labels: Labels::parse("labels", &req.labels)?,
        };
        let created_space = self
            .app
            .create_space(&actor(&caller, "CreateSpace").with_request(key), new)
            .await?;
        Ok(created(CreateSpaceResponse {
            space: Some(space(&created_space)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "ListSpaces"))]
    async fn list_spaces(
        &self,
        request: Request<ListSpacesRequest>,
    ) -> Result<Response<ListSpacesResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page, req.size, &req.page_token)?;
        let filter = SpaceFilter {
            visible_to: (!caller.is_superadmin).then_some(caller.user_id),
            search: crate::domain::content::search_term(&req.search)?,
            organization_id: non_empty(&req.organization_id)
                .map(|id| parse_id("organization_id", &id))
                .transpose()?,
            labels: LabelFilter::parse("label", &req.label)?,
            show_deleted: req.show_deleted,
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
        let caller = caller(&request)?;
        let id = parse_id("space_id", &request.get_ref().space_id)?;
        let access = self
            .app
            .space_access(&caller, "GetSpace", id, SpaceAction::Read, "space.read")
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
        let caller = caller(&request)?;
        let key = request_key(&request, "UpdateSpace")?;
        let etag = etag_of(&request, &request.get_ref().etag)?;
        let req = request.into_inner();
        let id = parse_id("space_id", &req.space_id)?;
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
            labels: label_update(&req.labels, req.clear_labels)?,
            etag,
        };
        let updated = self
            .app
            .update_space(&actor(&caller, "UpdateSpace").with_request(key), id, changes)
            .await?;
        Ok(resource(UpdateSpaceResponse {
            space: Some(space(&updated)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "DeleteSpace"))]
    async fn delete_space(
        &self,
        request: Request<DeleteSpaceRequest>,
    ) -> Result<Response<DeleteSpaceResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "DeleteSpace")?;
        let id = parse_id("space_id", &request.get_ref().space_id)?;
        let etag = etag_of(&request, &request.get_ref().etag)?;
        self.app
            .delete_space(
                &actor(&caller, "DeleteSpace").with_request(key),
                id,
                etag.as_deref(),
            )
            .await?;
        Ok(no_content(DeleteSpaceResponse {}))
    }

    #[instrument(skip_all, fields(rpc = "UndeleteSpace"))]
    async fn undelete_space(
        &self,
        request: Request<UndeleteSpaceRequest>,
    ) -> Result<Response<UndeleteSpaceResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "UndeleteSpace")?;
        let etag = etag_of(&request, &request.get_ref().etag)?;
        let id = parse_id("space_id", &request.get_ref().space_id)?;
        let restored = self
            .app
            .undelete_space(
                &actor(&caller, "UndeleteSpace").with_request(key),
                id,
                etag.as_deref(),
            )
            .await?;
        Ok(resource(UndeleteSpaceResponse {
            space: Some(space(&restored)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "ListSpaceMembers"))]
    async fn list_space_members(
        &self,
        request: Request<ListSpaceMembersRequest>,
    ) -> Result<Response<ListSpaceMembersResponse>, Status> {
        let caller = caller(&request)?;
        let id = parse_id("space_id", &request.get_ref().space_id)?;
        let access = self
            .app
            .space_access(&caller, "ListSpaceMembers", id, SpaceAction::Read, "space.read")
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
        let caller = caller(&request)?;
        let key = request_key(&request, "AddSpaceMember")?;
        let req = request.into_inner();
        let id = parse_id("space_id", &req.space_id)?;
        let email = Email::parse("user_email", &req.user_email)?;
        let role = SpaceRole::parse("role", &req.role)?;
        let added = self
            .app
            .add_space_member(
                &actor(&caller, "AddSpaceMember").with_request(key),
                id,
                &email,
                role,
            )
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
        let caller = caller(&request)?;
        let key = request_key(&request, "UpdateSpaceMember")?;
        let etag = etag_of(&request, &request.get_ref().etag)?;
        let req = request.into_inner();
        let id = parse_id("space_id", &req.space_id)?;
        let user = parse_id("user_id", &req.user_id)?;
        let role = SpaceRole::parse("role", &req.role)?;
        let updated = self
            .app
            .update_space_member(
                &actor(&caller, "UpdateSpaceMember").with_request(key),
                id,
                user,
                role,
                etag.as_deref(),
            )
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
        let caller = caller(&request)?;
        let key = request_key(&request, "RemoveSpaceMember")?;
        let etag = etag_of(&request, &request.get_ref().etag)?;
        let req = request.into_inner();
        let id = parse_id("space_id", &req.space_id)?;
        let user = parse_id("user_id", &req.user_id)?;
        self.app
            .remove_space_member(
                &actor(&caller, "RemoveSpaceMember").with_request(key),
                id,
                user,
                etag.as_deref(),
            )
            .await?;
        Ok(no_content(RemoveSpaceMemberResponse {}))
    }

    #[instrument(skip_all, fields(rpc = "BatchAddSpaceMembers"))]
    async fn batch_add_space_members(
        &self,
        request: Request<BatchAddSpaceMembersRequest>,
    ) -> Result<Response<BatchAddSpaceMembersResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "BatchAddSpaceMembers")?;
        let req = request.into_inner();
        let id = parse_id("space_id", &req.space_id)?;
        let raw: Vec<(String, String)> = req.entries.into_iter().map(|e| (e.user_email, e.role)).collect();
        let entries = batch::additions(&raw, SpaceRole::parse)?;
        let added = self
            .app
            .batch_add_space_members(
                &actor(&caller, "BatchAddSpaceMembers").with_request(key),
                id,
                &entries,
            )
            .await?;
        Ok(Response::new(BatchAddSpaceMembersResponse {
            members: added.iter().map(member).collect(),
        }))
    }

    #[instrument(skip_all, fields(rpc = "BatchRemoveSpaceMembers"))]
    async fn batch_remove_space_members(
        &self,
        request: Request<BatchRemoveSpaceMembersRequest>,
    ) -> Result<Response<BatchRemoveSpaceMembersResponse>, Status> {
        let caller = caller(&request)?;
        let key = request_key(&request, "BatchRemoveSpaceMembers")?;
        let req = request.into_inner();
        let id = parse_id("space_id", &req.space_id)?;
        let raw: Vec<String> = req.entries.into_iter().map(|e| e.user_id).collect();
        let users = batch::removals(&raw)?;
        let removed = self
            .app
            .batch_remove_space_members(
                &actor(&caller, "BatchRemoveSpaceMembers").with_request(key),
                id,
                &users,
            )
            .await?;
        Ok(Response::new(BatchRemoveSpaceMembersResponse {
            removed: count(removed as i64),
        }))
    }

    #[instrument(skip_all, fields(rpc = "BatchUpsertProducts"))]
    async fn batch_upsert_products(
        &self,
        request: Request<BatchUpsertProductsRequest>,
    ) -> Result<Response<BatchUpsertProductsResponse>, Status> {
        let (actor, space, req) = Self::writer(request, "BatchUpsertProducts")?;
        let items = batch(&req.items, content::product_input, |i| i.id)?;
        let upserted = self.app.upsert_products(&actor, space, &items).await?;
        Ok(Response::new(BatchUpsertProductsResponse {
            upserted: count(upserted as i64),
        }))
    }

    #[instrument(skip_all, fields(rpc = "DeleteProduct"))]
    async fn delete_product(
        &self,
        request: Request<DeleteProductRequest>,
    ) -> Result<Response<DeleteProductResponse>, Status> {
        self.delete(
            request,
            "DeleteProduct",
            ContentKind::Product,
            "product_id",
            |r| &r.product_id,
        )
        .await
    }

    #[instrument(skip_all, fields(rpc = "BatchUpsertContracts"))]
    async fn batch_upsert_contracts(
        &self,
        request: Request<BatchUpsertContractsRequest>,
    ) -> Result<Response<BatchUpsertContractsResponse>, Status> {
        let (actor, space, req) = Self::writer(request, "BatchUpsertContracts")?;
        let items = batch(&req.items, content::contract_input, |i| i.id)?;
        let upserted = self.app.upsert_contracts(&actor, space, &items).await?;
        Ok(Response::new(BatchUpsertContractsResponse {
            upserted: count(upserted as i64),
        }))
    }

    #[instrument(skip_all, fields(rpc = "DeleteContract"))]
    async fn delete_contract(
        &self,
        request: Request<DeleteContractRequest>,
    ) -> Result<Response<DeleteContractResponse>, Status> {
        self.delete(
            request,
            "DeleteContract",
            ContentKind::Contract,
            "contract_id",
            |r| &r.contract_id,
        )
        .await
    }

    #[instrument(skip_all, fields(rpc = "BatchUpsertIssues"))]
    async fn batch_upsert_issues(
        &self,
        request: Request<BatchUpsertIssuesRequest>,
    ) -> Result<Response<BatchUpsertIssuesResponse>, Status> {
        let (actor, space, req) = Self::writer(request, "BatchUpsertIssues")?;
        let items = batch(&req.items, content::issue_input, |i| i.id)?;
        let upserted = self.app.upsert_issues(&actor, space, &items).await?;
        Ok(Response::new(BatchUpsertIssuesResponse {
            upserted: count(upserted as i64),
        }))
    }

    #[instrument(skip_all, fields(rpc = "DeleteIssue"))]
    async fn delete_issue(
        &self,
        request: Request<DeleteIssueRequest>,
    ) -> Result<Response<DeleteIssueResponse>, Status> {
        self.delete(request, "DeleteIssue", ContentKind::Issue, "issue_id", |r| {
            &r.issue_id
        })
        .await
    }

    #[instrument(skip_all, fields(rpc = "BatchUpsertQualityChecks"))]
    async fn batch_upsert_quality_checks(
        &self,
        request: Request<BatchUpsertQualityChecksRequest>,
    ) -> Result<Response<BatchUpsertQualityChecksResponse>, Status> {
        let (actor, space, req) = Self::writer(request, "BatchUpsertQualityChecks")?;
        let items = batch(&req.items, content::quality_check_input, |i| i.id)?;
        let upserted = self.app.upsert_quality_checks(&actor, space, &items).await?;
        Ok(Response::new(BatchUpsertQualityChecksResponse {
            upserted: count(upserted as i64),
        }))
    }

    #[instrument(skip_all, fields(rpc = "DeleteQualityCheck"))]
    async fn delete_quality_check(
        &self,
        request: Request<DeleteQualityCheckRequest>,
    ) -> Result<Response<DeleteQualityCheckResponse>, Status> {
        self.delete(
            request,
            "DeleteQualityCheck",
            ContentKind::QualityCheck,
            "quality_check_id",
            |r| &r.quality_check_id,
        )
        .await
    }
}
