//! Content writes (SpaceService batch upserts and deletes) and the
//! organization aggregations, with visibility, filters, pages and stats.

use orgd::proto::aggregation_service_client::AggregationServiceClient;
use orgd::proto::*;
use prost_types::Timestamp;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::*;

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: 1_700_000_000 + seconds,
        nanos: 0,
    })
}

fn product(name: &str, t: i64) -> Product {
    Product {
        id: id(),
        name: name.into(),
        description: format!("{name} description"),
        product_type: "table".into(),
        provider: "warehouse".into(),
        tags: vec!["core".into()],
        quality_score: Some(0.5),
        created_at: at(t),
        ..Default::default()
    }
}

fn contract(name: &str, status: &str, t: i64, expires: Option<Timestamp>) -> Contract {
    Contract {
        id: id(),
        name: name.into(),
        description: format!("{name} terms"),
        status: status.into(),
        producer: Some(PartyRef {
            id: "p1".into(),
            name: "Producer".into(),
        }),
        consumer: Some(PartyRef {
            id: "c1".into(),
            name: "Consumer".into(),
        }),
        sla: Some(Sla {
            freshness_hours: 24,
            availability_percent: 99.9,
            quality_score_min: 0.8,
            response_time_hours: 4,
        }),
        created_at: at(t),
        expires_at: expires,
        ..Default::default()
    }
}

fn issue(title: &str, status: &str, priority: &str, t: i64) -> Issue {
    Issue {
        id: id(),
        title: title.into(),
        status: status.into(),
        priority: priority.into(),
        created_at: at(t),
        ..Default::default()
    }
}

fn check(name: &str, last_status: &str, archived: bool, t: i64) -> QualityCheck {
    QualityCheck {
        id: id(),
        name: name.into(),
        check_type: "null_check".into(),
        severity: "error".into(),
        last_status: last_status.into(),
        last_run_at: if last_status.is_empty() { None } else { at(t + 1) },
        is_archived: archived,
        created_at: at(t),
        ..Default::default()
    }
}

fn agg(app: &TestApp) -> AggregationServiceClient<Channel> {
    AggregationServiceClient::new(app.channel.clone())
}

