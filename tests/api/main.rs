//! One integration-test binary: the real server on a real socket, called
//! through the generated tonic clients (and grpcurl), on the backend chosen
//! by ORGD_TEST_BACKEND.

mod aggregation;
mod audit;
mod audit_trail;
mod auth;
mod bulk;
mod cache;
mod cli;
mod clients;
mod envoy;
mod faults;
mod helpers;
mod hostile;
mod invitations;
mod isolation;
mod labels_etags;
mod last_admin;
mod observability;
mod organizations;
mod overload;
mod permissions;
mod rate_limits;
mod request_ids;
mod rest;
mod soft_delete;
mod spaces;
mod validation;
