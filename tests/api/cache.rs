//! The in-process snapshot of hot reads (the caller lookup, the
//! organization access check, GetOrganization): answered from memory while
//! nothing changed, dropped at once by a change on the same instance, and
//! never served longer than its bound after a change made anywhere else.

use std::time::{Duration, Instant};

use orgd::proto::*;
use orgd::store::snapshot::STALENESS_BOUND;
use tonic::{Code, Status};

use crate::helpers::*;
use crate::observability::{sample, scrape};

async fn lookups(app: &TestApp, cache: &str, result: &str) -> f64 {
    sample(
        &scrape(app).await,
        "orgd_cache_lookups_total",
        &[("cache", cache), ("result", result)],
    )
    .unwrap_or(0.0)
}

async fn invalidations(app: &TestApp, source: &str) -> f64 {
    sample(
        &scrape(app).await,
        "orgd_cache_invalidations_total",
        &[("source", source)],
    )
    .unwrap_or(0.0)
}

async fn get_org(app: &TestApp, email: &str, slug: &str) -> Result<OrganizationDetails, Status> {
    app.orgs()
        .get_organization(req(&token(email), GetOrganizationRequest { slug: slug.into() }))
        .await
        .map(|r| r.into_inner().organization.expect("organization"))
}

/// Reads until `email`'s access to `slug` is answered from the snapshot
/// (the snapshot answers once its feed has confirmed it is in step).
async fn warm(app: &TestApp, email: &str, slug: &str) {
    let before = lookups(app, "access", "hit").await;
    for _ in 0..200 {
        get_org(app, email, slug).await.expect("a member reads");
        if lookups(app, "access", "hit").await > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{email}'s reads of {slug} never came from the snapshot");
}

async fn remove(app: &TestApp, slug: &str, user_id: &str) {
    app.orgs()
        .remove_user(req(
            &root(),
            RemoveUserRequest {
                slug: slug.into(),
                user_id: user_id.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("remove member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_removed_on_one_instance_loses_access_on_another_within_the_bound() {
    let first = TestApp::spawn().await;
    let second = TestApp::spawn_on(&first.database_url, &first.storage_root).await;
    let slug = unique_slug("cachetwo");
    let admin = format!("admin@{slug}.test");
    first.create_org("Two Instances", &slug, &admin).await;
    let (one, two) = (format!("one@{slug}.test"), format!("two@{slug}.test"));
    let one_id = first.add_user(&slug, &one, "member").await.user_id;
    let two_id = first.add_user(&slug, &two, "member").await.user_id;
    warm(&second, &one, &slug).await;
    warm(&second, &two, &slug).await;
    let hits = lookups(&second, "caller", "hit").await;
    assert!(hits > 0.0, "the caller lookup is answered from memory too");

    // The guarantee: once the bound has passed since the removal
    // committed, the other instance refuses, whatever its load.
    remove(&first, &slug, &one_id).await;
    tokio::time::sleep(STALENESS_BOUND).await;
    assert_error(
        get_org(&second, &one, &slug).await,
        Code::PermissionDenied,
        "NOT_AUTHORIZED",
    );
    assert!(invalidations(&second, "remote").await > 0.0);

    // How long it actually takes (reported, not asserted).
    remove(&first, &slug, &two_id).await;
    let removed = Instant::now();
    loop {
        match get_org(&second, &two, &slug).await {
            Ok(_) => {
                assert!(
                    removed.elapsed() < Duration::from_secs(5),
                    "the removal never reached the second instance"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
                break;
            }
        }
    }
    eprintln!(
        "{}: a removal reached the other instance's snapshot in {:?} (bound {:?})",
        backend(),
        removed.elapsed(),
        STALENESS_BOUND
    );
    // The admin, untouched, is still served.
    get_org(&second, &admin, &slug).await.expect("the admin reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_seen_at_once_on_the_instance_that_made_it() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("cacheone");
    let admin = format!("admin@{slug}.test");
    app.create_org("Same Instance", &slug, &admin).await;
    let member = format!("member@{slug}.test");
    let member_id = app.add_user(&slug, &member, "member").await.user_id;
    warm(&app, &member, &slug).await;
    let served = get_org(&app, &member, &slug).await.expect("read");
    assert!(served.spaces.is_empty());
    assert_eq!(served.user_count, 2);
    // GetOrganization's details come from memory too (retried: a loaded
    // machine can starve the sync task past the bound, and the snapshot
    // then sends reads to the database).
    let details_hits = lookups(&app, "organization", "hit").await;
    let mut served_from_memory = false;
    for _ in 0..200 {
        get_org(&app, &member, &slug).await.expect("read");
        if lookups(&app, "organization", "hit").await > details_hits {
            served_from_memory = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served_from_memory, "GetOrganization's details come from memory");

    // Each change shows in the very next read, with no wait.
    let space = app.create_space("Fresh Space", "organization", &admin).await;
    app.attach(&slug, &space.id).await;
    let seen = get_org(&app, &member, &slug).await.expect("read");
    assert_eq!(
        seen.spaces.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![space.id.clone()]
    );
    app.add_user(&slug, &format!("third@{slug}.test"), "member").await;
    assert_eq!(get_org(&app, &member, &slug).await.expect("read").user_count, 3);
    app.orgs()
        .update_organization(req(
            &root(),
            UpdateOrganizationRequest {
                slug: slug.clone(),
                name: Some("Renamed Instance".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("rename");
    let renamed = get_org(&app, &member, &slug).await.expect("read");
    assert_eq!(renamed.name, "Renamed Instance");
    remove(&app, &slug, &member_id).await;
    assert_error(
        get_org(&app, &member, &slug).await,
        Code::PermissionDenied,
        "NOT_AUTHORIZED",
    );
    assert!(invalidations(&app, "local").await >= 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superadmin_granted_by_another_process_counts_within_the_bound() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("cachesu");
    app.create_org("Granted Later", &slug, &format!("admin@{slug}.test"))
        .await;
    let outsider = format!("outsider@{slug}.test");
    let before = lookups(&app, "caller", "hit").await;
    for _ in 0..200 {
        assert_error(
            get_org(&app, &outsider, &slug).await,
            Code::PermissionDenied,
            "NOT_AUTHORIZED",
        );
        if lookups(&app, "caller", "hit").await > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(lookups(&app, "caller", "hit").await > before);

    // What `orgd superadmin grant` does from another process: its own
    // store on the same database.
    let elsewhere = orgd::store::connect(&app.database_url, &Default::default())
        .await
        .expect("another store");
    let email = orgd::domain::types::Email::parse("email", &outsider).expect("email");
    elsewhere.set_superadmin(&email, true).await.expect("grant");
    tokio::time::sleep(STALENESS_BOUND).await;
    get_org(&app, &outsider, &slug)
        .await
        .expect("a superadmin reads every organization");
    elsewhere.set_superadmin(&email, false).await.expect("revoke");
    tokio::time::sleep(STALENESS_BOUND).await;
    assert_error(
        get_org(&app, &outsider, &slug).await,
        Code::PermissionDenied,
        "NOT_AUTHORIZED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_snapshot_off_every_read_goes_to_the_database() {
    let app = TestApp::spawn_with(|c| c.cache_entries = 0).await;
    let slug = unique_slug("cacheoff");
    let admin = format!("admin@{slug}.test");
    app.create_org("No Snapshot", &slug, &admin).await;
    for _ in 0..5 {
        get_org(&app, &admin, &slug).await.expect("read");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let text = scrape(&app).await;
    assert!(
        !text.contains("orgd_cache_lookups_total{"),
        "no lookups are counted when the snapshot is off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sign_in_names_the_member_in_cached_organizations() {
    let app = TestApp::spawn().await;
    let slug = unique_slug("cachename");
    let admin = format!("admin@{slug}.test");
    app.create_org("Names", &slug, &admin).await;
    let invited = format!("linus@{slug}.test");
    let member = app.add_user(&slug, &invited, "member").await;
    assert_eq!(member.display_name, "");
    warm(&app, &admin, &slug).await;
    let unnamed = get_org(&app, &admin, &slug).await.expect("read");
    let listed = |o: &OrganizationDetails| {
        o.members
            .iter()
            .find(|m| m.user_id == member.user_id)
            .map(|m| m.display_name.clone())
    };
    assert_eq!(listed(&unnamed), Some(String::new()));

    // The invited user signs in with a name, reading something else.
    let named = token_with(orgd::auth::Claims {
        email: invited.clone(),
        exp: chrono::Utc::now().timestamp() + 3600,
        name: Some("Linus".into()),
        sub: None,
        iat: None,
        iss: None,
        aud: None,
    });
    app.orgs()
        .list_organizations(req(&named, ListOrganizationsRequest::default()))
        .await
        .expect("list");
    // The admin's next read, from the snapshot, names them.
    let seen = get_org(&app, &admin, &slug).await.expect("read");
    assert_eq!(listed(&seen), Some("Linus".to_owned()));
}
