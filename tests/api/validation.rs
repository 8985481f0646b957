//! Every validation rule: a clear error naming the field, and no change.

use orgd::proto::*;
use tonic::Code;

use crate::helpers::*;

async fn create(app: &TestApp, name: &str, slug: Option<&str>) -> Result<OrganizationDetails, tonic::Status> {
    app.orgs()
        .create_organization(req(
            &root(),
            CreateOrganizationRequest {
                name: name.into(),
                slug: slug.map(Into::into),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().organization.expect("org"))
}

async fn org_count(app: &TestApp) -> i32 {
    app.orgs()
        .list_organizations(req(&root(), ListOrganizationsRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .total
}

#[tokio::test]
async fn a_missing_name_is_invalid_argument_with_missing_field() {
    let app = TestApp::spawn().await;
    for name in ["", "   "] {
        let status = assert_error(
            create(&app, name, Some("acme")).await,
            Code::InvalidArgument,
            "MISSING_FIELD",
        );
        assert_eq!(info_meta(&status, "field").as_deref(), Some("name"));
        assert_eq!(status.message(), "organization name is required");
    }
    assert_eq!(org_count(&app).await, 0);
}

#[tokio::test]
async fn names_are_one_to_a_hundred_characters_after_trimming() {
    let app = TestApp::spawn().await;
    let hundred = "n".repeat(100);
    assert_eq!(
        create(&app, &format!("  {hundred}  "), Some("hundred"))
            .await
            .expect("100 chars")
            .name,
        hundred
    );
    let status = assert_error(
        create(&app, &"n".repeat(101), Some("too-long")).await,
        Code::InvalidArgument,
        "INVALID_NAME",
    );
    assert_eq!(info_meta(&status, "field").as_deref(), Some("name"));
    // Characters, not bytes.
    create(&app, &"é".repeat(100), Some("accents"))
        .await
        .expect("100 two-byte chars");
    assert_eq!(org_count(&app).await, 2);
}

#[tokio::test]
async fn slugs_must_match_the_format() {
    let app = TestApp::spawn().await;
    for bad in [
        "a",
        "Acme",
        "acme-",
        "-acme",
        "ac--me",
        "ac me",
        "ac_me",
        "acmé",
        &"a".repeat(64),
    ] {
        let status = assert_error(
            create(&app, "Acme", Some(bad)).await,
            Code::InvalidArgument,
            "INVALID_SLUG",
        );
        assert_eq!(info_meta(&status, "field").as_deref(), Some("slug"), "{bad}");
    }
    create(&app, "Acme", Some(&"a".repeat(63)))
        .await
        .expect("63 chars");
    create(&app, "Acme", Some("ab")).await.expect("2 chars");
    assert_eq!(org_count(&app).await, 2);
}

#[tokio::test]
async fn slugs_are_derived_from_names() {
    let app = TestApp::spawn().await;
    for (name, slug) in [
        ("Acme Corp", "acme-corp"),
        ("  Hello,   World!!  ", "hello-world"),
        ("R&D / Platform (EU)", "r-d-platform-eu"),
        ("Café Zürich 2025", "caf-z-rich-2025"),
        ("Données Ünïcode Ltd", "donn-es-n-code-ltd"),
    ] {
        assert_eq!(create(&app, name, None).await.expect(name).slug, slug, "{name}");
    }
    let long = format!("{} tail", "x".repeat(70));
    assert_eq!(
        create(&app, &long, None).await.expect("long").slug,
        "x".repeat(63)
    );
}

#[tokio::test]
async fn a_name_without_ascii_letters_or_digits_needs_a_slug() {
    let app = TestApp::spawn().await;
    for name in ["日本語", "!!!", "—"] {
        let status = assert_error(
            create(&app, name, None).await,
            Code::InvalidArgument,
            "INVALID_SLUG",
        );
        assert_eq!(info_meta(&status, "field").as_deref(), Some("slug"));
    }
    assert_eq!(
        create(&app, "日本語", Some("nihongo"))
            .await
            .expect("with slug")
            .name,
        "日本語"
    );
}

#[tokio::test]
async fn a_taken_slug_is_already_exists_and_never_suffixed() {
    let app = TestApp::spawn().await;
    create(&app, "Acme", Some("acme")).await.expect("first");
    let status = assert_error(
        create(&app, "Acme", None).await,
        Code::AlreadyExists,
        "ORG_ALREADY_EXISTS",
    );
    assert_eq!(info_meta(&status, "slug").as_deref(), Some("acme"));
    assert!(status.message().contains("acme"));
    assert_error(
        create(&app, "Other", Some("acme")).await,
        Code::AlreadyExists,
        "ORG_ALREADY_EXISTS",
    );
    assert_eq!(org_count(&app).await, 1);
}

#[tokio::test]
async fn bad_emails_roles_ids_and_pages_name_their_field() {
    let app = TestApp::spawn().await;
    app.create_org("Checks", "checks", "a@val.test").await;
    let mut orgs = app.orgs();
    let cases = [
        (
            orgs.add_user(req(
                &root(),
                AddUserRequest {
                    slug: "checks".into(),
                    user_email: "nope".into(),
                    role: "member".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
            "INVALID_EMAIL",
            "user_email",
        ),
        (
            orgs.add_user(req(
                &root(),
                AddUserRequest {
                    slug: "checks".into(),
                    user_email: "b@val.test".into(),
                    role: "owner".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
            "INVALID_ROLE",
            "role",
        ),
        (
            orgs.add_user(req(
                &root(),
                AddUserRequest {
                    slug: "checks".into(),
                    user_email: "b@val.test".into(),
                    role: String::new(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
            "MISSING_FIELD",
            "role",
        ),
        (
            orgs.update_user_role(req(
                &root(),
                UpdateUserRoleRequest {
                    slug: "checks".into(),
                    user_id: "42".into(),
                    role: "admin".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
            "INVALID_ID",
            "user_id",
        ),
        (
            orgs.list_users(req(
                &root(),
                ListUsersRequest {
                    slug: "checks".into(),
                    page: Some(0),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
            "INVALID_PAGE",
            "page",
        ),
        (
            orgs.list_users(req(
                &root(),
                ListUsersRequest {
                    slug: "checks".into(),
                    page: Some(-3),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
            "INVALID_PAGE",
            "page",
        ),
        (
            orgs.list_users(req(
                &root(),
                ListUsersRequest {
                    slug: "checks".into(),
                    page_token: "forged".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
            "INVALID_PAGE_TOKEN",
            "page_token",
        ),
        (
            orgs.create_organization(req(
                &root(),
                CreateOrganizationRequest {
                    name: "X".into(),
                    slug: Some("xx".into()),
                    admin_email: "@x".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
            "INVALID_EMAIL",
            "admin_email",
        ),
    ];
    for (result, expected_reason, field) in cases {
        let status = assert_error(result, Code::InvalidArgument, expected_reason);
        assert_eq!(info_meta(&status, "field").as_deref(), Some(field), "{status:?}");
        // A BadRequest detail names the field too.
        let details = tonic_types::StatusExt::get_error_details(&status);
        let violations = details
            .bad_request()
            .map(|b| b.field_violations.clone())
            .unwrap_or_default();
        assert!(violations.iter().any(|v| v.field == field), "{status:?}");
    }
    let members = app
        .orgs()
        .list_users(req(
            &root(),
            ListUsersRequest {
                slug: "checks".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(members.total, 1, "no bad request added anyone");
    assert_eq!(org_count(&app).await, 1);
}

#[tokio::test]
async fn space_fields_are_validated() {
    let app = TestApp::spawn().await;
    let mut spaces = app.spaces();
    let bad = |r: CreateSpaceRequest| {
        let mut c = spaces.clone();
        async move { c.create_space(req(&root(), r)).await }
    };
    let agent = |status: &str, level: i32| {
        Some(Agent {
            agent_id: "a1".into(),
            status: status.into(),
            autonomy_level: level,
        })
    };
    let cases = [
        (
            CreateSpaceRequest {
                name: "S1".into(),
                visibility: "public".into(),
                ..Default::default()
            },
            "INVALID_VISIBILITY",
            "visibility",
        ),
        (
            CreateSpaceRequest {
                name: "S2".into(),
                agent: agent("ACTIVE", 6),
                ..Default::default()
            },
            "INVALID_AUTONOMY_LEVEL",
            "agent.autonomy_level",
        ),
        (
            CreateSpaceRequest {
                name: "S3".into(),
                agent: agent("RUNNING", 1),
                ..Default::default()
            },
            "INVALID_AGENT_STATUS",
            "agent.status",
        ),
        (
            CreateSpaceRequest {
                name: String::new(),
                ..Default::default()
            },
            "MISSING_FIELD",
            "name",
        ),
        (
            CreateSpaceRequest {
                name: "S5".into(),
                slug: Some("S5".into()),
                ..Default::default()
            },
            "INVALID_SLUG",
            "slug",
        ),
    ];
    for (request, expected_reason, field) in cases {
        let status = assert_error(bad(request).await, Code::InvalidArgument, expected_reason);
        assert_eq!(info_meta(&status, "field").as_deref(), Some(field));
    }
    let total = spaces
        .list_spaces(req(&root(), ListSpacesRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .total;
    assert_eq!(total, 0);
}
