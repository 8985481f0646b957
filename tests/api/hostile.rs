//! Hostile input: control characters, oversized values and forged tokens get
//! a clear INVALID_ARGUMENT or NOT_FOUND naming the field, never INTERNAL,
//! on both backends alike, and the error stays small.

use orgd::proto::aggregation_service_client::AggregationServiceClient;
use orgd::proto::*;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn control_characters_in_a_search_term_are_invalid_in_every_list() {
    let app = TestApp::spawn().await;
    app.create_org("Acme", "acme", "admin@acme.test").await;
    let term = "rev\0enue".to_owned();
    let check = |r: Result<(), tonic::Status>, what: &str| {
        let s = assert_error(r, Code::InvalidArgument, "INVALID_TEXT");
        assert_eq!(info_meta(&s, "field").as_deref(), Some("search"), "{what}");
    };
    check(
        app.orgs()
            .list_organizations(req(
                &root(),
                ListOrganizationsRequest {
                    search: term.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListOrganizations",
    );
    check(
        app.orgs()
            .list_users(req(
                &root(),
                ListUsersRequest {
                    slug: "acme".into(),
                    search: term.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListUsers",
    );
    check(
        app.spaces()
            .list_spaces(req(
                &root(),
                ListSpacesRequest {
                    search: term.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListSpaces",
    );
    let mut agg = AggregationServiceClient::new(app.channel.clone());
    check(
        agg.list_products(req(
            &root(),
            ListProductsRequest {
                slug: "acme".into(),
                search: term.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(drop),
        "ListProducts",
    );
    check(
        agg.list_contracts(req(
            &root(),
            ListContractsRequest {
                slug: "acme".into(),
                search: term.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(drop),
        "ListContracts",
    );
}

#[tokio::test]
async fn control_characters_in_names_slugs_and_descriptions_are_invalid() {
    let app = TestApp::spawn().await;
    let create = |name: &str, slug: &str, description: &str| {
        let mut orgs = app.orgs();
        let request = CreateOrganizationRequest {
            name: name.into(),
            slug: Some(slug.into()),
            description: description.into(),
            admin_email: String::new(),
        };
        async move { orgs.create_organization(req(&root(), request)).await }
    };
    let s = assert_error(
        create("Ac\0me", "acme", "").await,
        Code::InvalidArgument,
        "INVALID_NAME",
    );
    assert_eq!(info_meta(&s, "field").as_deref(), Some("name"));
    assert_error(
        create("Acme", "ac\0me", "").await,
        Code::InvalidArgument,
        "INVALID_SLUG",
    );
    let s = assert_error(
        create("Acme", "acme", "nul \0 inside").await,
        Code::InvalidArgument,
        "INVALID_TEXT",
    );
    assert_eq!(info_meta(&s, "field").as_deref(), Some("description"));
    // Newlines and tabs are text.
    create("Acme", "acme", "line one\n\tline two")
        .await
        .expect("multi-line description");
    let s = assert_error(
        app.orgs()
            .update_organization(req(
                &root(),
                UpdateOrganizationRequest {
                    slug: "acme".into(),
                    description: Some("\u{7}bell".into()),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_TEXT",
    );
    assert_eq!(info_meta(&s, "field").as_deref(), Some("description"));
    // Nothing was changed by the refused calls.
    let org = app
        .orgs()
        .get_organization(req(&root(), GetOrganizationRequest { slug: "acme".into() }))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!(org.description, "line one\n\tline two");
}

#[tokio::test]
async fn a_path_slug_that_cannot_exist_is_not_found_and_echoed_briefly() {
    let app = TestApp::spawn().await;
    for slug in [
        "ac\0me".to_owned(),
        "a".repeat(100_000),
        "ACME".into(),
        "\u{0}".into(),
    ] {
        let got = app
            .orgs()
            .get_organization(req(&root(), GetOrganizationRequest { slug: slug.clone() }))
            .await;
        let s = assert_error(got, Code::NotFound, "ORG_NOT_FOUND");
        assert!(
            s.message().len() < 1_200,
            "message of {} bytes",
            s.message().len()
        );
        assert!(
            info_meta(&s, "slug").is_some_and(|v| v.len() <= 300),
            "{:?}",
            info_meta(&s, "slug").map(|v| v.len())
        );
        let update = app
            .orgs()
            .update_organization(req(
                &root(),
                UpdateOrganizationRequest {
                    slug: slug.clone(),
                    description: Some("x".into()),
                    ..Default::default()
                },
            ))
            .await;
        assert_error(update, Code::NotFound, "ORG_NOT_FOUND");
    }
}

#[tokio::test]
async fn a_forged_page_token_for_an_absurd_page_is_invalid() {
    let app = TestApp::spawn().await;
    let forged = hex::encode(format!("v1:4294967295:0:{}", uuid::Uuid::nil()));
    let got = app
        .orgs()
        .list_organizations(req(
            &root(),
            ListOrganizationsRequest {
                page_token: forged,
                ..Default::default()
            },
        ))
        .await;
    let s = assert_error(got, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
    assert_eq!(info_meta(&s, "field").as_deref(), Some("page_token"));
}
