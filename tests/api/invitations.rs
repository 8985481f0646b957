//! Invitations (SPEC §7): an admin invites an email with a role; the
//! membership starts only when a caller whose token carries that email
//! accepts it, before it expires and unless it was revoked.

use orgd::proto::*;
use serde_json::json;
use tonic::Code;

use crate::helpers::*;
use crate::rest::Rest;

async fn invite(
    app: &TestApp,
    t: &str,
    slug: &str,
    email: &str,
    role: &str,
    ttl: Option<prost_types::Duration>,
) -> Result<Invitation, tonic::Status> {
    app.orgs()
        .create_invitation(req(
            t,
            CreateInvitationRequest {
                slug: slug.into(),
                email: email.into(),
                role: role.into(),
                ttl,
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().invitation.expect("invitation"))
}

async fn accept(app: &TestApp, t: &str, id: &str) -> Result<AcceptInvitationResponse, tonic::Status> {
    app.orgs()
        .accept_invitation(req(
            t,
            AcceptInvitationRequest {
                invitation_id: id.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn revoke(app: &TestApp, t: &str, slug: &str, id: &str) -> Result<Invitation, tonic::Status> {
    app.orgs()
        .revoke_invitation(req(
            t,
            RevokeInvitationRequest {
                slug: slug.into(),
                invitation_id: id.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().invitation.expect("invitation"))
}

async fn listed(app: &TestApp, t: &str, slug: &str, state: &str) -> Vec<(String, String)> {
    app.orgs()
        .list_invitations(req(
            t,
            ListInvitationsRequest {
                slug: slug.into(),
                state: state.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list invitations")
        .into_inner()
        .items
        .into_iter()
        .map(|i| (i.email, i.state))
        .collect()
}

async fn is_member(app: &TestApp, slug: &str, email: &str) -> bool {
    app.orgs()
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
        .iter()
        .any(|m| m.email == email)
}

fn days(n: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: n * 86_400,
        nanos: 0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_makes_a_member_only_when_its_email_accepts_it() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("invite");
    let admin = format!("admin@{slug}.test");
    app.create_org("Invitations", &slug, &admin).await;
    let t = token(&admin);
    let guest = format!("guest@{slug}.test");
    let made = invite(&app, &t, &slug, &guest.to_uppercase(), "admin", None)
        .await
        .expect("invite");
    assert_eq!(
        (made.email.as_str(), made.role.as_str(), made.state.as_str()),
        (guest.as_str(), "admin", "pending")
    );
    let created = made.created_at.expect("created_at");
    let expires = made.expire_time.expect("expire_time");
    assert_eq!(
        expires.seconds - created.seconds,
        7 * 86_400,
        "seven days by default"
    );
    assert!(
        !is_member(&app, &slug, &guest).await,
        "no membership before acceptance"
    );
    assert_eq!(
        listed(&app, &t, &slug, "pending").await,
        [(guest.clone(), "pending".to_owned())]
    );

    // Someone else cannot take it; the refusal is recorded.
    let thief = format!("thief@{slug}.test");
    assert_error(
        accept(&app, &token(&thief), &made.id).await,
        Code::PermissionDenied,
        "INVITATION_EMAIL_MISMATCH",
    );
    assert!(!is_member(&app, &slug, &thief).await);

    // The invited person accepts (any case of the email).
    let accepted = accept(&app, &token(&guest.to_uppercase()), &made.id)
        .await
        .expect("accept");
    assert_eq!(accepted.organization_slug, slug);
    let member = accepted.member.expect("member");
    assert_eq!(
        (member.email.as_str(), member.role.as_str()),
        (guest.as_str(), "admin")
    );
    assert!(is_member(&app, &slug, &guest).await);
    assert_eq!(
        listed(&app, &t, &slug, "accepted").await,
        [(guest.clone(), "accepted".to_owned())]
    );
    // Once used, it is used.
    assert_error(
        accept(&app, &token(&guest), &made.id).await,
        Code::FailedPrecondition,
        "INVITATION_ACCEPTED",
    );
    assert_error(
        revoke(&app, &t, &slug, &made.id).await,
        Code::FailedPrecondition,
        "INVITATION_ACCEPTED",
    );

    // Revoked invitations cannot be accepted.
    let other = format!("other@{slug}.test");
    let second = invite(&app, &t, &slug, &other, "member", days(30))
        .await
        .expect("invite");
    let revoked = revoke(&app, &t, &slug, &second.id).await.expect("revoke");
    assert_eq!(revoked.state, "revoked");
    assert!(revoked.revoked_at.is_some());
    assert_error(
        accept(&app, &token(&other), &second.id).await,
        Code::FailedPrecondition,
        "INVITATION_REVOKED",
    );
    assert!(!is_member(&app, &slug, &other).await);

    // One pending invitation per email; members are not invited.
    let third = invite(&app, &t, &slug, &other, "member", None)
        .await
        .expect("a new invitation after the revoked one");
    assert_error(
        invite(&app, &t, &slug, &other, "member", None).await,
        Code::AlreadyExists,
        "INVITATION_PENDING",
    );
    assert_error(
        invite(&app, &t, &slug, &guest, "member", None).await,
        Code::AlreadyExists,
        "MEMBER_ALREADY_EXISTS",
    );
    // Bad input names the field.
    for (email, role, ttl, why, field) in [
        ("not-an-email", "member", None, "INVALID_EMAIL", "email"),
        ("x@y.test", "owner", None, "INVALID_ROLE", "role"),
        ("x@y.test", "member", days(31), "INVALID_TTL", "ttl"),
        ("x@y.test", "member", days(0), "INVALID_TTL", "ttl"),
    ] {
        let status = assert_error(
            invite(&app, &t, &slug, email, role, ttl).await,
            Code::InvalidArgument,
            why,
        );
        assert_eq!(info_meta(&status, "field").as_deref(), Some(field));
    }
    assert_error(
        accept(&app, &token(&other), &uuid::Uuid::new_v4().to_string()).await,
        Code::NotFound,
        "INVITATION_NOT_FOUND",
    );

    // Only admins manage invitations.
    assert_error(
        invite(
            &app,
            &token(&guest.replace("guest", "nobody")),
            &slug,
            "z@y.test",
            "member",
            None,
        )
        .await,
        Code::PermissionDenied,
        "NOT_AUTHORIZED",
    );

    // Everything is in the trail.
    let trail = app
        .orgs()
        .list_audit_events(req(
            &root(),
            ListAuditEventsRequest {
                slug: slug.clone(),
                action: "invitation.".into(),
                size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("trail")
        .into_inner();
    let mut actions: Vec<(String, String)> = trail.items.into_iter().map(|e| (e.action, e.result)).collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            ("invitation.accept".to_owned(), "denied".to_owned()),
            ("invitation.accept".to_owned(), "success".to_owned()),
            ("invitation.create".to_owned(), "denied".to_owned()),
            ("invitation.create".to_owned(), "success".to_owned()),
            ("invitation.create".to_owned(), "success".to_owned()),
            ("invitation.create".to_owned(), "success".to_owned()),
            ("invitation.revoke".to_owned(), "success".to_owned()),
        ]
    );
    drop(third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_invitation_is_refused_and_listed_as_expired() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("expire");
    let admin = format!("admin@{slug}.test");
    app.create_org("Expiry", &slug, &admin).await;
    let t = token(&admin);
    let late = format!("late@{slug}.test");
    let made = invite(
        &app,
        &t,
        &slug,
        &late,
        "member",
        Some(prost_types::Duration { seconds: 1, nanos: 0 }),
    )
    .await
    .expect("invite");
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert_error(
        accept(&app, &token(&late), &made.id).await,
        Code::FailedPrecondition,
        "INVITATION_EXPIRED",
    );
    assert!(!is_member(&app, &slug, &late).await);
    assert_eq!(
        listed(&app, &t, &slug, "expired").await,
        [(late.clone(), "expired".to_owned())]
    );
    assert!(listed(&app, &t, &slug, "pending").await.is_empty());
    assert_error(
        revoke(&app, &t, &slug, &made.id).await,
        Code::FailedPrecondition,
        "INVITATION_EXPIRED",
    );
    // An expired invitation does not block a new one.
    invite(&app, &t, &slug, &late, "member", None)
        .await
        .expect("invite again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_callers_invite_list_revoke_and_accept() {
    let rest = Rest::start().await;
    let root = root();
    let slug = unique_slug("rest-invite");
    rest.post(
        "/organizations",
        &root,
        json!({"name": "REST invitations", "slug": slug}),
    )
    .await
    .expect(201);
    let made = rest
        .post(
            &format!("/organizations/{slug}/invitations"),
            &root,
            json!({"email": "pat@rest-invite.test", "role": "member", "ttl": "86400s"}),
        )
        .await
        .expect(201);
    assert_eq!(made["state"], "pending");
    let id = made["id"].as_str().expect("id").to_owned();
    let list = rest
        .get(&format!("/organizations/{slug}/invitations?state=pending"), &root)
        .await
        .expect(200);
    assert_eq!(list["items"][0]["id"], id.as_str());
    rest.post(
        &format!("/organizations/{slug}/invitations"),
        &root,
        json!({"email": "pat@rest-invite.test", "role": "member", "ttl": "9999999s"}),
    )
    .await
    .expect_error(400, 3, "INVALID_TTL");
    let accepted = rest
        .post(
            &format!("/invitations/{id}:accept"),
            &token("pat@rest-invite.test"),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(accepted["member"]["email"], "pat@rest-invite.test");
    assert_eq!(accepted["organization_slug"], slug.as_str());
    let second = rest
        .post(
            &format!("/organizations/{slug}/invitations"),
            &root,
            json!({"email": "sam@rest-invite.test", "role": "admin"}),
        )
        .await
        .expect(201);
    let second_id = second["id"].as_str().expect("id");
    let revoked = rest
        .post(
            &format!("/organizations/{slug}/invitations/{second_id}:revoke"),
            &root,
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(revoked["invitation"]["state"], "revoked");
    rest.post(
        &format!("/invitations/{second_id}:accept"),
        &token("sam@rest-invite.test"),
        json!({}),
    )
    .await
    .expect_error(400, 9, "INVITATION_REVOKED");
}
