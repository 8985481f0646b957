//! Bulk membership (SPEC §7): batches of up to 1,000 entries, validated
//! whole, applied atomically, recorded as one audit event.

use orgd::proto::*;
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::*;
use crate::rest::Rest;

fn entry(email: &str, role: &str) -> UserEntry {
    UserEntry {
        user_email: email.into(),
        role: role.into(),
    }
}

async fn batch_add(
    app: &TestApp,
    t: &str,
    slug: &str,
    entries: Vec<UserEntry>,
) -> Result<Vec<Member>, tonic::Status> {
    app.orgs()
        .batch_add_users(req(
            t,
            BatchAddUsersRequest {
                slug: slug.into(),
                entries,
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().members)
}

async fn batch_remove(app: &TestApp, t: &str, slug: &str, ids: &[&str]) -> Result<i32, tonic::Status> {
    app.orgs()
        .batch_remove_users(req(
            t,
            BatchRemoveUsersRequest {
                slug: slug.into(),
                entries: ids
                    .iter()
                    .map(|id| MemberRef {
                        user_id: (*id).into(),
                    })
                    .collect(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().removed)
}

async fn members(app: &TestApp, slug: &str) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut page = 1;
    loop {
        let reply = app
            .orgs()
            .list_users(req(
                &root(),
                ListUsersRequest {
                    slug: slug.into(),
                    page: Some(page),
                    size: 100,
                    ..Default::default()
                },
            ))
            .await
            .expect("list users")
            .into_inner();
        let done = reply.items.len() < 100;
        all.extend(reply.items.into_iter().map(|m| (m.email, m.role)));
        if done {
            break;
        }
        page += 1;
    }
    all.sort();
    all
}

async fn events(app: &TestApp, slug: &str, action: &str) -> Vec<AuditEvent> {
    app.orgs()
        .list_audit_events(req(
            &root(),
            ListAuditEventsRequest {
                slug: slug.into(),
                action: action.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("audit events")
        .into_inner()
        .items
}

fn meta(event: &AuditEvent, key: &str) -> String {
    match event
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(key))
        .and_then(|v| v.kind.clone())
    {
        Some(prost_types::value::Kind::StringValue(s)) => s,
        other => panic!("no {key} in {event:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_adds_every_entry_or_none() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("bulk");
    let admin = format!("admin@{slug}.test");
    app.create_org("Bulk", &slug, &admin).await;
    // A user orgd already knows (in another organization) and new ones.
    let known = format!("Known@{slug}.test");
    app.create_org("Elsewhere", &unique_slug("elsewhere"), &known.to_lowercase())
        .await;
    let t = token(&admin);
    let added = batch_add(
        &app,
        &t,
        &slug,
        vec![
            entry(&format!("b@{slug}.test"), "member"),
            entry(&known, "admin"),
            entry(&format!("a@{slug}.test"), "member"),
        ],
    )
    .await
    .expect("batch add");
    let got: Vec<(&str, &str)> = added
        .iter()
        .map(|m| (m.email.as_str(), m.role.as_str()))
        .collect();
    let known_lower = known.to_lowercase();
    let (b, a) = (format!("b@{slug}.test"), format!("a@{slug}.test"));
    assert_eq!(
        got,
        [
            (b.as_str(), "member"),
            (known_lower.as_str(), "admin"),
            (a.as_str(), "member")
        ],
        "members in entry order"
    );
    assert!(added.iter().all(|m| !m.etag.is_empty() && !m.user_id.is_empty()));
    assert_eq!(members(&app, &slug).await.len(), 4);
    let recorded = events(&app, &slug, "member.batch_add").await;
    assert_eq!(recorded.len(), 1, "one audit event for the batch");
    assert_eq!(meta(&recorded[0], "count"), "3");
    assert!(meta(&recorded[0], "members").contains(&known_lower));

    // Every failure names the entry and changes nothing.
    let before = members(&app, &slug).await;
    let fresh = |i: usize| format!("new{i}@{slug}.test");
    let cases: Vec<(Vec<UserEntry>, Code, &str, &str)> = vec![
        (
            vec![entry(&fresh(1), "member"), entry("not-an-email", "member")],
            Code::InvalidArgument,
            "INVALID_EMAIL",
            "entries[1].user_email",
        ),
        (
            vec![entry(&fresh(1), "member"), entry(&fresh(2), "owner")],
            Code::InvalidArgument,
            "INVALID_ROLE",
            "entries[1].role",
        ),
        (
            vec![
                entry(&fresh(1), "member"),
                entry(&fresh(1).to_uppercase(), "admin"),
            ],
            Code::InvalidArgument,
            "DUPLICATE_ENTRY",
            "entries[1].user_email",
        ),
        (
            vec![
                entry(&fresh(1), "member"),
                entry(&fresh(2), "member"),
                entry(&a, "admin"),
            ],
            Code::AlreadyExists,
            "MEMBER_ALREADY_EXISTS",
            "entries[2].user_email",
        ),
        (Vec::new(), Code::InvalidArgument, "MISSING_FIELD", "entries"),
        (
            (0..1001).map(|i| entry(&fresh(i), "member")).collect(),
            Code::InvalidArgument,
            "BATCH_TOO_LARGE",
            "entries",
        ),
    ];
    for (entries, code, why, field) in cases {
        let status = assert_error(batch_add(&app, &t, &slug, entries).await, code, why);
        assert_eq!(info_meta(&status, "field").as_deref(), Some(field), "{status:?}");
    }
    assert_eq!(
        members(&app, &slug).await,
        before,
        "a failed batch changed nothing"
    );
    assert_eq!(events(&app, &slug, "member.batch_add").await.len(), 1);

    // The largest batch goes through in one piece.
    let thousand: Vec<UserEntry> = (0..1000).map(|i| entry(&fresh(i), "member")).collect();
    let added = batch_add(&app, &t, &slug, thousand).await.expect("1,000 entries");
    assert_eq!(added.len(), 1000);
    assert_eq!(added[999].email, fresh(999));
    assert_eq!(members(&app, &slug).await.len(), 1004);

    // Plain members may not add in bulk.
    let refused = batch_add(&app, &token(&a), &slug, vec![entry(&fresh(5000), "member")]).await;
    assert_error(refused, Code::PermissionDenied, "NOT_AUTHORIZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_removes_every_entry_or_none_and_keeps_an_admin() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("bulkrm");
    let admin = format!("admin@{slug}.test");
    let created = app.create_org("Bulk remove", &slug, &admin).await;
    let admin_id = created.members[0].user_id.clone();
    let t = token(&admin);
    let added = batch_add(
        &app,
        &t,
        &slug,
        (0..4)
            .map(|i| {
                entry(
                    &format!("m{i}@{slug}.test"),
                    if i == 0 { "admin" } else { "member" },
                )
            })
            .collect(),
    )
    .await
    .expect("batch add");
    let ids: Vec<&str> = added.iter().map(|m| m.user_id.as_str()).collect();
    let before = members(&app, &slug).await;

    let not_member = uuid::Uuid::now_v7().to_string();
    let status = assert_error(
        batch_remove(&app, &t, &slug, &[ids[1], &not_member]).await,
        Code::NotFound,
        "MEMBER_NOT_FOUND",
    );
    assert_eq!(info_meta(&status, "field").as_deref(), Some("entries[1].user_id"));
    let status = assert_error(
        batch_remove(&app, &t, &slug, &[ids[1], ids[1]]).await,
        Code::InvalidArgument,
        "DUPLICATE_ENTRY",
    );
    assert_eq!(info_meta(&status, "field").as_deref(), Some("entries[1].user_id"));
    assert_error(
        batch_remove(&app, &t, &slug, &[ids[1], "not-a-uuid"]).await,
        Code::InvalidArgument,
        "INVALID_ID",
    );
    // Both admins at once would leave none.
    assert_error(
        batch_remove(&app, &t, &slug, &[ids[0], &admin_id, ids[2]]).await,
        Code::FailedPrecondition,
        "LAST_ADMIN",
    );
    assert_eq!(
        members(&app, &slug).await,
        before,
        "failed batches changed nothing"
    );

    assert_eq!(
        batch_remove(&app, &t, &slug, &[ids[0], ids[1], ids[2]])
            .await
            .expect("remove"),
        3
    );
    assert_eq!(members(&app, &slug).await.len(), 2);
    let recorded = events(&app, &slug, "member.batch_remove").await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(meta(&recorded[0], "count"), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_members_are_added_and_removed_in_batches() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("bulkspace");
    let admin = format!("admin@{slug}.test");
    app.create_org("Bulk spaces", &slug, &admin).await;
    let space = app.create_space("Bulk space", "organization", &admin).await;
    let t = token(&admin);
    let add = |t: String, entries: Vec<SpaceMemberEntry>| {
        let mut client = app.spaces();
        let request = req(
            &t,
            BatchAddSpaceMembersRequest {
                space_id: space.id.clone(),
                entries,
                ..Default::default()
            },
        );
        async move {
            client
                .batch_add_space_members(request)
                .await
                .map(|r| r.into_inner().members)
        }
    };
    let e = |email: &str, role: &str| SpaceMemberEntry {
        user_email: email.into(),
        role: role.into(),
    };
    let added = add(
        t.clone(),
        vec![
            e(&format!("ed@{slug}.test"), "editor"),
            e(&format!("vi@{slug}.test"), "viewer"),
        ],
    )
    .await
    .expect("batch add");
    assert_eq!(
        added.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(),
        ["editor", "viewer"]
    );
    let status = assert_error(
        add(t.clone(), vec![e(&format!("x@{slug}.test"), "member")]).await,
        Code::InvalidArgument,
        "INVALID_ROLE",
    );
    assert_eq!(info_meta(&status, "field").as_deref(), Some("entries[0].role"));
    // An editor is not a space admin.
    assert_error(
        add(
            token(&format!("ed@{slug}.test")),
            vec![e(&format!("y@{slug}.test"), "viewer")],
        )
        .await,
        Code::PermissionDenied,
        "NOT_AUTHORIZED",
    );
    let remove = |ids: Vec<String>| {
        let mut client = app.spaces();
        let request = req(
            &t,
            BatchRemoveSpaceMembersRequest {
                space_id: space.id.clone(),
                entries: ids.into_iter().map(|user_id| MemberRef { user_id }).collect(),
                ..Default::default()
            },
        );
        async move {
            client
                .batch_remove_space_members(request)
                .await
                .map(|r| r.into_inner().removed)
        }
    };
    let ids: Vec<String> = added.iter().map(|m| m.user_id.clone()).collect();
    assert_error(
        remove(vec![ids[0].clone(), uuid::Uuid::now_v7().to_string()]).await,
        Code::NotFound,
        "MEMBER_NOT_FOUND",
    );
    assert_eq!(remove(ids).await.expect("remove"), 2);
    let left = app
        .spaces()
        .list_space_members(req(
            &t,
            ListSpaceMembersRequest {
                space_id: space.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(left.total, 1, "only the admin is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_callers_add_and_remove_in_batches() {
    let rest = Rest::start().await;
    let root = root();
    let slug = unique_slug("rest-bulk");
    rest.post(
        "/organizations",
        &root,
        json!({"name": "REST bulk", "slug": slug}),
    )
    .await
    .expect(201);
    let added = rest
        .post(
            &format!("/organizations/{slug}/users:batchAdd"),
            &root,
            json!({"entries": [
                {"user_email": "one@rest-bulk.test", "role": "member"},
                {"user_email": "two@rest-bulk.test", "role": "admin"}
            ]}),
        )
        .await
        .expect(200);
    let list = added["members"].as_array().expect("members");
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["role"], "admin");
    let body = rest
        .post(
            &format!("/organizations/{slug}/users:batchAdd"),
            &root,
            json!({"entries": [{"user_email": "three@rest-bulk.test", "role": "boss"}]}),
        )
        .await
        .expect_error(400, 3, "INVALID_ROLE");
    assert!(body.to_string().contains("entries[0].role"), "{body}");
    let ids: Vec<Value> = list.iter().map(|m| json!({"user_id": m["user_id"]})).collect();
    let removed = rest
        .post(
            &format!("/organizations/{slug}/users:batchRemove"),
            &root,
            json!({ "entries": ids }),
        )
        .await
        .expect(200);
    assert_eq!(removed["removed"], 2);

    let space = rest
        .post("/spaces", &root, json!({"name": "REST bulk space"}))
        .await
        .expect(201);
    let space_id = space["id"].as_str().expect("id");
    let added = rest
        .post(
            &format!("/spaces/{space_id}/members:batchAdd"),
            &root,
            json!({"entries": [{"user_email": "v@rest-bulk.test", "role": "viewer"}]}),
        )
        .await
        .expect(200);
    let user_id = added["members"][0]["user_id"].clone();
    let removed = rest
        .post(
            &format!("/spaces/{space_id}/members:batchRemove"),
            &root,
            json!({"entries": [{"user_id": user_id}]}),
        )
        .await
        .expect(200);
    assert_eq!(removed["removed"], 1);
}
