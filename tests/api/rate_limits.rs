//! Rate limits (SPEC §7): token buckets per caller and per organization.
//! A refusal is RESOURCE_EXHAUSTED with RetryInfo and the `retry-after` and
//! `x-ratelimit-*` headers (429 through Envoy), and changes nothing.

use std::time::Duration;

use orgd::proto::*;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;
use crate::observability::{sample, scrape};
use crate::rest::Rest;

fn limits(caller: f64, organization: f64) -> impl FnOnce(&mut orgd::ServerConfig) {
    move |config| {
        config.rate_limits = orgd::ratelimit::RateLimitConfig { caller, organization };
    }
}

fn header(metadata: &tonic::metadata::MetadataMap, name: &str) -> Option<u64> {
    metadata.get(name)?.to_str().ok()?.parse().ok()
}

async fn list_orgs(
    app: &TestApp,
    token: &str,
) -> Result<tonic::Response<ListOrganizationsResponse>, tonic::Status> {
    app.orgs()
        .list_organizations(req(token, ListOrganizationsRequest::default()))
        .await
}

async fn get_org(app: &TestApp, token: &str, slug: &str) -> Result<(), tonic::Status> {
    app.orgs()
        .get_organization(req(token, GetOrganizationRequest { slug: slug.into() }))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_limit_is_refused_with_when_to_retry() {
    // 5 calls a second, bursts of 10.
    let app = TestApp::spawn_with(limits(5.0, 0.0)).await;
    let alice = token("alice@limits.test");
    let bob = token("bob@limits.test");

    // A full bucket: ten calls, each answered with what is left.
    let mut remaining = Vec::new();
    for _ in 0..10 {
        let reply = list_orgs(&app, &alice).await.expect("within the burst");
        assert_eq!(header(reply.metadata(), "x-ratelimit-limit"), Some(10));
        remaining.push(header(reply.metadata(), "x-ratelimit-remaining").expect("remaining"));
    }
    assert_eq!(remaining, (0..10).rev().collect::<Vec<u64>>());

    // The next one is refused, and says when to come back.
    let refused = assert_error(
        list_orgs(&app, &alice).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    assert_eq!(info_meta(&refused, "limit").as_deref(), Some("caller"));
    let retry = refused
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_millis(200),
        "{retry:?}"
    );
    assert_eq!(header(refused.metadata(), "retry-after"), Some(1));
    assert_eq!(header(refused.metadata(), "x-ratelimit-limit"), Some(10));
    assert_eq!(header(refused.metadata(), "x-ratelimit-remaining"), Some(0));
    let reset = header(refused.metadata(), "x-ratelimit-reset").expect("reset");
    assert!((1..=2).contains(&reset), "reset {reset}");

    // A refused change changes nothing.
    let slug = unique_slug("refused");
    let create = app
        .orgs()
        .create_organization(req(
            &alice,
            CreateOrganizationRequest {
                name: "Refused".into(),
                slug: Some(slug.clone()),
                ..Default::default()
            },
        ))
        .await;
    assert_error(create, Code::ResourceExhausted, "RATE_LIMITED");

    // Other callers have their own bucket.
    list_orgs(&app, &bob).await.expect("bob is not limited by alice");

    // Once the delay has passed, alice is served again.
    tokio::time::sleep(retry + Duration::from_millis(50)).await;
    list_orgs(&app, &alice).await.expect("a token is back");

    // A bad token is refused as such, before any limit.
    assert_error(
        list_orgs(&app, "not-a-token").await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );

    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, "orgd_rate_limited_total", &[("limit", "caller")]),
        Some(2.0)
    );
    // Nothing was created by the refused call.
    let created = get_org(&app, &root(), &slug).await;
    assert_error(created, Code::NotFound, "ORG_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_over_its_limit_is_refused_for_every_caller_and_others_are_not() {
    // Callers are not limited here; each organization gets 5 calls a second
    // in bursts of 10, shared by all its callers.
    let app = TestApp::spawn_with(limits(0.0, 5.0)).await;
    let busy = unique_slug("busy");
    let calm = unique_slug("calm");
    let admin = format!("admin@{busy}.test");
    let member = format!("member@{busy}.test");
    app.create_org("Busy", &busy, &admin).await;
    app.create_org("Calm", &calm, &admin).await;
    app.add_user(&busy, &member, "member").await;
    let space = app.create_space("Busy space", "organization", &admin).await;
    app.attach(&busy, &space.id).await;
    // The setup spent some of busy's tokens: wait until the bucket is full.
    tokio::time::sleep(Duration::from_millis(2_200)).await;

    let callers = [token(&admin), token(&member)];
    let mut served = 0;
    let refused = loop {
        match get_org(&app, &callers[served % 2], &busy).await {
            Ok(()) => served += 1,
            Err(status) => break status,
        }
        assert!(served <= 20, "the organization limit never refused");
    };
    // Ten from the burst, plus what refilled while the loop ran.
    assert!((10..=12).contains(&served), "{served} calls served");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(reason(&refused), "ORG_RATE_LIMITED");
    assert_eq!(info_meta(&refused, "limit").as_deref(), Some("organization"));
    assert!(refused.get_error_details().retry_info().is_some());
    assert_eq!(header(refused.metadata(), "retry-after"), Some(1));

    // Writes to the organization, by slug or through one of its spaces, are
    // refused too and change nothing.
    let add = app
        .orgs()
        .add_user(req(
            &callers[0],
            AddUserRequest {
                slug: busy.clone(),
                user_email: "late@busy.test".into(),
                role: "member".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(add, Code::ResourceExhausted, "ORG_RATE_LIMITED");
    let upsert = app
        .spaces()
        .batch_upsert_products(req(
            &callers[0],
            BatchUpsertProductsRequest {
                space_id: space.id.clone(),
                items: vec![Product {
                    id: uuid::Uuid::now_v7().to_string(),
                    name: "refused".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ))
        .await;
    assert_error(upsert, Code::ResourceExhausted, "ORG_RATE_LIMITED");

    // Another organization is served meanwhile, to the same callers.
    get_org(&app, &callers[0], &calm)
        .await
        .expect("calm is not limited by busy");

    // Later, the refused writes are indeed absent.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let users = app
        .orgs()
        .list_users(req(
            &callers[0],
            ListUsersRequest {
                slug: busy.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("list users")
        .into_inner();
    assert!(users.items.iter().all(|m| m.email != "late@busy.test"));
    let products =
        orgd::proto::aggregation_service_client::AggregationServiceClient::new(app.channel.clone())
            .list_products(req(
                &callers[0],
                ListProductsRequest {
                    slug: busy.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list products")
            .into_inner();
    assert_eq!(products.total, 0, "{products:?}");
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, "orgd_rate_limited_total", &[("limit", "organization")]),
        Some(3.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_callers_get_429_with_retry_after_and_rate_limit_headers() {
    let rest = Rest::start_with(limits(2.0, 0.0)).await;
    let carol = token("carol@limits.test");
    let ok = rest.get("/organizations", &carol).await;
    ok.expect(200);
    let value = |reply: &crate::rest::Reply, name: &str| -> Option<u64> {
        reply.headers.get(name)?.to_str().ok()?.parse().ok()
    };
    assert_eq!(value(&ok, "x-ratelimit-limit"), Some(4));
    assert_eq!(value(&ok, "x-ratelimit-remaining"), Some(3));
    for _ in 0..3 {
        rest.get("/organizations", &carol).await.expect(200);
    }
    let refused = rest.get("/organizations", &carol).await;
    refused.expect_error(429, 8, "RATE_LIMITED");
    assert_eq!(value(&refused, "retry-after"), Some(1), "{:?}", refused.headers);
    assert_eq!(value(&refused, "x-ratelimit-limit"), Some(4));
    assert_eq!(value(&refused, "x-ratelimit-remaining"), Some(0));
    assert!(value(&refused, "x-ratelimit-reset").is_some_and(|r| (1..=2).contains(&r)));
    let body = refused.json();
    let retry_info = body["details"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .find(|x| x["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
        })
        .unwrap_or_else(|| panic!("no RetryInfo in {body}"));
    assert!(
        retry_info["retry_delay"]
            .as_str()
            .is_some_and(|d| d.ends_with('s')),
        "{body}"
    );
    // A refused create through Envoy creates nothing.
    let slug = unique_slug("rest-refused");
    rest.post(
        "/organizations",
        &carol,
        serde_json::json!({"name": "Refused", "slug": slug}),
    )
    .await
    .expect_error(429, 8, "RATE_LIMITED");
    rest.get(&format!("/organizations/{slug}"), &root())
        .await
        .expect_error(404, 5, "ORG_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_rate_that_is_not_a_number_of_calls_per_second() {
    use crate::cli::{orgd, run, stderr};
    let dir = tempfile::tempdir().expect("tempdir");
    for (how, value) in [("flag", "-1"), ("flag", "lots"), ("env", "NaN"), ("env", "-5")] {
        let mut cmd = orgd();
        cmd.args(["serve", "--grpc-addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path());
        if how == "flag" {
            cmd.arg(format!("--rate-limit-org={value}"));
        } else {
            cmd.env("ORGD_RATE_LIMIT_CALLER", value);
        }
        let out = run(cmd).await;
        assert!(!out.status.success(), "{how} {value} was accepted");
        let err = stderr(&out);
        let named = if how == "flag" {
            "--rate-limit-org"
        } else {
            "--rate-limit-caller"
        };
        assert!(err.contains(named) && err.contains(value), "{how} {value}: {err}");
    }
}
