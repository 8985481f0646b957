//! Tenant isolation: a member of one organization can neither read nor
//! change another through any RPC.

use orgd::proto::*;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn an_admin_of_one_organization_cannot_touch_another() {
    let app = TestApp::spawn().await;
    app.create_org("Mine", "mine", "eve@iso.test").await;
    let theirs = app.create_org("Theirs", "theirs", "tom@iso.test").await;
    let their_space = app.create_space("Vault", "organization", "tom@iso.test").await;
    app.attach("theirs", &their_space.id).await;
    let tom_id = theirs.members[0].user_id.clone();
    // Eve administers a space of her own, which she might try to push over.
    let eve_space = app
        .create_space("Eve Space", "organization", "eve@iso.test")
        .await;
    let their_product = uuid::Uuid::new_v4().to_string();
    app.spaces()
        .batch_upsert_products(req(
            &root(),
            BatchUpsertProductsRequest {
                space_id: their_space.id.clone(),
                items: vec![Product {
                    id: their_product.clone(),
                    name: "Crown jewels".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ))
        .await
        .expect("their product");

    let eve = token("eve@iso.test");
    let slug = || "theirs".to_string();
    let mut o = app.orgs();
    let mut s = app.spaces();
    let results = vec![
        (
            "GetOrganization",
            o.get_organization(req(&eve, GetOrganizationRequest { slug: slug() }))
                .await
                .map(drop),
        ),
        (
            "UpdateOrganization",
            o.update_organization(req(
                &eve,
                UpdateOrganizationRequest {
                    slug: slug(),
                    name: Some("Pwned".into()),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "DeleteOrganization",
            o.delete_organization(req(
                &eve,
                DeleteOrganizationRequest {
                    slug: slug(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "AddSpace",
            o.add_space(req(
                &eve,
                AddSpaceRequest {
                    slug: slug(),
                    space_id: eve_space.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "RemoveSpace",
            o.remove_space(req(
                &eve,
                RemoveSpaceRequest {
                    slug: slug(),
                    space_id: their_space.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "AddUser",
            o.add_user(req(
                &eve,
                AddUserRequest {
                    slug: slug(),
                    user_email: "eve@iso.test".into(),
                    role: "admin".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "UpdateUserRole",
            o.update_user_role(req(
                &eve,
                UpdateUserRoleRequest {
                    slug: slug(),
                    user_id: tom_id.clone(),
                    role: "member".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "RemoveUser",
            o.remove_user(req(
                &eve,
                RemoveUserRequest {
                    slug: slug(),
                    user_id: tom_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "ListUsers",
            o.list_users(req(
                &eve,
                ListUsersRequest {
                    slug: slug(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "GetSpace",
            s.get_space(req(
                &eve,
                GetSpaceRequest {
                    space_id: their_space.id.clone(),
                },
            ))
            .await
            .map(drop),
        ),
        (
            "UpdateSpace",
            s.update_space(req(
                &eve,
                UpdateSpaceRequest {
                    space_id: their_space.id.clone(),
                    name: Some("Pwned".into()),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "DeleteSpace",
            s.delete_space(req(
                &eve,
                DeleteSpaceRequest {
                    space_id: their_space.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "ListSpaceMembers",
            s.list_space_members(req(
                &eve,
                ListSpaceMembersRequest {
                    space_id: their_space.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "AddSpaceMember",
            s.add_space_member(req(
                &eve,
                AddSpaceMemberRequest {
                    space_id: their_space.id.clone(),
                    user_email: "eve@iso.test".into(),
                    role: "admin".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "UpdateSpaceMember",
            s.update_space_member(req(
                &eve,
                UpdateSpaceMemberRequest {
                    space_id: their_space.id.clone(),
                    user_id: tom_id.clone(),
                    role: "viewer".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "RemoveSpaceMember",
            s.remove_space_member(req(
                &eve,
                RemoveSpaceMemberRequest {
                    space_id: their_space.id.clone(),
                    user_id: tom_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
    ];
    let mut a = orgd::proto::aggregation_service_client::AggregationServiceClient::new(app.channel.clone());
    let mut results = results;
    results.extend(vec![
        (
            "ListProducts",
            a.list_products(req(
                &eve,
                ListProductsRequest {
                    slug: slug(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "ListContracts",
            a.list_contracts(req(
                &eve,
                ListContractsRequest {
                    slug: slug(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "ListIssues",
            a.list_issues(req(
                &eve,
                ListIssuesRequest {
                    slug: slug(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "ListQualityChecks",
            a.list_quality_checks(req(
                &eve,
                ListQualityChecksRequest {
                    slug: slug(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "GetStats",
            a.get_stats(req(&eve, GetStatsRequest { slug: slug() }))
                .await
                .map(drop),
        ),
        (
            "BatchUpsertProducts",
            s.batch_upsert_products(req(
                &eve,
                BatchUpsertProductsRequest {
                    space_id: their_space.id.clone(),
                    items: vec![Product {
                        id: uuid::Uuid::new_v4().to_string(),
                        name: "planted".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
        (
            "DeleteProduct",
            s.delete_product(req(
                &eve,
                DeleteProductRequest {
                    space_id: their_space.id.clone(),
                    product_id: their_product.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
    ]);
    // Eve naming their product's id writes an item of her own space; theirs
    // is untouched (checked below).
    let own = s
        .batch_upsert_products(req(
            &eve,
            BatchUpsertProductsRequest {
                space_id: eve_space.id.clone(),
                items: vec![Product {
                    id: their_product.clone(),
                    name: "taken over".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ))
        .await;
    own.expect("an id of another space is a new item in Eve's own space");
    for (rpc, result) in results {
        let status = result.expect_err(rpc);
        assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
        assert_eq!(reason(&status), "NOT_AUTHORIZED", "{rpc}");
    }

    // Nothing changed, and nothing of theirs shows up in Eve's lists.
    let after = app
        .orgs()
        .get_organization(req(
            &root(),
            GetOrganizationRequest {
                slug: "theirs".into(),
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!(after.name, "Theirs");
    assert_eq!(
        after
            .members
            .iter()
            .map(|m| (m.email.as_str(), m.role.as_str()))
            .collect::<Vec<_>>(),
        vec![("tom@iso.test", "admin")]
    );
    assert_eq!(
        after.spaces.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        vec!["Vault"]
    );
    let vault = app
        .spaces()
        .list_space_members(req(
            &root(),
            ListSpaceMembersRequest {
                space_id: their_space.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("members")
        .into_inner();
    assert_eq!(vault.total, 1);

    let eve_orgs = app
        .orgs()
        .list_organizations(req(&eve, ListOrganizationsRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        eve_orgs.items.iter().map(|o| o.slug.as_str()).collect::<Vec<_>>(),
        vec!["mine"]
    );
    let eve_spaces = app
        .spaces()
        .list_spaces(req(
            &eve,
            ListSpacesRequest {
                size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        eve_spaces.items.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec![eve_space.id.as_str()]
    );
    let filtered = app
        .spaces()
        .list_spaces(req(
            &eve,
            ListSpacesRequest {
                organization_id: theirs.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        filtered.total, 0,
        "filtering by another organization's id reveals nothing"
    );
}
