//! Every row of SPEC §2 against every kind of caller.

use orgd::auth::{Claims, Secret, issue_token};
use orgd::proto::*;
use tonic::{Code, Status};

use crate::helpers::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    NoToken,
    Malformed,
    Expired,
    WrongSignature,
    NonMember,
    Member,
    OrgAdmin,
    Superadmin,
}

const EVERYONE: [Who; 8] = [
    Who::NoToken,
    Who::Malformed,
    Who::Expired,
    Who::WrongSignature,
    Who::NonMember,
    Who::Member,
    Who::OrgAdmin,
    Who::Superadmin,
];

/// Who may call an RPC, among authenticated callers.
#[derive(Clone, Copy, Debug)]
enum Allowed {
    AnyUser,
    Members,
    Admins,
    Superadmins,
}

impl Allowed {
    fn admits(self, who: Who) -> bool {
        match self {
            Allowed::AnyUser => matches!(
                who,
                Who::NonMember | Who::Member | Who::OrgAdmin | Who::Superadmin
            ),
            Allowed::Members => matches!(who, Who::Member | Who::OrgAdmin | Who::Superadmin),
            Allowed::Admins => matches!(who, Who::OrgAdmin | Who::Superadmin),
            Allowed::Superadmins => who == Who::Superadmin,
        }
    }
}

/// An organization with an admin (also admin of both spaces), two members,
/// an outsider who belongs to another organization, an attached space X
/// (with the second member as a viewer) and an unattached space Y.
struct Fixture {
    slug: String,
    admin: String,
    member: String,
    outsider: String,
    member_id: String,
    member2_id: String,
    space_x: String,
    space_y: String,
    /// A product in space X.
    product_x: String,
}

fn aggregation(
    app: &TestApp,
) -> orgd::proto::aggregation_service_client::AggregationServiceClient<tonic::transport::Channel> {
    orgd::proto::aggregation_service_client::AggregationServiceClient::new(app.channel.clone())
}

