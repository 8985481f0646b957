//! Speed benchmark: SPEC §5's targets as ratios against baselines measured
//! in the same run, on both backends.
//!
//!     cargo bench --bench speed -- [--backends sqlite,postgres]
//!         [--scale 1.0] [--seconds 5] [--batches 200] [--db-connections N]
//!
//! - **GetOrganization over gRPC**, as a plain member of the largest
//!   organization of an `orgd generate` dataset: requests per second of orgd
//!   against a trivial tonic server (built here from the project's protos)
//!   that answers the same `GetOrganizationResponse` from memory, closed
//!   loop at 1 connection x 1 stream, 4 x 16 and 16 x 64. Target ≥ 0.6.
//! - **GetOrganization over REST**, through a real Envoy configured from
//!   envoy.yaml, against Envoy in front of the baseline: 32 HTTP/1.1
//!   connections. Target ≥ 0.8. (Envoy comes from scripts/tools.sh
//!   `ensure_envoy`, or ORGD_TEST_ENVOY.)
//! - **Overload**: a second instance with admission control as served by
//!   default; a search's capacity (the best closed loop of 4, 16 and 64
//!   callers), then twice that offered in an open loop: answered per second
//!   over the capacity (target ≥ 0.9), and how fast the excess is refused
//!   (RESOURCE_EXHAUSTED).
//! - **Memory**: peak RSS of `orgd serve` in a process of its own while
//!   1,000 and then 10,000 streams read a small organization (targets 64 and
//!   128 MiB).
//! - **Batch upserts**: `--batches` batches of 1,000 products into one new
//!   space of that organization: rows per second (target 50,000 on
//!   PostgreSQL, 80,000 on SQLite) and the mean time of the last tenth of the
//!   batches over the first tenth (target ≤ 1).
//!
//! Client and servers share the machine (and its cores), the same way for
//! orgd and for the baseline. PostgreSQL needs DATABASE_URL (scripts/bench.sh
//! starts a throwaway cluster).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orgd::auth::{AuthConfig, Secret};
use orgd::generate::{Plan, generate};
use orgd::proto::aggregation_service_client::AggregationServiceClient;
use orgd::proto::organization_service_client::OrganizationServiceClient;
use orgd::proto::space_service_client::SpaceServiceClient;
use orgd::proto::*;
use orgd::{ServerConfig, build_app, serve};
use tonic::codegen::http;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

// The tests' real Envoy, configured from envoy.yaml.
#[allow(dead_code)]
#[path = "../tests/api/envoy.rs"]
mod envoy;

mod common;

use common::{SECRET, database_url, req, token};
const ROOT: &str = "bench-root@orgd.test";
/// (connections, streams per connection).
const CONCURRENCIES: [(usize, usize); 3] = [(1, 1), (4, 16), (16, 64)];
const BATCH: usize = 1_000;
/// HTTP/1.1 connections of the REST measure.
const REST_CONNS: usize = 32;

struct Options {
    backends: Vec<String>,
    scale: f64,
    seconds: u64,
    batches: usize,
    /// Database connections; the server's default when not given.
    db_connections: Option<u32>,
}

fn options() -> Options {
    let mut o = Options {
        backends: vec!["sqlite".into(), "postgres".into()],
        scale: 1.0,
        seconds: 5,
        batches: 200,
        db_connections: None,
    };
    common::flags(|name, value| {
        match name {
            "--backends" => o.backends = common::backends(value),
            "--scale" => o.scale = value.parse().expect("--scale takes a number"),
            "--seconds" => o.seconds = value.parse().expect("--seconds takes a number"),
            "--batches" => o.batches = value.parse().expect("--batches takes a number"),
            "--db-connections" => {
                o.db_connections = Some(value.parse().expect("--db-connections takes a number"))
            }
            _ => return false,
        }
        true
    });
    o
}

// ---------------------------------------------------------------------------
// The baseline: GetOrganization answered from memory, nothing else.
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct Baseline {
    answer: Arc<GetOrganizationResponse>,
}

