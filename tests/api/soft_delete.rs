//! Soft delete (AIP-164, SPEC §7): deleting hides an organization or a
//! space at once, an undelete within the window restores it whole, and a
//! purge removes it afterwards (storage directory included).

use std::time::Duration;

use orgd::proto::aggregation_service_client::AggregationServiceClient;
use orgd::proto::*;
use serde_json::json;
use tonic::Code;

use crate::helpers::*;
use crate::rest::Rest;

struct World {
    slug: String,
    admin: String,
    member: String,
    space: String,
}

async fn world(app: &TestApp, prefix: &str) -> World {
    let slug = unique_slug(prefix);
    let admin = format!("admin@{slug}.test");
    let member = format!("member@{slug}.test");
    app.create_org("Soft", &slug, &admin).await;
    app.add_user(&slug, &member, "member").await;
    let space = app
        .create_space(&format!("Space {slug}"), "organization", &admin)
        .await;
    app.attach(&slug, &space.id).await;
    app.spaces()
        .batch_upsert_products(req(
            &token(&admin),
            BatchUpsertProductsRequest {
                space_id: space.id.clone(),
                items: vec![Product {
                    id: uuid::Uuid::new_v4().to_string(),
                    name: "Kept".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ))
        .await
        .expect("product");
    World {
        slug,
        admin,
        member,
        space: space.id,
    }
}

async fn products(app: &TestApp, t: &str, slug: &str) -> Result<i32, tonic::Status> {
    AggregationServiceClient::new(app.channel.clone())
        .list_products(req(
            t,
            ListProductsRequest {
                slug: slug.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().total)
}

async fn listed(app: &TestApp, t: &str, show_deleted: bool) -> Vec<Organization> {
    app.orgs()
        .list_organizations(req(
            t,
            ListOrganizationsRequest {
                show_deleted,
                size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .items
}

async fn delete_org(app: &TestApp, t: &str, slug: &str) {
    app.orgs()
        .delete_organization(req(
            t,
            DeleteOrganizationRequest {
                slug: slug.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete");
}

async fn undelete_org(app: &TestApp, t: &str, slug: &str) -> Result<OrganizationDetails, tonic::Status> {
    app.orgs()
        .undelete_organization(req(
            t,
            UndeleteOrganizationRequest {
                slug: slug.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().organization.expect("organization"))
}

async fn get_org(app: &TestApp, t: &str, slug: &str) -> Result<OrganizationDetails, tonic::Status> {
    app.orgs()
        .get_organization(req(t, GetOrganizationRequest { slug: slug.into() }))
        .await
        .map(|r| r.into_inner().organization.expect("organization"))
}

async fn get_space(app: &TestApp, t: &str, id: &str) -> Result<Space, tonic::Status> {
    app.spaces()
        .get_space(req(t, GetSpaceRequest { space_id: id.into() }))
        .await
        .map(|r| r.into_inner().space.expect("space"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_organization_is_hidden_at_once_and_restored_whole() {
    let app = TestApp::spawn().await;
    let w = world(&app, "soft").await;
    let (admin, member) = (token(&w.admin), token(&w.member));
    assert_eq!(products(&app, &member, &w.slug).await.expect("products"), 1);
    let dir = app
        .storage_root
        .join("orgs")
        .join(get_org(&app, &admin, &w.slug).await.expect("get").id);

    let guest = format!("guest@{}.test", w.slug);
    let invited = app
        .orgs()
        .create_invitation(req(
            &admin,
            CreateInvitationRequest {
                slug: w.slug.clone(),
                email: guest.clone(),
                role: "member".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("invite")
        .into_inner()
        .invitation
        .expect("invitation");
    let accept = || {
        let mut orgs = app.orgs();
        let request = req(
            &token(&guest),
            AcceptInvitationRequest {
                invitation_id: invited.id.clone(),
                ..Default::default()
            },
        );
        async move { orgs.accept_invitation(request).await }
    };

    delete_org(&app, &admin, &w.slug).await;
    // A deleted organization takes no one in.
    assert_error(accept().await, Code::NotFound, "INVITATION_NOT_FOUND");
    // Hidden from every read at once.
    assert_error(
        get_org(&app, &admin, &w.slug).await,
        Code::NotFound,
        "ORG_NOT_FOUND",
    );
    assert_error(
        products(&app, &member, &w.slug).await,
        Code::NotFound,
        "ORG_NOT_FOUND",
    );
    assert!(listed(&app, &admin, false).await.iter().all(|o| o.slug != w.slug));
    assert!(
        listed(&app, &root(), false)
            .await
            .iter()
            .all(|o| o.slug != w.slug)
    );
    let mut orgs = app.orgs();
    let add = orgs.add_user(req(
        &admin,
        AddUserRequest {
            slug: w.slug.clone(),
            user_email: "late@soft.test".into(),
            role: "member".into(),
            ..Default::default()
        },
    ));
    assert_error(add.await, Code::NotFound, "ORG_NOT_FOUND");
    // Its space is detached (the seed's DELETE), not deleted.
    let space = get_space(&app, &admin, &w.space)
        .await
        .expect("the space lives on");
    assert_eq!(space.organization_id, "");
    // The slug stays reserved; the directory stays until the purge.
    let taken = app
        .orgs()
        .create_organization(req(
            &root(),
            CreateOrganizationRequest {
                name: "Squatter".into(),
                slug: Some(w.slug.clone()),
                ..Default::default()
            },
        ))
        .await;
    assert_error(taken, Code::AlreadyExists, "ORG_ALREADY_EXISTS");
    assert!(dir.exists(), "the directory is kept until the purge");

    // show_deleted lists it to its admins and superadmins, with its times.
    let shown: Vec<Organization> = listed(&app, &admin, true)
        .await
        .into_iter()
        .filter(|o| o.slug == w.slug)
        .collect();
    assert_eq!(shown.len(), 1);
    let (deleted, purge) = (
        shown[0].delete_time.expect("delete_time"),
        shown[0].purge_time.expect("purge_time"),
    );
    assert_eq!(
        purge.seconds - deleted.seconds,
        30 * 86_400,
        "a 30-day window by default"
    );
    assert!(listed(&app, &root(), true).await.iter().any(|o| o.slug == w.slug));
    assert!(
        listed(&app, &member, true).await.iter().all(|o| o.slug != w.slug),
        "plain members do not see deleted organizations"
    );

    // Only admins may restore it.
    assert_error(
        undelete_org(&app, &member, &w.slug).await,
        Code::PermissionDenied,
        "NOT_AUTHORIZED",
    );
    let restored = undelete_org(&app, &admin, &w.slug).await.expect("undelete");
    assert!(restored.delete_time.is_none() && restored.purge_time.is_none());
    assert_eq!(restored.user_count, 2, "members restored");
    assert_eq!(restored.spaces.len(), 1, "its space is back");
    assert_eq!(restored.spaces[0].id, w.space);
    assert_eq!(
        products(&app, &member, &w.slug).await.expect("products"),
        1,
        "content restored"
    );
    assert_error(
        undelete_org(&app, &admin, &w.slug).await,
        Code::FailedPrecondition,
        "ORG_NOT_DELETED",
    );
    accept()
        .await
        .expect("the pending invitation works again once restored");
    assert_error(
        undelete_org(&app, &admin, "no-such-org").await,
        Code::NotFound,
        "ORG_NOT_FOUND",
    );

    // The trail tells the story.
    let trail = app
        .orgs()
        .list_audit_events(req(
            &root(),
            ListAuditEventsRequest {
                slug: w.slug.clone(),
                action: "organization.".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("trail")
        .into_inner();
    let actions: Vec<(&str, &str)> = trail
        .items
        .iter()
        .map(|e| (e.action.as_str(), e.result.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("organization.undelete", "success"),
            ("organization.undelete", "denied"),
            ("organization.delete", "success"),
            ("organization.create", "success"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_space_is_hidden_with_its_content_and_restored_into_its_organization() {
    let app = TestApp::spawn().await;
    let w = world(&app, "softspace").await;
    let (admin, member) = (token(&w.admin), token(&w.member));
    app.spaces()
        .delete_space(req(
            &admin,
            DeleteSpaceRequest {
                space_id: w.space.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete space");
    assert_error(
        get_space(&app, &admin, &w.space).await,
        Code::NotFound,
        "SPACE_NOT_FOUND",
    );
    assert_eq!(
        products(&app, &member, &w.slug).await.expect("products"),
        0,
        "its content is hidden"
    );
    let mut spaces = app.spaces();
    let write = spaces.batch_upsert_products(req(
        &admin,
        BatchUpsertProductsRequest {
            space_id: w.space.clone(),
            items: vec![Product {
                id: uuid::Uuid::new_v4().to_string(),
                name: "Too late".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    ));
    assert_error(write.await, Code::NotFound, "SPACE_NOT_FOUND");
    let list = |t: String, show_deleted: bool| {
        let mut client = app.spaces();
        async move {
            client
                .list_spaces(req(
                    &t,
                    ListSpacesRequest {
                        show_deleted,
                        ..Default::default()
                    },
                ))
                .await
                .expect("list spaces")
                .into_inner()
                .items
        }
    };
    assert!(list(token(&w.admin), false).await.iter().all(|s| s.id != w.space));
    let shown = list(token(&w.admin), true).await;
    let deleted = shown
        .iter()
        .find(|s| s.id == w.space)
        .expect("listed to its admin");
    assert!(deleted.delete_time.is_some() && deleted.purge_time.is_some());
    assert!(list(member.clone(), true).await.iter().all(|s| s.id != w.space));

    let undelete = |t: String| {
        let mut client = app.spaces();
        let request = req(
            &t,
            UndeleteSpaceRequest {
                space_id: w.space.clone(),
                ..Default::default()
            },
        );
        async move {
            client
                .undelete_space(request)
                .await
                .map(|r| r.into_inner().space.expect("space"))
        }
    };
    assert_error(
        undelete(member.clone()).await,
        Code::PermissionDenied,
        "NOT_AUTHORIZED",
    );
    let restored = undelete(admin.clone()).await.expect("undelete");
    assert!(restored.delete_time.is_none());
    let org = get_org(&app, &admin, &w.slug).await.expect("org");
    assert_eq!(restored.organization_id, org.id, "back in its organization");
    assert_eq!(
        products(&app, &member, &w.slug).await.expect("products"),
        1,
        "content restored"
    );
    assert_error(
        undelete(admin).await,
        Code::FailedPrecondition,
        "SPACE_NOT_DELETED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_removes_what_the_window_let_go_and_keeps_the_trail() {
    let app = TestApp::spawn_with(|c| c.soft_delete_window = Duration::from_secs(1)).await;
    let w = world(&app, "purge").await;
    let admin = token(&w.admin);
    let org_id = get_org(&app, &admin, &w.slug).await.expect("get").id;
    let dir = app.storage_root.join("orgs").join(&org_id);
    let lone = app.create_space("Lone", "organization", &w.admin).await;
    app.spaces()
        .delete_space(req(
            &admin,
            DeleteSpaceRequest {
                space_id: lone.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete space");
    delete_org(&app, &admin, &w.slug).await;
    assert!(dir.exists());
    // The purge runs every second here.
    let mut purged = false;
    for _ in 0..100 {
        if !dir.exists() && !listed(&app, &root(), true).await.iter().any(|o| o.slug == w.slug) {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(purged, "the organization and its directory were not purged");
    assert_error(
        undelete_org(&app, &admin, &w.slug).await,
        Code::NotFound,
        "ORG_NOT_FOUND",
    );
    // The space the organization's deletion detached lives on; the deleted
    // one is gone for good.
    get_space(&app, &admin, &w.space)
        .await
        .expect("the detached space lives on");
    let gone = app
        .spaces()
        .undelete_space(req(
            &admin,
            UndeleteSpaceRequest {
                space_id: lone.id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(gone, Code::NotFound, "SPACE_NOT_FOUND");
    // The slug is free again.
    app.create_org("Again", &w.slug, &w.admin).await;
    // The purged organization's trail is kept and verifies, ending with the
    // purge.
    let trail = app
        .orgs()
        .list_audit_events(req(
            &root(),
            ListAuditEventsRequest {
                organization_id: org_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("trail of the purged organization")
        .into_inner();
    assert_eq!(trail.items[0].action, "organization.purge");
    let verified = app
        .orgs()
        .verify_audit_chain(req(
            &root(),
            VerifyAuditChainRequest {
                organization_id: org_id,
                ..Default::default()
            },
        ))
        .await
        .expect("verify")
        .into_inner();
    assert!(verified.valid, "{verified:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_callers_delete_list_and_undelete() {
    let rest = Rest::start().await;
    let root = root();
    let slug = unique_slug("rest-soft");
    rest.post(
        "/organizations",
        &root,
        json!({"name": "REST soft", "slug": slug}),
    )
    .await
    .expect(201);
    rest.delete(&format!("/organizations/{slug}"), &root)
        .await
        .expect(204);
    rest.get(&format!("/organizations/{slug}"), &root)
        .await
        .expect_error(404, 5, "ORG_NOT_FOUND");
    let all = rest
        .get("/organizations?show_deleted=true&size=100", &root)
        .await
        .expect(200);
    let listed = all
        .as_array()
        .expect("array")
        .iter()
        .find(|o| o["slug"] == slug.as_str())
        .cloned()
        .expect("listed with show_deleted");
    assert!(
        listed["delete_time"].is_string() && listed["purge_time"].is_string(),
        "{listed}"
    );
    let restored = rest
        .post(&format!("/organizations/{slug}:undelete"), &root, json!({}))
        .await
        .expect(200);
    assert_eq!(restored["slug"], slug.as_str());
    assert!(restored.get("delete_time").is_none(), "{restored}");
    rest.get(&format!("/organizations/{slug}"), &root)
        .await
        .expect(200);

    let space = rest
        .post("/spaces", &root, json!({"name": "REST soft space"}))
        .await
        .expect(201);
    let id = space["id"].as_str().expect("id");
    rest.delete(&format!("/spaces/{id}"), &root).await.expect(204);
    rest.get(&format!("/spaces/{id}"), &root)
        .await
        .expect_error(404, 5, "SPACE_NOT_FOUND");
    let back = rest
        .post(&format!("/spaces/{id}:undelete"), &root, json!({}))
        .await
        .expect(200);
    assert_eq!(back["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelete_takes_back_only_spaces_no_one_else_took() {
    let app = TestApp::spawn().await;
    let w = world(&app, "taken").await;
    let other = unique_slug("taker");
    app.create_org("Taker", &other, &w.admin).await;
    let admin = token(&w.admin);
    delete_org(&app, &admin, &w.slug).await;
    // Another organization takes the detached space, then lets it go.
    app.attach(&other, &w.space).await;
    app.orgs()
        .remove_space(req(
            &root(),
            RemoveSpaceRequest {
                slug: other.clone(),
                space_id: w.space.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("detach");
    let restored = undelete_org(&app, &admin, &w.slug).await.expect("undelete");
    assert!(
        restored.spaces.is_empty(),
        "the space was taken since: {restored:?}"
    );
    assert_eq!(
        get_space(&app, &admin, &w.space)
            .await
            .expect("space")
            .organization_id,
        ""
    );
}
