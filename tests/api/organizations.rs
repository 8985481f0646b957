//! OrganizationService success paths, the storage directory and lists.

use orgd::proto::*;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn creating_an_organization_returns_its_details_and_makes_the_admin() {
    let app = TestApp::spawn().await;
    let org = app
        .orgs()
        .create_organization(req(
            &root(),
            CreateOrganizationRequest {
                name: "  Acme Corp ".into(),
                slug: None,
                description: "Makers of everything".into(),
                admin_email: "Boss@Acme.test".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!((org.name.as_str(), org.slug.as_str()), ("Acme Corp", "acme-corp"));
    assert_eq!(org.description, "Makers of everything");
    assert_eq!(org.storage_dir, format!("orgs/{}", org.id));
    assert_eq!(org.user_count, 1);
    assert_eq!(org.members.len(), 1);
    assert_eq!(
        (org.members[0].email.as_str(), org.members[0].role.as_str()),
        ("boss@acme.test", "admin")
    );
    assert!(org.created_at.is_some() && org.updated_at.is_some());
    uuid::Uuid::parse_str(&org.id).expect("id is a UUID");

    // The named admin (not the superadmin who created it) holds the role.
    let got = app
        .orgs()
        .get_organization(req(
            &token("boss@acme.test"),
            GetOrganizationRequest {
                slug: "acme-corp".into(),
            },
        ))
        .await
        .expect("admin reads it")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!(got.id, org.id);

    // Without admin_email the creator becomes the admin.
    let own = app
        .orgs()
        .create_organization(req(
            &root(),
            CreateOrganizationRequest {
                name: "Own".into(),
                slug: Some("own-org".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!(own.members[0].email, SUPERADMIN);
}

#[tokio::test]
async fn the_storage_directory_follows_the_organization_and_its_spaces() {
    // Purged at once: the directory goes with the deletion (a soft-deleted
    // organization keeps it until its purge, see soft_delete.rs).
    let app = TestApp::spawn_with(|c| c.soft_delete_window = std::time::Duration::ZERO).await;
    let org = app.create_org("Stored", "stored", "admin@stored.test").await;
    let dir = app.storage_root.join("orgs").join(&org.id);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("organization.json")).expect("organization.json"))
            .expect("json");
    assert_eq!(
        meta,
        serde_json::json!({"id": org.id, "name": "Stored", "slug": "stored"})
    );

    let space = app
        .create_space("Lake", "organization", "admin@stored.test")
        .await;
    app.attach("stored", &space.id).await;
    assert!(dir.join("spaces").join(&space.id).is_dir());

    app.orgs()
        .update_organization(req(
            &root(),
            UpdateOrganizationRequest {
                slug: "stored".into(),
                name: Some("Stored Things".into()),
                new_slug: Some("stored-things".into()),
                description: None,
                ..Default::default()
            },
        ))
        .await
        .expect("rename");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("organization.json")).expect("organization.json"))
            .expect("json");
    assert_eq!(meta["slug"], "stored-things");
    assert_eq!(meta["name"], "Stored Things");

    app.orgs()
        .remove_space(req(
            &root(),
            RemoveSpaceRequest {
                slug: "stored-things".into(),
                space_id: space.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("detach");
    assert!(!dir.join("spaces").join(&space.id).exists());

    app.orgs()
        .delete_organization(req(
            &root(),
            DeleteOrganizationRequest {
                slug: "stored-things".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete");
    assert!(!dir.exists());
}

#[tokio::test]
async fn updating_changes_only_the_fields_present() {
    let app = TestApp::spawn().await;
    let before = app.create_org("Before", "before", "a@upd.test").await;
    let after = app
        .orgs()
        .update_organization(req(
            &token("a@upd.test"),
            UpdateOrganizationRequest {
                slug: "before".into(),
                description: Some("now described".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("update")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!((after.name.as_str(), after.slug.as_str()), ("Before", "before"));
    assert_eq!(after.description, "now described");
    assert_eq!(after.created_at, before.created_at);

    let renamed = app
        .orgs()
        .update_organization(req(
            &root(),
            UpdateOrganizationRequest {
                slug: "before".into(),
                new_slug: Some("after".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("rename")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!(
        (renamed.slug.as_str(), renamed.description.as_str()),
        ("after", "now described")
    );
    let old = app
        .orgs()
        .get_organization(req(
            &root(),
            GetOrganizationRequest {
                slug: "before".into(),
            },
        ))
        .await;
    assert_error(old, Code::NotFound, "ORG_NOT_FOUND");

    // Renaming onto a taken slug is ALREADY_EXISTS and changes nothing.
    app.create_org("Taken", "taken", "a@upd.test").await;
    let clash = app
        .orgs()
        .update_organization(req(
            &root(),
            UpdateOrganizationRequest {
                slug: "after".into(),
                new_slug: Some("taken".into()),
                name: Some("Clash".into()),
                ..Default::default()
            },
        ))
        .await;
    assert_error(clash, Code::AlreadyExists, "ORG_ALREADY_EXISTS");
    let unchanged = app
        .orgs()
        .get_organization(req(&root(), GetOrganizationRequest { slug: "after".into() }))
        .await
        .expect("still there")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!(unchanged.name, "Before");
}

#[tokio::test]
async fn deleting_an_organization_detaches_its_spaces() {
    // With no soft-delete window a deletion purges at once, and the slug is
    // free again (soft deletion is tested in soft_delete.rs).
    let app = TestApp::spawn_with(|c| c.soft_delete_window = std::time::Duration::ZERO).await;
    app.create_org("Doomed", "doomed", "a@del.test").await;
    let space = app.create_space("Survivor", "organization", "a@del.test").await;
    app.attach("doomed", &space.id).await;
    app.orgs()
        .delete_organization(req(
            &token("a@del.test"),
            DeleteOrganizationRequest {
                slug: "doomed".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete");
    let gone = app
        .orgs()
        .get_organization(req(
            &root(),
            GetOrganizationRequest {
                slug: "doomed".into(),
            },
        ))
        .await;
    assert_error(gone, Code::NotFound, "ORG_NOT_FOUND");
    let kept = app
        .spaces()
        .get_space(req(
            &root(),
            GetSpaceRequest {
                space_id: space.id.clone(),
            },
        ))
        .await
        .expect("space survives")
        .into_inner()
        .space
        .expect("space");
    assert_eq!(kept.organization_id, "");
    // The slug is free again.
    app.create_org("Reborn", "doomed", "a@del.test").await;
}

#[tokio::test]
async fn spaces_attach_to_one_organization_at_a_time() {
    let app = TestApp::spawn().await;
    app.create_org("One", "org-one", "a@sp.test").await;
    app.create_org("Two", "org-two", "a@sp.test").await;
    let space = app.create_space("Shared", "organization", "a@sp.test").await;
    let added = app
        .orgs()
        .add_space(req(
            &token("a@sp.test"),
            AddSpaceRequest {
                slug: "org-one".into(),
                space_id: space.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("attach")
        .into_inner()
        .space
        .expect("space");
    let one = app
        .orgs()
        .get_organization(req(
            &root(),
            GetOrganizationRequest {
                slug: "org-one".into(),
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!(added.organization_id, one.id);
    assert_eq!(one.space_count, 1);
    assert_eq!(one.spaces[0].name, "Shared");

    let again = app
        .orgs()
        .add_space(req(
            &root(),
            AddSpaceRequest {
                slug: "org-one".into(),
                space_id: space.id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(again, Code::AlreadyExists, "SPACE_ALREADY_ATTACHED");
    let elsewhere = app
        .orgs()
        .add_space(req(
            &root(),
            AddSpaceRequest {
                slug: "org-two".into(),
                space_id: space.id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(elsewhere, Code::FailedPrecondition, "SPACE_IN_OTHER_ORGANIZATION");
    let unknown = app
        .orgs()
        .add_space(req(
            &root(),
            AddSpaceRequest {
                slug: "org-two".into(),
                space_id: uuid::Uuid::new_v4().to_string(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(unknown, Code::NotFound, "SPACE_NOT_FOUND");

    app.orgs()
        .remove_space(req(
            &root(),
            RemoveSpaceRequest {
                slug: "org-one".into(),
                space_id: space.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("detach");
    let not_there = app
        .orgs()
        .remove_space(req(
            &root(),
            RemoveSpaceRequest {
                slug: "org-one".into(),
                space_id: space.id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(not_there, Code::NotFound, "SPACE_NOT_IN_ORGANIZATION");
    app.attach("org-two", &space.id).await;
}

#[tokio::test]
async fn members_are_added_changed_listed_and_removed() {
    let app = TestApp::spawn().await;
    app.create_org("Team", "team", "lead@team.test").await;
    let lead = token("lead@team.test");
    let added = app
        .orgs()
        .add_user(req(
            &lead,
            AddUserRequest {
                slug: "team".into(),
                user_email: "New.Hire@Team.test".into(),
                role: "member".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("add")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(
        (added.email.as_str(), added.role.as_str()),
        ("new.hire@team.test", "member")
    );
    let dup = app
        .orgs()
        .add_user(req(
            &lead,
            AddUserRequest {
                slug: "team".into(),
                user_email: "new.hire@team.test".into(),
                role: "admin".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(dup, Code::AlreadyExists, "MEMBER_ALREADY_EXISTS");

    let promoted = app
        .orgs()
        .update_user_role(req(
            &lead,
            UpdateUserRoleRequest {
                slug: "team".into(),
                user_id: added.user_id.clone(),
                role: "admin".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("promote")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(promoted.role, "admin");

    let list = app
        .orgs()
        .list_users(req(
            &lead,
            ListUsersRequest {
                slug: "team".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.total, 2);
    assert_eq!((list.page, list.size), (1, 20));
    assert_eq!(list.items[0].email, "new.hire@team.test", "newest first");

    app.orgs()
        .remove_user(req(
            &lead,
            RemoveUserRequest {
                slug: "team".into(),
                user_id: added.user_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("remove");
    let missing = app
        .orgs()
        .remove_user(req(
            &lead,
            RemoveUserRequest {
                slug: "team".into(),
                user_id: added.user_id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(missing, Code::NotFound, "MEMBER_NOT_FOUND");
}

#[tokio::test]
async fn member_lists_filter_search_and_paginate() {
    let app = TestApp::spawn().await;
    app.create_org("Big", "big", "owner@big.test").await;
    for i in 0..25 {
        let role = if i % 5 == 0 { "admin" } else { "member" };
        app.add_user("big", &format!("user{i:02}@big.test"), role).await;
    }
    let list = |r: ListUsersRequest| {
        let mut c = app.orgs();
        async move { c.list_users(req(&root(), r)).await }
    };
    let all = list(ListUsersRequest {
        slug: "big".into(),
        ..Default::default()
    })
    .await
    .expect("list")
    .into_inner();
    assert_eq!((all.total, all.items.len()), (26, 20));
    assert!(!all.next_page_token.is_empty());

    let admins = list(ListUsersRequest {
        slug: "big".into(),
        role: "admin".into(),
        size: 100,
        ..Default::default()
    })
    .await
    .expect("list")
    .into_inner();
    assert_eq!(admins.total, 6);
    assert!(admins.items.iter().all(|m| m.role == "admin"));

    let search = list(ListUsersRequest {
        slug: "big".into(),
        search: "USER1".into(),
        ..Default::default()
    })
    .await
    .expect("list")
    .into_inner();
    assert_eq!(search.total, 10, "user10..user19");

    // Page numbers and tokens walk the same order without gaps or repeats.
    let mut by_pages = Vec::new();
    for page in 1..=3 {
        let p = list(ListUsersRequest {
            slug: "big".into(),
            page: Some(page),
            size: 10,
            ..Default::default()
        })
        .await
        .expect("page")
        .into_inner();
        assert_eq!(p.page, page);
        by_pages.extend(p.items.into_iter().map(|m| m.user_id));
    }
    let mut by_tokens = Vec::new();
    let mut next = String::new();
    loop {
        let p = list(ListUsersRequest {
            slug: "big".into(),
            size: 10,
            page_token: next.clone(),
            ..Default::default()
        })
        .await
        .expect("page")
        .into_inner();
        by_tokens.extend(p.items.into_iter().map(|m| m.user_id));
        if p.next_page_token.is_empty() {
            break;
        }
        next = p.next_page_token;
    }
    assert_eq!(by_pages.len(), 26);
    assert_eq!(by_pages, by_tokens);

    let past_end = list(ListUsersRequest {
        slug: "big".into(),
        page: Some(9),
        ..Default::default()
    })
    .await
    .expect("past the end")
    .into_inner();
    assert!(past_end.items.is_empty());
    assert_eq!(past_end.total, 26);
    let capped = list(ListUsersRequest {
        slug: "big".into(),
        size: 1000,
        ..Default::default()
    })
    .await
    .expect("capped")
    .into_inner();
    assert_eq!(capped.size, 100);
}

#[tokio::test]
async fn listing_organizations_shows_members_theirs_and_superadmins_all() {
    let app = TestApp::spawn().await;
    app.create_org("Alpha Labs", "alpha", "ann@list.test").await;
    app.create_org("Beta Works", "beta", "bob@list.test").await;
    app.create_org("Gamma 100% Pure", "gamma", "bob@list.test").await;
    let space = app.create_space("Sales", "organization", "bob@list.test").await;
    app.attach("beta", &space.id).await;
    app.add_user("beta", "ann@list.test", "member").await;

    let list = |t: String, r: ListOrganizationsRequest| {
        let mut c = app.orgs();
        async move { c.list_organizations(req(&t, r)).await.expect("list") }
    };
    let ann = list(token("ann@list.test"), ListOrganizationsRequest::default()).await;
    assert_eq!(
        ann.metadata().get("x-total-count").and_then(|v| v.to_str().ok()),
        Some("2"),
        "total in response metadata"
    );
    let ann = ann.into_inner();
    let slugs: Vec<_> = ann.items.iter().map(|o| o.slug.as_str()).collect();
    assert_eq!(slugs, vec!["beta", "alpha"], "newest first");
    assert_eq!(ann.total, 2);
    let beta = &ann.items[0];
    assert_eq!(beta.user_count, 2);
    assert_eq!(beta.space_count, 1);
    assert_eq!(
        (
            beta.spaces[0].id.as_str(),
            beta.spaces[0].name.as_str(),
            beta.spaces[0].slug.as_str()
        ),
        (space.id.as_str(), "Sales", "sales")
    );

    let all = list(root(), ListOrganizationsRequest::default())
        .await
        .into_inner();
    assert_eq!(all.total, 3);

    let search = list(
        root(),
        ListOrganizationsRequest {
            search: "WORKS".into(),
            ..Default::default()
        },
    )
    .await
    .into_inner();
    assert_eq!(
        search.items.iter().map(|o| o.slug.as_str()).collect::<Vec<_>>(),
        vec!["beta"]
    );
    // LIKE wildcards in the term are literal.
    let pct = list(
        root(),
        ListOrganizationsRequest {
            search: "100%".into(),
            ..Default::default()
        },
    )
    .await
    .into_inner();
    assert_eq!(
        pct.items.iter().map(|o| o.slug.as_str()).collect::<Vec<_>>(),
        vec!["gamma"]
    );
    let none = list(
        root(),
        ListOrganizationsRequest {
            search: "_".into(),
            ..Default::default()
        },
    )
    .await
    .into_inner();
    assert_eq!(none.total, 0);

    let nobody = list(token("nobody@list.test"), ListOrganizationsRequest::default())
        .await
        .into_inner();
    assert_eq!((nobody.total, nobody.items.len()), (0, 0));

    let paged = list(
        root(),
        ListOrganizationsRequest {
            size: 2,
            ..Default::default()
        },
    )
    .await
    .into_inner();
    assert_eq!(paged.items.len(), 2);
    let rest = list(
        root(),
        ListOrganizationsRequest {
            size: 2,
            page_token: paged.next_page_token,
            ..Default::default()
        },
    )
    .await
    .into_inner();
    assert_eq!(
        rest.items.iter().map(|o| o.slug.as_str()).collect::<Vec<_>>(),
        vec!["alpha"]
    );
    assert_eq!((rest.page, rest.next_page_token.as_str()), (2, ""));
}

/// An organization embeds at most 1,000 spaces (GetOrganization: the
/// newest; ListOrganizations: the first 100 by name) and counts all of them,
/// so the answer for an organization of 100,000 spaces stays within what a
/// client accepts; ListSpaces pages through every one.
#[tokio::test]
async fn an_organization_embeds_at_most_a_thousand_spaces_and_counts_them_all() {
    let app = TestApp::spawn().await;
    let admin = "many@orgs.test";
    let org = app.create_org("Many", "many", admin).await;
    let total = 1001;
    let mut made: Vec<String> = Vec::with_capacity(total);
    for chunk in (0..total).collect::<Vec<_>>().chunks(25) {
        let spaces = futures::future::join_all(chunk.iter().map(|i| {
            let app = &app;
            async move {
                let space = app
                    .create_space(&format!("Embedded {i:04}"), "organization", admin)
                    .await;
                app.attach("many", &space.id).await;
                space.id
            }
        }))
        .await;
        made.extend(spaces);
    }

    let details = app
        .orgs()
        .get_organization(req(&token(admin), GetOrganizationRequest { slug: "many".into() }))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("organization");
    assert_eq!(details.space_count, total as i32);
    assert_eq!(details.spaces.len(), 1000);
    // The newest 1,000, in ListSpaces order: all but the oldest.
    let mut newest_first: Vec<String> = Vec::new();
    for page in 1..=11 {
        let listed = app
            .spaces()
            .list_spaces(req(
                &token(admin),
                ListSpacesRequest {
                    organization_id: org.id.clone(),
                    page: Some(page),
                    size: 100,
                    ..Default::default()
                },
            ))
            .await
            .expect("list spaces")
            .into_inner();
        assert_eq!(listed.total, total as i32, "ListSpaces counts every one");
        newest_first.extend(listed.items.into_iter().map(|s| s.id));
    }
    assert_eq!(newest_first.len(), total);
    assert_eq!(
        details.spaces.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        newest_first[..1000]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "the newest 1,000, newest first"
    );

    let listed = app
        .orgs()
        .list_organizations(req(&token(admin), ListOrganizationsRequest::default()))
        .await
        .expect("list")
        .into_inner();
    let summary = listed
        .items
        .iter()
        .find(|o| o.id == org.id)
        .expect("the organization is listed");
    assert_eq!(summary.space_count, total as i32);
    let names: Vec<&str> = summary.spaces.iter().map(|s| s.name.as_str()).collect();
    let first_by_name: Vec<String> = (0..100).map(|i| format!("Embedded {i:04}")).collect();
    assert_eq!(names, first_by_name, "the first 100 by name, in order");

    let mut made_sorted = made.clone();
    made_sorted.sort();
    newest_first.sort();
    assert_eq!(made_sorted, newest_first, "every space made is listed once");
}