async fn put_products(
    app: &TestApp,
    t: &str,
    space: &str,
    items: Vec<Product>,
) -> Result<i32, tonic::Status> {
    app.spaces()
        .batch_upsert_products(req(
            t,
            BatchUpsertProductsRequest {
                space_id: space.into(),
                items,
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().upserted)
}

/// An organization with an admin and a plain member, and four spaces:
/// open (visible to all members), locked (restricted), invited (restricted,
/// the member is a viewer) and, in another organization, elsewhere.
struct World {
    slug: String,
    admin: String,
    member: String,
    open: String,
    locked: String,
    invited: String,
    elsewhere: String,
}

async fn world(app: &TestApp) -> World {
    let slug = unique_slug("agg");
    let admin = format!("admin-{slug}@agg.test");
    let member = format!("member-{slug}@agg.test");
    app.create_org("Aggregates", &slug, &admin).await;
    app.add_user(&slug, &member, "member").await;
    let open = app
        .create_space(&format!("Open {slug}"), "organization", &admin)
        .await;
    let locked = app
        .create_space(&format!("Locked {slug}"), "restricted", &admin)
        .await;
    let invited = app
        .create_space(&format!("Invited {slug}"), "restricted", &admin)
        .await;
    for s in [&open, &locked, &invited] {
        app.attach(&slug, &s.id).await;
    }
    app.spaces()
        .add_space_member(req(
            &root(),
            AddSpaceMemberRequest {
                space_id: invited.id.clone(),
                user_email: member.clone(),
                role: "viewer".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("viewer");
    let other = unique_slug("other");
    app.create_org("Other", &other, &admin).await;
    let elsewhere = app
        .create_space(&format!("Elsewhere {slug}"), "organization", &admin)
        .await;
    app.attach(&other, &elsewhere.id).await;
    World {
        slug,
        admin,
        member,
        open: open.id,
        locked: locked.id,
        invited: invited.id,
        elsewhere: elsewhere.id,
    }
}

async fn product_names(app: &TestApp, t: &str, r: ListProductsRequest) -> Vec<String> {
    agg(app)
        .list_products(req(t, r))
        .await
        .expect("list products")
        .into_inner()
        .items
        .into_iter()
        .map(|p| p.name)
        .collect()
}

#[tokio::test]
async fn products_aggregate_across_the_spaces_the_caller_may_see() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    put_products(
        &app,
        &root,
        &w.open,
        vec![product("open-a", 1), product("open-b", 5)],
    )
    .await
    .expect("open");
    put_products(&app, &root, &w.locked, vec![product("locked-a", 3)])
        .await
        .expect("locked");
    put_products(&app, &root, &w.invited, vec![product("invited-a", 4)])
        .await
        .expect("invited");
    put_products(&app, &root, &w.elsewhere, vec![product("elsewhere-a", 6)])
        .await
        .expect("elsewhere");

    let all = ListProductsRequest {
        slug: w.slug.clone(),
        ..Default::default()
    };
    assert_eq!(
        product_names(&app, &token(&w.admin), all.clone()).await,
        vec!["open-b", "invited-a", "locked-a", "open-a"],
        "newest first"
    );
    assert_eq!(
        product_names(&app, &root, all.clone()).await,
        vec!["open-b", "invited-a", "locked-a", "open-a"]
    );
    assert_eq!(
        product_names(&app, &token(&w.member), all).await,
        vec!["open-b", "invited-a", "open-a"],
        "no restricted space content"
    );

    let listed = agg(&app)
        .list_products(req(
            &token(&w.member),
            ListProductsRequest {
                slug: w.slug.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!((listed.total, listed.page, listed.size), (3, 1, 20));
    let first = &listed.items[0];
    let space = first.space.as_ref().expect("space ref");
    assert_eq!(space.id, w.open);
    assert!(space.name.starts_with("Open ") && space.slug.starts_with("open-"));
    assert_eq!(first.tags, vec!["core".to_string()]);
    assert_eq!(first.quality_score, Some(0.5));

    // A non-member sees nothing and is told so.
    let outsider = agg(&app)
        .list_products(req(
            &token("nobody@agg.test"),
            ListProductsRequest {
                slug: w.slug.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(outsider, Code::PermissionDenied, "NOT_AUTHORIZED");
    let unknown = agg(&app)
        .list_products(req(
            &root,
            ListProductsRequest {
                slug: "no-such-org".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(unknown, Code::NotFound, "ORG_NOT_FOUND");
}

#[tokio::test]
async fn product_filters_search_space_and_archived() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    let mut archived = product("Retired Ledger", 9);
    archived.is_archived = true;
    let mut described = product("Plain", 2);
    described.description = "holds the Revenue figures".into();
    put_products(
        &app,
        &root,
        &w.open,
        vec![
            product("Revenue Daily", 1),
            described,
            product("ab-metrics", 3),
            archived,
        ],
    )
    .await
    .expect("put");
    put_products(&app, &root, &w.invited, vec![product("Revenue Forecast", 4)])
        .await
        .expect("put");
    let member = token(&w.member);
    let list = |r: ListProductsRequest| product_names(&app, &member, r);
    let base = || ListProductsRequest {
        slug: w.slug.clone(),
        ..Default::default()
    };

    // Search covers name and description, ignoring case; 3+ characters go
    // through the text index, shorter terms still answer.
    assert_eq!(
        list(ListProductsRequest {
            search: "revenue".into(),
            ..base()
        })
        .await,
        vec!["Revenue Forecast", "Plain", "Revenue Daily"]
    );
    assert_eq!(
        list(ListProductsRequest {
            search: "VENUE FIG".into(),
            ..base()
        })
        .await,
        vec!["Plain"]
    );
    assert_eq!(
        list(ListProductsRequest {
            search: "ab".into(),
            ..base()
        })
        .await,
        vec!["ab-metrics"]
    );
    assert_eq!(
        list(ListProductsRequest {
            search: "zzzz".into(),
            ..base()
        })
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        list(ListProductsRequest {
            search: "%".into(),
            ..base()
        })
        .await,
        Vec::<String>::new(),
        "wildcards are literal"
    );

    assert_eq!(
        list(ListProductsRequest {
            space_id: w.invited.clone(),
            ..base()
        })
        .await,
        vec!["Revenue Forecast"]
    );
    assert_eq!(
        list(ListProductsRequest {
            include_archived: true,
            space_id: w.open.clone(),
            ..base()
        })
        .await,
        vec!["Retired Ledger", "ab-metrics", "Plain", "Revenue Daily"]
    );

    let hidden = agg(&app)
        .list_products(req(
            &member,
            ListProductsRequest {
                space_id: w.locked.clone(),
                ..base()
            },
        ))
        .await;
    assert_error(hidden, Code::PermissionDenied, "NOT_AUTHORIZED");
    let foreign = agg(&app)
        .list_products(req(
            &root,
            ListProductsRequest {
                space_id: w.elsewhere.clone(),
                ..base()
            },
        ))
        .await;
    assert_error(foreign, Code::NotFound, "SPACE_NOT_IN_ORGANIZATION");
}

#[tokio::test]
async fn contracts_issues_and_checks_filter_by_status_and_more() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    let mut spaces = app.spaces();
    spaces
        .batch_upsert_contracts(req(
            &root,
            BatchUpsertContractsRequest {
                space_id: w.open.clone(),
                items: vec![
                    contract("Orders feed", "active", 1, None),
                    contract("Billing export", "draft", 2, None),
                    contract("Legacy sync", "deprecated", 3, None),
                ],
                ..Default::default()
            },
        ))
        .await
        .expect("contracts");
    let assignee = id();
    let mut mine = issue("Broken join", "open", "high", 1);
    mine.assignee_id = assignee.clone();
    spaces
        .batch_upsert_issues(req(
            &root,
            BatchUpsertIssuesRequest {
                space_id: w.open.clone(),
                items: vec![
                    mine,
                    issue("Slow query", "in_progress", "low", 2),
                    issue("Typo", "resolved", "high", 3),
                    issue("Stale", "wont_fix", "critical", 4),
                ],
                ..Default::default()
            },
        ))
        .await
        .expect("issues");
    spaces
        .batch_upsert_quality_checks(req(
            &root,
            BatchUpsertQualityChecksRequest {
                space_id: w.open.clone(),
                items: vec![
                    check("nulls", "pass", false, 1),
                    check("dupes", "fail", false, 2),
                    check("fresh", "", false, 3),
                    check("old", "pass", true, 4),
                ],
                ..Default::default()
            },
        ))
        .await
        .expect("checks");
    let member = token(&w.member);
    let mut a = agg(&app);

    let contracts = |status: Vec<&str>, search: &str| ListContractsRequest {
        slug: w.slug.clone(),
        status: status.into_iter().map(String::from).collect(),
        search: search.into(),
        ..Default::default()
    };
    let names = |items: Vec<Contract>| items.into_iter().map(|c| c.name).collect::<Vec<_>>();
    let r = a
        .list_contracts(req(&member, contracts(vec!["active,draft"], "")))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(names(r.items), vec!["Billing export", "Orders feed"]);
    let r = a
        .list_contracts(req(&member, contracts(vec!["active", "deprecated"], "")))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(names(r.items), vec!["Legacy sync", "Orders feed"]);
    let r = a
        .list_contracts(req(&member, contracts(vec![], "TERMS")))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(r.total, 3);
    let r = a
        .list_contracts(req(&member, contracts(vec![], "billing")))
        .await
        .expect("list")
        .into_inner();
    let billing = &r.items[0];
    assert_eq!(billing.sla.as_ref().map(|s| s.availability_percent), Some(99.9));
    assert_eq!(
        billing.producer.as_ref().map(|p| p.name.as_str()),
        Some("Producer")
    );
    let bad = a
        .list_contracts(req(&member, contracts(vec!["active,closed"], "")))
        .await;
    let status = assert_error(bad, Code::InvalidArgument, "INVALID_STATUS");
    assert_eq!(info_meta(&status, "field").as_deref(), Some("status"));

    let issues = |status: &str, priority: &str, assignee_id: &str| ListIssuesRequest {
        slug: w.slug.clone(),
        status: if status.is_empty() {
            vec![]
        } else {
            vec![status.into()]
        },
        priority: if priority.is_empty() {
            vec![]
        } else {
            vec![priority.into()]
        },
        assignee_id: assignee_id.into(),
        ..Default::default()
    };
    let titles = |items: Vec<Issue>| items.into_iter().map(|i| i.title).collect::<Vec<_>>();
    let r = a
        .list_issues(req(&member, issues("open,in_progress", "", "")))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(titles(r.items), vec!["Slow query", "Broken join"]);
    let r = a
        .list_issues(req(&member, issues("", "high,critical", "")))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(titles(r.items), vec!["Stale", "Typo", "Broken join"]);
    let r = a
        .list_issues(req(&member, issues("", "", &assignee)))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(titles(r.items), vec!["Broken join"]);
    let r = a
        .list_issues(req(
            &member,
            ListIssuesRequest {
                limit: 2,
                ..issues("", "", "")
            },
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!((r.items.len(), r.size, r.total), (2, 2, 4));
    let bad = a.list_issues(req(&member, issues("", "", "not-a-uuid"))).await;
    assert_error(bad, Code::InvalidArgument, "INVALID_ID");

    let checks = |include_archived: bool, status: &str| ListQualityChecksRequest {
        slug: w.slug.clone(),
        include_archived,
        status: if status.is_empty() {
            vec![]
        } else {
            vec![status.into()]
        },
        ..Default::default()
    };
    let cnames = |items: Vec<QualityCheck>| items.into_iter().map(|c| c.name).collect::<Vec<_>>();
    let r = a
        .list_quality_checks(req(&member, checks(false, "")))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(cnames(r.items), vec!["fresh", "dupes", "nulls"]);
    let r = a
        .list_quality_checks(req(&member, checks(true, "")))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(cnames(r.items), vec!["old", "fresh", "dupes", "nulls"]);
    let r = a
        .list_quality_checks(req(&member, checks(true, "pass")))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(cnames(r.items.clone()), vec!["old", "nulls"]);
    assert!(r.items.iter().all(|c| c.last_run_at.is_some()));
    let r = a
        .list_quality_checks(req(&member, checks(false, "fail,warning")))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(cnames(r.items), vec!["dupes"]);
}

#[tokio::test]
async fn statistics_match_values_computed_by_hand() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    let mut spaces = app.spaces();
    let past = Some(Timestamp {
        seconds: 1_000_000_000,
        nanos: 0,
    });
    let future = Some(Timestamp {
        seconds: 4_000_000_000,
        nanos: 0,
    });

    // Open space: 2 live products (+1 archived), 3 open issues (open,
    // in_progress x2) of 5, 2 active contracts (one expired, one draft
    // besides), checks: 2 pass + 1 fail have run, 1 never ran, 1 archived.
    let mut gone = product("gone", 3);
    gone.is_archived = true;
    put_products(
        &app,
        &root,
        &w.open,
        vec![product("p1", 1), product("p2", 2), gone],
    )
    .await
    .expect("products");
    spaces
        .batch_upsert_issues(req(
            &root,
            BatchUpsertIssuesRequest {
                space_id: w.open.clone(),
                items: vec![
                    issue("i1", "open", "low", 1),
                    issue("i2", "in_progress", "low", 2),
                    issue("i3", "in_progress", "low", 3),
                    issue("i4", "resolved", "low", 4),
                    issue("i5", "wont_fix", "low", 5),
                ],
                ..Default::default()
            },
        ))
        .await
        .expect("issues");
    spaces
        .batch_upsert_contracts(req(
            &root,
            BatchUpsertContractsRequest {
                space_id: w.open.clone(),
                items: vec![
                    contract("c1", "active", 1, None),
                    contract("c2", "active", 2, future),
                    contract("c3", "active", 3, past),
                    contract("c4", "draft", 4, None),
                ],
                ..Default::default()
            },
        ))
        .await
        .expect("contracts");
    spaces
        .batch_upsert_quality_checks(req(
            &root,
            BatchUpsertQualityChecksRequest {
                space_id: w.open.clone(),
                items: vec![
                    check("q1", "pass", false, 1),
                    check("q2", "pass", false, 2),
                    check("q3", "fail", false, 3),
                    check("q4", "", false, 4),
                    check("q5", "fail", true, 5),
                ],
                ..Default::default()
            },
        ))
        .await
        .expect("checks");
    // Locked (restricted) space: 4 products, 1 open issue, 1 active
    // contract, 1 failing check — invisible to the plain member.
    put_products(
        &app,
        &root,
        &w.locked,
        (0..4).map(|i| product(&format!("l{i}"), 10 + i)).collect(),
    )
    .await
    .expect("locked products");
    spaces
        .batch_upsert_issues(req(
            &root,
            BatchUpsertIssuesRequest {
                space_id: w.locked.clone(),
                items: vec![issue("li", "open", "high", 1)],
                ..Default::default()
            },
        ))
        .await
        .expect("locked issue");
    spaces
        .batch_upsert_contracts(req(
            &root,
            BatchUpsertContractsRequest {
                space_id: w.locked.clone(),
                items: vec![contract("lc", "active", 1, None)],
                ..Default::default()
            },
        ))
        .await
        .expect("locked contract");
    spaces
        .batch_upsert_quality_checks(req(
            &root,
            BatchUpsertQualityChecksRequest {
                space_id: w.locked.clone(),
                items: vec![check("lq", "fail", false, 1)],
                ..Default::default()
            },
        ))
        .await
        .expect("locked check");
    // Another organization's space does not count anywhere.
    put_products(&app, &root, &w.elsewhere, vec![product("e1", 1)])
        .await
        .expect("elsewhere");

    let stats = |t: String| {
        let mut a = agg(&app);
        let slug = w.slug.clone();
        async move {
            a.get_stats(req(&t, GetStatsRequest { slug }))
                .await
                .expect("stats")
                .into_inner()
        }
    };
    let member = stats(token(&w.member)).await;
    assert_eq!(
        (
            member.total_spaces,
            member.total_products,
            member.total_users,
            member.open_issues,
            member.active_contracts
        ),
        (2, 2, 2, 3, 2),
        "member: open + invited spaces"
    );
    assert_eq!(member.quality_score, Some(2.0 / 3.0));

    let admin = stats(token(&w.admin)).await;
    assert_eq!(
        (
            admin.total_spaces,
            admin.total_products,
            admin.total_users,
            admin.open_issues,
            admin.active_contracts
        ),
        (3, 6, 2, 4, 3)
    );
    assert_eq!(admin.quality_score, Some(2.0 / 4.0));

    // Archiving a product and deleting an issue move the counters.
    let mut p1 = product("p1", 1);
    p1.id = agg(&app)
        .list_products(req(
            &root,
            ListProductsRequest {
                slug: w.slug.clone(),
                search: "p1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("find p1")
        .into_inner()
        .items[0]
        .id
        .clone();
    p1.is_archived = true;
    put_products(&app, &root, &w.open, vec![p1])
        .await
        .expect("archive");
    let open_issue = agg(&app)
        .list_issues(req(
            &root,
            ListIssuesRequest {
                slug: w.slug.clone(),
                status: vec!["open".into()],
                ..Default::default()
            },
        ))
        .await
        .expect("issues")
        .into_inner()
        .items
        .into_iter()
        .find(|i| i.title == "i1")
        .expect("i1");
    spaces
        .delete_issue(req(
            &root,
            DeleteIssueRequest {
                space_id: w.open.clone(),
                issue_id: open_issue.id,
                ..Default::default()
            },
        ))
        .await
        .expect("delete");
    let after = stats(token(&w.member)).await;
    assert_eq!((after.total_products, after.open_issues), (1, 2));

    // No check has run: the score is absent.
    let empty = unique_slug("empty");
    app.create_org("Empty", &empty, &w.admin).await;
    let none = agg(&app)
        .get_stats(req(&root, GetStatsRequest { slug: empty }))
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(
        (none.total_spaces, none.total_products, none.quality_score),
        (0, 0, None)
    );
}

#[tokio::test]
async fn pages_have_defaults_caps_edges_and_tokens() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    put_products(
        &app,
        &root,
        &w.open,
        (0..25).map(|i| product(&format!("p{i:02}"), i)).collect(),
    )
    .await
    .expect("put");
    let list = |r: ListProductsRequest| {
        let mut a = agg(&app);
        let root = root.clone();
        async move { a.list_products(req(&root, r)).await }
    };
    let base = || ListProductsRequest {
        slug: w.slug.clone(),
        ..Default::default()
    };
    let r = list(ListProductsRequest { size: 0, ..base() })
        .await
        .expect("default")
        .into_inner();
    assert_eq!((r.size, r.items.len(), r.total), (20, 20, 25));
    let r = list(ListProductsRequest { size: 1000, ..base() })
        .await
        .expect("capped")
        .into_inner();
    assert_eq!((r.size, r.items.len()), (100, 25));
    let r = list(ListProductsRequest {
        page: Some(2),
        size: 10,
        ..base()
    })
    .await
    .expect("page 2")
    .into_inner();
    assert_eq!(
        r.items.iter().map(|p| p.name.as_str()).collect::<Vec<_>>()[..2],
        ["p14", "p13"]
    );
    let r = list(ListProductsRequest {
        page: Some(9),
        size: 10,
        ..base()
    })
    .await
    .expect("past")
    .into_inner();
    assert_eq!((r.items.len(), r.total, r.page), (0, 25, 9));
    let zero = list(ListProductsRequest {
        page: Some(0),
        ..base()
    })
    .await;
    assert_error(zero, Code::InvalidArgument, "INVALID_PAGE");

    let mut seen = Vec::new();
    let mut token_ = String::new();
    loop {
        let r = list(ListProductsRequest {
            size: 7,
            page_token: token_.clone(),
            ..base()
        })
        .await
        .expect("page")
        .into_inner();
        seen.extend(r.items.into_iter().map(|p| p.name));
        if r.next_page_token.is_empty() {
            break;
        }
        token_ = r.next_page_token;
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("p{i:02}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_repeated_upsert_changes_nothing_and_a_changed_one_replaces() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    let items = vec![product("stable", 1), product("other", 2)];
    assert_eq!(
        put_products(&app, &root, &w.open, items.clone())
            .await
            .expect("first"),
        2
    );
    let read = || {
        let mut a = agg(&app);
        let root = root.clone();
        let slug = w.slug.clone();
        async move {
            a.list_products(req(
                &root,
                ListProductsRequest {
                    slug,
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner()
            .items
        }
    };
    let before = read().await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(
        put_products(&app, &root, &w.open, items.clone())
            .await
            .expect("again"),
        2
    );
    assert_eq!(read().await, before, "same rows, same updated_at");

    let mut changed = items[0].clone();
    changed.description = "new words".into();
    put_products(&app, &root, &w.open, vec![changed])
        .await
        .expect("change");
    let after = read().await;
    assert_eq!(after.len(), 2, "replaced, not added");
    let stable = after.iter().find(|p| p.name == "stable").expect("stable");
    assert_eq!(stable.description, "new words");
    let old = before.iter().find(|p| p.name == "stable").expect("stable");
    assert_eq!(stable.created_at, old.created_at);
    let micros = |t: &Option<Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
    assert!(micros(&stable.updated_at) > micros(&old.updated_at));
}

#[tokio::test]
async fn a_batch_with_one_bad_item_changes_nothing() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    let mut spaces = app.spaces();
    let count = |app: &TestApp| {
        let mut a = agg(app);
        let root = root.clone();
        let slug = w.slug.clone();
        async move {
            let p = a
                .list_products(req(
                    &root,
                    ListProductsRequest {
                        slug: slug.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("p")
                .into_inner()
                .total;
            let i = a
                .list_issues(req(
                    &root,
                    ListIssuesRequest {
                        slug: slug.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("i")
                .into_inner()
                .total;
            let c = a
                .list_contracts(req(
                    &root,
                    ListContractsRequest {
                        slug: slug.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("c")
                .into_inner()
                .total;
            let q = a
                .list_quality_checks(req(
                    &root,
                    ListQualityChecksRequest {
                        slug,
                        ..Default::default()
                    },
                ))
                .await
                .expect("q")
                .into_inner()
                .total;
            (p, i, c, q)
        }
    };

    let mut bad_score = product("bad", 2);
    bad_score.quality_score = Some(1.5);
    let status = assert_error(
        put_products(&app, &root, &w.open, vec![product("fine", 1), bad_score]).await,
        Code::InvalidArgument,
        "OUT_OF_RANGE",
    );
    assert_eq!(
        info_meta(&status, "field").as_deref(),
        Some("items[1].quality_score")
    );
    assert!(status.message().starts_with("items[1]"));

    let cases: Vec<(Result<(), tonic::Status>, &str, &str)> = vec![
        (
            spaces
                .batch_upsert_issues(req(
                    &root,
                    BatchUpsertIssuesRequest {
                        space_id: w.open.clone(),
                        items: vec![issue("ok", "open", "low", 1), issue("x", "open", "urgent", 2)],
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "INVALID_PRIORITY",
            "items[1].priority",
        ),
        (
            spaces
                .batch_upsert_issues(req(
                    &root,
                    BatchUpsertIssuesRequest {
                        space_id: w.open.clone(),
                        items: vec![issue("x", "closed", "low", 1)],
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "INVALID_STATUS",
            "items[0].status",
        ),
        (
            spaces
                .batch_upsert_contracts(req(
                    &root,
                    BatchUpsertContractsRequest {
                        space_id: w.open.clone(),
                        items: vec![contract("ok", "active", 1, None), {
                            let mut c = contract("x", "active", 2, None);
                            c.sla = Some(Sla {
                                availability_percent: 101.0,
                                ..Default::default()
                            });
                            c
                        }],
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "OUT_OF_RANGE",
            "items[1].sla.availability_percent",
        ),
        (
            spaces
                .batch_upsert_contracts(req(
                    &root,
                    BatchUpsertContractsRequest {
                        space_id: w.open.clone(),
                        items: vec![{
                            let mut c = contract("x", "active", 2, None);
                            c.sla = Some(Sla {
                                quality_score_min: -0.1,
                                ..Default::default()
                            });
                            c
                        }],
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "OUT_OF_RANGE",
            "items[0].sla.quality_score_min",
        ),
        (
            spaces
                .batch_upsert_quality_checks(req(
                    &root,
                    BatchUpsertQualityChecksRequest {
                        space_id: w.open.clone(),
                        items: vec![check("ok", "pass", false, 1), {
                            let mut q = check("x", "pass", false, 2);
                            q.severity = "fatal".into();
                            q
                        }],
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "INVALID_SEVERITY",
            "items[1].severity",
        ),
        (
            spaces
                .batch_upsert_quality_checks(req(
                    &root,
                    BatchUpsertQualityChecksRequest {
                        space_id: w.open.clone(),
                        items: vec![check("x", "passed", false, 1)],
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "INVALID_STATUS",
            "items[0].last_status",
        ),
        (
            put_products(
                &app,
                &root,
                &w.open,
                vec![Product {
                    id: "nope".into(),
                    name: "x".into(),
                    ..Default::default()
                }],
            )
            .await
            .map(drop),
            "INVALID_ID",
            "items[0].id",
        ),
        (
            put_products(
                &app,
                &root,
                &w.open,
                vec![Product {
                    id: id(),
                    name: " ".into(),
                    ..Default::default()
                }],
            )
            .await
            .map(drop),
            "MISSING_FIELD",
            "items[0].name",
        ),
        (
            {
                let p = product("twice", 1);
                put_products(&app, &root, &w.open, vec![p.clone(), product("between", 2), p])
                    .await
                    .map(drop)
            },
            "DUPLICATE_ID",
            "items[2].id",
        ),
        (
            put_products(
                &app,
                &root,
                &w.open,
                (0..1001).map(|i| product(&format!("n{i}"), i)).collect(),
            )
            .await
            .map(drop),
            "BATCH_TOO_LARGE",
            "items",
        ),
    ];
    for (result, expected_reason, field) in cases {
        let status = assert_error(result, Code::InvalidArgument, expected_reason);
        assert_eq!(info_meta(&status, "field").as_deref(), Some(field), "{status:?}");
    }
    assert_eq!(count(&app).await, (0, 0, 0, 0), "no bad batch wrote anything");

    // A full batch of 1,000 is fine.
    assert_eq!(
        put_products(
            &app,
            &root,
            &w.open,
            (0..1000).map(|i| product(&format!("n{i}"), i)).collect()
        )
        .await
        .expect("1000 items"),
        1000
    );

    // Ids are unique per space: an id another space uses is a new item
    // here, and the other space's item is untouched.
    let taken = product("mine", 1);
    put_products(&app, &root, &w.locked, vec![taken.clone()])
        .await
        .expect("locked");
    put_products(
        &app,
        &root,
        &w.open,
        vec![
            product("innocent", 5),
            Product {
                name: "stolen".into(),
                ..taken.clone()
            },
        ],
    )
    .await
    .expect("the same id in another space is another item");
    assert_eq!(count(&app).await.0, 1003);
    let locked: Vec<(String, String)> = agg(&app)
        .list_products(req(
            &root,
            ListProductsRequest {
                slug: w.slug.clone(),
                space_id: w.locked.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .items
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    assert!(
        locked.contains(&(taken.id.clone(), "mine".to_owned())),
        "{locked:?}"
    );
    // A name taken by another product of the space is ALREADY_EXISTS.
    let clash = put_products(&app, &root, &w.open, vec![product("n5", 1)]).await;
    assert_error(clash, Code::AlreadyExists, "NAME_TAKEN");
    assert_eq!(count(&app).await.0, 1003);
}

#[tokio::test]
async fn content_writes_take_a_space_editor_or_admin() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let mut spaces = app.spaces();
    for (email, role) in [("ed@agg.test", "editor"), ("vi@agg.test", "viewer")] {
        spaces
            .add_space_member(req(
                &root(),
                AddSpaceMemberRequest {
                    space_id: w.open.clone(),
                    user_email: email.into(),
                    role: role.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("member");
    }
    put_products(
        &app,
        &token("ed@agg.test"),
        &w.open,
        vec![product("by editor", 1)],
    )
    .await
    .expect("editor writes");
    put_products(&app, &token(&w.admin), &w.open, vec![product("by admin", 2)])
        .await
        .expect("space admin writes");
    for who in ["vi@agg.test", &w.member, "stranger@agg.test"] {
        let denied = put_products(&app, &token(who), &w.open, vec![product("nope", 3)]).await;
        assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
    }
    assert_error(
        put_products(&app, "", &w.open, vec![]).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    let missing = put_products(&app, &root(), &id(), vec![]).await;
    assert_error(missing, Code::NotFound, "SPACE_NOT_FOUND");

    let names = product_names(
        &app,
        &root(),
        ListProductsRequest {
            slug: w.slug.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(names, vec!["by admin", "by editor"]);
    let victim = agg(&app)
        .list_products(req(
            &root(),
            ListProductsRequest {
                slug: w.slug.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .items[0]
        .id
        .clone();
    let by_viewer = spaces
        .delete_product(req(
            &token("vi@agg.test"),
            DeleteProductRequest {
                space_id: w.open.clone(),
                product_id: victim.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(by_viewer, Code::PermissionDenied, "NOT_AUTHORIZED");
    // Deleting through another space, even one the caller writes, fails.
    let wrong_space = spaces
        .delete_product(req(
            &root(),
            DeleteProductRequest {
                space_id: w.locked.clone(),
                product_id: victim.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(wrong_space, Code::NotFound, "PRODUCT_NOT_FOUND");
    spaces
        .delete_product(req(
            &token("ed@agg.test"),
            DeleteProductRequest {
                space_id: w.open.clone(),
                product_id: victim.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("editor deletes");
    let again = spaces
        .delete_product(req(
            &root(),
            DeleteProductRequest {
                space_id: w.open.clone(),
                product_id: victim,
                ..Default::default()
            },
        ))
        .await;
    assert_error(again, Code::NotFound, "PRODUCT_NOT_FOUND");
}

#[tokio::test]
async fn content_follows_its_space_between_organizations() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    put_products(&app, &root, &w.open, vec![product("traveller", 1)])
        .await
        .expect("put");
    let names = |slug: String| {
        product_names(
            &app,
            &root,
            ListProductsRequest {
                slug,
                ..Default::default()
            },
        )
    };
    assert_eq!(names(w.slug.clone()).await, vec!["traveller"]);
    app.orgs()
        .remove_space(req(
            &root,
            RemoveSpaceRequest {
                slug: w.slug.clone(),
                space_id: w.open.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("detach");
    assert!(
        names(w.slug.clone()).await.is_empty(),
        "detached content leaves the organization"
    );
    let stats = agg(&app)
        .get_stats(req(&root, GetStatsRequest { slug: w.slug.clone() }))
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.total_products, 0);

    let next = unique_slug("next");
    app.create_org("Next", &next, &w.admin).await;
    app.attach(&next, &w.open).await;
    assert_eq!(names(next.clone()).await, vec!["traveller"]);
    // Content written while detached joins the organization too.
    app.orgs()
        .remove_space(req(
            &root,
            RemoveSpaceRequest {
                slug: next.clone(),
                space_id: w.open.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("detach");
    put_products(&app, &root, &w.open, vec![product("while detached", 2)])
        .await
        .expect("put");
    app.attach(&w.slug, &w.open).await;
    assert_eq!(names(w.slug.clone()).await, vec!["while detached", "traveller"]);
    app.orgs()
        .delete_organization(req(
            &root,
            DeleteOrganizationRequest {
                slug: w.slug.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete");
    app.attach(&next, &w.open).await;
    assert_eq!(names(next).await.len(), 2);
}

#[tokio::test]
async fn restricted_content_is_invisible_to_plain_members_in_every_view() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    let mut spaces = app.spaces();
    put_products(&app, &root, &w.locked, vec![product("secret product", 1)])
        .await
        .expect("p");
    spaces
        .batch_upsert_contracts(req(
            &root,
            BatchUpsertContractsRequest {
                space_id: w.locked.clone(),
                items: vec![contract("secret contract", "active", 1, None)],
                ..Default::default()
            },
        ))
        .await
        .expect("c");
    spaces
        .batch_upsert_issues(req(
            &root,
            BatchUpsertIssuesRequest {
                space_id: w.locked.clone(),
                items: vec![issue("secret issue", "open", "high", 1)],
                ..Default::default()
            },
        ))
        .await
        .expect("i");
    spaces
        .batch_upsert_quality_checks(req(
            &root,
            BatchUpsertQualityChecksRequest {
                space_id: w.locked.clone(),
                items: vec![check("secret check", "pass", false, 1)],
                ..Default::default()
            },
        ))
        .await
        .expect("q");
    let mut a = agg(&app);
    for (who, expected) in [(token(&w.member), 0), (token(&w.admin), 1), (root.clone(), 1)] {
        let slug = w.slug.clone();
        let p = a
            .list_products(req(
                &who,
                ListProductsRequest {
                    slug: slug.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("p")
            .into_inner();
        let c = a
            .list_contracts(req(
                &who,
                ListContractsRequest {
                    slug: slug.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("c")
            .into_inner();
        let i = a
            .list_issues(req(
                &who,
                ListIssuesRequest {
                    slug: slug.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("i")
            .into_inner();
        let q = a
            .list_quality_checks(req(
                &who,
                ListQualityChecksRequest {
                    slug: slug.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("q")
            .into_inner();
        assert_eq!(
            (p.total, c.total, i.total, q.total),
            (expected, expected, expected, expected)
        );
        assert_eq!(
            (p.items.len(), c.items.len(), i.items.len(), q.items.len()),
            (
                expected as usize,
                expected as usize,
                expected as usize,
                expected as usize
            )
        );
        let s = a
            .get_stats(req(&who, GetStatsRequest { slug }))
            .await
            .expect("s")
            .into_inner();
        assert_eq!(
            (s.total_products, s.open_issues, s.active_contracts),
            (expected, expected, expected)
        );
        assert_eq!(s.quality_score, if expected == 1 { Some(1.0) } else { None });
    }
    // Joining the space as a viewer reveals it.
    spaces
        .add_space_member(req(
            &root,
            AddSpaceMemberRequest {
                space_id: w.locked.clone(),
                user_email: w.member.clone(),
                role: "viewer".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("join");
    let p = a
        .list_products(req(
            &token(&w.member),
            ListProductsRequest {
                slug: w.slug.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("p")
        .into_inner();
    assert_eq!(p.total, 1);
}

#[tokio::test]
async fn a_full_batch_of_large_items_is_accepted_over_grpc() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    // About 8 MB: above tonic's 4 MB default, within orgd's limit.
    let long = "y".repeat(8000);
    let items: Vec<Product> = (0..1000)
        .map(|i| Product {
            description: long.clone(),
            ..product(&format!("big{i}"), i)
        })
        .collect();
    assert_eq!(
        put_products(&app, &root(), &w.open, items)
            .await
            .expect("large batch"),
        1000
    );
}

async fn names_by_id(app: &TestApp, slug: &str) -> Vec<(String, String)> {
    let mut by_id: Vec<(String, String)> = agg(app)
        .list_products(req(
            &root(),
            ListProductsRequest {
                slug: slug.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .items
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    by_id.sort();
    by_id
}

#[tokio::test]
async fn a_batch_may_swap_names_but_not_take_one_held_outside_it() {
    let app = TestApp::spawn().await;
    app.create_org("Swap", "swap", "admin@swap.test").await;
    let space = app
        .create_space("Swap space", "organization", "admin@swap.test")
        .await;
    app.attach("swap", &space.id).await;
    let a = product("alpha", 1_000);
    let b = product("beta", 2_000);
    let c = product("gamma", 3_000);
    put_products(&app, &root(), &space.id, vec![a.clone(), b.clone(), c.clone()])
        .await
        .expect("first batch");
    // alpha <-> beta in one batch: a valid end state.
    let swapped = vec![
        Product {
            name: "beta".into(),
            ..a.clone()
        },
        Product {
            name: "alpha".into(),
            ..b.clone()
        },
    ];
    put_products(&app, &root(), &space.id, swapped.clone())
        .await
        .expect("a swap is accepted");
    let mut expected = vec![
        (a.id.clone(), "beta".to_owned()),
        (b.id.clone(), "alpha".to_owned()),
        (c.id.clone(), "gamma".to_owned()),
    ];
    expected.sort();
    assert_eq!(names_by_id(&app, "swap").await, expected);
    put_products(&app, &root(), &space.id, swapped)
        .await
        .expect("repeating it changes nothing");
    assert_eq!(names_by_id(&app, "swap").await, expected);

    // Taking the name of a product outside the batch is still refused, and
    // changes nothing.
    let taken = put_products(
        &app,
        &root(),
        &space.id,
        vec![
            Product {
                name: "gamma".into(),
                ..a.clone()
            },
            Product {
                name: "delta".into(),
                ..b.clone()
            },
        ],
    )
    .await;
    assert_error(taken, tonic::Code::AlreadyExists, "NAME_TAKEN");
    assert_eq!(names_by_id(&app, "swap").await, expected);
}

/// The counters behind list totals and GetStats move by what each change
/// did to its rows: after every round of random upserts (new items,
/// status and archive changes, identical rewrites) and deletes, each total
/// equals the one counted from a model of the space.
#[tokio::test]
async fn counters_follow_every_upsert_and_delete_by_deltas() {
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    let mut spaces = app.spaces();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_c0de);
    let pool = |n: usize| (0..n).map(|_| id()).collect::<Vec<_>>();
    let (product_ids, issue_ids, check_ids, contract_ids) = (pool(8), pool(8), pool(8), pool(8));
    // id -> (archived) / status / (archived, last status) / status
    let mut products: HashMap<String, bool> = HashMap::new();
    let mut issues: HashMap<String, &str> = HashMap::new();
    let mut checks: HashMap<String, (bool, &str)> = HashMap::new();
    let mut contracts: HashMap<String, &str> = HashMap::new();
    const ISSUE_STATUSES: [&str; 4] = ["open", "in_progress", "resolved", "wont_fix"];
    const CONTRACT_STATUSES: [&str; 4] = ["draft", "active", "expired", "deprecated"];
    const CHECK_STATUSES: [&str; 4] = ["", "pass", "fail", "warning"];

    for round in 0..12 {
        let mut batch = Vec::new();
        for pid in product_ids.iter() {
            if rng.random_bool(0.5) {
                continue;
            }
            let archived = rng.random_bool(0.3);
            let mut p = product(&format!("product {pid}"), round);
            p.id = pid.clone();
            p.is_archived = archived;
            products.insert(pid.clone(), archived);
            batch.push(p);
        }
        put_products(&app, &root, &w.open, batch).await.expect("products");
        let mut batch = Vec::new();
        for iid in issue_ids.iter() {
            if rng.random_bool(0.5) {
                continue;
            }
            let status = ISSUE_STATUSES[rng.random_range(0..4)];
            let mut i = issue(&format!("issue {iid}"), status, "high", round);
            i.id = iid.clone();
            issues.insert(iid.clone(), status);
            batch.push(i);
        }
        spaces
            .batch_upsert_issues(req(
                &root,
                BatchUpsertIssuesRequest {
                    space_id: w.open.clone(),
                    items: batch,
                    ..Default::default()
                },
            ))
            .await
            .expect("issues");
        let mut batch = Vec::new();
        for cid in check_ids.iter() {
            if rng.random_bool(0.5) {
                continue;
            }
            let archived = rng.random_bool(0.3);
            let status = CHECK_STATUSES[rng.random_range(0..4)];
            let mut c = check(&format!("check {cid}"), status, archived, round);
            c.id = cid.clone();
            checks.insert(cid.clone(), (archived, status));
            batch.push(c);
        }
        spaces
            .batch_upsert_quality_checks(req(
                &root,
                BatchUpsertQualityChecksRequest {
                    space_id: w.open.clone(),
                    items: batch,
                    ..Default::default()
                },
            ))
            .await
            .expect("checks");
        let mut batch = Vec::new();
        for kid in contract_ids.iter() {
            if rng.random_bool(0.5) {
                continue;
            }
            let status = CONTRACT_STATUSES[rng.random_range(0..4)];
            let mut c = contract(&format!("contract {kid}"), status, round, None);
            c.id = kid.clone();
            contracts.insert(kid.clone(), status);
            batch.push(c);
        }
        spaces
            .batch_upsert_contracts(req(
                &root,
                BatchUpsertContractsRequest {
                    space_id: w.open.clone(),
                    items: batch,
                    ..Default::default()
                },
            ))
            .await
            .expect("contracts");
        // One delete of each kind, when there is something to delete.
        if let Some(gone) = products.keys().next().cloned().filter(|_| rng.random_bool(0.5)) {
            spaces
                .delete_product(req(
                    &root,
                    DeleteProductRequest {
                        space_id: w.open.clone(),
                        product_id: gone.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("delete product");
            products.remove(&gone);
        }
        if let Some(gone) = issues.keys().next().cloned().filter(|_| rng.random_bool(0.5)) {
            spaces
                .delete_issue(req(
                    &root,
                    DeleteIssueRequest {
                        space_id: w.open.clone(),
                        issue_id: gone.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("delete issue");
            issues.remove(&gone);
        }
        if let Some(gone) = checks.keys().next().cloned().filter(|_| rng.random_bool(0.5)) {
            spaces
                .delete_quality_check(req(
                    &root,
                    DeleteQualityCheckRequest {
                        space_id: w.open.clone(),
                        quality_check_id: gone.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("delete check");
            checks.remove(&gone);
        }
        if let Some(gone) = contracts.keys().next().cloned().filter(|_| rng.random_bool(0.5)) {
            spaces
                .delete_contract(req(
                    &root,
                    DeleteContractRequest {
                        space_id: w.open.clone(),
                        contract_id: gone.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("delete contract");
            contracts.remove(&gone);
        }

        // Totals from the counters, against the model.
        let live_products = products.values().filter(|a| !**a).count() as i32;
        let listed = |include_archived| ListProductsRequest {
            slug: w.slug.clone(),
            include_archived,
            ..Default::default()
        };
        let total = agg(&app)
            .list_products(req(&root, listed(false)))
            .await
            .expect("list");
        assert_eq!(
            total.into_inner().total,
            live_products,
            "round {round}: live products"
        );
        let total = agg(&app)
            .list_products(req(&root, listed(true)))
            .await
            .expect("list");
        assert_eq!(
            total.into_inner().total,
            products.len() as i32,
            "round {round}: products"
        );
        for status in ISSUE_STATUSES {
            let want = issues.values().filter(|s| **s == status).count() as i32;
            let got = agg(&app)
                .list_issues(req(
                    &root,
                    ListIssuesRequest {
                        slug: w.slug.clone(),
                        status: vec![status.into()],
                        ..Default::default()
                    },
                ))
                .await
                .expect("issues")
                .into_inner()
                .total;
            assert_eq!(got, want, "round {round}: {status} issues");
        }
        for status in CONTRACT_STATUSES {
            let want = contracts.values().filter(|s| **s == status).count() as i32;
            let got = agg(&app)
                .list_contracts(req(
                    &root,
                    ListContractsRequest {
                        slug: w.slug.clone(),
                        status: vec![status.into()],
                        ..Default::default()
                    },
                ))
                .await
                .expect("contracts")
                .into_inner()
                .total;
            assert_eq!(got, want, "round {round}: {status} contracts");
        }
        for include_archived in [false, true] {
            let want = checks.values().filter(|(a, _)| include_archived || !*a).count() as i32;
            let got = agg(&app)
                .list_quality_checks(req(
                    &root,
                    ListQualityChecksRequest {
                        slug: w.slug.clone(),
                        include_archived,
                        ..Default::default()
                    },
                ))
                .await
                .expect("checks")
                .into_inner()
                .total;
            assert_eq!(
                got, want,
                "round {round}: checks (archived too: {include_archived})"
            );
        }
        let stats = agg(&app)
            .get_stats(req(&root, GetStatsRequest { slug: w.slug.clone() }))
            .await
            .expect("stats")
            .into_inner();
        assert_eq!(stats.total_products, live_products, "round {round}");
        let open = issues
            .values()
            .filter(|s| matches!(**s, "open" | "in_progress"))
            .count() as i32;
        assert_eq!(stats.open_issues, open, "round {round}");
        let ran: Vec<&str> = checks
            .values()
            .filter(|(a, s)| !*a && !s.is_empty())
            .map(|(_, s)| *s)
            .collect();
        let score =
            (!ran.is_empty()).then(|| ran.iter().filter(|s| **s == "pass").count() as f64 / ran.len() as f64);
        assert_eq!(stats.quality_score, score, "round {round}");
        let active = contracts.values().filter(|s| **s == "active").count() as i32;
        assert_eq!(stats.active_contracts, active, "round {round}");
    }
}

/// Content writes, memberships given and taken and visibility changes
/// racing on the same restricted spaces leave the per-member counters
/// (migration 0015) equal to a recount: every writer of a space's counters
/// and every membership change holds the space's row, so a trigger never
/// reads a membership or a counter another transaction is changing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_counters_stay_exact_under_racing_writes_and_memberships() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let mut spaces = Vec::new();
    for i in 0..3 {
        let s = app
            .create_space(&format!("Raced {i} {}", w.slug), "restricted", &w.admin)
            .await;
        app.attach(&w.slug, &s.id).await;
        spaces.push(s.id);
    }
    let mut emails = vec![w.member.clone()];
    for i in 0..3 {
        let email = format!("racer{i}-{}@agg.test", w.slug);
        app.add_user(&w.slug, &email, "member").await;
        emails.push(email);
    }
    let mut users = Vec::new();
    for email in &emails {
        users.push(user_id(&app.database_url, email).await);
    }
    let now = chrono::Utc::now().timestamp();
    let mut tasks = Vec::new();
    // Writers: products and contracts (expiries past and future) into each
    // space.
    for (k, space) in spaces.iter().enumerate() {
        for writer in 0..2 {
            let mut client = app.spaces();
            let space = space.clone();
            tasks.push(tokio::spawn(async move {
                let root = root();
                let mut ok = 0u32;
                for round in 0..12i64 {
                    let t = round * 10 + writer;
                    let mut p = product(&format!("p{k}-{writer}-{round}"), t);
                    p.is_archived = round % 3 == 0;
                    let products = client
                        .batch_upsert_products(req(
                            &root,
                            BatchUpsertProductsRequest {
                                space_id: space.clone(),
                                items: vec![p],
                                ..Default::default()
                            },
                        ))
                        .await;
                    let day = [-3, 0, 2][round as usize % 3];
                    let contracts = client
                        .batch_upsert_contracts(req(
                            &root,
                            BatchUpsertContractsRequest {
                                space_id: space.clone(),
                                items: vec![contract(
                                    &format!("c{k}-{writer}-{round}"),
                                    "active",
                                    t,
                                    Some(Timestamp {
                                        seconds: now + day * 86_400 + 60,
                                        nanos: 0,
                                    }),
                                )],
                                ..Default::default()
                            },
                        ))
                        .await;
                    ok += u32::from(products.is_ok()) + u32::from(contracts.is_ok());
                }
                ("write", ok)
            }));
        }
    }
    // Each user joins and leaves the spaces over and over.
    for (u, (email, user)) in emails.iter().zip(&users).enumerate() {
        let mut client = app.spaces();
        let (email, user, spaces) = (email.clone(), user.clone(), spaces.clone());
        tasks.push(tokio::spawn(async move {
            let root = root();
            let mut ok = 0u32;
            for round in 0..12 {
                let space = spaces[(u + round) % spaces.len()].clone();
                let added = client
                    .add_space_member(req(
                        &root,
                        AddSpaceMemberRequest {
                            space_id: space.clone(),
                            user_email: email.clone(),
                            role: "viewer".into(),
                            ..Default::default()
                        },
                    ))
                    .await;
                ok += u32::from(added.is_ok());
                if round % 3 != 2 {
                    let removed = client
                        .remove_space_member(req(
                            &root,
                            RemoveSpaceMemberRequest {
                                space_id: space,
                                user_id: user.clone(),
                                ..Default::default()
                            },
                        ))
                        .await;
                    ok += u32::from(removed.is_ok());
                }
            }
            ("membership", ok)
        }));
    }
    // People join and leave the organization meanwhile (its member count).
    for joiner in 0..2 {
        let mut client = app.orgs();
        let slug = w.slug.clone();
        tasks.push(tokio::spawn(async move {
            let root = root();
            let mut ok = 0u32;
            for round in 0..8 {
                let email = format!("joiner{joiner}-{round}-{slug}@agg.test");
                let added = client
                    .add_user(req(
                        &root,
                        AddUserRequest {
                            slug: slug.clone(),
                            user_email: email,
                            role: "member".into(),
                            ..Default::default()
                        },
                    ))
                    .await;
                let Some(member) = added.ok().and_then(|a| a.into_inner().member) else {
                    continue;
                };
                ok += 1;
                if round % 2 == 0 {
                    let removed = client
                        .remove_user(req(
                            &root,
                            RemoveUserRequest {
                                slug: slug.clone(),
                                user_id: member.user_id,
                                ..Default::default()
                            },
                        ))
                        .await;
                    ok += u32::from(removed.is_ok());
                }
            }
            ("organization membership", ok)
        }));
    }
    // One space changes visibility back and forth.
    {
        let mut client = app.spaces();
        let space = spaces[0].clone();
        tasks.push(tokio::spawn(async move {
            let root = root();
            let mut ok = 0u32;
            for round in 0..10 {
                let visibility = if round % 2 == 0 {
                    "organization"
                } else {
                    "restricted"
                };
                let done = client
                    .update_space(req(
                        &root,
                        UpdateSpaceRequest {
                            space_id: space.clone(),
                            visibility: Some(visibility.into()),
                            ..Default::default()
                        },
                    ))
                    .await;
                ok += u32::from(done.is_ok());
            }
            ("visibility", ok)
        }));
    }
    let mut done = std::collections::BTreeMap::new();
    for task in tasks {
        let (kind, ok) = task.await.expect("task");
        *done.entry(kind).or_insert(0u32) += ok;
    }
    assert!(
        done.get("write").copied().unwrap_or(0) >= 60
            && done.get("membership").copied().unwrap_or(0) >= 40
            && done.get("visibility").copied().unwrap_or(0) >= 5
            && done.get("organization membership").copied().unwrap_or(0) >= 16,
        "most changes went through: {done:?}"
    );
    let mut db = Db::connect(&app.database_url).await;
    for q in counter_differences() {
        assert_eq!(db.strings(&q, &[]).await, vec!["0".to_string()], "{q}");
    }
    // And what each member is answered is what its spaces hold, and the
    // organization's people.
    let people = db
        .strings(
            "SELECT CAST(count(*) AS TEXT) FROM memberships m JOIN organizations o \
             ON o.id = m.organization_id WHERE o.slug = $1",
            &[Arg::Text(w.slug.clone())],
        )
        .await;
    let org = db
        .ids(
            "SELECT id FROM organizations WHERE slug = $1",
            &[Arg::Text(w.slug.clone())],
        )
        .await[0];
    for (email, user) in emails.iter().zip(&users) {
        let expected = db
            .row(
                "SELECT CAST(count(*) AS TEXT), CAST(COALESCE(SUM(st.products_active), 0) AS TEXT) \
                 FROM spaces s LEFT JOIN space_stats st ON st.space_id = s.id \
                 WHERE s.organization_id = $1 AND s.deleted_at IS NULL AND (s.visibility = 'organization' \
                 OR s.id IN (SELECT space_id FROM space_members WHERE user_id = $2))",
                &[Arg::Uuid(org), Arg::Uuid(user.parse().expect("uuid"))],
            )
            .await;
        let stats = agg(&app)
            .get_stats(req(&token(email), GetStatsRequest { slug: w.slug.clone() }))
            .await
            .expect("stats")
            .into_inner();
        assert_eq!(
            vec![stats.total_spaces.to_string(), stats.total_products.to_string()],
            expected,
            "{email}"
        );
        assert_eq!(vec![stats.total_users.to_string()], people, "{email}: people");
    }
    db.close().await;
}

/// A search counts its matches in the pass that pages them on a first
/// request, and apart after a page token or past the last match: the total
/// is the same on every page, as the plain member and as a superadmin.
#[tokio::test]
async fn searched_totals_hold_on_every_page_and_past_the_last() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    let member = token(&w.member);
    // Matches in a space the member sees, one it does not, and one it was
    // let into; and rows that do not match.
    for (space, base) in [(&w.open, 0), (&w.locked, 100), (&w.invited, 200)] {
        let items = (0..7)
            .map(|i| {
                let name = if i % 3 == 0 {
                    format!("hay {base}-{i}")
                } else {
                    format!("needle {base}-{i}")
                };
                product(&name, base + i)
            })
            .collect();
        put_products(&app, &root, space, items).await.expect("put");
    }
    for (who, expected) in [(&member, 8), (&root, 12)] {
        for (term, want) in [
            ("needle", expected),
            ("NEEDLE 1", if *who == root { 4 } else { 0 }),
            ("absent", 0),
        ] {
            let ask = |page: Option<i32>, page_token: String| {
                let mut client = agg(&app);
                let request = req(
                    who,
                    ListProductsRequest {
                        slug: w.slug.clone(),
                        search: term.into(),
                        size: 3,
                        page,
                        page_token,
                        ..Default::default()
                    },
                );
                async move { client.list_products(request).await }
            };
            // Page numbers, up to past the last match.
            let mut seen = 0;
            for n in 1..=6 {
                let page = ask(Some(n), String::new()).await.expect("page").into_inner();
                assert_eq!(page.total, want, "{term}: total on page {n}");
                seen += page.items.len() as i32;
            }
            assert_eq!(seen, want, "{term}: every match once over the pages");
            // Page tokens.
            let mut token = String::new();
            let mut listed = 0;
            loop {
                let page = ask(None, token).await.expect("page").into_inner();
                assert_eq!(page.total, want, "{term}: total after {listed} rows");
                listed += page.items.len() as i32;
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            assert_eq!(listed, want, "{term}: every match once through page tokens");
        }
    }
}

/// GetStats' active contracts follow the clock without counting contracts:
/// expiries in past days (before and after they are folded into the
/// counters at start), earlier today, later today and in the future, and
/// changes to contracts whose expiry day was already folded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_contracts_follow_the_clock_and_survive_folding() {
    let mut app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    let now = chrono::Utc::now().timestamp();
    let ts = |seconds: i64| Some(Timestamp { seconds, nanos: 0 });
    let open_contracts = vec![
        contract("forever", "active", 1, None),
        contract("three days ago", "active", 2, ts(now - 3 * 86_400)),
        contract("a second ago", "active", 3, ts(now - 1)),
        contract("in an hour", "active", 4, ts(now + 3_600)),
        contract("in ten days", "active", 5, ts(now + 10 * 86_400)),
        contract("draft, lapsed", "draft", 6, ts(now - 86_400)),
        contract("long ago", "active", 7, ts(now - 400 * 86_400)),
    ];
    let ids: Vec<String> = open_contracts.iter().map(|c| c.id.clone()).collect();
    let upsert = |space: &str, items: Vec<Contract>| BatchUpsertContractsRequest {
        space_id: space.into(),
        items,
        ..Default::default()
    };
    app.spaces()
        .batch_upsert_contracts(req(&root, upsert(&w.open, open_contracts.clone())))
        .await
        .expect("contracts");
    // A restricted space the plain member does not see.
    app.spaces()
        .batch_upsert_contracts(req(
            &root,
            upsert(&w.locked, vec![contract("hidden", "active", 8, ts(now + 86_400))]),
        ))
        .await
        .expect("contracts");
    async fn active(app: &TestApp, who: &str, slug: &str) -> i32 {
        agg(app)
            .get_stats(req(who, GetStatsRequest { slug: slug.into() }))
            .await
            .expect("stats")
            .into_inner()
            .active_contracts
    }
    let member = token(&w.member);
    assert_eq!(
        active(&app, &root, &w.slug).await,
        4,
        "forever, in an hour, in ten days, hidden"
    );
    assert_eq!(active(&app, &member, &w.slug).await, 3);

    // A start folds the passed days; the answers stay.
    let today = orgd::store::now_micros() / orgd::store::EXPIRY_DAY;
    let unfolded = |db_url: String| async move {
        let mut db = Db::connect(&db_url).await;
        let left = db
            .ids(
                "SELECT DISTINCT space_id FROM contract_expiries WHERE day < $1",
                &[Arg::I64(today)],
            )
            .await;
        db.close().await;
        left.len()
    };
    assert!(
        unfolded(app.database_url.clone()).await > 0,
        "past days wait for the fold"
    );
    app.restart().await;
    let mut waited = 0;
    while unfolded(app.database_url.clone()).await > 0 {
        assert!(waited < 100, "the fold at start never ran");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    assert_eq!(active(&app, &root, &w.slug).await, 4);
    assert_eq!(active(&app, &member, &w.slug).await, 3);

    // Changes to contracts of folded days: one lapsed contract is marked
    // expired (no change in what is active), the oldest is extended, the
    // ten-day one is deleted.
    let mut marked = open_contracts[1].clone();
    marked.status = "expired".into();
    let mut extended = open_contracts[6].clone();
    extended.expires_at = ts(now + 30 * 86_400);
    app.spaces()
        .batch_upsert_contracts(req(&root, upsert(&w.open, vec![marked, extended])))
        .await
        .expect("changes");
    app.spaces()
        .delete_contract(req(
            &root,
            DeleteContractRequest {
                space_id: w.open.clone(),
                contract_id: ids[4].clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete");
    // forever, in an hour, long ago (now in 30 days), hidden.
    assert_eq!(active(&app, &root, &w.slug).await, 4);
    assert_eq!(active(&app, &member, &w.slug).await, 3);
    app.restart().await;
    let mut waited = 0;
    while unfolded(app.database_url.clone()).await > 0 {
        assert!(waited < 100, "the fold at start never ran");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    assert_eq!(active(&app, &root, &w.slug).await, 4);
    assert_eq!(active(&app, &member, &w.slug).await, 3);
}

/// Statements that each answer "0" when the counters kept by class
/// (migration 0014), per member and the organizations' member counts
/// (0015) equal a recount from the spaces, the memberships and the
/// spaces' counters: each direction of an EXCEPT, and no expiry row left
/// at zero.
fn counter_differences() -> Vec<String> {
    const COUNTERS: &str = "products_active, products_archived, contracts_draft, contracts_active, \
        contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, \
        issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, \
        checks_archived, checks_ran, checks_passed";
    let sums = COUNTERS
        .split(", ")
        .map(|c| format!("COALESCE(SUM(st.{c}), 0)"))
        .collect::<Vec<_>>()
        .join(", ");
    let nonzero = COUNTERS
        .split(", ")
        .map(|c| format!("{c} <> 0"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let recount = format!(
        "SELECT s.organization_id, s.visibility = 'organization', count(*), {sums} \
         FROM spaces s LEFT JOIN space_stats st ON st.space_id = s.id \
         WHERE s.organization_id IS NOT NULL AND s.deleted_at IS NULL \
         GROUP BY s.organization_id, s.visibility = 'organization'"
    );
    let kept = format!(
        "SELECT organization_id, open, spaces, {COUNTERS} FROM organization_stats \
         WHERE spaces <> 0 OR {nonzero}"
    );
    let expiries = "SELECT s.organization_id, s.visibility = 'organization', e.day, SUM(e.n) \
         FROM spaces s JOIN contract_expiries e ON e.space_id = s.id \
         WHERE s.organization_id IS NOT NULL AND s.deleted_at IS NULL \
         GROUP BY s.organization_id, s.visibility = 'organization', e.day HAVING SUM(e.n) <> 0";
    let kept_expiries = "SELECT organization_id, open, day, n FROM organization_expiries";
    // Per member, the attached live restricted spaces it belongs to
    // (migration 0015); rows at zero are removed, so every row is compared.
    let restricted = "s.organization_id IS NOT NULL AND s.deleted_at IS NULL \
         AND s.visibility <> 'organization'";
    let member_recount = format!(
        "SELECT s.organization_id, sm.user_id, count(*), {sums} \
         FROM spaces s JOIN space_members sm ON sm.space_id = s.id \
         LEFT JOIN space_stats st ON st.space_id = s.id \
         WHERE {restricted} GROUP BY s.organization_id, sm.user_id"
    );
    let member_kept = format!("SELECT organization_id, user_id, spaces, {COUNTERS} FROM member_stats");
    let member_expiries = format!(
        "SELECT s.organization_id, sm.user_id, e.day, SUM(e.n) \
         FROM spaces s JOIN space_members sm ON sm.space_id = s.id \
         JOIN contract_expiries e ON e.space_id = s.id \
         WHERE {restricted} GROUP BY s.organization_id, sm.user_id, e.day HAVING SUM(e.n) <> 0"
    );
    let member_kept_expiries = "SELECT organization_id, user_id, day, n FROM member_expiries";
    vec![
        format!("SELECT CAST(count(*) AS TEXT) FROM ({kept} EXCEPT {recount}) x"),
        format!("SELECT CAST(count(*) AS TEXT) FROM ({recount} EXCEPT {kept}) x"),
        format!("SELECT CAST(count(*) AS TEXT) FROM ({kept_expiries} EXCEPT {expiries}) x"),
        format!("SELECT CAST(count(*) AS TEXT) FROM ({expiries} EXCEPT {kept_expiries}) x"),
        format!("SELECT CAST(count(*) AS TEXT) FROM ({member_kept} EXCEPT {member_recount}) x"),
        format!("SELECT CAST(count(*) AS TEXT) FROM ({member_recount} EXCEPT {member_kept}) x"),
        format!("SELECT CAST(count(*) AS TEXT) FROM ({member_kept_expiries} EXCEPT {member_expiries}) x"),
        format!("SELECT CAST(count(*) AS TEXT) FROM ({member_expiries} EXCEPT {member_kept_expiries}) x"),
        "SELECT CAST(count(*) AS TEXT) FROM organization_expiries WHERE n = 0".to_string(),
        "SELECT CAST(count(*) AS TEXT) FROM (SELECT organization_id, members FROM organization_member_counts \
         WHERE members <> 0 EXCEPT SELECT organization_id, count(*) FROM memberships GROUP BY organization_id) x"
            .to_string(),
        "SELECT CAST(count(*) AS TEXT) FROM (SELECT organization_id, count(*) FROM memberships \
         GROUP BY organization_id EXCEPT SELECT organization_id, members FROM organization_member_counts) x"
            .to_string(),
        "SELECT CAST(count(*) AS TEXT) FROM member_expiries WHERE n = 0".to_string(),
    ]
}

/// The organization's counters by visibility class (migration 0014) are
/// the sums of its attached live spaces' counters after every kind of
/// change that moves a space or its rows: content writes and deletes
/// (expiries in the past included), visibility changes, attach and
/// detach, space delete, undelete and purge, organization delete and
/// undelete, space memberships given and taken, and the expiry fold at
/// start. After each step, the tables (and the per-member ones of
/// migration 0015) equal a recount, and GetStats and a list total as the
/// plain member and as a superadmin equal sums over the spaces each may
/// see.
#[tokio::test]
async fn organization_counters_follow_every_move_of_a_space() {
    use rand::{Rng, SeedableRng};

    let differences = counter_differences();

    let mut app = TestApp::spawn_with(|c| c.soft_delete_window = std::time::Duration::from_secs(2)).await;
    let w = world(&app).await;
    let root = root();
    let member = token(&w.member);
    let member_id: uuid::Uuid = user_id(&app.database_url, &w.member).await.parse().expect("uuid");
    let second = unique_slug("second");
    app.create_org("Second", &second, &w.admin).await;
    app.add_user(&second, &w.member, "member").await;
    let slugs = [w.slug.clone(), second.clone()];
    let mut spaces = vec![
        w.open.clone(),
        w.locked.clone(),
        w.invited.clone(),
        w.elsewhere.clone(),
    ];
    for i in 0..8 {
        let visibility = if i % 2 == 0 { "organization" } else { "restricted" };
        let s = app
            .create_space(&format!("Moved {i} {}", w.slug), visibility, &w.admin)
            .await;
        app.attach(&slugs[i % 2], &s.id).await;
        if i % 4 == 3 {
            app.spaces()
                .add_space_member(req(
                    &root,
                    AddSpaceMemberRequest {
                        space_id: s.id.clone(),
                        user_email: w.member.clone(),
                        role: "viewer".into(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("viewer");
        }
        spaces.push(s.id);
    }
    let now = chrono::Utc::now().timestamp();
    let mut contract_ids: Vec<(String, String)> = Vec::new();
    let mut detached: Vec<String> = Vec::new();
    // Memberships of restricted spaces a step may take back.
    let mut joined: Vec<(String, String)> = vec![(w.invited.clone(), w.member.clone())];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0c1a_55e5);

    let check = |app: &TestApp, step: String| {
        let (differences, root, member, slugs) = (&differences, &root, &member, &slugs);
        let url = app.database_url.clone();
        let channel = app.channel.clone();
        async move {
            let mut db = Db::connect(&url).await;
            for q in differences.iter() {
                let n = db.strings(q, &[]).await;
                assert_eq!(n, vec!["0".to_string()], "{step}: {q}");
            }
            text_indexes_hold(&url, &step).await;
            for slug in slugs.iter() {
                let org = db
                    .ids(
                        "SELECT id FROM organizations WHERE slug = $1",
                        &[Arg::Text(slug.clone())],
                    )
                    .await;
                for (who, user) in [(root, None), (member, Some(member_id))] {
                    let mut sql = "SELECT CAST(count(*) AS TEXT), \
                         CAST(COALESCE(SUM(st.products_active), 0) AS TEXT), \
                         CAST(COALESCE(SUM(st.issues_status_open + st.issues_status_in_progress), 0) AS TEXT), \
                         CAST(COALESCE(SUM(st.products_active + st.products_archived), 0) AS TEXT) \
                         FROM spaces s LEFT JOIN space_stats st ON st.space_id = s.id \
                         WHERE s.organization_id = $1 AND s.deleted_at IS NULL"
                        .to_string();
                    let mut args = vec![Arg::Uuid(org.first().copied().unwrap_or_default())];
                    if let Some(user) = user {
                        sql.push_str(
                            " AND (s.visibility = 'organization' OR s.id IN \
                             (SELECT space_id FROM space_members WHERE user_id = $2))",
                        );
                        args.push(Arg::Uuid(user));
                    }
                    let expected = db.row(&sql, &args).await;
                    let Ok(stats) = AggregationServiceClient::new(channel.clone())
                        .get_stats(req(who, GetStatsRequest { slug: slug.clone() }))
                        .await
                    else {
                        // The organization is deleted at this step.
                        assert!(org.is_empty() || expected[0] == "0", "{step}: stats of {slug}");
                        continue;
                    };
                    let stats = stats.into_inner();
                    let total = AggregationServiceClient::new(channel.clone())
                        .list_products(req(
                            who,
                            ListProductsRequest {
                                slug: slug.clone(),
                                include_archived: true,
                                ..Default::default()
                            },
                        ))
                        .await
                        .expect("list products")
                        .into_inner()
                        .total;
                    let got = vec![
                        stats.total_spaces.to_string(),
                        stats.total_products.to_string(),
                        stats.open_issues.to_string(),
                        total.to_string(),
                    ];
                    let who_name = if user.is_some() { "member" } else { "root" };
                    assert_eq!(got, expected, "{step}: {slug} as {who_name}");
                    // The rows listed are those of the spaces the caller
                    // sees now (a visibility change moves them at once).
                    let mut listed = Vec::new();
                    let mut page_token = String::new();
                    loop {
                        let page = AggregationServiceClient::new(channel.clone())
                            .list_products(req(
                                who,
                                ListProductsRequest {
                                    slug: slug.clone(),
                                    include_archived: true,
                                    size: 100,
                                    page_token: page_token.clone(),
                                    ..Default::default()
                                },
                            ))
                            .await
                            .expect("list products")
                            .into_inner();
                        listed.extend(page.items.into_iter().map(|p| p.id));
                        if page.next_page_token.is_empty() {
                            break;
                        }
                        page_token = page.next_page_token;
                    }
                    let mut sql = "SELECT p.id FROM products p JOIN spaces s ON s.id = p.space_id \
                         WHERE s.organization_id = $1 AND s.deleted_at IS NULL"
                        .to_string();
                    if user.is_some() {
                        sql.push_str(
                            " AND (s.visibility = 'organization' OR s.id IN \
                             (SELECT space_id FROM space_members WHERE user_id = $2))",
                        );
                    }
                    let mut visible: Vec<String> =
                        db.ids(&sql, &args).await.iter().map(|u| u.to_string()).collect();
                    visible.sort();
                    listed.sort();
                    assert_eq!(listed, visible, "{step}: {slug}'s products as {who_name}");
                }
            }
            db.close().await;
        }
    };
    check(&app, "start".into()).await;

    let mut succeeded = [0u32; 12];
    for step in 0..150 {
        let space = spaces[rng.random_range(0..spaces.len())].clone();
        let picked = space.clone();
        let slug = slugs[rng.random_range(0..2)].clone();
        // Deletes are rarer than the rest: a purged space is gone for good.
        let op = match rng.random_range(0..12) {
            7 if rng.random_bool(0.5) => 3,
            op => op,
        };
        // A step that has nothing to take back changes an organization.
        let op = match op {
            5 if contract_ids.is_empty() => 9,
            11 if joined.is_empty() => 9,
            op => op,
        };
        let what = format!("step {step} op {op}");
        // Each change may be refused (a space already attached, deleted,
        // purged, ...): the counters must hold either way.
        let done = match op {
            0 => {
                let visibility = if rng.random_bool(0.5) {
                    "organization"
                } else {
                    "restricted"
                };
                app.spaces()
                    .update_space(req(
                        &root,
                        UpdateSpaceRequest {
                            space_id: space,
                            visibility: Some(visibility.into()),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ())
            }
            1 => {
                // From whichever organization holds it.
                let mut done = Err(tonic::Status::not_found("in neither organization"));
                for slug in &slugs {
                    if done.is_err() {
                        done = app
                            .orgs()
                            .remove_space(req(
                                &root,
                                RemoveSpaceRequest {
                                    slug: slug.clone(),
                                    space_id: space.clone(),
                                    ..Default::default()
                                },
                            ))
                            .await
                            .map(|_| ());
                    }
                }
                if done.is_ok() {
                    detached.push(space);
                }
                done
            }
            2 => {
                // Mostly a space detached before (any other is refused).
                let space = if !detached.is_empty() && rng.random_bool(0.8) {
                    detached.swap_remove(rng.random_range(0..detached.len()))
                } else {
                    space
                };
                app.orgs()
                    .add_space(req(
                        &root,
                        AddSpaceRequest {
                            slug,
                            space_id: space,
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ())
            }
            3 => put_products(
                &app,
                &root,
                &space,
                (0..rng.random_range(1..4))
                    .map(|i| {
                        let mut p = product(&format!("p{step}-{i}"), step);
                        p.is_archived = rng.random_bool(0.3);
                        p
                    })
                    .collect(),
            )
            .await
            .map(|_| ()),
            4 => {
                let days = [-400, -3, -1, 0, 1, 10];
                let items: Vec<Contract> = (0..rng.random_range(1..4))
                    .map(|i| {
                        let status = ["active", "active", "draft", "expired"][rng.random_range(0..4)];
                        let expires = now + days[rng.random_range(0..days.len())] * 86_400 + 60;
                        contract(
                            &format!("c{step}-{i}"),
                            status,
                            step,
                            Some(Timestamp {
                                seconds: expires,
                                nanos: 0,
                            }),
                        )
                    })
                    .collect();
                let ids: Vec<String> = items.iter().map(|c| c.id.clone()).collect();
                let done = app
                    .spaces()
                    .batch_upsert_contracts(req(
                        &root,
                        BatchUpsertContractsRequest {
                            space_id: space.clone(),
                            items,
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ());
                if done.is_ok() {
                    contract_ids.extend(ids.into_iter().map(|id| (space.clone(), id)));
                }
                done
            }
            5 if !contract_ids.is_empty() => {
                let (space, id) = contract_ids.swap_remove(rng.random_range(0..contract_ids.len()));
                app.spaces()
                    .delete_contract(req(
                        &root,
                        DeleteContractRequest {
                            space_id: space,
                            contract_id: id,
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ())
            }
            6 => app
                .spaces()
                .batch_upsert_issues(req(
                    &root,
                    BatchUpsertIssuesRequest {
                        space_id: space,
                        items: vec![issue(
                            &format!("i{step}"),
                            ["open", "in_progress", "resolved"][step as usize % 3],
                            "high",
                            step,
                        )],
                        ..Default::default()
                    },
                ))
                .await
                .map(|_| ()),
            7 => app
                .spaces()
                .delete_space(req(
                    &root,
                    DeleteSpaceRequest {
                        space_id: space,
                        ..Default::default()
                    },
                ))
                .await
                .map(|_| ()),
            8 => app
                .spaces()
                .undelete_space(req(
                    &root,
                    UndeleteSpaceRequest {
                        space_id: space,
                        ..Default::default()
                    },
                ))
                .await
                .map(|_| ()),
            10 => {
                // The plain member, or the admin (whose rows are kept but
                // not read), joins the space.
                let email = if rng.random_bool(0.7) { &w.member } else { &w.admin };
                let done = app
                    .spaces()
                    .add_space_member(req(
                        &root,
                        AddSpaceMemberRequest {
                            space_id: space.clone(),
                            user_email: email.clone(),
                            role: "viewer".into(),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ());
                if done.is_ok() {
                    joined.push((space, email.clone()));
                }
                done
            }
            11 if !joined.is_empty() => {
                // A member leaves a space it was given.
                let (space, email) = joined.swap_remove(rng.random_range(0..joined.len()));
                let user = user_id(&app.database_url, &email).await;
                app.spaces()
                    .remove_space_member(req(
                        &root,
                        RemoveSpaceMemberRequest {
                            space_id: space,
                            user_id: user,
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ())
            }
            _ => {
                if rng.random_bool(0.5) {
                    app.orgs()
                        .delete_organization(req(
                            &root,
                            DeleteOrganizationRequest {
                                slug: second.clone(),
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(|_| ())
                } else {
                    app.orgs()
                        .undelete_organization(req(
                            &root,
                            UndeleteOrganizationRequest {
                                slug: second.clone(),
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(|_| ())
                }
            }
        };
        let deleted = op == 7 && done.is_ok();
        if done.is_ok() {
            succeeded[op] += 1;
        }
        check(&app, what.clone()).await;
        // Half the spaces deleted come back at once, well inside the
        // window (a later undelete may find the space already purged).
        if deleted && rng.random_bool(0.5) {
            let back = app
                .spaces()
                .undelete_space(req(
                    &root,
                    UndeleteSpaceRequest {
                        space_id: picked,
                        ..Default::default()
                    },
                ))
                .await;
            if back.is_ok() {
                succeeded[8] += 1;
            }
            check(&app, format!("{what}, undeleted")).await;
        }
    }
    assert!(
        succeeded.iter().all(|n| *n > 0),
        "every kind of change was made at least once: {succeeded:?}"
    );
    // Past expiry days fold into the counters at start; the classes keep
    // up with that too. The soft-delete window has passed for some
    // deleted spaces by now, and the purge ran for them.
    app.restart().await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    check(&app, "after the fold and purges".into()).await;
}

/// SQLite: every row's entry in the text indexes still says what its row
/// says, organization token included (FTS5 compares the index with the
/// content tables). PostgreSQL's indexes are its own to keep.
async fn text_indexes_hold(database_url: &str, step: &str) {
    if backend() != "sqlite" {
        return;
    }
    let mut db = Db::connect(database_url).await;
    for fts in ["products_fts", "contracts_fts"] {
        db.try_execute(&format!(
            "INSERT INTO {fts} ({fts}, rank) VALUES ('integrity-check', 1)"
        ))
        .await
        .unwrap_or_else(|e| panic!("{step}: {fts} no longer matches its table: {e}"));
    }
    // The token the upserts write (computed in Rust) is the one the
    // migrations' formula gives, which the triggers write on a move.
    let digit = |i: usize| format!("(unicode(substr(hex(organization_id), {i}, 1)) - 48)");
    let char_at = |i: usize| {
        format!(
            "983040 + {} * 529 + {} * 23 + {}",
            digit(i),
            digit(i + 1),
            digit(i + 2)
        )
    };
    let formula = format!(
        "CASE WHEN organization_id IS NULL THEN '' ELSE char({}, {}, {}) END",
        char_at(24),
        char_at(27),
        char_at(30)
    );
    for table in ["products", "contracts"] {
        let wrong = db
            .strings(
                &format!("SELECT hex(id) FROM {table} WHERE search_org IS NOT ({formula})"),
                &[],
            )
            .await;
        assert!(
            wrong.is_empty(),
            "{step}: {table} rows with a wrong search token: {wrong:?}"
        );
    }
    db.close().await;
}

/// A search answers the rows of the organization their space is in now,
/// whichever the organization (the text index narrows by organization on
/// SQLite, from a token of its id) and after every move: attach, detach,
/// rename, delete.
#[tokio::test]
async fn a_search_finds_what_the_organization_holds_now_and_nothing_else() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let root = root();
    let searched = |slug: String, term: &'static str| {
        let (app, root) = (&app, &root);
        async move {
            let products = agg(app)
                .list_products(req(
                    root,
                    ListProductsRequest {
                        slug: slug.clone(),
                        search: term.into(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("search products")
                .into_inner();
            let contracts = agg(app)
                .list_contracts(req(
                    root,
                    ListContractsRequest {
                        slug,
                        search: term.into(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("search contracts")
                .into_inner();
            assert_eq!(products.total as usize, products.items.len());
            assert_eq!(contracts.total as usize, contracts.items.len());
            (
                products
                    .items
                    .into_iter()
                    .map(|p| (p.name, p.space.map(|s| s.id).unwrap_or_default()))
                    .collect::<Vec<_>>(),
                contracts
                    .items
                    .into_iter()
                    .map(|c| (c.name, c.space.map(|s| s.id).unwrap_or_default()))
                    .collect::<Vec<_>>(),
            )
        }
    };
    let put = |space: String, products: Vec<Product>, contracts: Vec<Contract>| {
        let (app, root) = (&app, &root);
        async move {
            put_products(app, root, &space, products).await.expect("products");
            app.spaces()
                .batch_upsert_contracts(req(
                    root,
                    BatchUpsertContractsRequest {
                        space_id: space,
                        items: contracts,
                        ..Default::default()
                    },
                ))
                .await
                .expect("contracts");
        }
    };

    // Many organizations (ids of every shape of hex digit), each holding
    // the same term: each search answers its own row only.
    let mut orgs = Vec::new();
    for i in 0..16 {
        let slug = unique_slug("needle");
        app.create_org("Needles", &slug, &w.admin).await;
        let space = app
            .create_space(&format!("Needles {slug}"), "organization", &w.admin)
            .await;
        app.attach(&slug, &space.id).await;
        let name = format!("needle {i}");
        put(
            space.id.clone(),
            vec![product(&name, i)],
            vec![contract(&name, "active", i, None)],
        )
        .await;
        orgs.push((slug, name, space.id));
    }
    for (slug, name, space) in &orgs {
        let mine = vec![(name.clone(), space.clone())];
        assert_eq!(searched(slug.clone(), "needle").await, (mine.clone(), mine));
    }
    assert_eq!(searched(w.slug.clone(), "needle").await, (vec![], vec![]));

    // The same name in two organizations.
    let traveller = product("traveller", 1);
    put(
        w.open.clone(),
        vec![traveller.clone()],
        vec![contract("traveller pact", "draft", 1, None)],
    )
    .await;
    put(
        w.elsewhere.clone(),
        vec![product("traveller", 1)],
        vec![contract("traveller pact", "draft", 1, None)],
    )
    .await;
    let here = |name: &str, space: &str| vec![(name.to_owned(), space.to_owned())];
    assert_eq!(
        searched(w.slug.clone(), "travel").await,
        (here("traveller", &w.open), here("traveller pact", &w.open))
    );
    text_indexes_hold(&app.database_url, "written").await;

    // Detached: the organization no longer finds it; attached elsewhere,
    // that one does.
    app.orgs()
        .remove_space(req(
            &root,
            RemoveSpaceRequest {
                slug: w.slug.clone(),
                space_id: w.open.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("detach");
    assert_eq!(searched(w.slug.clone(), "travel").await, (vec![], vec![]));
    text_indexes_hold(&app.database_url, "detached").await;
    let (next, _, _) = &orgs[0];
    app.attach(next, &w.open).await;
    let (products, contracts) = searched(next.clone(), "travel").await;
    assert_eq!(
        (products, contracts),
        (here("traveller", &w.open), here("traveller pact", &w.open))
    );
    assert_eq!(searched(w.slug.clone(), "travel").await, (vec![], vec![]));
    text_indexes_hold(&app.database_url, "attached elsewhere").await;

    // Renamed in place, then deleted.
    put(
        w.open.clone(),
        vec![Product {
            name: "wanderer".into(),
            description: "no longer travelling".into(),
            ..traveller.clone()
        }],
        vec![],
    )
    .await;
    let (products, _) = searched(next.clone(), "travel").await;
    assert_eq!(
        products,
        here("wanderer", &w.open),
        "found by its new description"
    );
    let (products, _) = searched(next.clone(), "wander").await;
    assert_eq!(products, here("wanderer", &w.open));
    app.spaces()
        .delete_product(req(
            &root,
            DeleteProductRequest {
                space_id: w.open.clone(),
                product_id: traveller.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete");
    let (products, _) = searched(next.clone(), "wander").await;
    assert!(
        products.is_empty(),
        "a deleted product is not found: {products:?}"
    );
    text_indexes_hold(&app.database_url, "renamed and deleted").await;
}

/// A database written at migration 0017 (the search token a virtual
/// generated column) upgrades to 0018 (a written column) with its rows
/// kept searchable: every row's token is the formula's, the FTS indexes
/// match their tables, a search still answers each organization's own
/// rows, and a row moved or written after the upgrade is found where it
/// belongs.
#[tokio::test]
async fn a_database_at_0017_upgrades_with_its_search_tokens() {
    if backend() != "sqlite" {
        return; // 0017 and 0018 are SQLite's.
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("orgd.db").display());
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (in_a, in_b, loose) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    {
        use sqlx::ConnectOptions;
        let mut conn = format!("{url}?mode=rwc")
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .expect("sqlite url")
            .connect()
            .await
            .expect("create the database");
        sqlx::migrate!("migrations/sqlite")
            .run_to(17, &mut conn)
            .await
            .expect("migrate to 0017");
        let mut db = Db::Sqlite(conn);
        for (org, slug) in [(a, "org-a"), (b, "org-b")] {
            db.execute(
                "INSERT INTO organizations (id, name, slug, created_at, updated_at) VALUES (?, ?, ?, 1, 1)",
                &[Arg::Uuid(org), Arg::Text(slug.into()), Arg::Text(slug.into())],
            )
            .await;
        }
        let blob = |org: Option<uuid::Uuid>| match org {
            Some(o) => format!("X'{}'", o.simple()),
            None => "NULL".into(),
        };
        for (space, org, slug) in [
            (in_a, Some(a), "s-a"),
            (in_b, Some(b), "s-b"),
            (loose, None, "s-loose"),
        ] {
            db.execute(
                &format!(
                    "INSERT INTO spaces (id, name, slug, visibility, organization_id, created_at, updated_at) \
                     VALUES (?, ?, ?, 'organization', {}, 1, 1)",
                    blob(org)
                ),
                &[Arg::Uuid(space), Arg::Text(slug.into()), Arg::Text(slug.into())],
            )
            .await;
        }
        for (space, org, word, n) in [
            (in_a, Some(a), "alpha", 3),
            (in_b, Some(b), "beta", 2),
            (loose, None, "delta", 1),
        ] {
            for i in 0..n {
                for table in ["products", "contracts"] {
                    let (cols, vals) = if table == "products" {
                        ("", "")
                    } else {
                        (", status", ", 'active'")
                    };
                    let org_arg = blob(org);
                    let extra = if table == "products" { ", updated_at" } else { "" };
                    let extra_val = if table == "products" { ", 1" } else { "" };
                    db.execute(
                        &format!(
                            "INSERT INTO {table} (id, space_id, organization_id, name, description, created_at{extra}{cols}) \
                             VALUES (?, ?, {org_arg}, ?, 'quarterly revenue', ?{extra_val}{vals})"
                        ),
                        &[
                            Arg::Uuid(uuid::Uuid::new_v4()),
                            Arg::Uuid(space),
                            Arg::Text(format!("{word} {i}")),
                            Arg::I64(i + 1),
                        ],
                    )
                    .await;
                }
            }
        }
        db.close().await;
    }
    let storage = dir.path().join("storage");
    let app = TestApp::spawn_on(&url, &storage).await;
    text_indexes_hold(&url, "after the upgrade").await;
    let root = root();
    let found = |slug: &'static str| {
        let (app, root) = (&app, &root);
        async move {
            let products = agg(app)
                .list_products(req(
                    root,
                    ListProductsRequest {
                        slug: slug.into(),
                        search: "revenue".into(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("search products")
                .into_inner();
            let contracts = agg(app)
                .list_contracts(req(
                    root,
                    ListContractsRequest {
                        slug: slug.into(),
                        search: "revenue".into(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("search contracts")
                .into_inner();
            let mut p: Vec<String> = products.items.into_iter().map(|p| p.name).collect();
            let mut c: Vec<String> = contracts.items.into_iter().map(|c| c.name).collect();
            p.sort();
            c.sort();
            (p, c)
        }
    };
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        found("org-a").await,
        (
            names(&["alpha 0", "alpha 1", "alpha 2"]),
            names(&["alpha 0", "alpha 1", "alpha 2"])
        )
    );
    assert_eq!(
        found("org-b").await,
        (names(&["beta 0", "beta 1"]), names(&["beta 0", "beta 1"]))
    );

    // A move after the upgrade: the trigger recomputes the token.
    app.orgs()
        .add_space(req(
            &root,
            AddSpaceRequest {
                slug: "org-b".into(),
                space_id: loose.to_string(),
                ..Default::default()
            },
        ))
        .await
        .expect("attach the loose space");
    text_indexes_hold(&url, "after the attach").await;
    assert_eq!(found("org-b").await.0, names(&["beta 0", "beta 1", "delta 0"]));
    // A write after the upgrade: the upsert binds the token.
    put_products(&app, &root, &in_a.to_string(), vec![product("alpha new", 9)])
        .await
        .expect("upsert");
    text_indexes_hold(&url, "after an upsert").await;
    let mut expected = names(&["alpha 0", "alpha 1", "alpha 2"]);
    // product() describes "alpha new description": not a revenue match.
    assert_eq!(found("org-a").await.0, expected);
    let mut p = product("alpha newer", 10);
    p.description = "revenue per quarter".into();
    put_products(&app, &root, &in_a.to_string(), vec![p])
        .await
        .expect("upsert");
    text_indexes_hold(&url, "after a matching upsert").await;
    expected.push("alpha newer".into());
    assert_eq!(found("org-a").await.0, expected);
}
