//! The audit trail and the storage directories: one event per change or
//! refusal, written with the change; hash chains a third party can recompute
//! and that reveal tampering; directories that follow the committed state,
//! under concurrent changes and across restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use orgd::proto::aggregation_service_client::AggregationServiceClient;
use orgd::proto::*;
use prost_types::Timestamp;
use prost_types::value::Kind;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

use crate::helpers::*;

const NIL: &str = "00000000-0000-0000-0000-000000000000";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Which chain to read: a live organization by slug, or any chain by id.
#[derive(Debug, Clone)]
enum Trail {
    Slug(String),
    Id(String),
}

impl Trail {
    fn nil() -> Self {
        Trail::Id(NIL.into())
    }

    fn list(&self, request: ListAuditEventsRequest) -> ListAuditEventsRequest {
        match self {
            Trail::Slug(slug) => ListAuditEventsRequest {
                slug: slug.clone(),
                organization_id: String::new(),
                ..request
            },
            Trail::Id(id) => ListAuditEventsRequest {
                slug: String::new(),
                organization_id: id.clone(),
                ..request
            },
        }
    }

    fn verify(&self) -> VerifyAuditChainRequest {
        match self {
            Trail::Slug(slug) => VerifyAuditChainRequest {
                slug: slug.clone(),
                organization_id: String::new(),
            },
            Trail::Id(id) => VerifyAuditChainRequest {
                slug: String::new(),
                organization_id: id.clone(),
            },
        }
    }
}

async fn try_list(
    app: &TestApp,
    tok: &str,
    trail: &Trail,
    request: ListAuditEventsRequest,
) -> Result<ListAuditEventsResponse, Status> {
    app.orgs()
        .list_audit_events(req(tok, trail.list(request)))
        .await
        .map(tonic::Response::into_inner)
}

/// One page of events, read by the superadmin.
async fn list(app: &TestApp, trail: &Trail, request: ListAuditEventsRequest) -> ListAuditEventsResponse {
    try_list(app, &root(), trail, request)
        .await
        .unwrap_or_else(|s| panic!("list audit events of {trail:?}: {s:?}"))
}

async fn try_verify(app: &TestApp, tok: &str, trail: &Trail) -> Result<VerifyAuditChainResponse, Status> {
    app.orgs()
        .verify_audit_chain(req(tok, trail.verify()))
        .await
        .map(tonic::Response::into_inner)
}

/// The chain's verification, asked by the superadmin.
async fn verify(app: &TestApp, trail: &Trail) -> VerifyAuditChainResponse {
    try_verify(app, &root(), trail)
        .await
        .unwrap_or_else(|s| panic!("verify {trail:?}: {s:?}"))
}

async fn head(app: &TestApp, trail: &Trail) -> i64 {
    verify(app, trail).await.head_seq
}

/// The newest event of the chain.
async fn newest(app: &TestApp, trail: &Trail) -> AuditEvent {
    let page = list(
        app,
        trail,
        ListAuditEventsRequest {
            size: 1,
            ..Default::default()
        },
    )
    .await;
    page.items
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{trail:?} has no events"))
}

/// Every event of the chain, oldest first, read through page tokens.
async fn all_events(app: &TestApp, trail: &Trail) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(
            app,
            trail,
            ListAuditEventsRequest {
                size: 100,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await;
        out.extend(page.items);
        if page.next_page_token.is_empty() {
            assert_eq!(
                out.len() as i32,
                page.total,
                "the pages of {trail:?} add up to the total"
            );
            break;
        }
        token = page.next_page_token;
    }
    out.reverse();
    out
}

fn seqs(page: &ListAuditEventsResponse) -> Vec<i64> {
    page.items.iter().map(|e| e.seq).collect()
}

