//! AggregationService: the content of every space of an organization, as
//! the caller may see it. Visibility is applied in SQL (`Scope`): members see
//! the organization's non-restricted spaces and the spaces they belong to;
//! organization admins and superadmins see every space.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{caller, content, count, non_empty};
use crate::App;
use crate::domain::access::Caller;
use crate::domain::content::{
    ContractFilter, IssueFilter, ProductFilter, QualityCheckFilter, Scope, optional_id, parse_list,
    search_term,
};
use crate::domain::page::PageRequest;
use crate::domain::types::{CheckStatus, ContractStatus, IssuePriority, IssueStatus, parse_id};
use crate::domain::{Error, Result};
use crate::proto::aggregation_service_server::AggregationService;
use crate::proto::*;

pub struct AggregationApi {
    app: Arc<App>,
}

impl AggregationApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// The caller, and the part of the organization's content they may see.
    async fn scope<T>(&self, request: &Request<T>, rpc: &'static str, slug: &str) -> Result<(Caller, Scope)> {
        let caller = caller(request)?;
        let scope = self.app.content_scope(&caller, rpc, slug).await?;
        Ok((caller, scope))
    }

    /// Narrows the scope to one space (`space_id`, when given).
    async fn only_space(
        &self,
        caller: &Caller,
        rpc: &'static str,
        scope: &mut Scope,
        raw: &str,
    ) -> Result<()> {
        let Some(raw) = non_empty(raw) else { return Ok(()) };
        let id = parse_id("space_id", &raw)?;
        self.app.narrow_to_space(caller, rpc, scope, id).await
    }
}

fn envelope_parts<T>(page: &crate::domain::model::Page<T>) -> (i32, i32, i32, String) {
    (
        count(page.total),
        page.page as i32,
        page.size as i32,
        page.next_page_token.clone(),
    )
}

#[tonic::async_trait]
impl AggregationService for AggregationApi {
    #[instrument(skip_all, fields(rpc = "ListProducts"))]
    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let (caller, mut scope) = self
            .scope(&request, "ListProducts", &request.get_ref().slug)
            .await?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page, req.size, &req.page_token)?;
        let filter = ProductFilter {
            search: search_term(&req.search)?,
            include_archived: req.include_archived,
        };
        self.only_space(&caller, "ListProducts", &mut scope, &req.space_id)
            .await?;
        let result = self.app.store.list_products(&scope, &filter, page).await?;
        let (total, page, size, next_page_token) = envelope_parts(&result);
        Ok(Response::new(ListProductsResponse {
            items: result.items.iter().map(content::product).collect(),
            total,
            page,
            size,
            next_page_token,
        }))
    }

    #[instrument(skip_all, fields(rpc = "ListContracts"))]
    async fn list_contracts(
        &self,
        request: Request<ListContractsRequest>,
    ) -> Result<Response<ListContractsResponse>, Status> {
        let (_, scope) = self
            .scope(&request, "ListContracts", &request.get_ref().slug)
            .await?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page, req.size, &req.page_token)?;
        let filter = ContractFilter {
            statuses: parse_list(&req.status, |v| ContractStatus::parse("status", v))?,
            search: search_term(&req.search)?,
        };
        let result = self.app.store.list_contracts(&scope, &filter, page).await?;
        let (total, page, size, next_page_token) = envelope_parts(&result);
        Ok(Response::new(ListContractsResponse {
            items: result.items.iter().map(content::contract).collect(),
            total,
            page,
            size,
            next_page_token,
        }))
    }

    #[instrument(skip_all, fields(rpc = "ListIssues"))]
    async fn list_issues(
        &self,
        request: Request<ListIssuesRequest>,
    ) -> Result<Response<ListIssuesResponse>, Status> {
        let (_, scope) = self
            .scope(&request, "ListIssues", &request.get_ref().slug)
            .await?;
        let req = request.into_inner();
        // `limit` is `size` by another name; when both are given the smaller wins.
        let size = match (req.size, req.limit) {
            (s, 0) => s,
            (0, l) => l,
            (s, l) => s.min(l),
        };
        if req.limit < 0 {
            return Err(Error::invalid("INVALID_PAGE_SIZE", "limit", "limit must not be negative").into());
        }
        let page = PageRequest::parse(req.page, size, &req.page_token)?;
        let filter = IssueFilter {
            statuses: parse_list(&req.status, |v| IssueStatus::parse("status", v))?,
            priorities: parse_list(&req.priority, |v| IssuePriority::parse("priority", v))?,
            assignee: optional_id("assignee_id", &req.assignee_id)?,
        };
        let result = self.app.store.list_issues(&scope, &filter, page).await?;
        let (total, page, size, next_page_token) = envelope_parts(&result);
        Ok(Response::new(ListIssuesResponse {
            items: result.items.iter().map(content::issue).collect(),
            total,
            page,
            size,
            next_page_token,
        }))
    }

    #[instrument(skip_all, fields(rpc = "ListQualityChecks"))]
    async fn list_quality_checks(
        &self,
        request: Request<ListQualityChecksRequest>,
    ) -> Result<Response<ListQualityChecksResponse>, Status> {
        let (_, scope) = self
            .scope(&request, "ListQualityChecks", &request.get_ref().slug)
            .await?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page, req.size, &req.page_token)?;
        let filter = QualityCheckFilter {
            include_archived: req.include_archived,
            statuses: parse_list(&req.status, |v| CheckStatus::parse("status", v))?,
        };
        let result = self.app.store.list_quality_checks(&scope, &filter, page).await?;
        let (total, page, size, next_page_token) = envelope_parts(&result);
        Ok(Response::new(ListQualityChecksResponse {
            items: result.items.iter().map(content::quality_check).collect(),
            total,
            page,
            size,
            next_page_token,
        }))
    }

    #[instrument(skip_all, fields(rpc = "GetStats"))]
    async fn get_stats(
        &self,
        request: Request<GetStatsRequest>,
    ) -> Result<Response<GetStatsResponse>, Status> {
        let (_, scope) = self.scope(&request, "GetStats", &request.get_ref().slug).await?;
        let stats = self.app.store.stats(&scope).await?;
        Ok(Response::new(GetStatsResponse {
            total_spaces: count(stats.total_spaces),
            total_products: count(stats.total_products),
            total_users: count(stats.total_users),
            quality_score: stats.quality_score,
            open_issues: count(stats.open_issues),
            active_contracts: count(stats.active_contracts),
        }))
    }
}
