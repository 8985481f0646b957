//! AggregationService: cross-space read views. Not implemented yet; every
//! RPC answers UNIMPLEMENTED.

use tonic::{Request, Response, Status};

use crate::domain::Error;
use crate::proto::aggregation_service_server::AggregationService;
use crate::proto::*;

#[derive(Default)]
pub struct AggregationApi;

#[tonic::async_trait]
impl AggregationService for AggregationApi {
    async fn list_products(
        &self,
        _r: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        Err(Error::unimplemented("ListProducts").into())
    }

    async fn list_contracts(
        &self,
        _r: Request<ListContractsRequest>,
    ) -> Result<Response<ListContractsResponse>, Status> {
        Err(Error::unimplemented("ListContracts").into())
    }

    async fn list_issues(
        &self,
        _r: Request<ListIssuesRequest>,
    ) -> Result<Response<ListIssuesResponse>, Status> {
        Err(Error::unimplemented("ListIssues").into())
    }

    async fn list_quality_checks(
        &self,
        _r: Request<ListQualityChecksRequest>,
    ) -> Result<Response<ListQualityChecksResponse>, Status> {
        Err(Error::unimplemented("ListQualityChecks").into())
    }

    async fn get_stats(&self, _r: Request<GetStatsRequest>) -> Result<Response<GetStatsResponse>, Status> {
        Err(Error::unimplemented("GetStats").into())
    }
}
