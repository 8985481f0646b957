//! The gRPC edge: one tonic service per file, converting proto messages to
//! validated domain values and domain results back to proto. Errors are
//! mapped to gRPC statuses here, in one place.

pub mod admission;
pub mod aggregation;
pub mod authn;
pub mod codec;
pub mod content;
pub mod errors;
pub mod organizations;
pub mod spaces;

use std::collections::HashMap;

use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::model::{Member, Organization, OrganizationDetails, OrganizationSummary, Space, SpaceRef};
use crate::domain::{Error, ErrorKind};
use crate::proto;
use crate::storage::Storage;

pub use authn::caller;

/// The domain of every ErrorInfo orgd sends.
pub const ERROR_DOMAIN: &str = "orgd";

pub fn grpc_code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Aborted => Code::Aborted,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The most of a caller's input an error repeats back: messages and
/// metadata values stay small whatever the input (gRPC metadata has a size
/// limit, and a huge error is useless to read).
const MAX_ECHO: usize = 256;

fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

impl From<Error> for Status {
    fn from(mut e: Error) -> Self {
        e.message = bounded(&e.message, 4 * MAX_ECHO);
        // Entries with an empty value are left out: protobuf drops an empty
        // map value on the wire, and Envoy's transcoder (1.40) drops the
        // connection on a map entry without its value.
        let metadata: HashMap<String, String> = e
            .metadata
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| ((*k).to_owned(), bounded(v, MAX_ECHO)))
            .collect();
        let mut details = ErrorDetails::with_error_info(e.reason, ERROR_DOMAIN, metadata);
        if e.kind == ErrorKind::InvalidArgument
            && let Some((_, field)) = e.metadata.iter().find(|(k, _)| *k == "field")
        {
            details.add_bad_request_violation(field.clone(), e.message.clone());
        }
        if let Some(limited) = &e.rate_limited {
            details.set_retry_info(Some(limited.retry_after));
        }
        let mut status = Status::with_error_details(grpc_code(e.kind), e.message, details);
        if let Some(limited) = &e.rate_limited {
            // A rate limit names its bucket; the server's capacity does not.
            if limited.limit > 0 {
                rate_limit_headers(
                    status.metadata_mut(),
                    limited.limit,
                    limited.remaining,
                    limited.reset_secs,
                );
            }
            // Whole seconds, rounded up: a client that waits this long
            // finds a token.
            let retry = limited.retry_after.as_secs() + u64::from(limited.retry_after.subsec_nanos() > 0);
            status
                .metadata_mut()
                .insert("retry-after", MetadataValue::from(retry.max(1)));
        }
        status
    }
}

/// The `x-ratelimit-*` headers (gRPC metadata, HTTP headers through Envoy):
/// the size of the bucket, the calls left in it, and the seconds until it is
/// full again.
pub fn rate_limit_headers(
    metadata: &mut tonic::metadata::MetadataMap,
    limit: u64,
    remaining: u64,
    reset: u64,
) {
    metadata.insert("x-ratelimit-limit", MetadataValue::from(limit));
    metadata.insert("x-ratelimit-remaining", MetadataValue::from(remaining));
    metadata.insert("x-ratelimit-reset", MetadataValue::from(reset));
}

/// Microseconds since the epoch to a protobuf timestamp.
pub fn timestamp(micros: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    })
}

/// Response metadata telling Envoy's Lua filter how to shape the REST reply
/// (see envoy.yaml): `x-http-status` sets the status line, `x-json-body`
/// reshapes the JSON body. Both are removed before the reply leaves Envoy;
/// gRPC callers can ignore them.
const STATUS_HINT: &str = "x-http-status";
const BODY_HINT: &str = "x-json-body";

fn hinted<T>(message: T, status: Option<&'static str>, body: Option<&'static str>) -> Response<T> {
    let mut response = Response::new(message);
    let metadata = response.metadata_mut();
    if let Some(status) = status {
        metadata.insert(STATUS_HINT, MetadataValue::from_static(status));
    }
    if let Some(body) = body {
        metadata.insert(BODY_HINT, MetadataValue::from_static(body));
    }
    response
}

/// A response whose only field is one resource: REST callers get the
/// resource itself as the body.
pub fn resource<T>(message: T) -> Response<T> {
    hinted(message, None, Some("unwrap"))
}

/// A created resource: REST callers get `201 Created` and the resource.
pub fn created<T>(message: T) -> Response<T> {
    hinted(message, Some("201"), Some("unwrap"))
}

/// A deletion: REST callers get `204 No Content` with an empty body.
pub fn no_content<T>(message: T) -> Response<T> {
    hinted(message, Some("204"), None)
}

/// A list whose REST form is the bare `items` array, with the total in an
/// `x-total-count` header.
pub fn bare_list<T>(message: T, total: i64) -> Response<T> {
    let mut response = hinted(message, None, Some("items-array"));
    response.metadata_mut().insert("x-total-count", total.into());
    response
}