impl tonic::server::NamedService for Baseline {
    const NAME: &'static str = "orgd.v1.OrganizationService";
}

struct Answer(Arc<GetOrganizationResponse>);

impl tonic::server::UnaryService<GetOrganizationRequest> for Answer {
    type Response = GetOrganizationResponse;
    type Future = std::future::Ready<Result<Response<GetOrganizationResponse>, Status>>;
    fn call(&mut self, _request: Request<GetOrganizationRequest>) -> Self::Future {
        std::future::ready(Ok(Response::new((*self.0).clone())))
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Baseline {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let answer = self.answer.clone();
        Box::pin(async move {
            if request.uri().path() != "/orgd.v1.OrganizationService/GetOrganization" {
                return Ok(Status::unimplemented("the baseline answers GetOrganization only").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Answer(answer), request).await)
        })
    }
}

async fn serve_baseline(
    answer: GetOrganizationResponse,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Health too: Envoy routes only to upstreams that pass its checks.
    let (_, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(Baseline {
                answer: Arc::new(answer),
            })
            .serve_with_incoming_shutdown(
                // Nagle off, as orgd does: small replies must not wait for
                // the peer's delayed ACK.
                tokio_stream::StreamExt::map(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    |conn| {
                        if let Ok(stream) = &conn {
                            let _ = stream.set_nodelay(true);
                        }
                        conn
                    },
                ),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    (addr, stop)
}

// ---------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------

/// Calls per second answered, closed loop: `callers` tasks, each with the
/// call `make` gives it for its index, calling one after another for
/// `seconds` after a second of warm-up. A call answers whether it counts.
async fn drive<C, F>(callers: usize, seconds: u64, make: impl Fn(usize) -> C) -> f64
where
    C: FnMut() -> F + Send + 'static,
    F: std::future::Future<Output = bool> + Send,
{
    let counted = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let warm_up = Duration::from_secs(1);
    let end = Instant::now() + warm_up + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..callers {
        let mut call = make(i);
        let (counted, counting) = (counted.clone(), counting.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                if call().await && counting.load(Ordering::Relaxed) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(warm_up).await;
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    for task in tasks {
        task.await.expect("caller");
    }
    counted.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn channels(uri: &str, n: usize) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            Channel::from_shared(uri.to_owned())
                .expect("uri")
                .connect()
                .await
                .expect("connect"),
        );
    }
    out
}

/// GetOrganization calls per second, closed loop: `streams` callers on each
/// of `conns` connections. Any answer but OK stops the benchmark.
async fn closed_loop(uri: &str, conns: usize, streams: usize, seconds: u64, token: &str, slug: &str) -> f64 {
    let channels = channels(uri, conns).await;
    drive(conns * streams, seconds, |i| {
        let client = OrganizationServiceClient::new(channels[i % conns].clone());
        let (token, slug) = (token.to_owned(), slug.to_owned());
        move || {
            let mut client = client.clone();
            let request = req(&token, GetOrganizationRequest { slug: slug.clone() });
            async move {
                client
                    .get_organization(request)
                    .await
                    .unwrap_or_else(|e| panic!("GetOrganization failed under load: {e:?}"));
                true
            }
        }
    })
    .await
}

/// GetOrganization through Envoy's REST transcoding: requests per second
/// answered 200, closed loop over `conns` HTTP/1.1 keep-alive connections.
async fn rest_loop(url: &str, conns: usize, seconds: u64, token: &str) -> f64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .build()
        .expect("client");
    drive(conns, seconds, |_| {
        let (client, url, token) = (client.clone(), url.to_owned(), token.to_owned());
        move || {
            let request = client.get(&url).bearer_auth(&token);
            async move {
                let reply = request.send().await.expect("GET through Envoy");
                let status = reply.status();
                let body = reply.bytes().await.expect("body");
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                true
            }
        }
    })
    .await
}

/// The overload measure's call: a search of the largest organization's
/// products as its plain member (bound by the database, not the client).
fn search(token: &str, slug: &str, term: &str) -> Request<ListProductsRequest> {
    let mut request = req(
        token,
        ListProductsRequest {
            slug: slug.to_owned(),
            search: term.to_owned(),
            ..Default::default()
        },
    );
    request.set_timeout(Duration::from_secs(5));
    request
}

/// Searches per second, closed loop with `callers` over 4 connections:
/// what the server can serve.
async fn search_capacity(
    uri: &str,
    callers: usize,
    seconds: u64,
    token: &str,
    slug: &str,
    term: &str,
) -> f64 {
    let channels = channels(uri, 4).await;
    drive(callers, seconds, |i| {
        let client = AggregationServiceClient::new(channels[i % channels.len()].clone());
        let (token, slug, term) = (token.to_owned(), slug.to_owned(), term.to_owned());
        move || {
            let mut client = client.clone();
            let request = search(&token, &slug, &term);
            async move { client.list_products(request).await.is_ok() }
        }
    })
    .await
}

/// What an open loop offering `rate` searches per second for `seconds`
/// gets: answered per second within the window, refused per second
/// (RESOURCE_EXHAUSTED), the p99 time to a refusal, and calls that failed
/// otherwise (timeouts).
struct Offered {
    goodput: f64,
    refused: f64,
    refusal_p99: Duration,
    failed: u64,
}

async fn search_offered(uri: &str, rate: f64, seconds: u64, token: &str, slug: &str, term: &str) -> Offered {
    let channels = channels(uri, 4).await;
    let total = (rate * seconds as f64) as u64;
    let period = Duration::from_secs_f64(1.0 / rate);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(started + period * i as u32).await;
        let mut client = AggregationServiceClient::new(channels[i as usize % channels.len()].clone());
        let request = search(token, slug, term);
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = client.list_products(request).await.map(|_| ());
            (outcome, sent.elapsed(), tokio::time::Instant::now())
        }));
    }
    // Only what was answered within the window counts: calls still queued
    // when it closes are not goodput.
    let window_end = started + Duration::from_secs(seconds);
    let (mut ok, mut refused, mut failed) = (0u64, Vec::new(), 0u64);
    for task in tasks {
        match task.await.expect("call") {
            (Ok(()), _, done) if done <= window_end => ok += 1,
            (Ok(()), _, _) => {}
            (Err(status), took, _) if status.code() == tonic::Code::ResourceExhausted => refused.push(took),
            (Err(_), _, _) => failed += 1,
        }
    }
    refused.sort();
    let refusal_p99 = refused
        .get((refused.len() * 99 / 100).min(refused.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    Offered {
        goodput: ok as f64 / seconds as f64,
        refused: refused.len() as f64 / seconds as f64,
        refusal_p99,
        failed,
    }
}

/// A process's resident set (KiB): in all, and its anonymous (heap,
/// stacks) and file-backed (mapped files, such as SQLite's mapped
/// database) parts.
#[derive(Clone, Copy, Default)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
}

