//! Admission control (SPEC §5): beyond --max-in-flight calls, a call that
//! cannot start within the admission wait is refused at once with
//! RESOURCE_EXHAUSTED (OVERLOADED) instead of queueing into a timeout.

use std::time::Duration;

use futures::future::join_all;
use orgd::proto::*;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;
use crate::observability::{sample, scrape};

fn admission(max_in_flight: usize, wait: Duration) -> impl FnOnce(&mut orgd::ServerConfig) {
    move |c| {
        c.admission = orgd::api::admission::AdmissionConfig { max_in_flight, wait };
        // Only admission is under test here.
        c.rate_limits = orgd::ratelimit::RateLimitConfig {
            caller: 0.0,
            organization: 0.0,
        };
    }
}

async fn burst(app: &TestApp, slug: &str, n: usize) -> Vec<Result<(), tonic::Status>> {
    let calls = (0..n).map(|_| {
        let mut orgs = app.orgs();
        let request = req(&root(), GetOrganizationRequest { slug: slug.into() });
        async move { orgs.get_organization(request).await.map(drop) }
    });
    join_all(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_capacity_are_refused_at_once_and_counted() {
    let app = TestApp::spawn_with(admission(1, Duration::ZERO)).await;
    let slug = unique_slug("busy");
    app.create_org("Busy", &slug, "admin@busy.test").await;
    let results = burst(&app, &slug, 200).await;
    let served = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<&tonic::Status> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(served >= 1, "nothing was served");
    assert!(
        !refused.is_empty(),
        "200 concurrent calls with one slot: none refused"
    );
    for status in &refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(reason(status), "OVERLOADED");
        assert!(status.get_error_details().retry_info().is_some(), "{status:?}");
        assert!(status.metadata().get("retry-after").is_some());
        assert!(
            status.metadata().get("x-ratelimit-limit").is_none(),
            "not a rate limit"
        );
    }
    // Health answers whatever the load.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health is always admitted");
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, "orgd_overloaded_total", &[]),
        Some(refused.len() as f64),
        "every refusal is counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_wait_their_turn_within_the_admission_wait() {
    let app = TestApp::spawn_with(admission(2, Duration::from_secs(20))).await;
    let slug = unique_slug("queued");
    app.create_org("Queued", &slug, "admin@queued.test").await;
    let results = burst(&app, &slug, 100).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "with a long wait every call is served: {failed:?}"
    );
}