/// Counts as JSON numbers: int32, saturating.
pub fn count(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The etag a change is conditioned on: the request's `etag` field, else an
/// `If-Match` header (quotes and a weak `W/` prefix are dropped; `*` means
/// any version). `None` applies the change unconditionally.
pub fn etag_of<T>(request: &Request<T>, field: &str) -> Result<Option<String>, Error> {
    let raw = if !field.trim().is_empty() {
        field.trim().to_owned()
    } else {
        match request.metadata().get("if-match").map(|v| v.to_str()) {
            None => return Ok(None),
            Some(Ok(v)) => {
                let v = v.trim();
                let v = v.strip_prefix("W/").unwrap_or(v);
                let v = v.trim_matches('"');
                if v == "*" || v.is_empty() {
                    return Ok(None);
                }
                v.to_owned()
            }
            Some(Err(_)) => String::from("\u{fffd}"),
        }
    };
    if raw.len() > 64 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "INVALID_ETAG",
            "etag",
            "etag must be the value a read returned",
        ));
    }
    Ok(Some(raw))
}

/// A label change: `Some` replaces every label (`clear_labels` removes
/// them all), `None` leaves them.
pub fn label_update(
    labels: &std::collections::BTreeMap<String, String>,
    clear: bool,
) -> Result<Option<crate::domain::labels::Labels>, Error> {
    if clear && !labels.is_empty() {
        return Err(Error::invalid(
            "CONFLICTING_FIELDS",
            "clear_labels",
            "clear_labels may not be combined with labels",
        ));
    }
    if clear {
        return Ok(Some(Default::default()));
    }
    if labels.is_empty() {
        return Ok(None);
    }
    crate::domain::labels::Labels::parse("labels", labels).map(Some)
}

/// A request that changes something, and so carries a `request_id`
/// (AIP-155).
pub trait Idempotent: prost::Message + Clone {
    fn request_id(&self) -> &str;
    fn clear_request_id(&mut self);
}

macro_rules! idempotent {
    ($($t:ty),+ $(,)?) => {$(
        impl Idempotent for $t {
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn clear_request_id(&mut self) {
                self.request_id.clear();
            }
        }
    )+};
}

idempotent!(
    proto::CreateOrganizationRequest,
    proto::UpdateOrganizationRequest,
    proto::DeleteOrganizationRequest,
    proto::AddSpaceRequest,
    proto::RemoveSpaceRequest,
    proto::AddUserRequest,
    proto::UpdateUserRoleRequest,
    proto::RemoveUserRequest,
    proto::BatchAddUsersRequest,
    proto::BatchRemoveUsersRequest,
    proto::UndeleteOrganizationRequest,
    proto::UndeleteSpaceRequest,
    proto::CreateInvitationRequest,
    proto::RevokeInvitationRequest,
    proto::AcceptInvitationRequest,
    proto::CreateSpaceRequest,
    proto::UpdateSpaceRequest,
    proto::DeleteSpaceRequest,
    proto::AddSpaceMemberRequest,
    proto::UpdateSpaceMemberRequest,
    proto::RemoveSpaceMemberRequest,
    proto::BatchAddSpaceMembersRequest,
    proto::BatchRemoveSpaceMembersRequest,
    proto::BatchUpsertProductsRequest,
    proto::BatchUpsertContractsRequest,
    proto::BatchUpsertIssuesRequest,
    proto::BatchUpsertQualityChecksRequest,
    proto::DeleteProductRequest,
    proto::DeleteContractRequest,
    proto::DeleteIssueRequest,
    proto::DeleteQualityCheckRequest,
);

/// The request id of a change and the fingerprint of what it asks: the
/// RPC, the message without its id (maps encode in key order, so equal
/// requests give equal bytes) and an `If-Match` header. `None` without an id.
pub fn request_key<M: Idempotent>(
    request: &Request<M>,
    rpc: &str,
) -> Result<Option<crate::domain::audit::RequestKey>, Error> {
    use sha2::{Digest, Sha256};
    let raw = request.get_ref().request_id().trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let request_id = crate::domain::types::parse_id("request_id", raw)?;
    if request_id.is_nil() {
        return Err(Error::invalid(
            "INVALID_ID",
            "request_id",
            "request_id must be a UUID other than the nil one",
        ));
    }
    let mut bare = request.get_ref().clone();
    bare.clear_request_id();
    let mut hash = Sha256::new();
    hash.update(rpc.as_bytes());
    hash.update([0]);
    hash.update(bare.encode_to_vec());
    hash.update([0]);
    if let Some(if_match) = request.metadata().get("if-match") {
        hash.update(if_match.as_bytes());
    }
    Ok(Some(crate::domain::audit::RequestKey {
        request_id,
        fingerprint: hash.finalize().into(),
    }))
}

/// Empty strings and absent values mean "no filter".
pub fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

pub fn space_ref(s: &SpaceRef) -> proto::SpaceRef {
    proto::SpaceRef {
        id: s.id.to_string(),
        name: s.name.clone(),
        slug: s.slug.clone(),
    }
}

