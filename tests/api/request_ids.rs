//! Idempotent retries (AIP-155): a change made with a request_id happens at
//! most once; a retry answers what the first attempt answered.

use orgd::proto::*;
use serde_json::json;
use tonic::Code;

use crate::helpers::*;
use crate::rest::Rest;

fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn create(slug: &str, name: &str, request_id: &str) -> CreateOrganizationRequest {
    CreateOrganizationRequest {
        name: name.into(),
        slug: Some(slug.into()),
        request_id: request_id.into(),
        ..Default::default()
    }
}

async fn audit_count(app: &TestApp, slug: &str, action: &str) -> usize {
    app.orgs()
        .list_audit_events(req(
            &root(),
            ListAuditEventsRequest {
                slug: slug.into(),
                action: action.into(),
                size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("audit events")
        .into_inner()
        .items
        .len()
}

async fn member_emails(app: &TestApp, slug: &str) -> Vec<String> {
    let mut emails: Vec<String> = app
        .orgs()
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
        .collect();
    emails.sort();
    emails
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_answers_the_first_result_and_creates_once() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("idem");
    let id = rid();
    let first = app
        .orgs()
        .create_organization(req(&root(), create(&slug, "Idem", &id)))
        .await
        .expect("first attempt")
        .into_inner()
        .organization
        .expect("organization");
    let again = app
        .orgs()
        .create_organization(req(&root(), create(&slug, "Idem", &id)))
        .await
        .expect("a retry succeeds like the first attempt")
        .into_inner()
        .organization
        .expect("organization");
    assert_eq!(
        (&again.id, &again.created_at, &again.etag),
        (&first.id, &first.created_at, &first.etag)
    );
    assert_eq!(audit_count(&app, &slug, "organization.create").await, 1);

    // The same id with another request is refused and changes nothing.
    let reused = app
        .orgs()
        .create_organization(req(&root(), create(&unique_slug("other"), "Other", &id)))
        .await;
    let status = assert_error(reused, Code::FailedPrecondition, "REQUEST_ID_REUSED");
    assert_eq!(info_meta(&status, "field").as_deref(), Some("request_id"));
    // ... also for another RPC.
    let reused = app
        .orgs()
        .delete_organization(req(
            &root(),
            DeleteOrganizationRequest {
                slug: slug.clone(),
                request_id: id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(reused, Code::FailedPrecondition, "REQUEST_ID_REUSED");
    app.orgs()
        .get_organization(req(&root(), GetOrganizationRequest { slug: slug.clone() }))
        .await
        .expect("still there");

    // Ids belong to their caller: another caller's request with the same id
    // is a request of its own.
    let admin = format!("admin@{slug}.test");
    app.add_user(&slug, &admin, "admin").await;
    let added = app
        .orgs()
        .add_user(req(
            &token(&admin),
            AddUserRequest {
                slug: slug.clone(),
                user_email: format!("new@{slug}.test"),
                role: "member".into(),
                request_id: id.clone(),
            },
        ))
        .await;
    assert!(added.is_ok(), "{added:?}");

    // A request id must be a UUID.
    let bad = app
        .orgs()
        .create_organization(req(&root(), create(&unique_slug("bad"), "Bad", "not-a-uuid")))
        .await;
    let status = assert_error(bad, Code::InvalidArgument, "INVALID_ID");
    assert_eq!(info_meta(&status, "field").as_deref(), Some("request_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_refusal_answers_the_first_refusal() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("idemno");
    let admin = format!("admin@{slug}.test");
    let member = format!("member@{slug}.test");
    app.create_org("Refusals", &slug, &admin).await;
    let joined = app.add_user(&slug, &member, "member").await;

    // A member may not change the organization; the refusal is the answer
    // to that request id, even once the member has become an admin.
    let id = rid();
    let update = || UpdateOrganizationRequest {
        slug: slug.clone(),
        description: Some("by a member".into()),
        request_id: id.clone(),
        ..Default::default()
    };
    let first = app
        .orgs()
        .update_organization(req(&token(&member), update()))
        .await;
    assert_error(first, Code::PermissionDenied, "NOT_AUTHORIZED");
    app.orgs()
        .update_user_role(req(
            &token(&admin),
            UpdateUserRoleRequest {
                slug: slug.clone(),
                user_id: joined.user_id.clone(),
                role: "admin".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("promote");
    let retried = app
        .orgs()
        .update_organization(req(&token(&member), update()))
        .await;
    assert_error(retried, Code::PermissionDenied, "NOT_AUTHORIZED");
    let details = app
        .orgs()
        .get_organization(req(&root(), GetOrganizationRequest { slug: slug.clone() }))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("organization");
    assert_eq!(details.description, "", "the retry changed nothing");
    // A new id is a new request.
    let mut fresh = update();
    fresh.request_id = rid();
    app.orgs()
        .update_organization(req(&token(&member), fresh))
        .await
        .expect("a new request by the now-admin");

    // A refusal in the store (not a member) is remembered too.
    let ghost = format!("ghost@{slug}.test");
    let ghost_id = {
        let added = app.add_user(&slug, &ghost, "member").await;
        app.orgs()
            .remove_user(req(
                &token(&admin),
                RemoveUserRequest {
                    slug: slug.clone(),
                    user_id: added.user_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("remove");
        added.user_id
    };
    let id = rid();
    let remove = || RemoveUserRequest {
        slug: slug.clone(),
        user_id: ghost_id.clone(),
        request_id: id.clone(),
        ..Default::default()
    };
    assert_error(
        app.orgs().remove_user(req(&token(&admin), remove())).await,
        Code::NotFound,
        "MEMBER_NOT_FOUND",
    );
    app.add_user(&slug, &ghost, "member").await;
    assert_error(
        app.orgs().remove_user(req(&token(&admin), remove())).await,
        Code::NotFound,
        "MEMBER_NOT_FOUND",
    );
    assert!(
        member_emails(&app, &slug).await.contains(&ghost),
        "the retry removed nobody"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_attempts_of_one_request_change_once_and_answer_alike() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("idemrace");
    let admin = format!("admin@{slug}.test");
    app.create_org("Race", &slug, &admin).await;
    let id = rid();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut orgs = app.orgs();
        let request = AddUserRequest {
            slug: slug.clone(),
            user_email: format!("once@{slug}.test"),
            role: "member".into(),
            request_id: id.clone(),
        };
        let t = token(&admin);
        tasks.push(tokio::spawn(async move {
            orgs.add_user(req(&t, request))
                .await
                .map(|r| r.into_inner().member.expect("member"))
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task").expect("every attempt succeeds"));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "every attempt answers the same membership: {answers:?}"
    );
    assert_eq!(audit_count(&app, &slug, "member.add").await, 1);
    assert_eq!(member_emails(&app, &slug).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_on_another_instance_answers_the_first_result() {
    let first = TestApp::spawn().await;
    let second = TestApp::spawn_on(&first.database_url, &first.storage_root).await;
    let slug = unique_slug("idemtwo");
    let admin = format!("admin@{slug}.test");
    first.create_org("Two instances", &slug, &admin).await;
    let space = first.create_space("Shared", "organization", &admin).await;
    let id = rid();
    let upsert = || BatchUpsertProductsRequest {
        space_id: space.id.clone(),
        items: vec![Product {
            id: "6f1c1f56-8a7e-4f39-9a37-8e2f1d2f6c11".into(),
            name: "Once".into(),
            ..Default::default()
        }],
        request_id: id.clone(),
    };
    let t = token(&admin);
    let on_first = first
        .spaces()
        .batch_upsert_products(req(&t, upsert()))
        .await
        .expect("first instance")
        .into_inner();
    let on_second = second
        .spaces()
        .batch_upsert_products(req(&t, upsert()))
        .await
        .expect("second instance")
        .into_inner();
    assert_eq!(on_first, on_second);
    let deleted_id = rid();
    let delete = || DeleteSpaceRequest {
        space_id: space.id.clone(),
        request_id: deleted_id.clone(),
        ..Default::default()
    };
    first
        .spaces()
        .delete_space(req(&t, delete()))
        .await
        .expect("delete on the first instance");
    // Without the record the second delete would be NOT_FOUND.
    second
        .spaces()
        .delete_space(req(&t, delete()))
        .await
        .expect("the retry on the second instance answers the first result");
    let events = first
        .orgs()
        .list_audit_events(req(
            &root(),
            ListAuditEventsRequest {
                organization_id: uuid::Uuid::nil().to_string(),
                action: "product.upsert".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("trail of spaces without an organization")
        .into_inner();
    assert_eq!(events.items.len(), 1, "one upsert recorded: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_expire_after_a_day() {
    let mut app = TestApp::spawn().await;
    let slug = unique_slug("idemold");
    let id = rid();
    app.orgs()
        .create_organization(req(&root(), create(&slug, "Old", &id)))
        .await
        .expect("create");
    let mut db = Db::connect(&app.database_url).await;
    let day_and_more = 25 * 3600 * 1_000_000_i64;
    let aged = db
        .execute(
            "UPDATE request_ids SET created_at = created_at - $1",
            &[Arg::I64(day_and_more)],
        )
        .await;
    assert_eq!(aged, 1);
    // Forgotten: the id serves a new request.
    let other = unique_slug("idemnew");
    app.orgs()
        .create_organization(req(&root(), create(&other, "New", &id)))
        .await
        .expect("an expired id is free again");
    // The server prunes expired ids (at start, then hourly).
    db.execute(
        "UPDATE request_ids SET created_at = created_at - $1",
        &[Arg::I64(day_and_more)],
    )
    .await;
    app.restart().await;
    let mut left = Vec::new();
    for _ in 0..50 {
        left = db.strings("SELECT rpc FROM request_ids", &[]).await;
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "expired request ids were not pruned: {left:?}");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_callers_retry_safely_with_a_request_id() {
    let rest = Rest::start().await;
    let root = root();
    let slug = unique_slug("rest-idem");
    let id = rid();
    let body = json!({"name": "REST idem", "slug": slug, "request_id": id});
    let first = rest.post("/organizations", &root, body.clone()).await.expect(201);
    let again = rest.post("/organizations", &root, body).await.expect(201);
    assert_eq!(first["id"], again["id"]);
    rest.post(
        "/organizations",
        &root,
        json!({"name": "Different", "slug": unique_slug("rest-idem2"), "request_id": id}),
    )
    .await
    .expect_error(400, 9, "REQUEST_ID_REUSED");

    let space = rest
        .post("/spaces", &root, json!({"name": "REST idem space"}))
        .await
        .expect(201);
    let space_id = space["id"].as_str().expect("id");
    let delete_id = rid();
    rest.delete(&format!("/spaces/{space_id}?request_id={delete_id}"), &root)
        .await
        .expect(204);
    rest.delete(&format!("/spaces/{space_id}?request_id={delete_id}"), &root)
        .await
        .expect(204);
    // Without a request id, the second delete finds nothing.
    rest.delete(&format!("/spaces/{space_id}"), &root)
        .await
        .expect_error(404, 5, "SPACE_NOT_FOUND");
}