/// The metadata of an event; every value must be a string.
fn meta(e: &AuditEvent) -> BTreeMap<String, String> {
    e.metadata
        .as_ref()
        .map(|s| {
            s.fields
                .iter()
                .map(|(k, v)| match &v.kind {
                    Some(Kind::StringValue(s)) => (k.clone(), s.clone()),
                    other => panic!("metadata {k} of event {} is not a string: {other:?}", e.seq),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The documented canonical encoding (resources.proto, AuditEvent), written
/// here independently of orgd: the hex SHA-256 of netstrings.
#[allow(clippy::too_many_arguments)]
fn documented_hash(
    prev_hash: &str,
    organization_id: &str,
    seq: i64,
    id: &str,
    created_at_micros: i64,
    actor: &str,
    action: &str,
    result: &str,
    target: &str,
    metadata: &BTreeMap<String, String>,
) -> String {
    fn netstring(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(s.as_bytes());
        out.push(b',');
    }
    let mut text = Vec::new();
    for part in [
        "orgd.audit.v1",
        prev_hash,
        organization_id,
        &seq.to_string(),
        id,
        &created_at_micros.to_string(),
        actor,
        action,
        result,
        target,
        &metadata.len().to_string(),
    ] {
        netstring(&mut text, part);
    }
    // BTreeMap<String, _> iterates in byte order of the keys.
    for (k, v) in metadata {
        netstring(&mut text, k);
        netstring(&mut text, v);
    }
    hex::encode(Sha256::digest(&text))
}

fn micros(t: &Timestamp) -> i64 {
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000
}

/// The hash a third party computes for an event read over gRPC.
fn recomputed(e: &AuditEvent) -> String {
    documented_hash(
        &e.prev_hash,
        &e.organization_id,
        e.seq,
        &e.id,
        micros(e.created_at.as_ref().expect("created_at")),
        &e.actor,
        &e.action,
        &e.result,
        &e.target,
        &meta(e),
    )
}

/// A chain as a third party checks it: seqs 1..=n exactly once, each
/// `prev_hash` the previous `hash` ("0" first), each hash recomputed.
#[track_caller]
fn assert_chain_intact(events: &[AuditEvent]) {
    let mut prev = "0".to_owned();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.seq,
            i as i64 + 1,
            "seqs must run 1, 2, 3, ... without gaps: {e:?}"
        );
        assert_eq!(
            e.prev_hash, prev,
            "event {} does not link to its predecessor",
            e.seq
        );
        assert_eq!(
            recomputed(e),
            e.hash,
            "event {} does not hash to its fields: {e:?}",
            e.seq
        );
        prev = e.hash.clone();
    }
}

/// The digest of a batch's ids: hex SHA-256 of the sorted ids, each
/// followed by a newline.
fn ids_digest(ids: &[String]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort();
    let mut h = Sha256::new();
    for id in sorted {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn parse_uuid(s: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(s).unwrap_or_else(|e| panic!("{s:?} is not a UUID: {e}"))
}

fn now() -> Timestamp {
    let t = chrono::Utc::now();
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn product(name: &str) -> Product {
    Product {
        id: new_id(),
        name: name.into(),
        description: format!("{name} description"),
        product_type: "table".into(),
        provider: "warehouse".into(),
        ..Default::default()
    }
}

fn contract(name: &str) -> Contract {
    Contract {
        id: new_id(),
        name: name.into(),
        status: "active".into(),
        producer: Some(PartyRef {
            id: "p1".into(),
            name: "Producer".into(),
        }),
        consumer: Some(PartyRef {
            id: "c1".into(),
            name: "Consumer".into(),
        }),
        sla: Some(Sla {
            freshness_hours: 24,
            availability_percent: 99.9,
            quality_score_min: 0.8,
            response_time_hours: 4,
        }),
        ..Default::default()
    }
}

fn issue(title: &str) -> Issue {
    Issue {
        id: new_id(),
        title: title.into(),
        status: "open".into(),
        priority: "low".into(),
        ..Default::default()
    }
}

fn check(name: &str) -> QualityCheck {
    QualityCheck {
        id: new_id(),
        name: name.into(),
        check_type: "null_check".into(),
        severity: "error".into(),
        ..Default::default()
    }
}

fn agg(app: &TestApp) -> AggregationServiceClient<tonic::transport::Channel> {
    AggregationServiceClient::new(app.channel.clone())
}

async fn put_products(app: &TestApp, tok: &str, space: &str, items: Vec<Product>) -> Result<i32, Status> {
    app.spaces()
        .batch_upsert_products(req(
            tok,
            BatchUpsertProductsRequest {
                space_id: space.into(),
                items,
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().upserted)
}

async fn get_org(app: &TestApp, slug: &str) -> OrganizationDetails {
    app.orgs()
        .get_organization(req(&root(), GetOrganizationRequest { slug: slug.into() }))
        .await
        .unwrap_or_else(|s| panic!("get {slug}: {s:?}"))
        .into_inner()
        .organization
        .expect("organization")
}

async fn member_emails(app: &TestApp, slug: &str) -> BTreeSet<String> {
    app.orgs()
        .list_users(req(
            &root(),
            ListUsersRequest {
                slug: slug.into(),
                size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("list users")
        .into_inner()
        .items
        .into_iter()
        .map(|m| m.email)
        .collect()
}

/// The names of the entries of a directory (empty when it is absent).
fn entries(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(read) => read
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("reading {}: {e}", dir.display()),
    }
}

/// Asserts a storage directory holds exactly what the database holds:
/// `organization.json` (pretty JSON of id, name and slug, ending in a
/// newline) and one directory per attached space.
#[track_caller]
fn assert_directory(root: &Path, id: &str, name: &str, slug: &str, spaces: &BTreeSet<String>) {
    let dir = root.join("orgs").join(id);
    let path = dir.join("organization.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        text.ends_with("}\n"),
        "{} must end with a newline: {text:?}",
        path.display()
    );
    assert!(
        text.lines().count() > 1,
        "{} is not pretty-printed: {text:?}",
        path.display()
    );
    let parsed: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text:?}", path.display()));
    assert_eq!(
        parsed,
        json!({"id": id, "name": name, "slug": slug}),
        "{}",
        path.display()
    );
    assert_eq!(&entries(&dir.join("spaces")), spaces, "space directories of {id}");
}

/// The directory of a live organization matches what GetOrganization says.
async fn assert_directory_follows(app: &TestApp, slug: &str) {
    let org = get_org(app, slug).await;
    let spaces = org.spaces.iter().map(|s| s.id.clone()).collect();
    assert_directory(&app.storage_root, &org.id, &org.name, &org.slug, &spaces);
}

#[track_caller]
fn assert_not_internal<T: std::fmt::Debug>(what: &str, result: &Result<T, Status>, allowed: &[Code]) {
    if let Err(status) = result {
        assert!(
            allowed.contains(&status.code()),
            "{what}: unexpected {:?}: {status:?}",
            status.code()
        );
    }
}

// ---------------------------------------------------------------------------
// 1. Every mutating RPC appends exactly one event
// ---------------------------------------------------------------------------

/// Follows the organization's chain and the chain of spaces without an
/// organization through a sequence of RPCs.
struct Walk<'a> {
    app: &'a TestApp,
    org: String,
    org_head: i64,
    nil_head: i64,
}

impl Walk<'_> {
    /// Asserts the last RPC appended exactly one event, on the nil chain
    /// when `on_nil` (else on the organization's) and none on the other,
    /// and that the event says what was done; returns it.
    async fn appended(
        &mut self,
        on_nil: bool,
        rpc: &str,
        action: &str,
        actor: &str,
        target: String,
        expected: &[(&str, &str)],
    ) -> AuditEvent {
        let org_trail = Trail::Id(self.org.clone());
        let org = verify(self.app, &org_trail).await;
        let nil = verify(self.app, &Trail::nil()).await;
        assert!(org.valid && nil.valid, "{rpc}: {org:?} {nil:?}");
        let want = if on_nil {
            (self.org_head, self.nil_head + 1)
        } else {
            (self.org_head + 1, self.nil_head)
        };
        assert_eq!(
            (org.head_seq, nil.head_seq),
            want,
            "{rpc}: exactly one event, on the {} chain",
            if on_nil { "nil" } else { "organization's" }
        );
        self.org_head = org.head_seq;
        self.nil_head = nil.head_seq;
        let (trail, chain, head) = if on_nil {
            (Trail::nil(), NIL.to_owned(), nil)
        } else {
            (org_trail, self.org.clone(), org)
        };
        let e = newest(self.app, &trail).await;
        assert_eq!((e.seq, &e.hash), (head.head_seq, &head.head_hash), "{rpc}");
        assert_eq!(e.organization_id, chain, "{rpc}");
        assert_eq!(e.action, action, "{rpc}: {e:?}");
        assert_eq!(e.result, "success", "{rpc}: {e:?}");
        assert_eq!(e.actor, actor, "{rpc}: {e:?}");
        assert_eq!(e.target, target, "{rpc}: {e:?}");
        let m = meta(&e);
        assert_eq!(m.get("rpc").map(String::as_str), Some(rpc), "{e:?}");
        assert!(!m.contains_key("reason"), "a success carries no reason: {e:?}");
        for (k, v) in expected {
            assert_eq!(
                m.get(*k).map(String::as_str),
                Some(*v),
                "{rpc}: metadata {k}: {e:?}"
            );
        }
        e
    }
}

#[tokio::test]
async fn every_mutating_rpc_appends_exactly_one_event_saying_who_did_what_to_what() {
    let app = TestApp::spawn().await;
    let root_tok = root();
    let root_id = user_id(&app.database_url, SUPERADMIN).await;
    let admin_email = "walker@audit.test";
    let a = token(admin_email);
    let mut orgs = app.orgs();
    let mut spaces = app.spaces();

    let nil_head = head(&app, &Trail::nil()).await;
    let created = orgs
        .create_organization(req(
            &root_tok,
            CreateOrganizationRequest {
                name: "Audit Walk".into(),
                slug: Some("audit-walk".into()),
                description: String::new(),
                admin_email: admin_email.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .organization
        .expect("organization");
    let org = created.id.clone();
    let admin_id = created.members[0].user_id.clone();
    let org_target = format!("organizations/{org}");
    let mut walk = Walk {
        app: &app,
        org: org.clone(),
        org_head: 0,
        nil_head,
    };
    walk.appended(
        false,
        "CreateOrganization",
        "organization.create",
        &root_id,
        org_target.clone(),
        &[
            ("name", "Audit Walk"),
            ("slug", "audit-walk"),
            ("admin_email", admin_email),
        ],
    )
    .await;

    orgs.update_organization(req(
        &a,
        UpdateOrganizationRequest {
            slug: "audit-walk".into(),
            name: Some("Audit Walk Renamed".into()),
            ..Default::default()
        },
    ))
    .await
    .expect("update organization");
    walk.appended(
        false,
        "UpdateOrganization",
        "organization.update",
        &admin_id,
        org_target.clone(),
        &[("name", "Audit Walk Renamed")],
    )
    .await;

    // Members.
    let m = orgs
        .add_user(req(
            &a,
            AddUserRequest {
                slug: "audit-walk".into(),
                user_email: "joiner@audit.test".into(),
                role: "member".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("add user")
        .into_inner()
        .member
        .expect("member");
    let member_target = format!("organizations/{org}/users/{}", m.user_id);
    walk.appended(
        false,
        "AddUser",
        "member.add",
        &admin_id,
        member_target.clone(),
        &[
            ("user_id", &m.user_id),
            ("email", "joiner@audit.test"),
            ("role", "member"),
        ],
    )
    .await;
    orgs.update_user_role(req(
        &a,
        UpdateUserRoleRequest {
            slug: "audit-walk".into(),
            user_id: m.user_id.clone(),
            role: "admin".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("update role");
    walk.appended(
        false,
        "UpdateUserRole",
        "member.update_role",
        &admin_id,
        member_target.clone(),
        &[
            ("user_id", &m.user_id),
            ("previous_role", "member"),
            ("role", "admin"),
        ],
    )
    .await;
    orgs.remove_user(req(
        &a,
        RemoveUserRequest {
            slug: "audit-walk".into(),
            user_id: m.user_id.clone(),
            ..Default::default()
        },
    ))
    .await
    .expect("remove user");
    walk.appended(
        false,
        "RemoveUser",
        "member.remove",
        &admin_id,
        member_target,
        &[("user_id", &m.user_id), ("role", "admin")],
    )
    .await;

    // A space without an organization: the nil chain.
    let space = spaces
        .create_space(req(
            &root_tok,
            CreateSpaceRequest {
                name: "Walk Space".into(),
                slug: Some("walk-space".into()),
                visibility: "organization".into(),
                admin_email: admin_email.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create space")
        .into_inner()
        .space
        .expect("space")
        .id;
    let space_target = format!("spaces/{space}");
    walk.appended(
        true,
        "CreateSpace",
        "space.create",
        &root_id,
        space_target.clone(),
        &[
            ("name", "Walk Space"),
            ("slug", "walk-space"),
            ("visibility", "organization"),
            ("admin_email", admin_email),
        ],
    )
    .await;
    spaces
        .update_space(req(
            &a,
            UpdateSpaceRequest {
                space_id: space.clone(),
                name: Some("Walk Space Renamed".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("update space");
    walk.appended(
        true,
        "UpdateSpace",
        "space.update",
        &admin_id,
        space_target.clone(),
        &[("name", "Walk Space Renamed")],
    )
    .await;
    let sm = spaces
        .add_space_member(req(
            &a,
            AddSpaceMemberRequest {
                space_id: space.clone(),
                user_email: "editor@audit.test".into(),
                role: "viewer".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("add space member")
        .into_inner()
        .member
        .expect("member");
    let space_member_target = format!("spaces/{space}/members/{}", sm.user_id);
    walk.appended(
        true,
        "AddSpaceMember",
        "space_member.add",
        &admin_id,
        space_member_target.clone(),
        &[
            ("user_id", &sm.user_id),
            ("email", "editor@audit.test"),
            ("role", "viewer"),
        ],
    )
    .await;

    // Attached: the organization's chain.
    orgs.add_space(req(
        &a,
        AddSpaceRequest {
            slug: "audit-walk".into(),
            space_id: space.clone(),
            ..Default::default()
        },
    ))
    .await
    .expect("add space");
    let attachment = format!("organizations/{org}/spaces/{space}");
    walk.appended(
        false,
        "AddSpace",
        "space.attach",
        &admin_id,
        attachment.clone(),
        &[("space_id", &space)],
    )
    .await;
    spaces
        .update_space(req(
            &a,
            UpdateSpaceRequest {
                space_id: space.clone(),
                visibility: Some("restricted".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("update attached space");
    walk.appended(
        false,
        "UpdateSpace",
        "space.update",
        &admin_id,
        space_target.clone(),
        &[("visibility", "restricted")],
    )
    .await;
    spaces
        .update_space_member(req(
            &a,
            UpdateSpaceMemberRequest {
                space_id: space.clone(),
                user_id: sm.user_id.clone(),
                role: "editor".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("update space member");
    walk.appended(
        false,
        "UpdateSpaceMember",
        "space_member.update_role",
        &admin_id,
        space_member_target.clone(),
        &[
            ("user_id", &sm.user_id),
            ("previous_role", "viewer"),
            ("role", "editor"),
        ],
    )
    .await;
    spaces
        .remove_space_member(req(
            &a,
            RemoveSpaceMemberRequest {
                space_id: space.clone(),
                user_id: sm.user_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("remove space member");
    walk.appended(
        false,
        "RemoveSpaceMember",
        "space_member.remove",
        &admin_id,
        space_member_target,
        &[("user_id", &sm.user_id), ("role", "editor")],
    )
    .await;

    // Content: one event per batch and per delete.
    let products = vec![product("walk one"), product("walk two")];
    let contracts = vec![contract("walk contract")];
    let issues = vec![
        issue("walk issue one"),
        issue("walk issue two"),
        issue("walk issue three"),
    ];
    let checks = vec![check("walk check")];
    let batches: Vec<(&str, &str, &str, Vec<String>)> = vec![
        (
            "BatchUpsertProducts",
            "product.upsert",
            "products",
            products.iter().map(|p| p.id.clone()).collect(),
        ),
        (
            "BatchUpsertContracts",
            "contract.upsert",
            "contracts",
            contracts.iter().map(|c| c.id.clone()).collect(),
        ),
        (
            "BatchUpsertIssues",
            "issue.upsert",
            "issues",
            issues.iter().map(|i| i.id.clone()).collect(),
        ),
        (
            "BatchUpsertQualityChecks",
            "quality_check.upsert",
            "quality-checks",
            checks.iter().map(|c| c.id.clone()).collect(),
        ),
    ];
    for (rpc, action, collection, ids) in &batches {
        let upserted = match *rpc {
            "BatchUpsertProducts" => put_products(&app, &a, &space, products.clone()).await,
            "BatchUpsertContracts" => spaces
                .batch_upsert_contracts(req(
                    &a,
                    BatchUpsertContractsRequest {
                        space_id: space.clone(),
                        items: contracts.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .map(|r| r.into_inner().upserted),
            "BatchUpsertIssues" => spaces
                .batch_upsert_issues(req(
                    &a,
                    BatchUpsertIssuesRequest {
                        space_id: space.clone(),
                        items: issues.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .map(|r| r.into_inner().upserted),
            _ => spaces
                .batch_upsert_quality_checks(req(
                    &a,
                    BatchUpsertQualityChecksRequest {
                        space_id: space.clone(),
                        items: checks.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .map(|r| r.into_inner().upserted),
        }
        .unwrap_or_else(|s| panic!("{rpc}: {s:?}"));
        assert_eq!(upserted as usize, ids.len());
        let count = ids.len().to_string();
        let digest = ids_digest(ids);
        walk.appended(
            false,
            rpc,
            action,
            &admin_id,
            format!("spaces/{space}/{collection}"),
            &[("space_id", &space), ("count", &count), ("ids_sha256", &digest)],
        )
        .await;
    }
    let deletes: Vec<(&str, &str, &str, String)> = vec![
        (
            "DeleteProduct",
            "product.delete",
            "products",
            products[0].id.clone(),
        ),
        (
            "DeleteContract",
            "contract.delete",
            "contracts",
            contracts[0].id.clone(),
        ),
        ("DeleteIssue", "issue.delete", "issues", issues[1].id.clone()),
        (
            "DeleteQualityCheck",
            "quality_check.delete",
            "quality-checks",
            checks[0].id.clone(),
        ),
    ];
    for (rpc, action, collection, id) in &deletes {
        let space_id = space.clone();
        match *rpc {
            "DeleteProduct" => spaces
                .delete_product(req(
                    &a,
                    DeleteProductRequest {
                        space_id,
                        product_id: id.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "DeleteContract" => spaces
                .delete_contract(req(
                    &a,
                    DeleteContractRequest {
                        space_id,
                        contract_id: id.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "DeleteIssue" => spaces
                .delete_issue(req(
                    &a,
                    DeleteIssueRequest {
                        space_id,
                        issue_id: id.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            _ => spaces
                .delete_quality_check(req(
                    &a,
                    DeleteQualityCheckRequest {
                        space_id,
                        quality_check_id: id.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
        }
        .unwrap_or_else(|s| panic!("{rpc}: {s:?}"));
        walk.appended(
            false,
            rpc,
            action,
            &admin_id,
            format!("spaces/{space}/{collection}/{id}"),
            &[("space_id", &space)],
        )
        .await;
    }

    // Detached, the space is back on the nil chain.
    orgs.remove_space(req(
        &a,
        RemoveSpaceRequest {
            slug: "audit-walk".into(),
            space_id: space.clone(),
            ..Default::default()
        },
    ))
    .await
    .expect("remove space");
    walk.appended(
        false,
        "RemoveSpace",
        "space.detach",
        &admin_id,
        attachment,
        &[("space_id", &space)],
    )
    .await;
    spaces
        .delete_space(req(
            &a,
            DeleteSpaceRequest {
                space_id: space.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete space");
    walk.appended(
        true,
        "DeleteSpace",
        "space.delete",
        &admin_id,
        space_target,
        &[("slug", "walk-space")],
    )
    .await;

    // An attached space deleted: the organization's chain.
    let kept = app
        .create_space("Walk Kept", "organization", admin_email)
        .await
        .id;
    walk.appended(
        true,
        "CreateSpace",
        "space.create",
        &root_id,
        format!("spaces/{kept}"),
        &[],
    )
    .await;
    app.attach("audit-walk", &kept).await;
    walk.appended(
        false,
        "AddSpace",
        "space.attach",
        &root_id,
        format!("organizations/{org}/spaces/{kept}"),
        &[("space_id", &kept)],
    )
    .await;
    let doomed = app
        .create_space("Walk Doomed", "organization", admin_email)
        .await
        .id;
    walk.appended(
        true,
        "CreateSpace",
        "space.create",
        &root_id,
        format!("spaces/{doomed}"),
        &[],
    )
    .await;
    app.attach("audit-walk", &doomed).await;
    walk.appended(
        false,
        "AddSpace",
        "space.attach",
        &root_id,
        format!("organizations/{org}/spaces/{doomed}"),
        &[("space_id", &doomed)],
    )
    .await;
    spaces
        .delete_space(req(
            &a,
            DeleteSpaceRequest {
                space_id: doomed.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete attached space");
    walk.appended(
        false,
        "DeleteSpace",
        "space.delete",
        &admin_id,
        format!("spaces/{doomed}"),
        &[],
    )
    .await;

    orgs.delete_organization(req(
        &a,
        DeleteOrganizationRequest {
            slug: "audit-walk".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("delete organization");
    walk.appended(
        false,
        "DeleteOrganization",
        "organization.delete",
        &admin_id,
        org_target,
        &[("slug", "audit-walk"), ("detached_spaces", "1")],
    )
    .await;

    // 22 changes on the organization's chain, 6 on the nil chain, and
    // every event of both recomputes.
    let org_events = all_events(&app, &Trail::Id(org)).await;
    assert_eq!(org_events.len(), 22);
    assert_chain_intact(&org_events);
    let nil_events = all_events(&app, &Trail::nil()).await;
    assert_eq!(nil_events.len(), 6);
    assert_chain_intact(&nil_events);
}

// ---------------------------------------------------------------------------
// 2. Refusals are recorded
// ---------------------------------------------------------------------------

/// Asserts the last attempt appended exactly one `denied` event to `trail`
/// naming the caller, the attempted action and the reason.
async fn assert_denied_event(
    app: &TestApp,
    trail: &Trail,
    before: i64,
    rpc: &str,
    action: &str,
    actor: &str,
    target: &str,
) {
    let v = verify(app, trail).await;
    assert!(v.valid, "{v:?}");
    assert_eq!(v.head_seq, before + 1, "{rpc}: one denied event");
    let e = newest(app, trail).await;
    assert_eq!(e.seq, v.head_seq);
    assert_eq!(
        (
            e.action.as_str(),
            e.result.as_str(),
            e.actor.as_str(),
            e.target.as_str()
        ),
        (action, "denied", actor, target),
        "{e:?}"
    );
    let m = meta(&e);
    assert_eq!(m.get("rpc").map(String::as_str), Some(rpc), "{e:?}");
    assert_eq!(
        m.get("reason").map(String::as_str),
        Some("NOT_AUTHORIZED"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_refused_attempt_appends_one_denied_event_naming_the_caller_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = "guard@audit.test";
    let plain = "plain@audit.test";
    let stranger = "stranger@audit.test";
    let org = app.create_org("Guarded", "guarded", admin).await;
    let plain_id = app.add_user("guarded", plain, "member").await.user_id;
    let vault = app.create_space("Vault", "restricted", admin).await.id;
    app.attach("guarded", &vault).await;
    let trail = Trail::Id(org.id.clone());
    let org_target = format!("organizations/{}", org.id);
    let members_before = member_emails(&app, "guarded").await;

    // A plain member may not add users.
    let before = head(&app, &trail).await;
    let denied = app
        .orgs()
        .add_user(req(
            &token(plain),
            AddUserRequest {
                slug: "guarded".into(),
                user_email: "intruder@audit.test".into(),
                role: "admin".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
    assert_denied_event(
        &app,
        &trail,
        before,
        "AddUser",
        "member.add",
        &plain_id,
        &org_target,
    )
    .await;
    assert_eq!(
        member_emails(&app, "guarded").await,
        members_before,
        "nobody was added"
    );

    // ... nor rename the organization.
    let before = head(&app, &trail).await;
    let denied = app
        .orgs()
        .update_organization(req(
            &token(plain),
            UpdateOrganizationRequest {
                slug: "guarded".into(),
                name: Some("Taken Over".into()),
                ..Default::default()
            },
        ))
        .await;
    assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
    assert_denied_event(
        &app,
        &trail,
        before,
        "UpdateOrganization",
        "organization.update",
        &plain_id,
        &org_target,
    )
    .await;
    assert_eq!(
        get_org(&app, "guarded").await.name,
        "Guarded",
        "the name did not change"
    );

    // ... nor write content into a space they do not belong to.
    let before = head(&app, &trail).await;
    let denied = put_products(&app, &token(plain), &vault, vec![product("smuggled")]).await;
    assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
    assert_denied_event(
        &app,
        &trail,
        before,
        "BatchUpsertProducts",
        "product.upsert",
        &plain_id,
        &format!("spaces/{vault}/products"),
    )
    .await;
    let products = agg(&app)
        .list_products(req(
            &root(),
            ListProductsRequest {
                slug: "guarded".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list products")
        .into_inner();
    assert_eq!(products.total, 0, "nothing was written");

    // An organization admin who is not an admin of the space may not
    // attach it.
    let outsider_space = app.create_space("Outsider", "organization", plain).await.id;
    let admin_id = org.members[0].user_id.clone();
    let before = head(&app, &trail).await;
    let denied = app
        .orgs()
        .add_space(req(
            &token(admin),
            AddSpaceRequest {
                slug: "guarded".into(),
                space_id: outsider_space.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
    assert_denied_event(
        &app,
        &trail,
        before,
        "AddSpace",
        "space.attach",
        &admin_id,
        &format!("organizations/{}/spaces/{outsider_space}", org.id),
    )
    .await;
    assert!(
        get_org(&app, "guarded")
            .await
            .spaces
            .iter()
            .all(|s| s.id != outsider_space)
    );

    // A refusal about a space without an organization goes to the nil chain.
    let nil_before_space = head(&app, &Trail::nil()).await;
    let denied = app
        .spaces()
        .update_space(req(
            &token(admin),
            UpdateSpaceRequest {
                space_id: outsider_space.clone(),
                name: Some("Hijacked".into()),
                ..Default::default()
            },
        ))
        .await;
    assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
    assert_denied_event(
        &app,
        &Trail::nil(),
        nil_before_space,
        "UpdateSpace",
        "space.update",
        &admin_id,
        &format!("spaces/{outsider_space}"),
    )
    .await;
    let nil_before = head(&app, &Trail::nil()).await;

    // Refused reads are recorded too: a stranger reading the organization,
    // its restricted space and its content.
    let before = head(&app, &trail).await;
    let denied = app
        .orgs()
        .get_organization(req(
            &token(stranger),
            GetOrganizationRequest {
                slug: "guarded".into(),
            },
        ))
        .await;
    assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
    let stranger_id = user_id(&app.database_url, stranger).await;
    assert_denied_event(
        &app,
        &trail,
        before,
        "GetOrganization",
        "organization.read",
        &stranger_id,
        &org_target,
    )
    .await;

    let before = head(&app, &trail).await;
    let denied = app
        .spaces()
        .get_space(req(
            &token(stranger),
            GetSpaceRequest {
                space_id: vault.clone(),
            },
        ))
        .await;
    assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
    assert_denied_event(
        &app,
        &trail,
        before,
        "GetSpace",
        "space.read",
        &stranger_id,
        &format!("spaces/{vault}"),
    )
    .await;

    let before = head(&app, &trail).await;
    let denied = agg(&app)
        .list_products(req(
            &token(stranger),
            ListProductsRequest {
                slug: "guarded".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
    assert_denied_event(
        &app,
        &trail,
        before,
        "ListProducts",
        "content.read",
        &stranger_id,
        &org_target,
    )
    .await;

    assert_eq!(
        head(&app, &Trail::nil()).await,
        nil_before,
        "nothing on the nil chain"
    );
    assert_eq!(member_emails(&app, "guarded").await, members_before);
    assert_chain_intact(&all_events(&app, &trail).await);
}

// ---------------------------------------------------------------------------
// 3. Failures append nothing
// ---------------------------------------------------------------------------

/// What was tried, its answer, and the code (and reason) it must fail with.
type Attempt = (&'static str, Result<(), Status>, Code, Option<&'static str>);

#[tokio::test]
async fn a_change_that_fails_for_any_other_reason_appends_nothing() {
    let app = TestApp::spawn().await;
    let admin = "sole@audit.test";
    let a = token(admin);
    let org = app.create_org("Careful", "careful", admin).await;
    let admin_id = org.members[0].user_id.clone();
    app.add_user("careful", "member@audit.test", "member").await;
    let space = app.create_space("Careful Space", "organization", admin).await.id;
    app.attach("careful", &space).await;
    let other_space = app.create_space("Other Space", "organization", admin).await;
    app.create_org("Neighbour", "neighbour", admin).await;
    let trail = Trail::Id(org.id.clone());
    let neighbour = Trail::Slug("neighbour".into());
    let heads = async || {
        (
            head(&app, &trail).await,
            head(&app, &Trail::nil()).await,
            head(&app, &neighbour).await,
        )
    };
    let before = heads().await;
    let mut orgs = app.orgs();
    let mut spaces = app.spaces();
    let stranger = new_id();

    let mut attempts: Vec<Attempt> = Vec::new();
    let r = orgs
        .add_user(req(
            &a,
            AddUserRequest {
                slug: "careful".into(),
                user_email: "member@audit.test".into(),
                role: "admin".into(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "duplicate AddUser",
        r,
        Code::AlreadyExists,
        Some("MEMBER_ALREADY_EXISTS"),
    ));
    let r = orgs
        .update_user_role(req(
            &a,
            UpdateUserRoleRequest {
                slug: "careful".into(),
                user_id: admin_id.clone(),
                role: "member".into(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "demoting the last admin",
        r,
        Code::FailedPrecondition,
        Some("LAST_ADMIN"),
    ));
    let r = orgs
        .remove_user(req(
            &a,
            RemoveUserRequest {
                slug: "careful".into(),
                user_id: admin_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "removing the last admin",
        r,
        Code::FailedPrecondition,
        Some("LAST_ADMIN"),
    ));
    let r = orgs
        .update_user_role(req(
            &a,
            UpdateUserRoleRequest {
                slug: "careful".into(),
                user_id: stranger.clone(),
                role: "admin".into(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "UpdateUserRole of an unknown user",
        r,
        Code::NotFound,
        Some("MEMBER_NOT_FOUND"),
    ));
    let r = orgs
        .remove_user(req(
            &a,
            RemoveUserRequest {
                slug: "careful".into(),
                user_id: stranger.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "RemoveUser of an unknown user",
        r,
        Code::NotFound,
        Some("MEMBER_NOT_FOUND"),
    ));
    let r = orgs
        .add_user(req(
            &a,
            AddUserRequest {
                slug: "careful".into(),
                user_email: "not-an-email".into(),
                role: "member".into(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push(("AddUser with an invalid email", r, Code::InvalidArgument, None));
    let r = orgs
        .add_user(req(
            &a,
            AddUserRequest {
                slug: "careful".into(),
                user_email: "fine@audit.test".into(),
                role: "owner".into(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push(("AddUser with an invalid role", r, Code::InvalidArgument, None));
    let r = orgs
        .update_organization(req(
            &a,
            UpdateOrganizationRequest {
                slug: "careful".into(),
                new_slug: Some("Not A Slug!".into()),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "UpdateOrganization with an invalid slug",
        r,
        Code::InvalidArgument,
        None,
    ));
    let r = orgs
        .update_organization(req(
            &a,
            UpdateOrganizationRequest {
                slug: "careful".into(),
                new_slug: Some("neighbour".into()),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "UpdateOrganization to a taken slug",
        r,
        Code::AlreadyExists,
        Some("ORG_ALREADY_EXISTS"),
    ));
    let r = orgs
        .create_organization(req(
            &root(),
            CreateOrganizationRequest {
                name: "Careful Again".into(),
                slug: Some("careful".into()),
                description: String::new(),
                admin_email: admin.into(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "CreateOrganization with a taken slug",
        r,
        Code::AlreadyExists,
        Some("ORG_ALREADY_EXISTS"),
    ));
    let r = orgs
        .add_user(req(
            &a,
            AddUserRequest {
                slug: "no-such-org".into(),
                user_email: "fine@audit.test".into(),
                role: "member".into(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "AddUser to an unknown organization",
        r,
        Code::NotFound,
        Some("ORG_NOT_FOUND"),
    ));
    let r = orgs
        .add_space(req(
            &a,
            AddSpaceRequest {
                slug: "careful".into(),
                space_id: space.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "AddSpace of an attached space",
        r,
        Code::AlreadyExists,
        Some("SPACE_ALREADY_ATTACHED"),
    ));
    let r = orgs
        .remove_space(req(
            &a,
            RemoveSpaceRequest {
                slug: "careful".into(),
                space_id: other_space.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "RemoveSpace of a space elsewhere",
        r,
        Code::NotFound,
        Some("SPACE_NOT_IN_ORGANIZATION"),
    ));
    let r = spaces
        .add_space_member(req(
            &a,
            AddSpaceMemberRequest {
                space_id: space.clone(),
                user_email: admin.into(),
                role: "viewer".into(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "duplicate AddSpaceMember",
        r,
        Code::AlreadyExists,
        Some("MEMBER_ALREADY_EXISTS"),
    ));
    let r = spaces
        .update_space(req(
            &a,
            UpdateSpaceRequest {
                space_id: space.clone(),
                new_slug: Some(other_space.slug.clone()),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "UpdateSpace to a taken slug",
        r,
        Code::AlreadyExists,
        Some("SPACE_ALREADY_EXISTS"),
    ));
    let r = spaces
        .delete_product(req(
            &a,
            DeleteProductRequest {
                space_id: space.clone(),
                product_id: new_id(),
                ..Default::default()
            },
        ))
        .await
        .map(drop);
    attempts.push((
        "DeleteProduct of an unknown product",
        r,
        Code::NotFound,
        Some("PRODUCT_NOT_FOUND"),
    ));
    let r = put_products(&app, &a, &space, vec![product("fine"), product("")])
        .await
        .map(drop);
    attempts.push(("a batch with an invalid item", r, Code::InvalidArgument, None));

    for (what, result, code, why) in attempts {
        match (result, why) {
            (Ok(()), _) => panic!("{what} succeeded"),
            (Err(status), Some(why)) => {
                assert_eq!(status.code(), code, "{what}: {status:?}");
                assert_eq!(reason(&status), why, "{what}: {status:?}");
            }
            (Err(status), None) => assert_eq!(status.code(), code, "{what}: {status:?}"),
        }
        assert_eq!(heads().await, before, "{what} appended an event");
    }
    for t in [&trail, &Trail::nil(), &neighbour] {
        assert!(verify(&app, t).await.valid);
    }
}

// ---------------------------------------------------------------------------
// 4. Concurrent writers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_writers_to_one_organization_leave_a_gapless_verifiable_chain() {
    let app = TestApp::spawn().await;
    let admin = "busy@audit.test";
    let org = app.create_org("Busy", "busy", admin).await;
    let mut space_ids = Vec::new();
    for i in 0..3 {
        let s = app
            .create_space(&format!("Busy {i}"), "organization", admin)
            .await
            .id;
        app.orgs()
            .add_space(req(
                &token(admin),
                AddSpaceRequest {
                    slug: "busy".into(),
                    space_id: s.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("attach");
        space_ids.push(s);
    }
    let writers: Vec<_> = (0..50)
        .map(|i| {
            let mut orgs = app.orgs();
            let mut spaces = app.spaces();
            let space = space_ids[i % 3].clone();
            tokio::spawn(async move {
                let t = token(admin);
                if i % 2 == 0 {
                    orgs.add_user(req(
                        &t,
                        AddUserRequest {
                            slug: "busy".into(),
                            user_email: format!("writer{i}@audit.test"),
                            role: "member".into(),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(drop)
                } else {
                    spaces
                        .batch_upsert_products(req(
                            &t,
                            BatchUpsertProductsRequest {
                                space_id: space,
                                items: vec![product(&format!("p{i}a")), product(&format!("p{i}b"))],
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(drop)
                }
            })
        })
        .collect();
    for (i, w) in futures::future::join_all(writers).await.into_iter().enumerate() {
        w.expect("writer task")
            .unwrap_or_else(|s| panic!("writer {i}: {s:?}"));
    }

    // create + 3 attachments + 50 writes.
    let n = 54;
    let trail = Trail::Id(org.id.clone());
    let events = all_events(&app, &trail).await;
    assert_eq!(events.len(), n, "one event per change");
    assert_chain_intact(&events);
    let count = |action: &str| events.iter().filter(|e| e.action == action).count();
    assert_eq!((count("member.add"), count("product.upsert")), (25, 25));
    for e in events.iter().filter(|e| e.action == "product.upsert") {
        let space = meta(e).get("space_id").cloned().unwrap_or_default();
        assert!(space_ids.contains(&space), "{e:?}");
        assert_eq!(e.target, format!("spaces/{space}/products"));
    }
    let v = verify(&app, &trail).await;
    assert!(v.valid, "{v:?}");
    assert_eq!((v.checked, v.head_seq), (n as i32, n as i64));
    assert_eq!(v.head_hash, events[n - 1].hash);
    assert_eq!(v.first_invalid_seq, None);
    assert_eq!(member_emails(&app, "busy").await.len(), 26);
}

// ---------------------------------------------------------------------------
// 5. Tampering
// ---------------------------------------------------------------------------

/// An organization whose chain holds five events: created, three users
/// added, one promoted.
async fn five_event_org(app: &TestApp, name: &str) -> String {
    let slug = unique_slug(name);
    let org = app
        .create_org(name, &slug, &format!("admin-{slug}@audit.test"))
        .await;
    let mut first = None;
    for i in 0..3 {
        let m = app
            .add_user(&slug, &format!("u{i}-{slug}@audit.test"), "member")
            .await;
        first.get_or_insert(m.user_id);
    }
    app.orgs()
        .update_user_role(req(
            &root(),
            UpdateUserRoleRequest {
                slug,
                user_id: first.expect("a member"),
                role: "admin".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("promote");
    org.id
}

#[tokio::test]
async fn tampering_is_reported_at_the_seq_it_touched_and_hashes_recompute_from_the_documented_encoding() {
    let app = TestApp::spawn().await;
    app.create_space("Loose", "organization", SUPERADMIN).await;
    let names = ["target", "metadata", "hash", "gap", "truncated", "intact"];
    let mut ids = BTreeMap::new();
    for name in names {
        ids.insert(name, five_event_org(&app, name).await);
    }

    // Before any tampering, a third party recomputes every hash.
    for id in ids.values() {
        let events = all_events(&app, &Trail::Id(id.clone())).await;
        assert_eq!(events.len(), 5);
        assert_chain_intact(&events);
        let v = verify(&app, &Trail::Id(id.clone())).await;
        assert!(v.valid && v.checked == 5 && v.head_seq == 5, "{v:?}");
    }
    assert_chain_intact(&all_events(&app, &Trail::nil()).await);

    let mut db = Db::connect(&app.database_url).await;
    let at = |name: &str, seq: i64| [Arg::Uuid(parse_uuid(&ids[name])), Arg::I64(seq)];
    let edit = |name: &str, seq: i64, value: &str| {
        let [org, seq] = at(name, seq);
        [org, seq, Arg::Text(value.into())]
    };
    let changed = db
        .execute(
            "UPDATE audit_events SET target = $3 WHERE organization_id = $1 AND seq = $2",
            &edit("target", 3, "organizations/elsewhere"),
        )
        .await;
    assert_eq!(changed, 1);
    let changed = db
        .execute(
            "UPDATE audit_events SET metadata = $3 WHERE organization_id = $1 AND seq = $2",
            &edit("metadata", 2, r#"{"rpc":"Forged"}"#),
        )
        .await;
    assert_eq!(changed, 1);
    let changed = db
        .execute(
            "UPDATE audit_events SET hash = $3 WHERE organization_id = $1 AND seq = $2",
            &edit("hash", 4, &"f".repeat(64)),
        )
        .await;
    assert_eq!(changed, 1);
    let changed = db
        .execute(
            "DELETE FROM audit_events WHERE organization_id = $1 AND seq = $2",
            &at("gap", 3),
        )
        .await;
    assert_eq!(changed, 1);
    let changed = db
        .execute(
            "DELETE FROM audit_events WHERE organization_id = $1 AND seq = $2",
            &at("truncated", 5),
        )
        .await;
    assert_eq!(changed, 1);
    db.close().await;

    for (name, seq) in [
        ("target", 3),
        ("metadata", 2),
        ("hash", 4),
        ("gap", 3),
        ("truncated", 5),
    ] {
        let v = verify(&app, &Trail::Id(ids[name].clone())).await;
        assert!(!v.valid, "{name}: tampering went unnoticed: {v:?}");
        assert_eq!(v.first_invalid_seq, Some(seq), "{name}: {v:?}");
        assert_eq!(
            v.checked,
            (seq - 1) as i32,
            "{name}: events before the break verify: {v:?}"
        );
        assert_eq!(v.head_seq, 5, "{name}: {v:?}");
        assert!(!v.reason.is_empty(), "{name}: {v:?}");
    }
    let v = verify(&app, &Trail::Id(ids["intact"].clone())).await;
    assert!(
        v.valid && v.checked == 5 && v.first_invalid_seq.is_none() && v.reason.is_empty(),
        "{v:?}"
    );

    // A third party reading the trail finds the same breaks.
    let events = all_events(&app, &Trail::Id(ids["target"].clone())).await;
    assert_eq!(events[2].target, "organizations/elsewhere");
    assert_ne!(
        recomputed(&events[2]),
        events[2].hash,
        "the edited target changes the hash"
    );
    for e in events.iter().filter(|e| e.seq != 3) {
        assert_eq!(recomputed(e), e.hash);
    }
    let events = all_events(&app, &Trail::Id(ids["metadata"].clone())).await;
    assert_eq!(
        meta(&events[1]),
        BTreeMap::from([("rpc".to_owned(), "Forged".to_owned())])
    );
    assert_ne!(
        recomputed(&events[1]),
        events[1].hash,
        "the edited metadata changes the hash"
    );
    let events = all_events(&app, &Trail::Id(ids["hash"].clone())).await;
    assert_ne!(recomputed(&events[3]), events[3].hash);
    assert_ne!(
        events[4].prev_hash, events[3].hash,
        "the next event no longer links"
    );
    let events = all_events(&app, &Trail::Id(ids["gap"].clone())).await;
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 4, 5]);
}

// ---------------------------------------------------------------------------
// 6. Revocation race
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removal_racing_the_remover_s_demotion_is_ordered_in_the_trail_by_the_right_it_used() {
    let app = TestApp::spawn().await;
    let (mut removed, mut refused) = (0, 0);
    for round in 0..20 {
        let slug = unique_slug("race");
        let a_email = format!("a-{slug}@audit.test");
        let b_email = format!("b-{slug}@audit.test");
        let org = app.create_org("Race", &slug, &a_email).await;
        let a_id = org.members[0].user_id.clone();
        let b_id = app.add_user(&slug, &b_email, "admin").await.user_id;
        let c_id = app
            .add_user(&slug, &format!("c-{slug}@audit.test"), "member")
            .await
            .user_id;

        let mut by_a = app.orgs();
        let mut by_b = app.orgs();
        let (removal, demotion) = tokio::join!(
            by_a.remove_user(req(
                &token(&a_email),
                RemoveUserRequest {
                    slug: slug.clone(),
                    user_id: c_id.clone(),
                    ..Default::default()
                },
            )),
            by_b.update_user_role(req(
                &token(&b_email),
                UpdateUserRoleRequest {
                    slug: slug.clone(),
                    user_id: a_id.clone(),
                    role: "member".into(),
                    ..Default::default()
                },
            )),
        );
        assert_not_internal("removal", &removal, &[Code::PermissionDenied]);
        demotion.unwrap_or_else(|s| panic!("round {round}: the demotion must succeed: {s:?}"));

        let trail = Trail::Id(org.id.clone());
        let events = all_events(&app, &trail).await;
        assert_chain_intact(&events);
        let demoted = events
            .iter()
            .find(|e| e.action == "member.update_role" && e.target.ends_with(&a_id))
            .unwrap_or_else(|| panic!("round {round}: no demotion event"));
        assert_eq!(
            (demoted.actor.as_str(), demoted.result.as_str()),
            (b_id.as_str(), "success")
        );
        let removals: Vec<_> = events.iter().filter(|e| e.action == "member.remove").collect();
        assert_eq!(removals.len(), 1, "round {round}: {removals:?}");
        let removal_event = removals[0];
        assert_eq!(removal_event.actor, a_id, "round {round}");
        match removal {
            Ok(_) => {
                removed += 1;
                assert_eq!(removal_event.result, "success");
                assert_eq!(
                    removal_event.target,
                    format!("organizations/{}/users/{c_id}", org.id)
                );
                assert!(
                    removal_event.seq < demoted.seq,
                    "round {round}: the removal succeeded, so it ran while A was still an admin \
                     (removal seq {}, demotion seq {})",
                    removal_event.seq,
                    demoted.seq
                );
            }
            Err(status) => {
                refused += 1;
                assert_eq!(reason(&status), "NOT_AUTHORIZED", "round {round}");
                assert_eq!(removal_event.result, "denied");
                assert!(
                    removal_event.seq > demoted.seq,
                    "round {round}: the removal was refused, so it ran after the demotion \
                     (removal seq {}, demotion seq {})",
                    removal_event.seq,
                    demoted.seq
                );
                assert!(
                    member_emails(&app, &slug)
                        .await
                        .contains(&format!("c-{slug}@audit.test"))
                );
            }
        }
    }
    assert_eq!(removed + refused, 20);
}

// ---------------------------------------------------------------------------
// 7. Deletion racing other changes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_an_organization_while_spaces_are_added_and_it_is_renamed_fails_cleanly_and_leaves_no_directory()
 {
    // Deletions purge at once here, directory included.
    let app = TestApp::spawn_with(|c| c.soft_delete_window = std::time::Duration::ZERO).await;
    let allowed = [Code::NotFound, Code::PermissionDenied];
    for round in 0..20 {
        let slug = unique_slug("doomed");
        let admin = format!("admin-{slug}@audit.test");
        let org = app.create_org("Doomed", &slug, &admin).await;
        let attached = app
            .create_space(&format!("Attached {slug}"), "organization", &admin)
            .await
            .id;
        app.attach(&slug, &attached).await;
        let joining = app
            .create_space(&format!("Joining {slug}"), "organization", &admin)
            .await
            .id;
        let dir = app.storage_root.join("orgs").join(&org.id);
        assert!(dir.is_dir(), "round {round}: the directory exists before");
        // Odd rounds also move the slug, which the other calls then miss.
        let new_slug = (round % 2 == 1).then(|| unique_slug("moved"));

        let (mut c1, mut c2, mut c3) = (app.orgs(), app.orgs(), app.orgs());
        let (deleted, added, renamed) = tokio::join!(
            c1.delete_organization(req(
                &token(&admin),
                DeleteOrganizationRequest {
                    slug: slug.clone(),
                    ..Default::default()
                }
            )),
            c2.add_space(req(
                &root(),
                AddSpaceRequest {
                    slug: slug.clone(),
                    space_id: joining.clone(),
                    ..Default::default()
                },
            )),
            c3.update_organization(req(
                &token(&admin),
                UpdateOrganizationRequest {
                    slug: slug.clone(),
                    name: Some(format!("Renamed {round}")),
                    new_slug: new_slug.clone(),
                    ..Default::default()
                },
            )),
        );
        assert_not_internal(&format!("round {round}: delete"), &deleted, &allowed);
        assert_not_internal(&format!("round {round}: add space"), &added, &allowed);
        assert_not_internal(&format!("round {round}: rename"), &renamed, &allowed);

        let trail = Trail::Id(org.id.clone());
        let events = all_events(&app, &trail).await;
        assert_chain_intact(&events);
        assert!(verify(&app, &trail).await.valid);
        if deleted.is_ok() {
            assert!(
                !dir.exists(),
                "round {round}: {} survived the deletion",
                dir.display()
            );
            // The deletion, then (no window here) its purge, and nothing
            // after.
            let tail: Vec<&str> = events.iter().rev().take(2).map(|e| e.action.as_str()).collect();
            assert_eq!(
                tail,
                ["organization.purge", "organization.delete"],
                "round {round}: nothing after the deletion"
            );
            for space in [&attached, &joining] {
                let s = app
                    .spaces()
                    .get_space(req(
                        &root(),
                        GetSpaceRequest {
                            space_id: space.clone(),
                        },
                    ))
                    .await
                    .expect("space survives")
                    .into_inner()
                    .space
                    .expect("space");
                assert_eq!(
                    s.organization_id, "",
                    "round {round}: space {space} left attached"
                );
            }
        } else {
            // Only a moved slug makes the deletion miss the organization.
            let moved = new_slug.unwrap_or_else(|| panic!("round {round}: delete failed: {deleted:?}"));
            assert!(renamed.is_ok(), "round {round}: {renamed:?}");
            assert_directory_follows(&app, &moved).await;
        }
    }
}

// ---------------------------------------------------------------------------
// 8. Concurrent renames
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_concurrent_renames_organization_json_holds_the_committed_name_and_slug() {
    let app = TestApp::spawn().await;
    for round in 0..10 {
        let slug = unique_slug("renamed");
        let org = app.create_org("Renamed", &slug, SUPERADMIN).await;
        let moved = unique_slug("moved");
        let renames: Vec<_> = (0..8)
            .map(|k| {
                let mut orgs = app.orgs();
                let slug = slug.clone();
                // The last one also moves the slug; later renames by the old
                // slug then find nothing.
                let new_slug = (k == 7).then(|| moved.clone());
                tokio::spawn(async move {
                    orgs.update_organization(req(
                        &root(),
                        UpdateOrganizationRequest {
                            slug,
                            name: Some(format!("Name {round}-{k}")),
                            new_slug,
                            ..Default::default()
                        },
                    ))
                    .await
                })
            })
            .collect();
        let results: Vec<_> = futures::future::join_all(renames)
            .await
            .into_iter()
            .map(|r| r.expect("rename task"))
            .collect();
        for (k, r) in results.iter().enumerate() {
            assert_not_internal(&format!("round {round}: rename {k}"), r, &[Code::NotFound]);
        }
        let final_slug = if results[7].is_ok() { moved } else { slug };
        let got = get_org(&app, &final_slug).await;
        assert_eq!(got.id, org.id);
        assert!(got.name.starts_with(&format!("Name {round}-")), "{}", got.name);
        assert_directory_follows(&app, &final_slug).await;
    }
}

// ---------------------------------------------------------------------------
// 9. Reconciliation at start
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_brings_every_storage_directory_back_in_step_with_the_database() {
    let mut app = TestApp::spawn().await;
    let admin = "keeper@audit.test";
    let slugs = ["vanished", "scrambled", "rearranged", "untouched"];
    let mut ids = BTreeMap::new();
    for slug in slugs {
        ids.insert(slug, app.create_org(slug, slug, admin).await.id);
    }
    let kept = app.create_space("Kept", "organization", admin).await.id;
    app.attach("rearranged", &kept).await;
    let stays = app.create_space("Stays", "organization", admin).await.id;
    app.attach("untouched", &stays).await;
    let vanished_space = app.create_space("Vanished Space", "organization", admin).await.id;
    app.attach("vanished", &vanished_space).await;
    let loose = app.create_space("Loose", "organization", admin).await.id;
    for slug in slugs {
        assert_directory_follows(&app, slug).await;
    }

    app.stop().await;
    let orgs_dir = app.storage_root.join("orgs");
    std::fs::remove_dir_all(orgs_dir.join(&ids["vanished"])).expect("remove a directory");
    std::fs::write(
        orgs_dir.join(&ids["scrambled"]).join("organization.json"),
        "{\"id\": \"someone else\", \"name\": \"Stale\"",
    )
    .expect("corrupt organization.json");
    let stray = new_id();
    std::fs::create_dir_all(orgs_dir.join(&stray).join("spaces").join(new_id())).expect("stray");
    std::fs::write(orgs_dir.join(&stray).join("organization.json"), "{}\n").expect("stray file");
    let rearranged = orgs_dir.join(&ids["rearranged"]).join("spaces");
    std::fs::remove_dir_all(rearranged.join(&kept)).expect("remove an attached space's directory");
    std::fs::create_dir_all(rearranged.join(&loose)).expect("a directory for an unattached space");

    app.restart().await;
    for slug in slugs {
        assert_directory_follows(&app, slug).await;
    }
    assert!(
        !orgs_dir.join(&stray).exists(),
        "the directory of an unknown organization survived"
    );
    let expected: BTreeSet<String> = ids.values().cloned().collect();
    assert_eq!(entries(&orgs_dir), expected);
    // The restarted server still appends to the same chains.
    let trail = Trail::Slug("untouched".into());
    let before = head(&app, &trail).await;
    app.add_user("untouched", "after-restart@audit.test", "member")
        .await;
    let v = verify(&app, &trail).await;
    assert!(v.valid && v.head_seq == before + 1, "{v:?}");
}

// ---------------------------------------------------------------------------
// 10. ListAuditEvents
// ---------------------------------------------------------------------------

#[tokio::test]
async fn audit_events_filter_by_action_actor_result_and_time_newest_first_in_pages() {
    let app = TestApp::spawn().await;
    let admin = "lister@audit.test";
    let a = token(admin);
    let root_id = user_id(&app.database_url, SUPERADMIN).await;
    let org = app.create_org("Filtered", "filtered", admin).await; // 1
    let admin_id = org.members[0].user_id.clone();
    let trail = Trail::Slug("filtered".into());
    let mut users = Vec::new();
    for i in 0..3 {
        // 2, 3, 4
        let m = app
            .orgs()
            .add_user(req(
                &a,
                AddUserRequest {
                    slug: "filtered".into(),
                    user_email: format!("u{i}@audit.test"),
                    role: "member".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("add")
            .into_inner()
            .member
            .expect("member");
        users.push(m.user_id);
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mark = now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    app.orgs() // 5
        .update_user_role(req(
            &a,
            UpdateUserRoleRequest {
                slug: "filtered".into(),
                user_id: users[0].clone(),
                role: "admin".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("promote");
    let denied = app // 6
        .orgs()
        .add_user(req(
            &token("u1@audit.test"),
            AddUserRequest {
                slug: "filtered".into(),
                user_email: "nope@audit.test".into(),
                role: "member".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
    app.orgs() // 7
        .remove_user(req(
            &root(),
            RemoveUserRequest {
                slug: "filtered".into(),
                user_id: users[2].clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("remove");
    app.orgs() // 8
        .update_organization(req(
            &a,
            UpdateOrganizationRequest {
                slug: "filtered".into(),
                description: Some("Filtered events".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("describe");

    let query = async |r: ListAuditEventsRequest| list(&app, &trail, r).await;
    let all = query(ListAuditEventsRequest::default()).await;
    assert_eq!(all.total, 8);
    assert_eq!(seqs(&all), vec![8, 7, 6, 5, 4, 3, 2, 1], "newest first");
    let cases: Vec<(&str, ListAuditEventsRequest, Vec<i64>)> = vec![
        (
            "exact action",
            ListAuditEventsRequest {
                action: "member.add".into(),
                ..Default::default()
            },
            vec![6, 4, 3, 2],
        ),
        (
            "action prefix",
            ListAuditEventsRequest {
                action: "member.".into(),
                ..Default::default()
            },
            vec![7, 6, 5, 4, 3, 2],
        ),
        (
            "another prefix",
            ListAuditEventsRequest {
                action: "organization.".into(),
                ..Default::default()
            },
            vec![8, 1],
        ),
        (
            "a prefix that is not a whole segment matches nothing",
            ListAuditEventsRequest {
                action: "member".into(),
                ..Default::default()
            },
            vec![],
        ),
        (
            "actor",
            ListAuditEventsRequest {
                actor: admin_id.clone(),
                ..Default::default()
            },
            vec![8, 5, 4, 3, 2],
        ),
        (
            "another actor",
            ListAuditEventsRequest {
                actor: root_id.clone(),
                ..Default::default()
            },
            vec![7, 1],
        ),
        (
            "denied",
            ListAuditEventsRequest {
                result: "denied".into(),
                ..Default::default()
            },
            vec![6],
        ),
        (
            "success",
            ListAuditEventsRequest {
                result: "success".into(),
                ..Default::default()
            },
            vec![8, 7, 5, 4, 3, 2, 1],
        ),
        (
            "since",
            ListAuditEventsRequest {
                since: Some(mark),
                ..Default::default()
            },
            vec![8, 7, 6, 5],
        ),
        (
            "until",
            ListAuditEventsRequest {
                until: Some(mark),
                ..Default::default()
            },
            vec![4, 3, 2, 1],
        ),
        (
            "combined",
            ListAuditEventsRequest {
                action: "member.".into(),
                result: "success".into(),
                since: Some(mark),
                ..Default::default()
            },
            vec![7, 5],
        ),
    ];
    for (what, r, expected) in cases {
        let page = query(r).await;
        assert_eq!(seqs(&page), expected, "{what}");
        assert_eq!(page.total, expected.len() as i32, "{what}");
    }
    let denied_page = query(ListAuditEventsRequest {
        result: "denied".into(),
        ..Default::default()
    })
    .await;
    let denied_event = &denied_page.items[0];
    let u1 = users[1].clone();
    assert_eq!(
        (denied_event.actor.as_str(), denied_event.action.as_str()),
        (u1.as_str(), "member.add")
    );

    // Pages by number and by token; every page knows the total.
    let mut by_number = Vec::new();
    for page in 1..=3 {
        let p = query(ListAuditEventsRequest {
            page: Some(page),
            size: 3,
            ..Default::default()
        })
        .await;
        assert_eq!((p.total, p.page, p.size), (8, page, 3));
        assert_eq!(p.next_page_token.is_empty(), page == 3, "page {page}");
        by_number.push(seqs(&p));
    }
    assert_eq!(by_number, vec![vec![8, 7, 6], vec![5, 4, 3], vec![2, 1]]);
    let mut by_token = Vec::new();
    let mut token_ = String::new();
    loop {
        let p = query(ListAuditEventsRequest {
            size: 2,
            actor: admin_id.clone(),
            page_token: token_.clone(),
            ..Default::default()
        })
        .await;
        assert_eq!(p.total, 5);
        by_token.push(seqs(&p));
        if p.next_page_token.is_empty() {
            break;
        }
        token_ = p.next_page_token;
    }
    assert_eq!(by_token, vec![vec![8, 5], vec![4, 3], vec![2]]);

    // Invalid filters.
    for (what, r) in [
        (
            "result",
            ListAuditEventsRequest {
                result: "maybe".into(),
                ..Default::default()
            },
        ),
        (
            "action",
            ListAuditEventsRequest {
                action: "member%".into(),
                ..Default::default()
            },
        ),
        (
            "actor",
            ListAuditEventsRequest {
                actor: "someone".into(),
                ..Default::default()
            },
        ),
        (
            "page",
            ListAuditEventsRequest {
                page: Some(0),
                ..Default::default()
            },
        ),
    ] {
        let r = try_list(&app, &root(), &trail, r).await;
        assert_eq!(r.map(drop).unwrap_err().code(), Code::InvalidArgument, "{what}");
    }

    // A plain member may not read the trail; the refusal is itself recorded.
    let refused = try_list(
        &app,
        &token("u1@audit.test"),
        &trail,
        ListAuditEventsRequest::default(),
    )
    .await;
    assert_error(refused, Code::PermissionDenied, "NOT_AUTHORIZED");
    let refused = try_verify(&app, &token("u1@audit.test"), &trail).await;
    assert_error(refused, Code::PermissionDenied, "NOT_AUTHORIZED");
    let recorded = query(ListAuditEventsRequest {
        action: "audit.read".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(seqs(&recorded), vec![10, 9]);
    for e in &recorded.items {
        assert_eq!((e.result.as_str(), e.actor.as_str()), ("denied", u1.as_str()));
    }
    assert_eq!(
        recorded
            .items
            .iter()
            .map(|e| meta(e)["rpc"].clone())
            .collect::<Vec<_>>(),
        vec!["VerifyAuditChain", "ListAuditEvents"]
    );
    // The admin reads it by slug and by id alike.
    let by_id = try_list(
        &app,
        &a,
        &Trail::Id(org.id.clone()),
        ListAuditEventsRequest::default(),
    )
    .await
    .expect("the admin reads by id");
    assert_eq!(seqs(&by_id), (1..=10).rev().collect::<Vec<i64>>());

    // A deleted organization's trail: by id, for superadmins only.
    app.orgs()
        .delete_organization(req(
            &a,
            DeleteOrganizationRequest {
                slug: "filtered".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete");
    let gone = try_list(&app, &root(), &trail, ListAuditEventsRequest::default()).await;
    assert_error(gone, Code::NotFound, "ORG_NOT_FOUND");
    let by_id = Trail::Id(org.id.clone());
    let kept = list(&app, &by_id, ListAuditEventsRequest::default()).await;
    assert_eq!(kept.total, 11);
    assert_eq!(kept.items[0].action, "organization.delete");
    assert_eq!(kept.items[0].actor, admin_id);
    assert!(verify(&app, &by_id).await.valid);
    let former = try_list(&app, &a, &by_id, ListAuditEventsRequest::default()).await;
    assert_error(former, Code::PermissionDenied, "NOT_AUTHORIZED");
    assert_error(
        try_verify(&app, &a, &by_id).await,
        Code::PermissionDenied,
        "NOT_AUTHORIZED",
    );
    let unknown = try_list(
        &app,
        &root(),
        &Trail::Id(new_id()),
        ListAuditEventsRequest::default(),
    )
    .await;
    assert_eq!(unknown.map(drop).unwrap_err().code(), Code::NotFound);

    // The nil chain holds the creation of every space, for superadmins.
    let s1 = app.create_space("Nil One", "organization", admin).await.id;
    let s2 = app.create_space("Nil Two", "restricted", admin).await.id;
    let created = list(
        &app,
        &Trail::nil(),
        ListAuditEventsRequest {
            action: "space.create".into(),
            ..Default::default()
        },
    )
    .await;
    let targets: Vec<&str> = created.items.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, vec![format!("spaces/{s2}"), format!("spaces/{s1}")]);
    assert!(
        created
            .items
            .iter()
            .all(|e| e.organization_id == NIL && e.actor == root_id)
    );
    let refused = try_list(&app, &a, &Trail::nil(), ListAuditEventsRequest::default()).await;
    assert_error(refused, Code::PermissionDenied, "NOT_AUTHORIZED");
}

// ---------------------------------------------------------------------------
// 11. Authentication
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_audit_rpcs_need_a_token_while_health_answers_without_one() {
    let app = TestApp::spawn().await;
    app.create_org("Private", "private", "p@audit.test").await;
    let trail = Trail::Slug("private".into());
    let before = head(&app, &trail).await;
    for tok in ["", "not-a-token"] {
        let listed = try_list(&app, tok, &trail, ListAuditEventsRequest::default()).await;
        assert_error(listed, Code::Unauthenticated, "UNAUTHENTICATED");
        let by_id = try_list(&app, tok, &Trail::nil(), ListAuditEventsRequest::default()).await;
        assert_error(by_id, Code::Unauthenticated, "UNAUTHENTICATED");
        let verified = try_verify(&app, tok, &trail).await;
        assert_error(verified, Code::Unauthenticated, "UNAUTHENTICATED");
    }
    assert_eq!(
        head(&app, &trail).await,
        before,
        "an anonymous call records nothing"
    );

    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut health = HealthClient::new(app.channel.clone());
    for service in ["", "orgd.v1.OrganizationService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("health of {service:?} without a token: {s:?}"))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}

// ---------------------------------------------------------------------------
// 12. REST through Envoy
// ---------------------------------------------------------------------------

/// An int64 in proto3 JSON: a string of digits (or a number).
fn int64(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|e| panic!("{v}: {e}")),
        Value::Number(n) => n.as_i64().unwrap_or_else(|| panic!("{v}")),
        other => panic!("not an int64: {other}"),
    }
}

/// The hash a third party computes for an event read as JSON.
fn recomputed_json(e: &Value) -> String {
    let text = |k: &str| e[k].as_str().unwrap_or_else(|| panic!("{k} of {e}")).to_owned();
    let created = chrono::DateTime::parse_from_rfc3339(&text("created_at")).expect("created_at");
    let metadata: BTreeMap<String, String> = e["metadata"]
        .as_object()
        .expect("metadata object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string metadata").to_owned()))
        .collect();
    documented_hash(
        &text("prev_hash"),
        &text("organization_id"),
        int64(&e["seq"]),
        &text("id"),
        created.timestamp_micros(),
        &text("actor"),
        &text("action"),
        &text("result"),
        &text("target"),
        &metadata,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trails_and_their_verification_answer_json_through_envoy() {
    let rest = crate::rest::Rest::start().await;
    let root = root();
    let created = rest
        .post(
            "/organizations",
            &root,
            json!({"name": "Rest Audit", "slug": "rest-audit", "admin_email": "ra@audit.test"}),
        )
        .await
        .expect(201);
    let id = created["id"].as_str().expect("id").to_owned();
    let admin_id = created["members"][0]["user_id"]
        .as_str()
        .expect("admin")
        .to_owned();
    let member = rest
        .post(
            "/organizations/rest-audit/users",
            &token("ra@audit.test"),
            json!({"user_email": "rm@audit.test", "role": "member"}),
        )
        .await
        .expect(201);
    let member_id = member["user_id"].as_str().expect("user_id").to_owned();

    let trail = rest
        .get("/organizations/rest-audit/audit", &root)
        .await
        .expect(200);
    assert_eq!(trail["total"], 2, "{trail}");
    let items = trail["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    let mut keys: Vec<&str> = items[0]
        .as_object()
        .expect("event")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![
            "action",
            "actor",
            "created_at",
            "hash",
            "id",
            "metadata",
            "organization_id",
            "prev_hash",
            "result",
            "seq",
            "target"
        ]
    );
    let newest = &items[0];
    assert_eq!(int64(&newest["seq"]), 2);
    assert_eq!(newest["action"], "member.add");
    assert_eq!(newest["result"], "success");
    assert_eq!(newest["actor"], admin_id.as_str());
    assert_eq!(newest["organization_id"], id.as_str());
    assert_eq!(newest["target"], format!("organizations/{id}/users/{member_id}"));
    assert_eq!(newest["metadata"]["rpc"], "AddUser");
    assert_eq!(newest["metadata"]["email"], "rm@audit.test");
    assert!(crate::rest::is_rfc3339(&newest["created_at"]));
    assert_eq!(items[1]["prev_hash"], "0");
    assert_eq!(newest["prev_hash"], items[1]["hash"]);
    for e in items {
        assert_eq!(recomputed_json(e), e["hash"].as_str().expect("hash"), "{e}");
    }

    let filtered = rest
        .get(
            "/organizations/rest-audit/audit?action=organization.&size=1",
            &root,
        )
        .await
        .expect(200);
    assert_eq!(filtered["total"], 1);
    assert_eq!(filtered["items"][0]["action"], "organization.create");

    let verified = rest
        .get("/organizations/rest-audit/audit:verify", &root)
        .await
        .expect(200);
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["checked"], 2);
    assert_eq!(int64(&verified["head_seq"]), 2);
    assert_eq!(verified["head_hash"], newest["hash"]);
    assert_eq!(verified["reason"], "");
    assert!(
        verified.get("first_invalid_seq").is_none_or(Value::is_null),
        "{verified}"
    );

    let by_id = rest
        .get(&format!("/audit-trails/{id}/events"), &root)
        .await
        .expect(200);
    assert_eq!(by_id["items"], trail["items"]);
    let verified_by_id = rest
        .get(&format!("/audit-trails/{id}:verify"), &root)
        .await
        .expect(200);
    assert_eq!(verified_by_id, verified);

    rest.get("/organizations/rest-audit/audit", &token("rm@audit.test"))
        .await
        .expect_error(403, 7, "NOT_AUTHORIZED");
    rest.get("/organizations/rest-audit/audit:verify", "")
        .await
        .expect_error(401, 16, "UNAUTHENTICATED");
    rest.get(&format!("/audit-trails/{id}/events"), "")
        .await
        .expect_error(401, 16, "UNAUTHENTICATED");
}

// ---------------------------------------------------------------------------
// 13. orgd generate
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_creates_a_directory_for_every_organization_and_chains_that_verify() {
    use crate::cli::{assert_success, orgd, run};
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database_url(dir.path()).await;
    let storage = dir.path().join("generated-storage");
    let mut cmd = orgd();
    cmd.args(["generate", "--scale", "0.0005", "--seed", "7", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--database-url")
        .arg(&url)
        .arg("--storage-root")
        .arg(&storage);
    let out = run(cmd).await;
    assert_success(&out, "orgd generate");
    let plan = orgd::generate::Plan::scaled(0.0005);
    for (phase, count) in [
        ("organizations", plan.organizations),
        ("spaces", plan.spaces),
        ("products", plan.products),
        ("issues", plan.issues),
        ("contracts", plan.contracts),
        ("quality checks", plan.quality_checks),
    ] {
        let n = count as u64;
        assert_eq!(crate::cli::finished_phase(&out, phase), (n, Some(n)), "{phase}");
    }

    // Before any server starts (and reconciles), the directories are there.
    let mut db = Db::connect(&url).await;
    let orgs = db.ids("SELECT id FROM organizations", &[]).await;
    assert!(!orgs.is_empty(), "generate wrote no organizations");
    let on_disk = entries(&storage.join("orgs"));
    let expected: BTreeSet<String> = orgs.iter().map(ToString::to_string).collect();
    assert_eq!(on_disk, expected, "one directory per organization");
    for org in &orgs {
        let one = [Arg::Uuid(*org)];
        let name = db
            .strings("SELECT name FROM organizations WHERE id = $1", &one)
            .await;
        let slug = db
            .strings("SELECT slug FROM organizations WHERE id = $1", &one)
            .await;
        let spaces: BTreeSet<String> = db
            .ids("SELECT id FROM spaces WHERE organization_id = $1", &one)
            .await
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(!spaces.is_empty(), "every generated organization gets a space");
        assert_directory(&storage, &org.to_string(), &name[0], &slug[0], &spaces);
    }
    let chains = db.ids("SELECT organization_id FROM audit_heads", &[]).await;
    db.close().await;
    let chains: BTreeSet<String> = chains.iter().map(ToString::to_string).collect();
    for org in &expected {
        assert!(chains.contains(org), "organization {org} has no audit chain");
    }
    assert!(chains.contains(NIL), "space creations go to the nil chain");

    let app = TestApp::spawn_on(&url, &storage).await;
    for chain in &chains {
        let trail = Trail::Id(chain.clone());
        let v = verify(&app, &trail).await;
        assert!(v.valid, "chain {chain}: {v:?}");
        assert!(v.head_seq > 0, "chain {chain}: {v:?}");
        assert_eq!(i64::from(v.checked), v.head_seq, "chain {chain}: {v:?}");
        let events = all_events(&app, &trail).await;
        assert_chain_intact(&events);
        for e in &events {
            assert_eq!(e.actor, NIL, "generate acts as orgd itself: {e:?}");
            assert_eq!(meta(e).get("rpc").map(String::as_str), Some("generate"), "{e:?}");
        }
        if chain != NIL {
            assert_eq!(events[0].action, "organization.create");
            assert!(
                events.iter().any(|e| e.action == "product.upsert"),
                "chain {chain}"
            );
        }
    }
}