pub fn space(s: &Space) -> proto::Space {
    proto::Space {
        id: s.id.to_string(),
        name: s.name.clone(),
        slug: s.slug.clone(),
        description: s.description.clone(),
        visibility: s.visibility.as_str().to_owned(),
        repo: s.repo.clone(),
        agent: s.agent.as_ref().map(|a| proto::Agent {
            agent_id: a.agent_id.clone(),
            status: a.status.as_str().to_owned(),
            autonomy_level: a.autonomy_level,
        }),
        organization_id: s.organization_id.map(|id| id.to_string()).unwrap_or_default(),
        created_at: timestamp(s.created_at),
        updated_at: timestamp(s.updated_at),
        labels: s.labels.to_map(),
        etag: s.etag.clone(),
        delete_time: s.deleted_at.and_then(timestamp),
        purge_time: s.purge_at.and_then(timestamp),
    }
}

pub fn invitation(i: &crate::domain::model::Invitation) -> proto::Invitation {
    let now = crate::store::now_micros();
    proto::Invitation {
        id: i.id.to_string(),
        organization_id: i.organization_id.to_string(),
        organization_slug: i.organization_slug.clone(),
        email: i.email.clone(),
        role: i.role.as_str().to_owned(),
        state: i.state_at(now).as_str().to_owned(),
        invited_by: i.invited_by.to_string(),
        created_at: timestamp(i.created_at),
        expire_time: timestamp(i.expires_at),
        accepted_at: i.accepted_at.and_then(timestamp),
        revoked_at: i.revoked_at.and_then(timestamp),
    }
}

pub fn member(m: &Member) -> proto::Member {
    proto::Member {
        user_id: m.user_id.to_string(),
        email: m.email.clone(),
        display_name: m.display_name.clone(),
        role: m.role.clone(),
        joined_at: timestamp(m.joined_at),
        etag: m.etag.clone(),
    }
}

pub fn organization_summary(s: &OrganizationSummary) -> proto::Organization {
    let o: &Organization = &s.org;
    proto::Organization {
        id: o.id.to_string(),
        name: o.name.clone(),
        slug: o.slug.clone(),
        description: o.description.clone(),
        spaces: s.spaces.iter().map(space_ref).collect(),
        space_count: count(s.space_count),
        user_count: count(s.user_count),
        storage_dir: Storage::relative_dir(o.id),
        created_at: timestamp(o.created_at),
        updated_at: timestamp(o.updated_at),
        labels: o.labels.to_map(),
        etag: o.etag.clone(),
        delete_time: o.deleted_at.and_then(timestamp),
        purge_time: o.purge_at.and_then(timestamp),
    }
}

pub fn organization_details(d: &OrganizationDetails) -> proto::OrganizationDetails {
    let o = &d.org;
    proto::OrganizationDetails {
        id: o.id.to_string(),
        name: o.name.clone(),
        slug: o.slug.clone(),
        description: o.description.clone(),
        spaces: d.spaces.iter().map(space).collect(),
        space_count: count(d.space_count),
        user_count: count(d.user_count),
        storage_dir: Storage::relative_dir(o.id),
        created_at: timestamp(o.created_at),
        updated_at: timestamp(o.updated_at),
        members: d.members.iter().map(member).collect(),
        labels: o.labels.to_map(),
        etag: o.etag.clone(),
        delete_time: o.deleted_at.and_then(timestamp),
        purge_time: o.purge_at.and_then(timestamp),
    }
}

pub fn audit_event(e: &crate::domain::audit::Event) -> proto::AuditEvent {
    use prost_types::value::Kind;
    let fields = e
        .metadata
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                prost_types::Value {
                    kind: Some(Kind::StringValue(v.clone())),
                },
            )
        })
        .collect();
    proto::AuditEvent {
        id: e.id.to_string(),
        organization_id: e.organization_id.to_string(),
        actor: e.actor.to_string(),
        action: e.action.clone(),
        result: e.result.clone(),
        metadata: Some(prost_types::Struct { fields }),
        created_at: timestamp(e.created_at),
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
        seq: e.seq,
        target: e.target.clone(),
    }
}

pub fn checkpoint(c: &crate::domain::audit::Checkpoint) -> proto::AuditCheckpoint {
    proto::AuditCheckpoint {
        organization_id: c.organization_id.to_string(),
        seq: c.seq,
        hash: c.hash.clone(),
        signed_at: timestamp(c.signed_at),
        key_id: c.key_id.clone(),
        signature: c.signature.clone(),
    }
}

/// A checkpoint a caller sends back, as given (its signature decides).
pub fn checkpoint_from(
    c: &proto::AuditCheckpoint,
) -> crate::domain::Result<crate::domain::audit::Checkpoint> {
    let signed_at = c
        .signed_at
        .as_ref()
        .ok_or_else(|| Error::missing("checkpoint.signed_at", "checkpoint.signed_at is required"))
        .and_then(|t| content::micros("checkpoint.signed_at", t))?;
    Ok(crate::domain::audit::Checkpoint {
        organization_id: crate::domain::types::parse_id("checkpoint.organization_id", &c.organization_id)?,
        seq: c.seq,
        hash: c.hash.clone(),
        signed_at,
        key_id: c.key_id.clone(),
        signature: c.signature.clone(),
    })
}
