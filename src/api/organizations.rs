//! OrganizationService: organizations, their members and their spaces.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{
    bare_list, count, created, member, no_content, non_empty, organization_details, organization_summary,
    resource, space, storage_error,
};
use crate::App;
use crate::domain::access::{Caller, OrgAction, check_org};
use crate::domain::model::{OrgAccess, Organization};
use crate::domain::page::PageRequest;
use crate::domain::types::{Description, Email, Name, OrgRole, Slug, parse_id};
use crate::domain::{Error, Result};
use crate::proto::organization_service_server::OrganizationService;
use crate::proto::*;
use crate::store::{MemberFilter, NewOrganization, OrganizationChanges, OrganizationFilter};

pub struct OrganizationApi {
    app: Arc<App>,
}

impl OrganizationApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    async fn access(&self, caller: &Caller, slug: &str, action: OrgAction) -> Result<OrgAccess> {
        super::org_access(&self.app, caller, slug, action).await
    }

    async fn details(&self, org: Organization) -> Result<OrganizationDetails> {
        let details = self.app.store.organization_details(org).await?;
        Ok(organization_details(&details))
    }
}

#[tonic::async_trait]
impl OrganizationService for OrganizationApi {
    #[instrument(skip_all, fields(rpc = "ListOrganizations"))]
    async fn list_organizations(
        &self,
        request: Request<ListOrganizationsRequest>,
    ) -> Result<Response<ListOrganizationsResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page, req.size, &req.page_token)?;
        let filter = OrganizationFilter {
            member: (!caller.is_superadmin).then_some(caller.user_id),
            search: non_empty(&req.search),
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
        let caller = self.app.auth.caller(&request).await?;
        caller.require_superadmin("create organizations")?;
        let req = request.into_inner();
        let name = Name::parse("organization", "name", &req.name)?;
        let slug = match req.slug.as_deref() {
            Some(s) if !s.trim().is_empty() => Slug::parse("slug", s)?,
            _ => Slug::derive("slug", name.as_str())?,
        };
        let description = Description::parse("description", &req.description)?;
        let admin_email = match non_empty(&req.admin_email) {
            Some(e) => Email::parse("admin_email", &e)?,
            None => Email::parse("admin_email", &caller.email)?,
        };
        let id = uuid::Uuid::now_v7();
        let provisional = Organization {
            id,
            name: name.as_str().to_owned(),
            slug: slug.as_str().to_owned(),
            description: String::new(),
            created_at: 0,
            updated_at: 0,
        };
        let storage = &self.app.storage;
        storage
            .create_org(&provisional)
            .await
            .map_err(|e| storage_error("creating storage directory", id, e))?;
        let new = NewOrganization {
            id,
            name,
            slug,
            description,
            admin_email,
        };
        let org = match self.app.store.create_organization(new).await {
            Ok(org) => org,
            Err(e) => {
                if let Err(io) = storage.remove_org(id).await {
                    tracing::warn!(org = %id, error = %io, "could not remove storage directory of a failed create");
                }
                return Err(e.into());
            }
        };
        tracing::info!(org = %org.id, slug = %org.slug, actor = %caller.user_id, "organization created");
        let organization = Some(self.details(org).await?);
        Ok(created(CreateOrganizationResponse { organization }))
    }

    #[instrument(skip_all, fields(rpc = "GetOrganization"))]
    async fn get_organization(
        &self,
        request: Request<GetOrganizationRequest>,
    ) -> Result<Response<GetOrganizationResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().slug, OrgAction::Read)
            .await?;
        let organization = Some(self.details(access.org).await?);
        Ok(resource(GetOrganizationResponse { organization }))
    }

    #[instrument(skip_all, fields(rpc = "UpdateOrganization"))]
    async fn update_organization(
        &self,
        request: Request<UpdateOrganizationRequest>,
    ) -> Result<Response<UpdateOrganizationResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().slug, OrgAction::Manage)
            .await?;
        let req = request.into_inner();
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
        };
        let org = if changes.is_empty() {
            access.org
        } else {
            let renamed = changes.name.is_some() || changes.slug.is_some();
            let org = self.app.store.update_organization(access.org.id, changes).await?;
            if renamed {
                self.app
                    .storage
                    .write_org_meta(&org)
                    .await
                    .map_err(|e| storage_error("updating organization.json", org.id, e))?;
            }
            org
        };
        let organization = Some(self.details(org).await?);
        Ok(resource(UpdateOrganizationResponse { organization }))
    }

    #[instrument(skip_all, fields(rpc = "DeleteOrganization"))]
    async fn delete_organization(
        &self,
        request: Request<DeleteOrganizationRequest>,
    ) -> Result<Response<DeleteOrganizationResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().slug, OrgAction::Manage)
            .await?;
        let detached = self.app.store.delete_organization(access.org.id).await?;
        if let Err(e) = self.app.storage.remove_org(access.org.id).await {
            // The organization is gone from the database; a leftover directory
            // holds no data that could be served. Log it for the operator.
            tracing::error!(org = %access.org.id, error = %e, "could not remove storage directory");
        }
        tracing::info!(org = %access.org.id, detached = detached.len(), actor = %caller.user_id, "organization deleted");
        Ok(no_content(DeleteOrganizationResponse {}))
    }

    #[instrument(skip_all, fields(rpc = "AddSpace"))]
    async fn add_space(
        &self,
        request: Request<AddSpaceRequest>,
    ) -> Result<Response<AddSpaceResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().slug, OrgAction::Manage)
            .await?;
        let space_id = parse_id("space_id", &request.get_ref().space_id)?;
        let space_access = self
            .app
            .store
            .space_access(space_id, caller.user_id)
            .await?
            .ok_or_else(|| {
                Error::not_found("SPACE_NOT_FOUND", format!("space {space_id} not found"))
                    .with("space_id", space_id.to_string())
            })?;
        if !caller.is_superadmin && space_access.space_role != Some(crate::domain::types::SpaceRole::Admin) {
            return Err(
                Error::denied("only an admin of the space may add it to an organization")
                    .with("space_id", space_id.to_string())
                    .into(),
            );
        }
        let attached = self.app.store.attach_space(access.org.id, space_id).await?;
        self.app
            .storage
            .attach_space(access.org.id, space_id)
            .await
            .map_err(|e| storage_error("creating space directory", access.org.id, e))?;
        Ok(created(AddSpaceResponse {
            space: Some(space(&attached)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "RemoveSpace"))]
    async fn remove_space(
        &self,
        request: Request<RemoveSpaceRequest>,
    ) -> Result<Response<RemoveSpaceResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().slug, OrgAction::Manage)
            .await?;
        let space_id = parse_id("space_id", &request.get_ref().space_id)?;
        self.app.store.detach_space(access.org.id, space_id).await?;
        if let Err(e) = self.app.storage.detach_space(access.org.id, space_id).await {
            tracing::error!(org = %access.org.id, space = %space_id, error = %e, "could not remove space directory");
        }
        Ok(no_content(RemoveSpaceResponse {}))
    }

    #[instrument(skip_all, fields(rpc = "AddUser"))]
    async fn add_user(&self, request: Request<AddUserRequest>) -> Result<Response<AddUserResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().slug, OrgAction::Manage)
            .await?;
        let req = request.into_inner();
        let email = Email::parse("user_email", &req.user_email)?;
        let role = OrgRole::parse("role", &req.role)?;
        let added = self.app.store.add_member(access.org.id, &email, role).await?;
        Ok(created(AddUserResponse {
            member: Some(member(&added)),
        }))
    }

    #[instrument(skip_all, fields(rpc = "UpdateUserRole"))]
    async fn update_user_role(
        &self,
        request: Request<UpdateUserRoleRequest>,
    ) -> Result<Response<UpdateUserRoleResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().slug, OrgAction::Manage)
            .await?;
        let req = request.into_inner();
        let user = parse_id("user_id", &req.user_id)?;
        let role = OrgRole::parse("role", &req.role)?;
        let updated = self
            .app
            .store
            .update_member_role(access.org.id, user, role)
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
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().slug, OrgAction::Read)
            .await?;
        let user = parse_id("user_id", &request.get_ref().user_id)?;
        // Any member may leave; removing someone else takes an admin.
        if user != caller.user_id {
            check_org(&caller, &access, OrgAction::Manage)?;
        }
        self.app.store.remove_member(access.org.id, user).await?;
        Ok(no_content(RemoveUserResponse {}))
    }

    #[instrument(skip_all, fields(rpc = "ListUsers"))]
    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let caller = self.app.auth.caller(&request).await?;
        let access = self
            .access(&caller, &request.get_ref().slug, OrgAction::Read)
            .await?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page, req.size, &req.page_token)?;
        let filter = MemberFilter {
            search: non_empty(&req.search),
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

    async fn list_audit_events(
        &self,
        _request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        Err(Error::unimplemented("ListAuditEvents").into())
    }

    async fn verify_audit_chain(
        &self,
        _request: Request<VerifyAuditChainRequest>,
    ) -> Result<Response<VerifyAuditChainResponse>, Status> {
        Err(Error::unimplemented("VerifyAuditChain").into())
    }
}