async fn fixture(app: &TestApp) -> Fixture {
    let slug = unique_slug("perm");
    let admin = format!("admin-{slug}@perm.test");
    let member = format!("member-{slug}@perm.test");
    let member2 = format!("member2-{slug}@perm.test");
    let outsider = format!("outsider-{slug}@perm.test");
    app.create_org("Permissions", &slug, &admin).await;
    let m = app.add_user(&slug, &member, "member").await;
    let m2 = app.add_user(&slug, &member2, "member").await;
    app.create_org("Elsewhere", &unique_slug("other"), &outsider)
        .await;
    let x = app
        .create_space(&format!("X {slug}"), "organization", &admin)
        .await;
    app.attach(&slug, &x.id).await;
    let y = app
        .create_space(&format!("Y {slug}"), "organization", &admin)
        .await;
    app.spaces()
        .add_space_member(req(
            &root(),
            AddSpaceMemberRequest {
                space_id: x.id.clone(),
                user_email: member2,
                role: "viewer".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("add space member");
    let product_x = uuid::Uuid::new_v4().to_string();
    app.spaces()
        .batch_upsert_products(req(
            &root(),
            BatchUpsertProductsRequest {
                space_id: x.id.clone(),
                items: vec![Product {
                    id: product_x.clone(),
                    name: "Fixture".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ))
        .await
        .expect("product");
    Fixture {
        slug,
        admin,
        member,
        outsider,
        member_id: m.user_id,
        member2_id: m2.user_id,
        space_x: x.id,
        space_y: y.id,
        product_x,
    }
}

fn token_for(who: Who, fx: &Fixture) -> String {
    let claims = |email: &str, exp: i64| Claims {
        email: email.into(),
        exp,
        name: None,
        sub: None,
        iat: None,
        iss: None,
        aud: None,
    };
    let later = chrono::Utc::now().timestamp() + 3600;
    match who {
        Who::NoToken => String::new(),
        Who::Malformed => "not-a-jwt".into(),
        Who::Expired => token_with(claims(&fx.admin, chrono::Utc::now().timestamp() - 3600)),
        Who::WrongSignature => issue_token(
            &Secret::new("some-other-secret-entirely"),
            &claims(SUPERADMIN, later),
        )
        .expect("sign"),
        Who::NonMember => token(&fx.outsider),
        Who::Member => token(&fx.member),
        Who::OrgAdmin => token(&fx.admin),
        Who::Superadmin => root(),
    }
}

async fn call(app: &TestApp, fx: &Fixture, rpc: &str, t: &str) -> Result<(), Status> {
    let mut orgs = app.orgs();
    let mut spaces = app.spaces();
    let slug = fx.slug.clone();
    let fresh = unique_slug("new");
    match rpc {
        "ListOrganizations" => orgs
            .list_organizations(req(t, ListOrganizationsRequest::default()))
            .await
            .map(drop),
        "CreateOrganization" => orgs
            .create_organization(req(
                t,
                CreateOrganizationRequest {
                    name: "Fresh".into(),
                    slug: Some(fresh),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "GetOrganization" => orgs
            .get_organization(req(t, GetOrganizationRequest { slug }))
            .await
            .map(drop),
        "UpdateOrganization" => orgs
            .update_organization(req(
                t,
                UpdateOrganizationRequest {
                    slug,
                    description: Some("changed".into()),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "DeleteOrganization" => orgs
            .delete_organization(req(
                t,
                DeleteOrganizationRequest {
                    slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "AddSpace" => orgs
            .add_space(req(
                t,
                AddSpaceRequest {
                    slug,
                    space_id: fx.space_y.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "RemoveSpace" => orgs
            .remove_space(req(
                t,
                RemoveSpaceRequest {
                    slug,
                    space_id: fx.space_x.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "AddUser" => orgs
            .add_user(req(
                t,
                AddUserRequest {
                    slug,
                    user_email: format!("{fresh}@perm.test"),
                    role: "member".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "UpdateUserRole" => orgs
            .update_user_role(req(
                t,
                UpdateUserRoleRequest {
                    slug,
                    user_id: fx.member2_id.clone(),
                    role: "admin".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "RemoveUser" => orgs
            .remove_user(req(
                t,
                RemoveUserRequest {
                    slug,
                    user_id: fx.member2_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "BatchAddUsers" => orgs
            .batch_add_users(req(
                t,
                BatchAddUsersRequest {
                    slug,
                    entries: vec![UserEntry {
                        user_email: format!("{fresh}@perm.test"),
                        role: "member".into(),
                    }],
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "BatchRemoveUsers" => orgs
            .batch_remove_users(req(
                t,
                BatchRemoveUsersRequest {
                    slug,
                    entries: vec![MemberRef {
                        user_id: fx.member2_id.clone(),
                    }],
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "BatchAddSpaceMembers" => spaces
            .batch_add_space_members(req(
                t,
                BatchAddSpaceMembersRequest {
                    space_id: fx.space_x.clone(),
                    entries: vec![SpaceMemberEntry {
                        user_email: format!("{fresh}@perm.test"),
                        role: "viewer".into(),
                    }],
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "BatchRemoveSpaceMembers" => spaces
            .batch_remove_space_members(req(
                t,
                BatchRemoveSpaceMembersRequest {
                    space_id: fx.space_x.clone(),
                    entries: vec![MemberRef {
                        user_id: fx.member2_id.clone(),
                    }],
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "CreateInvitation" => orgs
            .create_invitation(req(
                t,
                CreateInvitationRequest {
                    slug,
                    email: format!("{fresh}@perm.test"),
                    role: "member".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListInvitations" => orgs
            .list_invitations(req(
                t,
                ListInvitationsRequest {
                    slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "RevokeInvitation" => {
            let made = orgs
                .create_invitation(req(
                    &root(),
                    CreateInvitationRequest {
                        slug: slug.clone(),
                        email: format!("{fresh}@perm.test"),
                        role: "member".into(),
                        ..Default::default()
                    },
                ))
                .await?
                .into_inner()
                .invitation
                .expect("invitation");
            orgs.revoke_invitation(req(
                t,
                RevokeInvitationRequest {
                    slug,
                    invitation_id: made.id,
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }
        "UndeleteOrganization" => {
            // Unauthenticated callers share one fixture: deleted once.
            let deleted = orgs
                .delete_organization(req(
                    &root(),
                    DeleteOrganizationRequest {
                        slug: slug.clone(),
                        ..Default::default()
                    },
                ))
                .await;
            if let Err(s) = deleted
                && s.code() != Code::NotFound
            {
                return Err(s);
            }
            orgs.undelete_organization(req(
                t,
                UndeleteOrganizationRequest {
                    slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }
        "UndeleteSpace" => {
            let deleted = spaces
                .delete_space(req(
                    &root(),
                    DeleteSpaceRequest {
                        space_id: fx.space_x.clone(),
                        ..Default::default()
                    },
                ))
                .await;
            if let Err(s) = deleted
                && s.code() != Code::NotFound
            {
                return Err(s);
            }
            spaces
                .undelete_space(req(
                    t,
                    UndeleteSpaceRequest {
                        space_id: fx.space_x.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }
        "ListUsers" => orgs
            .list_users(req(
                t,
                ListUsersRequest {
                    slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "CreateSpace" => spaces
            .create_space(req(
                t,
                CreateSpaceRequest {
                    name: fresh,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListSpaces" => spaces
            .list_spaces(req(t, ListSpacesRequest::default()))
            .await
            .map(drop),
        "GetSpace" => spaces
            .get_space(req(
                t,
                GetSpaceRequest {
                    space_id: fx.space_x.clone(),
                },
            ))
            .await
            .map(drop),
        "UpdateSpace" => spaces
            .update_space(req(
                t,
                UpdateSpaceRequest {
                    space_id: fx.space_x.clone(),
                    description: Some("changed".into()),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "DeleteSpace" => spaces
            .delete_space(req(
                t,
                DeleteSpaceRequest {
                    space_id: fx.space_x.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListSpaceMembers" => spaces
            .list_space_members(req(
                t,
                ListSpaceMembersRequest {
                    space_id: fx.space_x.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "AddSpaceMember" => spaces
            .add_space_member(req(
                t,
                AddSpaceMemberRequest {
                    space_id: fx.space_x.clone(),
                    user_email: format!("{fresh}@perm.test"),
                    role: "viewer".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "UpdateSpaceMember" => spaces
            .update_space_member(req(
                t,
                UpdateSpaceMemberRequest {
                    space_id: fx.space_x.clone(),
                    user_id: fx.member2_id.clone(),
                    role: "editor".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "RemoveSpaceMember" => spaces
            .remove_space_member(req(
                t,
                RemoveSpaceMemberRequest {
                    space_id: fx.space_x.clone(),
                    user_id: fx.member2_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListProducts" => aggregation(app)
            .list_products(req(
                t,
                ListProductsRequest {
                    slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListContracts" => aggregation(app)
            .list_contracts(req(
                t,
                ListContractsRequest {
                    slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListIssues" => aggregation(app)
            .list_issues(req(
                t,
                ListIssuesRequest {
                    slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListQualityChecks" => aggregation(app)
            .list_quality_checks(req(
                t,
                ListQualityChecksRequest {
                    slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "GetStats" => aggregation(app)
            .get_stats(req(t, GetStatsRequest { slug }))
            .await
            .map(drop),
        "BatchUpsertProducts" => spaces
            .batch_upsert_products(req(
                t,
                BatchUpsertProductsRequest {
                    space_id: fx.space_x.clone(),
                    items: vec![Product {
                        id: uuid::Uuid::new_v4().to_string(),
                        name: fresh,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "BatchUpsertIssues" => spaces
            .batch_upsert_issues(req(
                t,
                BatchUpsertIssuesRequest {
                    space_id: fx.space_x.clone(),
                    items: vec![Issue {
                        id: uuid::Uuid::new_v4().to_string(),
                        title: fresh,
                        status: "open".into(),
                        priority: "low".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "DeleteProduct" => spaces
            .delete_product(req(
                t,
                DeleteProductRequest {
                    space_id: fx.space_x.clone(),
                    product_id: fx.product_x.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListAuditEvents" => orgs
            .list_audit_events(req(
                t,
                ListAuditEventsRequest {
                    slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "VerifyAuditChain" => orgs
            .verify_audit_chain(req(
                t,
                VerifyAuditChainRequest {
                    slug,
                    organization_id: String::new(),
                },
            ))
            .await
            .map(drop),
        "GetAuditCheckpoint" => orgs
            .get_audit_checkpoint(req(
                t,
                GetAuditCheckpointRequest {
                    slug,
                    organization_id: String::new(),
                },
            ))
            .await
            .map(drop),
        "ProveAuditChain" => {
            let checkpoint = orgs
                .get_audit_checkpoint(req(
                    &root(),
                    GetAuditCheckpointRequest {
                        slug: slug.clone(),
                        organization_id: String::new(),
                    },
                ))
                .await?
                .into_inner()
                .checkpoint;
            orgs.prove_audit_chain(req(
                t,
                ProveAuditChainRequest {
                    slug,
                    checkpoint,
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }
        // Streams check the caller before the first message.
        "ExportAuditEvents" => orgs
            .export_audit_events(req(
                t,
                ExportAuditEventsRequest {
                    slug,
                    organization_id: String::new(),
                },
            ))
            .await
            .map(drop),
        "WatchEvents" => orgs
            .watch_events(req(
                t,
                WatchEventsRequest {
                    slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "GetAuditSigningKey" => orgs
            .get_audit_signing_key(req(t, GetAuditSigningKeyRequest {}))
            .await
            .map(drop),
        other => panic!("no such RPC in the matrix: {other}"),
    }
}

/// Runs each row against every kind of caller, each on a fresh fixture, and
/// reports every mismatch at once.
async fn check_rows(rows: &[(&str, Allowed)]) {
    let app = TestApp::spawn().await;
    let mut failures = Vec::new();
    for &(rpc, allowed) in rows {
        let shared = fixture(&app).await;
        for who in EVERYONE {
            let authenticated = !matches!(
                who,
                Who::NoToken | Who::Malformed | Who::Expired | Who::WrongSignature
            );
            let fx = if authenticated {
                fixture(&app).await
            } else {
                fixture_ref(&shared)
            };
            let result = call(&app, &fx, rpc, &token_for(who, &fx)).await;
            let expected = if !authenticated {
                Some((Code::Unauthenticated, "UNAUTHENTICATED"))
            } else if allowed.admits(who) {
                None
            } else {
                Some((Code::PermissionDenied, "NOT_AUTHORIZED"))
            };
            let got = match &result {
                Ok(()) => None,
                Err(s) => Some((s.code(), reason(s))),
            };
            let matches = match (&expected, &got) {
                (None, None) => true,
                (Some((code, why)), Some((got_code, got_why))) => code == got_code && why == got_why,
                _ => false,
            };
            if !matches {
                failures.push(format!("{rpc} as {who:?}: expected {expected:?}, got {result:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn fixture_ref(f: &Fixture) -> Fixture {
    Fixture {
        slug: f.slug.clone(),
        admin: f.admin.clone(),
        member: f.member.clone(),
        outsider: f.outsider.clone(),
        member_id: f.member_id.clone(),
        member2_id: f.member2_id.clone(),
        space_x: f.space_x.clone(),
        space_y: f.space_y.clone(),
        product_x: f.product_x.clone(),
    }
}

#[tokio::test]
async fn organization_reads_follow_the_permission_table() {
    check_rows(&[
        ("ListOrganizations", Allowed::AnyUser),
        ("GetOrganization", Allowed::Members),
        ("ListUsers", Allowed::Members),
    ])
    .await;
}

#[tokio::test]
async fn the_audit_trail_follows_the_permission_table() {
    check_rows(&[
        ("ListAuditEvents", Allowed::Admins),
        ("VerifyAuditChain", Allowed::Admins),
        ("GetAuditCheckpoint", Allowed::Admins),
        ("ProveAuditChain", Allowed::Admins),
        ("ExportAuditEvents", Allowed::Admins),
        ("WatchEvents", Allowed::Admins),
        ("GetAuditSigningKey", Allowed::AnyUser),
    ])
    .await;
}

#[tokio::test]
async fn organization_changes_follow_the_permission_table() {
    check_rows(&[
        ("CreateOrganization", Allowed::Superadmins),
        ("UpdateOrganization", Allowed::Admins),
        ("DeleteOrganization", Allowed::Admins),
        ("UndeleteOrganization", Allowed::Admins),
        ("AddSpace", Allowed::Admins),
        ("RemoveSpace", Allowed::Admins),
    ])
    .await;
}

#[tokio::test]
async fn membership_changes_follow_the_permission_table() {
    check_rows(&[
        ("AddUser", Allowed::Admins),
        ("UpdateUserRole", Allowed::Admins),
        ("RemoveUser", Allowed::Admins),
        ("BatchAddUsers", Allowed::Admins),
        ("BatchRemoveUsers", Allowed::Admins),
        ("CreateInvitation", Allowed::Admins),
        ("ListInvitations", Allowed::Admins),
        ("RevokeInvitation", Allowed::Admins),
    ])
    .await;
}

#[tokio::test]
async fn space_registry_follows_the_permission_table() {
    // In the fixture the organization admin is also the spaces' admin, and
    // space X is visible to the whole organization.
    check_rows(&[
        ("CreateSpace", Allowed::Superadmins),
        ("ListSpaces", Allowed::AnyUser),
        ("GetSpace", Allowed::Members),
        ("ListSpaceMembers", Allowed::Members),
        ("UpdateSpace", Allowed::Admins),
        ("DeleteSpace", Allowed::Admins),
        ("UndeleteSpace", Allowed::Admins),
    ])
    .await;
}

#[tokio::test]
async fn space_member_changes_follow_the_permission_table() {
    check_rows(&[
        ("AddSpaceMember", Allowed::Admins),
        ("UpdateSpaceMember", Allowed::Admins),
        ("RemoveSpaceMember", Allowed::Admins),
        ("BatchAddSpaceMembers", Allowed::Admins),
        ("BatchRemoveSpaceMembers", Allowed::Admins),
    ])
    .await;
}

#[tokio::test]
async fn aggregations_follow_the_permission_table() {
    check_rows(&[
        ("ListProducts", Allowed::Members),
        ("ListContracts", Allowed::Members),
        ("ListIssues", Allowed::Members),
        ("ListQualityChecks", Allowed::Members),
        ("GetStats", Allowed::Members),
    ])
    .await;
}

#[tokio::test]
async fn content_writes_follow_the_permission_table() {
    // The organization admin is space X's admin; plain members hold no
    // space role there.
    check_rows(&[
        ("BatchUpsertProducts", Allowed::Admins),
        ("BatchUpsertIssues", Allowed::Admins),
        ("DeleteProduct", Allowed::Admins),
    ])
    .await;
}

#[tokio::test]
async fn unknown_slugs_are_not_found_and_foreign_ones_forbidden() {
    let app = TestApp::spawn().await;
    let fx = fixture(&app).await;
    let missing = app
        .orgs()
        .get_organization(req(
            &token(&fx.outsider),
            GetOrganizationRequest {
                slug: "no-such-org".into(),
            },
        ))
        .await;
    let status = assert_error(missing, Code::NotFound, "ORG_NOT_FOUND");
    assert_eq!(info_meta(&status, "slug").as_deref(), Some("no-such-org"));
    let foreign = app
        .orgs()
        .get_organization(req(
            &token(&fx.outsider),
            GetOrganizationRequest {
                slug: fx.slug.clone(),
            },
        ))
        .await;
    let status = assert_error(foreign, Code::PermissionDenied, "NOT_AUTHORIZED");
    assert_eq!(status.message(), "not authorized for this organization");
}

#[tokio::test]
async fn a_member_may_remove_themself_but_not_others() {
    let app = TestApp::spawn().await;
    let fx = fixture(&app).await;
    let member = token(&fx.member);
    let others = app
        .orgs()
        .remove_user(req(
            &member,
            RemoveUserRequest {
                slug: fx.slug.clone(),
                user_id: fx.member2_id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(others, Code::PermissionDenied, "NOT_AUTHORIZED");
    app.orgs()
        .remove_user(req(
            &member,
            RemoveUserRequest {
                slug: fx.slug.clone(),
                user_id: fx.member_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("leaving is allowed");
    let after = app
        .orgs()
        .get_organization(req(
            &member,
            GetOrganizationRequest {
                slug: fx.slug.clone(),
            },
        ))
        .await;
    assert_error(after, Code::PermissionDenied, "NOT_AUTHORIZED");
}

#[tokio::test]
async fn adding_a_space_takes_an_org_admin_who_also_administers_the_space() {
    let app = TestApp::spawn().await;
    let fx = fixture(&app).await;
    // A space administered by someone else: the org admin may not take it.
    let foreign = app
        .create_space(&unique_slug("foreign"), "organization", "stranger@perm.test")
        .await;
    let denied = app
        .orgs()
        .add_space(req(
            &token(&fx.admin),
            AddSpaceRequest {
                slug: fx.slug.clone(),
                space_id: foreign.id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
    // A space admin who is only a member of the organization may not either.
    let own = app
        .create_space(&unique_slug("own"), "organization", &fx.member)
        .await;
    let denied = app
        .orgs()
        .add_space(req(
            &token(&fx.member),
            AddSpaceRequest {
                slug: fx.slug.clone(),
                space_id: own.id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
    let details = app
        .orgs()
        .get_organization(req(
            &root(),
            GetOrganizationRequest {
                slug: fx.slug.clone(),
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("org");
    let ids: Vec<_> = details.spaces.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![fx.space_x.as_str()],
        "no denied attempt attached a space"
    );
}

#[tokio::test]
async fn org_admins_do_not_manage_spaces_they_do_not_administer() {
    let app = TestApp::spawn().await;
    let fx = fixture(&app).await;
    let space = app
        .create_space(&unique_slug("managed"), "organization", "keeper@perm.test")
        .await;
    app.attach(&fx.slug, &space.id).await;
    let admin = token(&fx.admin);
    // The org admin can read it...
    app.spaces()
        .get_space(req(
            &admin,
            GetSpaceRequest {
                space_id: space.id.clone(),
            },
        ))
        .await
        .expect("read");
    // ...but not change it.
    let update = app
        .spaces()
        .update_space(req(
            &admin,
            UpdateSpaceRequest {
                space_id: space.id.clone(),
                name: Some("Mine".into()),
                ..Default::default()
            },
        ))
        .await;
    assert_error(update, Code::PermissionDenied, "NOT_AUTHORIZED");
    // A space editor may not manage members either.
    app.spaces()
        .add_space_member(req(
            &token("keeper@perm.test"),
            AddSpaceMemberRequest {
                space_id: space.id.clone(),
                user_email: "ed@perm.test".into(),
                role: "editor".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("space admin adds an editor");
    let by_editor = app
        .spaces()
        .add_space_member(req(
            &token("ed@perm.test"),
            AddSpaceMemberRequest {
                space_id: space.id.clone(),
                user_email: "friend@perm.test".into(),
                role: "viewer".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(by_editor, Code::PermissionDenied, "NOT_AUTHORIZED");
}

#[tokio::test]
async fn restricted_spaces_are_hidden_from_plain_members() {
    let app = TestApp::spawn().await;
    let fx = fixture(&app).await;
    let secret = app
        .create_space(&unique_slug("secret"), "restricted", &fx.admin)
        .await;
    app.attach(&fx.slug, &secret.id).await;
    let get = |t: String| {
        let mut client = app.spaces();
        let id = secret.id.clone();
        async move { client.get_space(req(&t, GetSpaceRequest { space_id: id })).await }
    };
    assert_error(
        get(token(&fx.member)).await,
        Code::PermissionDenied,
        "NOT_AUTHORIZED",
    );
    get(token(&fx.admin))
        .await
        .expect("org admin sees restricted spaces");
    let listed = |t: String| {
        let mut client = app.spaces();
        async move {
            client
                .list_spaces(req(
                    &t,
                    ListSpacesRequest {
                        size: 100,
                        ..Default::default()
                    },
                ))
                .await
                .expect("list")
                .into_inner()
                .items
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        }
    };
    let member_sees = listed(token(&fx.member)).await;
    assert!(
        member_sees.contains(&fx.space_x) && !member_sees.contains(&secret.id),
        "{member_sees:?}"
    );
    assert!(listed(token(&fx.admin)).await.contains(&secret.id));
    // A space viewer who is not in the organization sees it.
    app.spaces()
        .add_space_member(req(
            &root(),
            AddSpaceMemberRequest {
                space_id: secret.id.clone(),
                user_email: "guest@perm.test".into(),
                role: "viewer".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("add viewer");
    get(token("guest@perm.test"))
        .await
        .expect("space viewer reads it");
    assert_eq!(listed(token("guest@perm.test")).await, vec![secret.id.clone()]);
    // Every member still sees the space in the organization's list of spaces.
    let details = app
        .orgs()
        .get_organization(req(
            &token(&fx.member),
            GetOrganizationRequest {
                slug: fx.slug.clone(),
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("org");
    assert!(details.spaces.iter().any(|s| s.id == secret.id));
}
