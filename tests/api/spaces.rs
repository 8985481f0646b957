//! SpaceService registry: create, get, list, update, delete, members.

use orgd::proto::*;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn spaces_are_created_read_updated_and_deleted() {
    let app = TestApp::spawn().await;
    let created = app
        .spaces()
        .create_space(req(
            &root(),
            CreateSpaceRequest {
                name: "Data Lake".into(),
                slug: None,
                description: "raw data".into(),
                visibility: String::new(),
                repo: "github.com/acme/lake".into(),
                agent: Some(Agent {
                    agent_id: "agent-7".into(),
                    status: "ACTIVE".into(),
                    autonomy_level: 3,
                }),
                admin_email: "keeper@spaces.test".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .space
        .expect("space");
    assert_eq!(
        (created.slug.as_str(), created.visibility.as_str()),
        ("data-lake", "organization")
    );
    assert_eq!(created.repo, "github.com/acme/lake");
    assert_eq!(
        created
            .agent
            .as_ref()
            .map(|a| (a.status.as_str(), a.autonomy_level)),
        Some(("ACTIVE", 3))
    );
    assert_eq!(created.organization_id, "");

    let keeper = token("keeper@spaces.test");
    let got = app
        .spaces()
        .get_space(req(
            &keeper,
            GetSpaceRequest {
                space_id: created.id.clone(),
            },
        ))
        .await
        .expect("space admin reads")
        .into_inner()
        .space
        .expect("space");
    assert_eq!(got, created);

    let updated = app
        .spaces()
        .update_space(req(
            &keeper,
            UpdateSpaceRequest {
                space_id: created.id.clone(),
                visibility: Some("restricted".into()),
                repo: Some(String::new()),
                remove_agent: true,
                ..Default::default()
            },
        ))
        .await
        .expect("update")
        .into_inner()
        .space
        .expect("space");
    assert_eq!(
        (updated.visibility.as_str(), updated.repo.as_str()),
        ("restricted", "")
    );
    assert_eq!(updated.agent, None);
    assert_eq!(
        (updated.name.as_str(), updated.description.as_str()),
        ("Data Lake", "raw data")
    );

    let with_agent = app
        .spaces()
        .update_space(req(
            &keeper,
            UpdateSpaceRequest {
                space_id: created.id.clone(),
                agent: Some(Agent {
                    agent_id: "agent-8".into(),
                    status: "SUSPENDED".into(),
                    autonomy_level: 0,
                }),
                new_slug: Some("lake".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("update")
        .into_inner()
        .space
        .expect("space");
    assert_eq!(with_agent.slug, "lake");
    assert_eq!(with_agent.agent.map(|a| a.agent_id), Some("agent-8".into()));

    app.spaces()
        .delete_space(req(
            &keeper,
            DeleteSpaceRequest {
                space_id: created.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete");
    let gone = app
        .spaces()
        .get_space(req(
            &root(),
            GetSpaceRequest {
                space_id: created.id.clone(),
            },
        ))
        .await;
    assert_error(gone, Code::NotFound, "SPACE_NOT_FOUND");
}

#[tokio::test]
async fn space_slugs_are_unique() {
    let app = TestApp::spawn().await;
    app.create_space("Ops", "organization", "a@spaces.test").await;
    let dup = app
        .spaces()
        .create_space(req(
            &root(),
            CreateSpaceRequest {
                name: "OPS!".into(),
                ..Default::default()
            },
        ))
        .await;
    let status = assert_error(dup, Code::AlreadyExists, "SPACE_ALREADY_EXISTS");
    assert_eq!(info_meta(&status, "slug").as_deref(), Some("ops"));
}

#[tokio::test]
async fn space_members_are_added_changed_listed_and_removed() {
    let app = TestApp::spawn().await;
    let space = app.create_space("Crew", "organization", "cap@spaces.test").await;
    let cap = token("cap@spaces.test");
    let added = app
        .spaces()
        .add_space_member(req(
            &cap,
            AddSpaceMemberRequest {
                space_id: space.id.clone(),
                user_email: "Mate@Spaces.test".into(),
                role: "viewer".into(),
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
        ("mate@spaces.test", "viewer")
    );
    let dup = app
        .spaces()
        .add_space_member(req(
            &cap,
            AddSpaceMemberRequest {
                space_id: space.id.clone(),
                user_email: "mate@spaces.test".into(),
                role: "admin".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(dup, Code::AlreadyExists, "MEMBER_ALREADY_EXISTS");
    let changed = app
        .spaces()
        .update_space_member(req(
            &cap,
            UpdateSpaceMemberRequest {
                space_id: space.id.clone(),
                user_id: added.user_id.clone(),
                role: "editor".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("update")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(changed.role, "editor");
    let list = app
        .spaces()
        .list_space_members(req(
            &token("mate@spaces.test"),
            ListSpaceMembersRequest {
                space_id: space.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.total, 2);
    let roles: Vec<_> = list
        .items
        .iter()
        .map(|m| (m.email.as_str(), m.role.as_str()))
        .collect();
    assert_eq!(
        roles,
        vec![("mate@spaces.test", "editor"), ("cap@spaces.test", "admin")]
    );
    app.spaces()
        .remove_space_member(req(
            &cap,
            RemoveSpaceMemberRequest {
                space_id: space.id.clone(),
                user_id: added.user_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("remove");
    let again = app
        .spaces()
        .remove_space_member(req(
            &cap,
            RemoveSpaceMemberRequest {
                space_id: space.id.clone(),
                user_id: added.user_id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(again, Code::NotFound, "MEMBER_NOT_FOUND");
}

#[tokio::test]
async fn listing_spaces_filters_by_organization_and_search() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Holder", "holder", "h@spaces.test").await;
    let a = app
        .create_space("Analytics", "organization", "h@spaces.test")
        .await;
    let b = app
        .create_space("Marketing", "organization", "h@spaces.test")
        .await;
    app.create_space("Loose", "organization", "h@spaces.test").await;
    app.attach("holder", &a.id).await;
    app.attach("holder", &b.id).await;
    let list = |r: ListSpacesRequest| {
        let mut c = app.spaces();
        async move { c.list_spaces(req(&root(), r)).await.expect("list").into_inner() }
    };
    let in_org = list(ListSpacesRequest {
        organization_id: org.id.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        in_org.items.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        vec!["Marketing", "Analytics"]
    );
    let searched = list(ListSpacesRequest {
        search: "lyt".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        searched.items.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        vec!["Analytics"]
    );
    assert_eq!(list(ListSpacesRequest::default()).await.total, 3);
    let bad = app
        .spaces()
        .list_spaces(req(
            &root(),
            ListSpacesRequest {
                organization_id: "nope".into(),
                ..Default::default()
            },
        ))
        .await;
    let status = assert_error(bad, Code::InvalidArgument, "INVALID_ID");
    assert_eq!(info_meta(&status, "field").as_deref(), Some("organization_id"));
}

/// ListSpaces merges one index walk per (organization, visibility) pair the
/// caller reaches with the spaces it is a member of. Over a random world
/// (organizations it administers, belongs to or not; restricted and open
/// spaces; detached and deleted ones; space memberships anywhere), every
/// listing must be exactly the spaces the visibility rule allows, newest
/// first, the same through page numbers and page tokens; then again once
/// the caller is in so many organizations that the walks give way to one
/// join.
#[tokio::test]
async fn listed_spaces_are_exactly_the_visible_ones_newest_first() {
    use rand::{Rng, SeedableRng};
    let app = TestApp::spawn().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5ace_5eed);
    let walker = "walker@spaces.test";
    let boss = "boss@spaces.test";
    // (slug, organization id, the walker's role)
    let mut orgs: Vec<(String, String, Option<&str>)> = Vec::new();
    for (slug, role) in [
        ("w-admin", Some("admin")),
        ("w-member", Some("member")),
        ("w-member-too", Some("member")),
        ("w-other", None),
    ] {
        let admin = if role == Some("admin") { walker } else { boss };
        let org = app.create_org(slug, slug, admin).await;
        if role == Some("member") {
            app.add_user(slug, walker, "member").await;
        }
        orgs.push((slug.to_owned(), org.id, role));
    }
    let words = ["alpha", "beta", "gamma"];
    // (id, name, organization index, restricted, walker is a space member, deleted),
    // in creation order.
    struct Made {
        id: String,
        name: String,
        org: Option<usize>,
        restricted: bool,
        member: bool,
        deleted: bool,
    }
    /// Which of the made spaces a listing's filter keeps.
    type Keep = Box<dyn Fn(&Made) -> bool>;
    let mut made: Vec<Made> = Vec::new();
    let mut spaces = app.spaces();
    let mut make = async |orgs: &[(String, String, Option<&str>)],
                          rng: &mut rand::rngs::StdRng,
                          made: &mut Vec<Made>| {
        let n = made.len();
        let name = format!("Walk {n} {}", words[rng.random_range(0..words.len())]);
        let restricted = rng.random_bool(0.4);
        let space = app
            .create_space(
                &name,
                if restricted { "restricted" } else { "organization" },
                boss,
            )
            .await;
        let org = (!rng.random_bool(0.15)).then(|| rng.random_range(0..orgs.len()));
        if let Some(o) = org {
            app.attach(&orgs[o].0, &space.id).await;
        }
        let member = rng.random_bool(0.3);
        if member {
            spaces
                .add_space_member(req(
                    &root(),
                    AddSpaceMemberRequest {
                        space_id: space.id.clone(),
                        user_email: walker.into(),
                        role: "viewer".into(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("space member");
        }
        let deleted = rng.random_bool(0.15);
        if deleted {
            spaces
                .delete_space(req(
                    &root(),
                    DeleteSpaceRequest {
                        space_id: space.id.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("delete");
        }
        made.push(Made {
            id: space.id,
            name,
            org,
            restricted,
            member,
            deleted,
        });
    };
    for _ in 0..36 {
        make(&orgs, &mut rng, &mut made).await;
    }

    let check = async |orgs: &[(String, String, Option<&str>)], made: &[Made], stage: &str| {
        let mut c = app.spaces();
        for (who, superadmin) in [(token(walker), false), (root(), true)] {
            let sees = |m: &Made| {
                !m.deleted
                    && (superadmin
                        || m.member
                        || m.org.is_some_and(|o| match orgs[o].2 {
                            Some("admin") => true,
                            Some(_) => !m.restricted,
                            None => false,
                        }))
            };
            let mut filters: Vec<(String, ListSpacesRequest, Keep)> = vec![(
                "no filter".into(),
                ListSpacesRequest::default(),
                Box::new(|_| true),
            )];
            for (o, (slug, id, _)) in orgs.iter().enumerate() {
                filters.push((
                    format!("organization {slug}"),
                    ListSpacesRequest {
                        organization_id: id.clone(),
                        ..Default::default()
                    },
                    Box::new(move |m: &Made| m.org == Some(o)),
                ));
            }
            filters.push((
                "search beta".into(),
                ListSpacesRequest {
                    search: "beta".into(),
                    ..Default::default()
                },
                Box::new(|m: &Made| m.name.contains("beta")),
            ));
            for (o, (slug, id, _)) in orgs.iter().enumerate().take(4) {
                filters.push((
                    format!("organization {slug}, search gamma"),
                    ListSpacesRequest {
                        organization_id: id.clone(),
                        search: "gamma".into(),
                        ..Default::default()
                    },
                    Box::new(move |m: &Made| m.org == Some(o) && m.name.contains("gamma")),
                ));
            }
            for (what, request, keep) in filters {
                let expected: Vec<&str> = made
                    .iter()
                    .rev()
                    .filter(|m| sees(m) && keep(m))
                    .map(|m| m.id.as_str())
                    .collect();
                let context = format!("{stage}, superadmin {superadmin}, {what}");
                // Page tokens, three at a time.
                let mut listed: Vec<String> = Vec::new();
                let mut token = String::new();
                loop {
                    let page = c
                        .list_spaces(req(
                            &who,
                            ListSpacesRequest {
                                size: 3,
                                page_token: token.clone(),
                                ..request.clone()
                            },
                        ))
                        .await
                        .expect("list")
                        .into_inner();
                    assert_eq!(page.total as usize, expected.len(), "{context}: total");
                    listed.extend(page.items.into_iter().map(|s| s.id));
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    token = page.next_page_token;
                    assert!(listed.len() <= expected.len(), "{context}: too many pages");
                }
                assert_eq!(listed, expected, "{context}: through page tokens");
                // Page numbers: the second page of four.
                let second = c
                    .list_spaces(req(
                        &who,
                        ListSpacesRequest {
                            size: 4,
                            page: Some(2),
                            ..request.clone()
                        },
                    ))
                    .await
                    .expect("list")
                    .into_inner();
                let want: Vec<&str> = expected.iter().skip(4).take(4).copied().collect();
                assert_eq!(
                    second.items.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
                    want,
                    "{context}: page 2"
                );
            }
        }
    };
    check(&orgs, &made, "walks").await;

    // Administering 33 more organizations (two walks each) takes the
    // walker past the walks a statement merges: one join instead.
    for i in 0..33 {
        let slug = format!("w-many-{i}");
        let org = app.create_org(&slug, &slug, walker).await;
        orgs.push((slug, org.id, Some("admin")));
    }
    for _ in 0..12 {
        make(&orgs, &mut rng, &mut made).await;
    }
    check(&orgs, &made, "joined").await;
}
