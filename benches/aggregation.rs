//! Aggregation benchmark: p50/p99 of every aggregation RPC over gRPC, on a
//! small (10,000-row) and a large (1,000,000-row) generated dataset, side by
//! side, with the ratio large/small. Both datasets are measured in the same
//! run, so the ratio, not the absolute time, is the result.
//!
//!     cargo bench --bench aggregation -- [--backends sqlite,postgres]
//!         [--small 0.01] [--large 1.0] [--iterations 40]
//!
//! PostgreSQL needs DATABASE_URL (scripts/bench.sh starts a throwaway
//! cluster). Queries run as a plain member of the largest organization, so
//! visibility filtering is always on.
//!
//! `ORGD_BENCH_KEEP=1` keeps the generated databases and prints their
//! URLs; `ORGD_BENCH_REUSE_SMALL=<url>` and `ORGD_BENCH_REUSE_LARGE=<url>`
//! measure such a kept database again (migrated to the current code at
//! start) instead of generating one: the same run's plan flags must be
//! given, and the printed generation time is then 0.

use std::time::{Duration, Instant};

use orgd::auth::{AuthConfig, Secret};
use orgd::domain::content::Scope;
use orgd::domain::types::Email;
use orgd::generate::{Dataset, Plan, generate};
use orgd::proto::aggregation_service_client::AggregationServiceClient;
use orgd::proto::organization_service_client::OrganizationServiceClient;
use orgd::proto::space_service_client::SpaceServiceClient;
use orgd::proto::*;
use orgd::{ServerConfig, build_app, serve};
use tonic::transport::Channel;

mod common;

use common::{SECRET, database_url, req, token};

struct Options {
    backends: Vec<String>,
    small: f64,
    large: f64,
    iterations: usize,
    /// Overrides of the large dataset's registry (SPEC §5: 10,000
    /// organizations, 100,000 spaces, 10,000 members in one organization).
    large_organizations: Option<usize>,
    large_spaces: Option<usize>,
    large_members: Option<usize>,
}

fn options() -> Options {
    let mut o = Options {
        backends: vec!["sqlite".into(), "postgres".into()],
        small: 0.01,
        large: 1.0,
        iterations: 40,
        large_organizations: None,
        large_spaces: None,
        large_members: None,
    };
    common::flags(|name, value| {
        match name {
            "--backends" => o.backends = common::backends(value),
            "--small" => o.small = value.parse().expect("--small takes a number"),
            "--large" => o.large = value.parse().expect("--large takes a number"),
            "--iterations" => o.iterations = value.parse().expect("--iterations takes a number"),
            "--large-organizations" => {
                o.large_organizations = Some(value.parse().expect("--large-organizations takes a number"))
            }
            "--large-spaces" => o.large_spaces = Some(value.parse().expect("--large-spaces takes a number")),
            "--large-members" => {
                o.large_members = Some(value.parse().expect("--large-members takes a number"))
            }
            _ => return false,
        }
        true
    });
    o
}

