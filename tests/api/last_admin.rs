//! Every organization keeps at least one admin, also under concurrent
//! requests.

use orgd::proto::*;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn the_last_admin_can_be_neither_demoted_nor_removed() {
    let app = TestApp::spawn().await;
    let org = app.create_org("Solo", "solo", "only@admin.test").await;
    let only = org.members[0].user_id.clone();
    let demote = app
        .orgs()
        .update_user_role(req(
            &root(),
            UpdateUserRoleRequest {
                slug: "solo".into(),
                user_id: only.clone(),
                role: "member".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(demote, Code::FailedPrecondition, "LAST_ADMIN");
    let remove = app
        .orgs()
        .remove_user(req(
            &token("only@admin.test"),
            RemoveUserRequest {
                slug: "solo".into(),
                user_id: only.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(remove, Code::FailedPrecondition, "LAST_ADMIN");
    // With a second admin the first may step down.
    let second = app.add_user("solo", "second@admin.test", "admin").await;
    app.orgs()
        .update_user_role(req(
            &root(),
            UpdateUserRoleRequest {
                slug: "solo".into(),
                user_id: only.clone(),
                role: "member".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("demote with another admin present");
    let last = app
        .orgs()
        .remove_user(req(
            &root(),
            RemoveUserRequest {
                slug: "solo".into(),
                user_id: second.user_id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(last, Code::FailedPrecondition, "LAST_ADMIN");
}

async fn admins(app: &TestApp, slug: &str) -> usize {
    app.orgs()
        .list_users(req(
            &root(),
            ListUsersRequest {
                slug: slug.into(),
                role: "admin".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_admins_demoting_or_removing_each_other_at_once_leave_one_admin() {
    let app = TestApp::spawn().await;
    for round in 0..12 {
        let slug = unique_slug("duo");
        let a_email = format!("a{round}@duo.test");
        let b_email = format!("b{round}@duo.test");
        let a = app.create_org("Duo", &slug, &a_email).await.members[0]
            .user_id
            .clone();
        let b = app.add_user(&slug, &b_email, "admin").await.user_id;
        // Each admin acts on the other, at the same moment; odd rounds
        // remove instead of demoting, and one round mixes both.
        let act = |actor: String, target: String, remove: bool| {
            let mut client = app.orgs();
            let slug = slug.clone();
            async move {
                let t = token(&actor);
                if remove {
                    client
                        .remove_user(req(
                            &t,
                            RemoveUserRequest {
                                slug,
                                user_id: target,
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(drop)
                } else {
                    client
                        .update_user_role(req(
                            &t,
                            UpdateUserRoleRequest {
                                slug,
                                user_id: target,
                                role: "member".into(),
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(drop)
                }
            }
        };
        let (ra, rb) = tokio::join!(
            act(a_email.clone(), b.clone(), round % 2 == 1),
            act(b_email.clone(), a.clone(), round % 3 == 2)
        );
        let ok = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert!(ok <= 1, "round {round}: both succeeded: {ra:?} {rb:?}");
        for r in [&ra, &rb] {
            if let Err(status) = r {
                // The loser either hits the rule or has lost the right to act.
                let why = reason(status);
                assert!(
                    why == "LAST_ADMIN" || why == "NOT_AUTHORIZED",
                    "round {round}: {status:?}"
                );
            }
        }
        assert_eq!(admins(&app, &slug).await, 1, "round {round}: {ra:?} {rb:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_superadmin_demotions_keep_an_admin() {
    let app = TestApp::spawn().await;
    for round in 0..10 {
        let slug = unique_slug("trio");
        let first = app
            .create_org("Trio", &slug, &format!("x{round}@trio.test"))
            .await
            .members[0]
            .user_id
            .clone();
        let second = app
            .add_user(&slug, &format!("y{round}@trio.test"), "admin")
            .await
            .user_id;
        let third = app
            .add_user(&slug, &format!("z{round}@trio.test"), "admin")
            .await
            .user_id;
        let demote = |target: String| {
            let mut client = app.orgs();
            let slug = slug.clone();
            async move {
                client
                    .update_user_role(req(
                        &root(),
                        UpdateUserRoleRequest {
                            slug,
                            user_id: target,
                            role: "member".into(),
                            ..Default::default()
                        },
                    ))
                    .await
            }
        };
        let (r1, r2, r3) = tokio::join!(demote(first), demote(second), demote(third));
        let failures: Vec<_> = [r1, r2, r3].into_iter().filter_map(Result::err).collect();
        assert_eq!(failures.len(), 1, "round {round}: exactly one demotion must fail");
        assert_eq!(reason(&failures[0]), "LAST_ADMIN");
        assert_eq!(admins(&app, &slug).await, 1);
    }
}