fn rss_of(pid: u32) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:") + field("RssShmem:"),
    }
}

/// The largest resident set of process `pid` while `conns` x `streams`
/// callers read GetOrganization from it for `seconds`.
async fn peak_rss(
    pid: u32,
    uri: &str,
    conns: usize,
    streams: usize,
    seconds: u64,
    token: &str,
    slug: &str,
) -> Rss {
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let peak = Arc::new(std::sync::Mutex::new(Rss::default()));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                let now = rss_of(pid);
                if let Ok(mut peak) = peak.lock()
                    && now.total > peak.total
                {
                    *peak = now;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    closed_loop(uri, conns, streams, seconds, token, slug).await;
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    peak.lock().map(|p| *p).unwrap_or_default()
}

/// `orgd serve` in a process of its own on `database_url`, as served by
/// default but without admission (at the door and at the database) and rate limits (the callers are one
/// user, in a closed loop); killed when dropped.
async fn spawn_orgd(database_url: &str, dir: &std::path::Path) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgd"))
        .args(["serve", "--grpc-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .args([
            "--database-url",
            database_url,
            "--max-in-flight",
            "0",
            "--db-read-wait-ms",
            "30000",
            "--rate-limit-caller",
            "0",
            "--rate-limit-org",
            "0",
        ])
        .env("ORGD_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start orgd");
    let uri = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if let Ok(channel) = Channel::from_shared(uri.clone()).expect("uri").connect().await {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            if health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok()
            {
                return (child, uri);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("orgd did not start");
}

// ---------------------------------------------------------------------------
// One backend
// ---------------------------------------------------------------------------

struct Results {
    rows: usize,
    generate_secs: f64,
    response_bytes: usize,
    /// (connections, streams, orgd req/s, baseline req/s) per concurrency.
    get: Vec<(usize, usize, f64, f64)>,
    /// Through Envoy: to orgd, to the baseline (req/s).
    rest: (f64, f64),
    /// Searches per second served closed-loop, and what twice that got.
    capacity: f64,
    offered: Offered,
    /// Peak RSS under 1,000 and 10,000 streams.
    rss: (Rss, Rss),
    rows_per_second: f64,
    first_tenth: Duration,
    last_tenth: Duration,
}

async fn measure(backend: &str, o: &Options) -> Results {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = database_url(backend, dir.path(), "bench").await;
    let config = ServerConfig {
        db_max_connections: o
            .db_connections
            .unwrap_or_else(|| orgd::store::default_max_connections(&url)),
        database_url: url,
        storage_root: dir.path().join("storage"),
        auth: AuthConfig {
            hs256_secret: Secret::new(SECRET),
            public_key_pem: None,
            issuer: None,
            audience: None,
        },
        superadmins: vec![ROOT.into()],
        db_busy_timeout: Duration::from_secs(10),
        audit_signer: orgd::signing::AuditSigner::ephemeral(),
        audit_retention: None,
        soft_delete_window: orgd::app::DEFAULT_SOFT_DELETE_WINDOW,
        // As served by default, but without the limits a benchmark's single
        // caller would hit.
        admission: orgd::api::admission::AdmissionConfig {
            max_in_flight: 0,
            wait: Duration::from_millis(100),
            read_wait: Duration::from_secs(30),
        },
        rate_limits: orgd::ratelimit::RateLimitConfig {
            caller: 0.0,
            organization: 0.0,
        },
        cache_entries: orgd::store::DEFAULT_CACHE_ENTRIES,
    };
    let app = build_app(&config).await.expect("app");
    let plan = Plan::scaled(o.scale);
    let started = Instant::now();
    let dataset = generate(&app, &plan, &|phase: &str| {
        eprintln!(
            "  [{backend} x{} {:>7.1}s] {phase}",
            o.scale,
            started.elapsed().as_secs_f64()
        )
    })
    .await
    .expect("generate");
    let generate_secs = started.elapsed().as_secs_f64();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let orgd_addr = listener.local_addr().expect("addr");
    let uri = format!("http://{orgd_addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(app, listener, async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(uri.clone())
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let member = token(&dataset.member_email);
    let answer = OrganizationServiceClient::new(channel.clone())
        .get_organization(req(
            &member,
            GetOrganizationRequest {
                slug: dataset.largest_slug.clone(),
            },
        ))
        .await
        .expect("GetOrganization")
        .into_inner();
    let response_bytes = prost::Message::encoded_len(&answer);
    let (baseline_addr, stop_baseline) = serve_baseline(answer).await;
    let baseline = format!("http://{baseline_addr}");
    let mut get = Vec::new();
    for (conns, streams) in CONCURRENCIES {
        eprintln!("  [{backend}] GetOrganization at {conns} x {streams}");
        let orgd = closed_loop(&uri, conns, streams, o.seconds, &member, &dataset.largest_slug).await;
        let base = closed_loop(
            &baseline,
            conns,
            streams,
            o.seconds,
            &member,
            &dataset.largest_slug,
        )
        .await;
        get.push((conns, streams, orgd, base));
    }
    eprintln!("  [{backend}] GetOrganization through Envoy, {REST_CONNS} connections");
    let path = format!("/organizations/{}", dataset.largest_slug);
    let rest = {
        let envoy = envoy::Envoy::start(&[orgd_addr]).await;
        rest_loop(&envoy.url(&path), REST_CONNS, o.seconds, &member).await
    };
    let rest_baseline = {
        let envoy = envoy::Envoy::start(&[baseline_addr]).await;
        rest_loop(&envoy.url(&path), REST_CONNS, o.seconds, &member).await
    };
    let _ = stop_baseline.send(());

    // Overload: a second instance as served by default (admission on), a
    // search's capacity, then twice that offered in an open loop.
    eprintln!("  [{backend}] overload: capacity, then twice that offered");
    let mut defaults = config.clone();
    defaults.admission = Default::default();
    let guarded = build_app(&defaults).await.expect("second instance");
    let guarded_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let guarded_uri = format!("http://{}", guarded_listener.local_addr().expect("addr"));
    let (stop_guarded, guarded_stopped) = tokio::sync::oneshot::channel::<()>();
    let guarded_server = tokio::spawn(serve(guarded, guarded_listener, async {
        let _ = guarded_stopped.await;
    }));
    // The peak over a few concurrencies: too few callers leave the server
    // idle, too many queue past the calls' deadline.
    let mut capacity = 0.0f64;
    for callers in [4, 16, 64] {
        let served = search_capacity(
            &guarded_uri,
            callers,
            o.seconds,
            &member,
            &dataset.largest_slug,
            &dataset.search_term,
        )
        .await;
        eprintln!("  [{backend}] searches with {callers} callers: {served:.0}/s");
        capacity = capacity.max(served);
    }
    let offered = search_offered(
        &guarded_uri,
        capacity * 2.0,
        o.seconds,
        &member,
        &dataset.largest_slug,
        &dataset.search_term,
    )
    .await;
    let _ = stop_guarded.send(());
    let _ = guarded_server.await;

    eprintln!("  [{backend}] {} batch upserts of {BATCH} products", o.batches);
    let root = token(ROOT);
    let space = SpaceServiceClient::new(channel.clone())
        .create_space(req(
            &root,
            CreateSpaceRequest {
                name: format!("Upserts {}", uuid::Uuid::new_v4().simple()),
                visibility: "organization".into(),
                admin_email: ROOT.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("space")
        .into_inner()
        .space
        .expect("space");
    OrganizationServiceClient::new(channel.clone())
        .add_space(req(
            &root,
            AddSpaceRequest {
                slug: dataset.largest_slug.clone(),
                space_id: space.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("attach");
    let mut spaces = SpaceServiceClient::new(channel.clone());
    let mut times = Vec::with_capacity(o.batches);
    let all = Instant::now();
    for b in 0..o.batches {
        let items: Vec<Product> = (0..BATCH)
            .map(|i| Product {
                id: uuid::Uuid::new_v4().to_string(),
                name: format!("product {b}-{i}"),
                description: "benchmark product".into(),
                product_type: "table".into(),
                provider: "warehouse".into(),
                is_archived: i % 10 == 0,
                ..Default::default()
            })
            .collect();
        let started = Instant::now();
        spaces
            .batch_upsert_products(req(
                &root,
                BatchUpsertProductsRequest {
                    space_id: space.id.clone(),
                    items,
                    ..Default::default()
                },
            ))
            .await
            .expect("upsert");
        times.push(started.elapsed());
    }
    let rows_per_second = (o.batches * BATCH) as f64 / all.elapsed().as_secs_f64();
    let tenth = (o.batches / 10).max(1);
    let mean = |d: &[Duration]| d.iter().sum::<Duration>() / d.len().max(1) as u32;
    let first_tenth = mean(&times[..tenth]);
    let last_tenth = mean(&times[times.len() - tenth..]);
    // A small organization of the member's, for the memory measure (the
    // largest one's answer is the size of its spaces and members).
    let small = format!("small-{}", uuid::Uuid::new_v4().simple());
    OrganizationServiceClient::new(channel.clone())
        .create_organization(req(
            &root,
            CreateOrganizationRequest {
                name: "Small".into(),
                slug: Some(small.clone()),
                admin_email: dataset.member_email.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("small organization");
    let _ = stop.send(());
    let _ = server.await;

    eprintln!("  [{backend}] memory of orgd in its own process under 1,000 and 10,000 streams");
    let (child, orgd_uri) = spawn_orgd(&config.database_url, &dir.path().join("process")).await;
    let pid = child.id().expect("pid");
    let rss_1k = peak_rss(pid, &orgd_uri, 10, 100, o.seconds, &member, &small).await;
    let rss_10k = peak_rss(pid, &orgd_uri, 100, 100, o.seconds, &member, &small).await;
    drop(child);
    Results {
        rows: plan.content_rows(),
        generate_secs,
        response_bytes,
        get,
        rest: (rest, rest_baseline),
        capacity,
        offered,
        rss: (rss_1k, rss_10k),
        rows_per_second,
        first_tenth,
        last_tenth,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let o = options();
    for backend in &o.backends {
        eprintln!("{backend}: generating x{} and measuring", o.scale);
        let r = measure(backend, &o).await;
        println!("\n### {backend}\n");
        println!(
            "Dataset: {} content rows (generated in {:.0} s); GetOrganization answers {} bytes \
             (the largest organization, as a plain member); {} s per case after 1 s of warm-up.\n",
            r.rows, r.generate_secs, r.response_bytes, o.seconds
        );
        println!(
            "| GetOrganization, conns x streams | orgd req/s | baseline req/s | ratio | target | ratio / target |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for (conns, streams, orgd, base) in &r.get {
            let ratio = orgd / base;
            println!(
                "| {conns} x {streams} | {orgd:.0} | {base:.0} | {ratio:.2} | 0.60 | {:.2} |",
                ratio / 0.6
            );
        }
        let (rest, rest_baseline) = r.rest;
        let ratio = rest / rest_baseline;
        println!(
            "| REST through Envoy, {REST_CONNS} connections (vs Envoy -> baseline) | {rest:.0} | {rest_baseline:.0} | {ratio:.2} | 0.80 | {:.2} |",
            ratio / 0.8
        );
        let of = &r.offered;
        println!(
            "\n| overload: searches, offered {:.0}/s (2 x capacity {:.0}/s) | measured | target | ratio / target |",
            r.capacity * 2.0,
            r.capacity
        );
        println!("|---|---:|---:|---:|");
        let kept = of.goodput / r.capacity;
        println!(
            "| goodput / capacity ({:.0}/s answered) | {kept:.2} | 0.90 | {:.2} |",
            of.goodput,
            kept / 0.9
        );
        println!(
            "| refused fast: RESOURCE_EXHAUSTED {:.0}/s, p99 {} ms; other failures {} | | | |",
            of.refused,
            ms(of.refusal_p99),
            of.failed
        );
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "\n| memory of orgd (its own process), GetOrganization of a small organization | peak RSS MiB (heap and stacks + mapped files) | target MiB | ratio / target |"
        );
        println!("|---|---:|---:|---:|");
        for (label, rss, target) in [
            ("1,000 streams (10 connections x 100)", r.rss.0, 64.0),
            ("10,000 streams (100 connections x 100)", r.rss.1, 128.0),
        ] {
            println!(
                "| {label} | {:.1} ({:.1} + {:.1}) | {target:.0} | {:.2} |",
                mib(rss.total),
                mib(rss.anon),
                mib(rss.file),
                mib(rss.total) / target
            );
        }
        let target = if backend == "postgres" { 50_000.0 } else { 80_000.0 };
        println!(
            "\n| batch upserts ({} x {BATCH} products) | measured | target | ratio / target |",
            o.batches
        );
        println!("|---|---:|---:|---:|");
        println!(
            "| rows/s | {:.0} | {target:.0} | {:.2} |",
            r.rows_per_second,
            r.rows_per_second / target
        );
        let growth = r.last_tenth.as_secs_f64() / r.first_tenth.as_secs_f64();
        println!(
            "| last tenth / first tenth batch time ({} ms / {} ms) | {growth:.2} | 1.00 | {:.2} |",
            ms(r.last_tenth),
            ms(r.first_tenth),
            growth
        );
    }
}