/// One measured case: a name and the call it makes.
type Case = (&'static str, Box<dyn Fn(Channel, Tokens, Dataset) -> CallFuture>);

/// The callers: the plain member of the largest organization, and a
/// superadmin (ListOrganizations over every organization).
#[derive(Clone)]
struct Tokens {
    member: String,
    root: String,
}

/// The benchmark's superadmin.
const ROOT: &str = "bench-root@orgd.test";

/// Search terms of the registry lists, matching about a ninth of the
/// generated names ("Space 17 …", "u12…@gen.test", "Org 1…").
const SPACE_SEARCH: &str = "Space 1";
const USER_SEARCH: &str = "u12";
const ORG_SEARCH: &str = "Org 1";
type CallFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tonic::Status>> + Send>>;

fn cases() -> Vec<Case> {
    fn case<F, Fut>(name: &'static str, f: F) -> Case
    where
        F: Fn(Channel, Tokens, Dataset) -> Fut + 'static,
        Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send + 'static,
    {
        (name, Box::new(move |c, t, d| Box::pin(f(c, t, d))))
    }
    vec![
        case("ListProducts page 1", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.list_products(req(
                &t.member,
                ListProductsRequest {
                    slug: d.largest_slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }),
        case("ListProducts page 500", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.list_products(req(
                &t.member,
                ListProductsRequest {
                    slug: d.largest_slug,
                    page: Some(500),
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }),
        case("ListProducts search, page 1", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.list_products(req(
                &t.member,
                ListProductsRequest {
                    slug: d.largest_slug,
                    search: d.search_term,
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }),
        case("ListProducts search, page 500", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.list_products(req(
                &t.member,
                ListProductsRequest {
                    slug: d.largest_slug,
                    search: d.search_term,
                    page: Some(500),
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }),
        // The search's cost should follow the organization searched, not
        // the database: a small organization's, as its admin would see it.
        case(
            "ListProducts search, page 1, a small organization (superadmin)",
            |ch, t, d| async move {
                let mut c = AggregationServiceClient::new(ch);
                c.list_products(req(
                    &t.root,
                    ListProductsRequest {
                        slug: d.small_slug,
                        search: d.search_term,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            },
        ),
        case("ListContracts page 1", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.list_contracts(req(
                &t.member,
                ListContractsRequest {
                    slug: d.largest_slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }),
        case("ListContracts page 500", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.list_contracts(req(
                &t.member,
                ListContractsRequest {
                    slug: d.largest_slug,
                    page: Some(500),
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }),
        case("ListContracts search, page 1", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.list_contracts(req(
                &t.member,
                ListContractsRequest {
                    slug: d.largest_slug,
                    search: d.search_term,
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }),
        case("ListIssues page 1", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.list_issues(req(
                &t.member,
                ListIssuesRequest {
                    slug: d.largest_slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }),
        case("ListIssues page 500", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.list_issues(req(
                &t.member,
                ListIssuesRequest {
                    slug: d.largest_slug,
                    page: Some(500),
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }),
        case("ListIssues open+in_progress, page 1", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.list_issues(req(
                &t.member,
                ListIssuesRequest {
                    slug: d.largest_slug,
                    status: vec!["open,in_progress".into()],
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }),
        case("ListQualityChecks page 1", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.list_quality_checks(req(
                &t.member,
                ListQualityChecksRequest {
                    slug: d.largest_slug,
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }),
        case("ListQualityChecks page 500", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.list_quality_checks(req(
                &t.member,
                ListQualityChecksRequest {
                    slug: d.largest_slug,
                    page: Some(500),
                    ..Default::default()
                },
            ))
            .await
            .map(drop)
        }),
        case("GetStats", |ch, t, d| async move {
            let mut c = AggregationServiceClient::new(ch);
            c.get_stats(req(&t.member, GetStatsRequest { slug: d.largest_slug }))
                .await
                .map(drop)
        }),
        case("ListSpaces page 1", |ch, t, _| async move {
            SpaceServiceClient::new(ch)
                .list_spaces(req(&t.member, ListSpacesRequest::default()))
                .await
                .map(drop)
        }),
        case("ListSpaces page 500", |ch, t, _| async move {
            SpaceServiceClient::new(ch)
                .list_spaces(req(
                    &t.member,
                    ListSpacesRequest {
                        page: Some(500),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }),
        case("ListSpaces search, page 1", |ch, t, _| async move {
            SpaceServiceClient::new(ch)
                .list_spaces(req(
                    &t.member,
                    ListSpacesRequest {
                        search: SPACE_SEARCH.into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }),
        case("ListUsers page 1", |ch, t, d| async move {
            OrganizationServiceClient::new(ch)
                .list_users(req(
                    &t.member,
                    ListUsersRequest {
                        slug: d.largest_slug,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }),
        case("ListUsers page 500", |ch, t, d| async move {
            OrganizationServiceClient::new(ch)
                .list_users(req(
                    &t.member,
                    ListUsersRequest {
                        slug: d.largest_slug,
                        page: Some(500),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }),
        case("ListUsers search, page 1", |ch, t, d| async move {
            OrganizationServiceClient::new(ch)
                .list_users(req(
                    &t.member,
                    ListUsersRequest {
                        slug: d.largest_slug,
                        search: USER_SEARCH.into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }),
        case("ListOrganizations (superadmin) page 1", |ch, t, _| async move {
            OrganizationServiceClient::new(ch)
                .list_organizations(req(&t.root, ListOrganizationsRequest::default()))
                .await
                .map(drop)
        }),
        case("ListOrganizations (superadmin) page 500", |ch, t, _| async move {
            OrganizationServiceClient::new(ch)
                .list_organizations(req(
                    &t.root,
                    ListOrganizationsRequest {
                        page: Some(500),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }),
        case(
            "ListOrganizations (superadmin) search, page 1",
            |ch, t, _| async move {
                OrganizationServiceClient::new(ch)
                    .list_organizations(req(
                        &t.root,
                        ListOrganizationsRequest {
                            search: ORG_SEARCH.into(),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(drop)
            },
        ),
        case("ListOrganizations (member) page 1", |ch, t, _| async move {
            OrganizationServiceClient::new(ch)
                .list_organizations(req(&t.member, ListOrganizationsRequest::default()))
                .await
                .map(drop)
        }),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

struct Measured {
    rows: usize,
    generate_secs: f64,
    /// (p50, p99) per case, in case order.
    latencies: Vec<(Duration, Duration)>,
    plans: Vec<(String, String)>,
}

/// The dataset an earlier run generated into the database at `url` and
/// kept (`ORGD_BENCH_KEEP`): the generator's admin and member, and its
/// largest organization.
async fn kept_dataset(url: &str) -> Dataset {
    use sqlx::Connection;
    const ADMIN: &str = "SELECT email FROM users WHERE email LIKE 'admin-%@gen.test' ORDER BY email LIMIT 1";
    const MEMBER: &str =
        "SELECT email FROM users WHERE email LIKE 'member-%@gen.test' ORDER BY email LIMIT 1";
    // The generator's first organization, weighted the heaviest.
    const LARGEST: &str = "SELECT slug FROM organizations WHERE slug LIKE 'org-0-%' ORDER BY slug LIMIT 1";
    // The 50th organization, or the 10th of a dataset of ten.
    const SMALL: &str = "SELECT slug FROM organizations WHERE slug LIKE 'org-49-%' OR slug LIKE 'org-9-%' \
         ORDER BY slug LIKE 'org-49-%' DESC, slug LIMIT 1";
    let [admin_email, member_email, largest_slug, small_slug] = if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url)
            .await
            .expect("open the kept database");
        let mut found = Vec::new();
        for q in [ADMIN, MEMBER, LARGEST, SMALL] {
            found.push(
                sqlx::query_scalar::<_, String>(q)
                    .fetch_one(&mut c)
                    .await
                    .expect(q),
            );
        }
        found.try_into().expect("four answers")
    } else {
        let mut c = sqlx::PgConnection::connect(url)
            .await
            .expect("open the kept database");
        let mut found = Vec::new();
        for q in [ADMIN, MEMBER, LARGEST, SMALL] {
            found.push(
                sqlx::query_scalar::<_, String>(q)
                    .fetch_one(&mut c)
                    .await
                    .expect(q),
            );
        }
        found.try_into().expect("four answers")
    };
    Dataset {
        largest_slug,
        small_slug,
        admin_email,
        member_email,
        search_term: "revenue".into(),
    }
}

async fn measure(backend: &str, plan: Plan, iterations: usize, reuse: Option<String>) -> Measured {
    let rows = plan.content_rows();
    let dir = tempfile::tempdir().expect("tempdir");
    // ORGD_BENCH_KEEP=1 keeps the generated data (its directory is
    // printed) for looking at plans by hand.
    let dir_path = if std::env::var_os("ORGD_BENCH_KEEP").is_some() {
        let kept = dir.keep();
        eprintln!("  [{backend}] keeping the data in {}", kept.display());
        kept
    } else {
        dir.path().to_path_buf()
    };
    let config = ServerConfig {
        database_url: match &reuse {
            Some(url) => url.clone(),
            None => database_url(backend, &dir_path, "bench").await,
        },
        storage_root: dir_path.join("storage"),
        auth: AuthConfig {
            hs256_secret: Secret::new(SECRET),
            public_key_pem: None,
            issuer: None,
            audience: None,
        },
        superadmins: vec![ROOT.into()],
        db_max_connections: 8,
        db_busy_timeout: std::time::Duration::from_secs(10),
        audit_signer: orgd::signing::AuditSigner::ephemeral(),
        audit_retention: None,
        soft_delete_window: orgd::app::DEFAULT_SOFT_DELETE_WINDOW,
        admission: Default::default(),
        // Benchmarks measure capacity, not the limits.
        rate_limits: orgd::ratelimit::RateLimitConfig {
            caller: 0.0,
            organization: 0.0,
        },
        cache_entries: orgd::store::DEFAULT_CACHE_ENTRIES,
    };
    if std::env::var_os("ORGD_BENCH_KEEP").is_some() {
        eprintln!("  [{backend}] database {}", config.database_url);
    }
    let app = build_app(&config).await.expect("app");
    let started = Instant::now();
    let dataset = match &reuse {
        Some(url) => kept_dataset(url).await,
        None => generate(&app, &plan, &|phase: &str| {
            eprintln!(
                "  [{backend} {rows} rows {:>7.1}s] {phase}",
                started.elapsed().as_secs_f64()
            )
        })
        .await
        .expect("generate"),
    };
    let generate_secs = started.elapsed().as_secs_f64();

    // The plans of the main queries, as the member sees them.
    let member = app
        .store
        .user_by_email(&Email::parse("email", &dataset.member_email).expect("email"))
        .await
        .expect("user")
        .expect("member exists");
    let org = app
        .store
        .organization_access(&dataset.largest_slug, member.id)
        .await
        .expect("org")
        .expect("org exists");
    let scope = Scope {
        org: org.org.id,
        member: Some(member.id),
        space: None,
    };
    let plans = app
        .store
        .explain(&scope, &dataset.search_term)
        .await
        .expect("explain");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(app, listener, async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let t = Tokens {
        member: token(&dataset.member_email),
        root: token(ROOT),
    };

    let mut latencies = Vec::new();
    for (name, call) in cases() {
        for _ in 0..3 {
            call(channel.clone(), t.clone(), dataset.clone())
                .await
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            call(channel.clone(), t.clone(), dataset.clone())
                .await
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            samples.push(start.elapsed());
        }
        samples.sort();
        latencies.push((percentile(&samples, 0.5), percentile(&samples, 0.99)));
    }
    let _ = stop.send(());
    let _ = server.await;
    Measured {
        rows: plan.content_rows(),
        generate_secs,
        latencies,
        plans,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let o = options();
    for backend in &o.backends {
        eprintln!(
            "{backend}: generating and measuring the small dataset (x{})",
            o.small
        );
        let small_plan = Plan::scaled(o.small);
        let small = measure(
            backend,
            small_plan,
            o.iterations,
            std::env::var("ORGD_BENCH_REUSE_SMALL").ok(),
        )
        .await;
        eprintln!(
            "{backend}: generating and measuring the large dataset (x{})",
            o.large
        );
        let scaled = Plan::scaled(o.large);
        let large_plan = Plan {
            organizations: o.large_organizations.unwrap_or(scaled.organizations),
            spaces: o.large_spaces.unwrap_or(scaled.spaces),
            largest_org_members: o.large_members.unwrap_or(scaled.largest_org_members),
            ..scaled
        };
        let large = measure(
            backend,
            large_plan,
            o.iterations,
            std::env::var("ORGD_BENCH_REUSE_LARGE").ok(),
        )
        .await;
        println!("\n### {backend}\n");
        println!(
            "Datasets: small {} content rows (generated in {:.0} s), large {} content rows (generated in {:.0} s). \
             Registry: small {} organizations, {} spaces, {} members in the largest; large {}, {}, {}. \
             {} calls per case, as a plain member of the largest organization (ListOrganizations also as a superadmin).\n",
            small.rows,
            small.generate_secs,
            large.rows,
            large.generate_secs,
            small_plan.organizations,
            small_plan.spaces,
            small_plan.largest_org_members,
            large_plan.organizations,
            large_plan.spaces,
            large_plan.largest_org_members,
            o.iterations
        );
        println!(
            "| RPC | small p50 ms | small p99 ms | large p50 ms | large p99 ms | p50 large/small | p99 large/small |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (i, (name, _)) in cases().iter().enumerate() {
            let (sp50, sp99) = small.latencies[i];
            let (lp50, lp99) = large.latencies[i];
            println!(
                "| {name} | {} | {} | {} | {} | {:.2} | {:.2} |",
                ms(sp50),
                ms(sp99),
                ms(lp50),
                ms(lp99),
                lp50.as_secs_f64() / sp50.as_secs_f64(),
                lp99.as_secs_f64() / sp99.as_secs_f64()
            );
        }
        println!("\n#### {backend}: query plans on the large dataset\n");
        for (name, plan) in &large.plans {
            println!("{name}:\n```\n{plan}\n```");
        }
    }
}
