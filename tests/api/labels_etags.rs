//! Labels on organizations and spaces, and etags (optimistic concurrency,
//! AIP-154) on organizations, spaces and memberships (SPEC §7).

use std::collections::BTreeMap;

use orgd::proto::*;
use serde_json::json;
use tonic::Code;

use crate::helpers::*;
use crate::rest::Rest;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn create_labelled(app: &TestApp, slug: &str, admin: &str, l: &[(&str, &str)]) -> OrganizationDetails {
    app.orgs()
        .create_organization(req(
            &root(),
            CreateOrganizationRequest {
                name: slug.into(),
                slug: Some(slug.into()),
                admin_email: admin.into(),
                labels: labels(l),
                ..Default::default()
            },
        ))
        .await
        .expect("create organization")
        .into_inner()
        .organization
        .expect("organization")
}

async fn get(app: &TestApp, t: &str, slug: &str) -> OrganizationDetails {
    app.orgs()
        .get_organization(req(t, GetOrganizationRequest { slug: slug.into() }))
        .await
        .expect("get organization")
        .into_inner()
        .organization
        .expect("organization")
}

async fn listed(app: &TestApp, t: &str, filters: &[&str]) -> Result<Vec<String>, tonic::Status> {
    let reply = app
        .orgs()
        .list_organizations(req(
            t,
            ListOrganizationsRequest {
                label: filters.iter().map(|f| (*f).to_owned()).collect(),
                size: 100,
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let mut slugs: Vec<String> = reply.items.into_iter().map(|o| o.slug).collect();
    slugs.sort();
    Ok(slugs)
}

async fn update(
    app: &TestApp,
    t: &str,
    request: UpdateOrganizationRequest,
) -> Result<OrganizationDetails, tonic::Status> {
    app.orgs()
        .update_organization(req(t, request))
        .await
        .map(|r| r.into_inner().organization.expect("organization"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_carry_labels_that_lists_filter_on() {
    let app = TestApp::spawn().await;
    let admin = "labels-admin@labels.test";
    let prod = create_labelled(&app, "prod-gold", admin, &[("env", "prod"), ("tier", "gold")]).await;
    assert_eq!(prod.labels, labels(&[("env", "prod"), ("tier", "gold")]));
    create_labelled(&app, "prod-free", admin, &[("env", "prod"), ("tier", "free")]).await;
    create_labelled(
        &app,
        "staging",
        admin,
        &[("env", "staging"), ("url", "http://x:8080")],
    )
    .await;
    create_labelled(&app, "bare", admin, &[]).await;
    // Another tenant's organization with the same labels, that the admin
    // does not belong to.
    create_labelled(&app, "other-prod", "someone@else.test", &[("env", "prod")]).await;

    assert_eq!(get(&app, &token(admin), "prod-gold").await.labels, prod.labels);
    let t = token(admin);
    assert_eq!(
        listed(&app, &t, &["env:prod"]).await.expect("list"),
        ["prod-free", "prod-gold"]
    );
    assert_eq!(
        listed(&app, &t, &["env:prod", "tier:gold"]).await.expect("list"),
        ["prod-gold"]
    );
    assert_eq!(
        listed(&app, &t, &["env:prod", "tier:none"]).await.expect("list"),
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&app, &t, &["url:http://x:8080"]).await.expect("list"),
        ["staging"]
    );
    assert_eq!(listed(&app, &t, &[]).await.expect("list").len(), 4);
    // A superadmin sees every tenant's match.
    assert_eq!(
        listed(&app, &root(), &["env:prod"]).await.expect("list"),
        ["other-prod", "prod-free", "prod-gold"]
    );

    // Updates replace the labels, or clear them.
    let updated = update(
        &app,
        &t,
        UpdateOrganizationRequest {
            slug: "prod-free".into(),
            labels: labels(&[("env", "staging")]),
            ..Default::default()
        },
    )
    .await
    .expect("replace labels");
    assert_eq!(updated.labels, labels(&[("env", "staging")]));
    assert_eq!(
        listed(&app, &t, &["env:prod"]).await.expect("list"),
        ["prod-gold"]
    );
    assert_eq!(
        listed(&app, &t, &["env:staging"]).await.expect("list"),
        ["prod-free", "staging"]
    );
    // Other fields leave labels as they are.
    let renamed = update(
        &app,
        &t,
        UpdateOrganizationRequest {
            slug: "prod-free".into(),
            name: Some("Renamed".into()),
            ..Default::default()
        },
    )
    .await
    .expect("rename");
    assert_eq!(renamed.labels, labels(&[("env", "staging")]));
    let cleared = update(
        &app,
        &t,
        UpdateOrganizationRequest {
            slug: "prod-free".into(),
            clear_labels: true,
            ..Default::default()
        },
    )
    .await
    .expect("clear labels");
    assert!(cleared.labels.is_empty());
    assert_eq!(
        listed(&app, &t, &["env:staging"]).await.expect("list"),
        ["staging"]
    );

    // Bad labels name the problem and change nothing.
    let many: Vec<(String, String)> = (0..65).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let cases: Vec<(BTreeMap<String, String>, bool, &str, &str)> = vec![
        (labels(&[("Env", "x")]), false, "INVALID_LABEL_KEY", "labels"),
        (
            labels(&[("env", &"v".repeat(257))]),
            false,
            "INVALID_LABEL_VALUE",
            "labels.env",
        ),
        (labels(&[("env", "a\u{0}b")]), false, "INVALID_TEXT", "labels.env"),
        (labels(&[("env", "")]), false, "INVALID_LABEL_VALUE", "labels.env"),
        (many.into_iter().collect(), false, "TOO_MANY_LABELS", "labels"),
        (
            labels(&[("env", "x")]),
            true,
            "CONFLICTING_FIELDS",
            "clear_labels",
        ),
    ];
    for (bad, clear, expected, field) in cases {
        let refused = update(
            &app,
            &t,
            UpdateOrganizationRequest {
                slug: "prod-gold".into(),
                labels: bad,
                clear_labels: clear,
                ..Default::default()
            },
        )
        .await;
        let status = assert_error(refused, Code::InvalidArgument, expected);
        assert_eq!(info_meta(&status, "field").as_deref(), Some(field), "{status:?}");
    }
    assert_eq!(get(&app, &t, "prod-gold").await.labels, prod.labels);
    // 64 labels, 256-character values and a 63-character key are fine.
    let most: BTreeMap<String, String> = (0..63)
        .map(|i| (format!("k{i}"), "é".repeat(256)))
        .chain([(format!("a{}", "b".repeat(62)), "x".to_owned())])
        .collect();
    let full = update(
        &app,
        &t,
        UpdateOrganizationRequest {
            slug: "bare".into(),
            labels: most.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("64 labels");
    assert_eq!(full.labels, most);

    // Bad filters too.
    for (filter, expected) in [
        ("env", "INVALID_LABEL_FILTER"),
        ("Env:prod", "INVALID_LABEL_FILTER"),
        (":prod", "INVALID_LABEL_FILTER"),
    ] {
        let status = assert_error(listed(&app, &t, &[filter]).await, Code::InvalidArgument, expected);
        assert_eq!(info_meta(&status, "field").as_deref(), Some("label[0]"));
    }
    let seventeen: Vec<String> = (0..17).map(|i| format!("k{i}:v")).collect();
    let refs: Vec<&str> = seventeen.iter().map(String::as_str).collect();
    assert_error(
        listed(&app, &t, &refs).await,
        Code::InvalidArgument,
        "TOO_MANY_LABEL_FILTERS",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spaces_carry_labels_and_label_filters_keep_visibility() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("spacelabels");
    let admin = format!("admin@{slug}.test");
    let member = format!("member@{slug}.test");
    app.create_org("Space labels", &slug, &admin).await;
    app.add_user(&slug, &member, "member").await;
    let mut ids = BTreeMap::new();
    for (name, visibility, env) in [
        ("open-prod", "organization", "prod"),
        ("locked-prod", "restricted", "prod"),
        ("open-dev", "organization", "dev"),
    ] {
        let space = app
            .spaces()
            .create_space(req(
                &root(),
                CreateSpaceRequest {
                    name: name.into(),
                    visibility: visibility.into(),
                    admin_email: admin.clone(),
                    labels: labels(&[("env", env)]),
                    ..Default::default()
                },
            ))
            .await
            .expect("create space")
            .into_inner()
            .space
            .expect("space");
        assert_eq!(space.labels, labels(&[("env", env)]));
        app.attach(&slug, &space.id).await;
        ids.insert(name, space.id);
    }
    let list = |t: String, filters: Vec<&'static str>| {
        let app = &app;
        async move {
            let mut names: Vec<String> = app
                .spaces()
                .list_spaces(req(
                    &t,
                    ListSpacesRequest {
                        label: filters.iter().map(|f| (*f).to_owned()).collect(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("list spaces")
                .into_inner()
                .items
                .into_iter()
                .map(|s| s.name)
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(
        list(token(&admin), vec!["env:prod"]).await,
        ["locked-prod", "open-prod"]
    );
    // The member may not see the restricted space: a matching label does
    // not reveal it.
    assert_eq!(list(token(&member), vec!["env:prod"]).await, ["open-prod"]);
    assert_eq!(
        list(token("stranger@nowhere.test"), vec!["env:prod"]).await,
        Vec::<String>::new()
    );

    let updated = app
        .spaces()
        .update_space(req(
            &token(&admin),
            UpdateSpaceRequest {
                space_id: ids["open-dev"].clone(),
                labels: labels(&[("env", "prod"), ("team", "data")]),
                ..Default::default()
            },
        ))
        .await
        .expect("update space labels")
        .into_inner()
        .space
        .expect("space");
    assert_eq!(updated.labels, labels(&[("env", "prod"), ("team", "data")]));
    assert_eq!(
        list(token(&member), vec!["env:prod", "team:data"]).await,
        ["open-dev"]
    );
    let refused = app
        .spaces()
        .update_space(req(
            &token(&admin),
            UpdateSpaceRequest {
                space_id: ids["open-dev"].clone(),
                labels: labels(&[("9lives", "x")]),
                ..Default::default()
            },
        ))
        .await;
    assert_error(refused, Code::InvalidArgument, "INVALID_LABEL_KEY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etag_guards_updates_and_deletes_of_an_organization() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("etag");
    let admin = format!("admin@{slug}.test");
    let first = app.create_org("Etag", &slug, &admin).await;
    let t = token(&admin);
    assert!(!first.etag.is_empty());
    assert_eq!(
        get(&app, &t, &slug).await.etag,
        first.etag,
        "reads do not change the etag"
    );

    let changed = update(
        &app,
        &t,
        UpdateOrganizationRequest {
            slug: slug.clone(),
            description: Some("first".into()),
            etag: first.etag.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("update with the current etag");
    assert_ne!(changed.etag, first.etag);

    // The old etag no longer applies; nothing changes.
    let stale = update(
        &app,
        &t,
        UpdateOrganizationRequest {
            slug: slug.clone(),
            description: Some("lost".into()),
            etag: first.etag.clone(),
            ..Default::default()
        },
    )
    .await;
    let status = assert_error(stale, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(info_meta(&status, "etag").as_deref(), Some(changed.etag.as_str()));
    assert_eq!(get(&app, &t, &slug).await.description, "first");

    // Adding a member changes the organization, and so its etag.
    app.add_user(&slug, &format!("new@{slug}.test"), "member").await;
    let after_member = get(&app, &t, &slug).await;
    assert_ne!(after_member.etag, changed.etag);

    // Without an etag a change applies unconditionally.
    update(
        &app,
        &t,
        UpdateOrganizationRequest {
            slug: slug.clone(),
            description: Some("unconditional".into()),
            ..Default::default()
        },
    )
    .await
    .expect("no etag");

    // If-Match carries it too (as Envoy forwards the HTTP header).
    let mut request = req(
        &t,
        UpdateOrganizationRequest {
            slug: slug.clone(),
            description: Some("if-match".into()),
            ..Default::default()
        },
    );
    request.metadata_mut().insert(
        "if-match",
        format!("\"{}\"", after_member.etag).parse().expect("ascii"),
    );
    assert_error(
        app.orgs().update_organization(request).await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    let bogus = update(
        &app,
        &t,
        UpdateOrganizationRequest {
            slug: slug.clone(),
            etag: "x".repeat(65),
            ..Default::default()
        },
    )
    .await;
    assert_error(bogus, Code::InvalidArgument, "INVALID_ETAG");

    // Deletes too.
    let current = get(&app, &t, &slug).await.etag;
    let delete = |etag: String| {
        let mut client = app.orgs();
        let request = req(
            &t,
            DeleteOrganizationRequest {
                slug: slug.clone(),
                etag,
                ..Default::default()
            },
        );
        async move { client.delete_organization(request).await }
    };
    assert_error(delete(first.etag.clone()).await, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(
        get(&app, &t, &slug).await.etag,
        current,
        "the refused delete changed nothing"
    );
    delete(current).await.expect("delete with the current etag");
    let gone = app
        .orgs()
        .get_organization(req(&root(), GetOrganizationRequest { slug: slug.clone() }))
        .await;
    assert_error(gone, Code::NotFound, "ORG_NOT_FOUND");

    // The deleted organization's slug stays reserved until its purge.
    let again = app
        .orgs()
        .create_organization(req(
            &root(),
            CreateOrganizationRequest {
                name: "Etag".into(),
                slug: Some(slug.clone()),
                ..Default::default()
            },
        ))
        .await;
    assert_error(again, Code::AlreadyExists, "ORG_ALREADY_EXISTS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memberships_and_spaces_have_their_own_etags() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("metag");
    let admin = format!("admin@{slug}.test");
    app.create_org("Member etags", &slug, &admin).await;
    let joined = app.add_user(&slug, &format!("m@{slug}.test"), "member").await;
    assert!(!joined.etag.is_empty());
    let t = token(&admin);
    let promote = |role: &str, etag: &str| {
        let mut client = app.orgs();
        let request = req(
            &t,
            UpdateUserRoleRequest {
                slug: slug.clone(),
                user_id: joined.user_id.clone(),
                role: role.into(),
                etag: etag.into(),
                ..Default::default()
            },
        );
        async move { client.update_user_role(request).await }
    };
    let promoted = promote("admin", &joined.etag)
        .await
        .expect("current etag")
        .into_inner()
        .member
        .expect("member");
    assert_ne!(promoted.etag, joined.etag);
    assert_error(
        promote("member", &joined.etag).await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    let remove = |etag: &str| {
        let mut client = app.orgs();
        let request = req(
            &t,
            RemoveUserRequest {
                slug: slug.clone(),
                user_id: joined.user_id.clone(),
                etag: etag.into(),
                ..Default::default()
            },
        );
        async move { client.remove_user(request).await }
    };
    assert_error(remove(&joined.etag).await, Code::Aborted, "ETAG_MISMATCH");
    remove(&promoted.etag)
        .await
        .expect("remove with the current etag");

    // Spaces and space memberships.
    let space = app.create_space("Etag space", "organization", &admin).await;
    let editor = app
        .spaces()
        .add_space_member(req(
            &t,
            AddSpaceMemberRequest {
                space_id: space.id.clone(),
                user_email: format!("e@{slug}.test"),
                role: "editor".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("add space member")
        .into_inner()
        .member
        .expect("member");
    let space_now = app
        .spaces()
        .get_space(req(
            &t,
            GetSpaceRequest {
                space_id: space.id.clone(),
            },
        ))
        .await
        .expect("get space")
        .into_inner()
        .space
        .expect("space");
    assert_ne!(space_now.etag, space.etag, "a new member changes the space");
    let stale_update = app
        .spaces()
        .update_space(req(
            &t,
            UpdateSpaceRequest {
                space_id: space.id.clone(),
                description: Some("stale".into()),
                etag: space.etag.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(stale_update, Code::Aborted, "ETAG_MISMATCH");
    let role = |etag: &str| {
        let mut client = app.spaces();
        let request = req(
            &t,
            UpdateSpaceMemberRequest {
                space_id: space.id.clone(),
                user_id: editor.user_id.clone(),
                role: "viewer".into(),
                etag: etag.into(),
                ..Default::default()
            },
        );
        async move { client.update_space_member(request).await }
    };
    let viewer = role(&editor.etag)
        .await
        .expect("current")
        .into_inner()
        .member
        .expect("member");
    assert_error(role(&editor.etag).await, Code::Aborted, "ETAG_MISMATCH");
    let remove_space_member = |etag: &str| {
        let mut client = app.spaces();
        let request = req(
            &t,
            RemoveSpaceMemberRequest {
                space_id: space.id.clone(),
                user_id: editor.user_id.clone(),
                etag: etag.into(),
                ..Default::default()
            },
        );
        async move { client.remove_space_member(request).await }
    };
    assert_error(
        remove_space_member(&editor.etag).await,
        Code::Aborted,
        "ETAG_MISMATCH",
    );
    remove_space_member(&viewer.etag).await.expect("current");
    let current = app
        .spaces()
        .get_space(req(
            &t,
            GetSpaceRequest {
                space_id: space.id.clone(),
            },
        ))
        .await
        .expect("get space")
        .into_inner()
        .space
        .expect("space");
    let delete = |etag: &str| {
        let mut client = app.spaces();
        let request = req(
            &t,
            DeleteSpaceRequest {
                space_id: space.id.clone(),
                etag: etag.into(),
                ..Default::default()
            },
        );
        async move { client.delete_space(request).await }
    };
    assert_error(delete(&space_now.etag).await, Code::Aborted, "ETAG_MISMATCH");
    delete(&current.etag).await.expect("delete with the current etag");
}

/// 50 concurrent read-modify-write updates, each adding its own label and
/// retrying when the etag says someone else changed the organization first:
/// every label arrives, none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_read_modify_writes_lose_no_update() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("race");
    let admin = format!("admin@{slug}.test");
    app.create_org("Race", &slug, &admin).await;
    let t = token(&admin);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let orgs = app.orgs();
        let slug = slug.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut orgs = orgs;
            let mut conflicts = 0u32;
            loop {
                let read = orgs
                    .get_organization(req(&t, GetOrganizationRequest { slug: slug.clone() }))
                    .await
                    .expect("read")
                    .into_inner()
                    .organization
                    .expect("organization");
                let mut labels = read.labels.clone();
                labels.insert(format!("w{i}"), i.to_string());
                let written = orgs
                    .update_organization(req(
                        &t,
                        UpdateOrganizationRequest {
                            slug: slug.clone(),
                            labels,
                            etag: read.etag,
                            ..Default::default()
                        },
                    ))
                    .await;
                match written {
                    Ok(_) => return conflicts,
                    Err(status) if status.code() == Code::Aborted => {
                        assert_eq!(reason(&status), "ETAG_MISMATCH");
                        conflicts += 1;
                        assert!(conflicts < 10_000, "task {i} never got through");
                    }
                    Err(status) => panic!("task {i}: {status:?}"),
                }
            }
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.expect("task");
    }
    let last = get(&app, &t, &slug).await;
    let expected: BTreeMap<String, String> = (0..50).map(|i| (format!("w{i}"), i.to_string())).collect();
    assert_eq!(last.labels, expected, "{conflicts} conflicts");
    assert!(conflicts > 0, "the updates never raced; the test proves nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_callers_use_labels_and_etags() {
    let rest = Rest::start().await;
    let root = root();
    let slug = unique_slug("rest-labels");
    let created = rest
        .post(
            "/organizations",
            &root,
            json!({"name": "REST labels", "slug": slug, "labels": {"env": "prod", "tier": "gold"}}),
        )
        .await
        .expect(201);
    assert_eq!(created["labels"], json!({"env": "prod", "tier": "gold"}));
    let etag = created["etag"].as_str().expect("etag").to_owned();
    let other = unique_slug("rest-nolabels");
    rest.post("/organizations", &root, json!({"name": "Other", "slug": other}))
        .await
        .expect(201);

    let found = rest
        .get("/organizations?label=env:prod&label=tier:gold&size=100", &root)
        .await
        .expect(200);
    let slugs: Vec<&str> = found
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|o| o["slug"].as_str())
        .collect();
    assert_eq!(slugs, [slug.as_str()]);
    assert_eq!(found[0]["labels"], json!({"env": "prod", "tier": "gold"}));
    rest.get("/organizations?label=nope", &root)
        .await
        .expect_error(400, 3, "INVALID_LABEL_FILTER");

    let patched = rest
        .patch(
            &format!("/organizations/{slug}"),
            &root,
            json!({"labels": {"env": "staging"}, "etag": etag}),
        )
        .await
        .expect(200);
    assert_eq!(patched["labels"], json!({"env": "staging"}));
    let fresh = patched["etag"].as_str().expect("etag").to_owned();
    rest.patch(
        &format!("/organizations/{slug}"),
        &root,
        json!({"description": "lost", "etag": etag}),
    )
    .await
    .expect_error(409, 10, "ETAG_MISMATCH");
    rest.delete(&format!("/organizations/{slug}?etag={etag}"), &root)
        .await
        .expect_error(409, 10, "ETAG_MISMATCH");
    // If-Match, as HTTP clients send it.
    let reply = rest
        .http
        .delete(rest.envoy.url(&format!("/organizations/{slug}")))
        .bearer_auth(&root)
        .header("if-match", format!("\"{etag}\""))
        .send()
        .await
        .expect("delete");
    assert_eq!(reply.status().as_u16(), 409);
    let reply = rest
        .http
        .delete(rest.envoy.url(&format!("/organizations/{slug}")))
        .bearer_auth(&root)
        .header("if-match", format!("\"{fresh}\""))
        .send()
        .await
        .expect("delete");
    assert_eq!(reply.status().as_u16(), 204);
    rest.get(&format!("/organizations/{slug}"), &root)
        .await
        .expect_error(404, 5, "ORG_NOT_FOUND");
}

/// A label with an empty value is refused: its map entry would reach Envoy
/// without a value, and Envoy's transcoder drops the connection on that
/// (in replies and in error details alike). Envoy keeps serving afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_label_value_is_refused_and_envoy_keeps_serving() {
    let rest = Rest::start().await;
    let root = root();
    let space = rest
        .post("/spaces", &root, json!({"name": "Empty values"}))
        .await
        .expect(201);
    let id = space["id"].as_str().expect("id");
    rest.patch(&format!("/spaces/{id}"), &root, json!({"labels": {"a": ""}}))
        .await
        .expect_error(400, 3, "INVALID_LABEL_VALUE");
    // An empty key: the error names it without an empty metadata value
    // (which would break Envoy's rendering of the error the same way).
    let body = rest
        .patch(&format!("/spaces/{id}"), &root, json!({"labels": {"": ""}}))
        .await
        .expect_error(400, 3, "INVALID_LABEL_KEY");
    assert_eq!(body["details"][0]["metadata"]["field"], "labels", "{body}");
    rest.post(
        "/organizations",
        &root,
        json!({"name": "Empty", "labels": {"team": ""}}),
    )
    .await
    .expect_error(400, 3, "INVALID_LABEL_VALUE");
    rest.get("/organizations?label=team:", &root)
        .await
        .expect_error(400, 3, "INVALID_LABEL_VALUE");
    let patched = rest
        .patch(&format!("/spaces/{id}"), &root, json!({"labels": {"a": "x"}}))
        .await
        .expect(200);
    assert_eq!(patched["labels"], json!({"a": "x"}));
}
