//! Request ids and log lines: every error carries the request's id (the
//! caller's x-request-id, or one orgd made), the response header repeats
//! it, and every log line of the request carries it too.

use std::process::Stdio;
use std::time::Duration;

use orgd::proto::organization_service_client::OrganizationServiceClient;
use orgd::proto::*;
use tokio::io::AsyncReadExt;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

fn with_request_id<T>(mut request: tonic::Request<T>, id: &str) -> tonic::Request<T> {
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().expect("header"));
    request
}

#[tokio::test]
async fn errors_carry_the_request_id_the_caller_sent_or_one_orgd_made() {
    let app = TestApp::spawn().await;
    let refused = app
        .orgs()
        .get_organization(with_request_id(
            req(
                &root(),
                GetOrganizationRequest {
                    slug: "nowhere".into(),
                },
            ),
            "req-4711",
        ))
        .await;
    let status = assert_error(refused, Code::NotFound, "ORG_NOT_FOUND");
    let info = status.get_error_details();
    assert_eq!(
        info.request_info().map(|r| r.request_id.as_str()),
        Some("req-4711"),
        "{status:?}"
    );
    assert_eq!(
        status
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-4711")
    );

    // Without one (or with one that is not a sane token), orgd makes one.
    for sent in [None, Some("has spaces in it")] {
        let mut request = req("", ListOrganizationsRequest::default());
        if let Some(id) = sent {
            request = with_request_id(request, id);
        }
        let status = app
            .orgs()
            .list_organizations(request)
            .await
            .expect_err("no token");
        let made = status
            .get_error_details()
            .request_info()
            .map(|r| r.request_id.clone())
            .expect("a request id");
        assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    }

    // Successful calls carry it in the response header.
    let ok = app
        .orgs()
        .list_organizations(with_request_id(
            req(&root(), ListOrganizationsRequest::default()),
            "req-ok",
        ))
        .await
        .expect("list");
    assert_eq!(
        ok.metadata().get("x-request-id").and_then(|v| v.to_str().ok()),
        Some("req-ok")
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Runs `orgd serve` with `format`, makes one failing and one successful
/// call with known request ids, stops it, and returns what it logged.
async fn serve_and_log(format: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut cmd = crate::cli::orgd();
    cmd.args(["serve", "--grpc-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .env("ORGD_LOG_FORMAT", format)
        .env("ORGD_JWT_SECRET", SECRET)
        .env("ORGD_SUPERADMINS", SUPERADMIN)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start orgd serve");
    let mut client = None;
    for _ in 0..200 {
        if let Ok(c) = OrganizationServiceClient::connect(format!("http://127.0.0.1:{port}")).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = client.expect("orgd serve answers");
    let _ = client
        .get_organization(with_request_id(
            req(
                &root(),
                GetOrganizationRequest {
                    slug: "missing".into(),
                },
            ),
            "log-fail-1",
        ))
        .await;
    client
        .create_organization(with_request_id(
            req(
                &root(),
                CreateOrganizationRequest {
                    name: "Logged".into(),
                    ..Default::default()
                },
            ),
            "log-ok-1",
        ))
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.start_kill();
    let mut stderr = child.stderr.take().expect("stderr");
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stderr.read_to_string(&mut out)).await;
    let _ = child.wait().await;
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn json_log_lines_carry_the_request_id_rpc_caller_and_status() {
    let log = serve_and_log("json").await;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let of = |id: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| {
                l["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|s| s["request_id"] == id))
            })
            .collect()
    };
    let failed = of("log-fail-1");
    let finished = failed
        .iter()
        .find(|l| l["message"] == "request finished")
        .unwrap_or_else(|| panic!("no finishing line for log-fail-1 in {log}"));
    assert_eq!(finished["status"], "NotFound", "{finished}");
    let request_span = &finished["spans"][0];
    assert_eq!(
        request_span["rpc"],
        "/orgd.v1.OrganizationService/GetOrganization"
    );
    assert!(
        request_span["caller"]
            .as_str()
            .is_some_and(|c| uuid::Uuid::parse_str(c).is_ok())
    );

    let created = of("log-ok-1");
    assert!(
        created.iter().any(|l| l["message"] == "organization created"),
        "the handler's own line carries the request id: {log}"
    );
    assert!(
        created
            .iter()
            .any(|l| l["message"] == "request finished" && l["status"] == "Ok")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn text_logs_have_no_colours_when_not_on_a_terminal() {
    let log = serve_and_log("text").await;
    assert!(log.contains("log-fail-1"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in a log file: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_errors_carry_the_request_id_envoy_assigned() {
    let app = TestApp::spawn().await;
    let envoy = crate::envoy::Envoy::start(&[app.addr]).await;
    let reply = reqwest::Client::new()
        .get(envoy.url("/organizations/nowhere"))
        .bearer_auth(root())
        .send()
        .await
        .expect("request");
    assert_eq!(reply.status(), 404);
    let header = reply
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("x-request-id on the reply");
    let body: serde_json::Value = reply.json().await.expect("JSON");
    let info = body["details"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .find(|x| x["@type"] == "type.googleapis.com/google.rpc.RequestInfo")
        })
        .unwrap_or_else(|| panic!("no RequestInfo in {body}"));
    assert_eq!(info["request_id"], header.as_str(), "{body}");
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

pub(crate) async fn scrape(app: &TestApp) -> String {
    let reply = reqwest::Client::new()
        .get(format!("http://{}/metrics", app.metrics_addr))
        .send()
        .await
        .expect("scrape");
    assert_eq!(reply.status(), 200);
    assert!(
        reply
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        reply.headers()
    );
    reply.text().await.expect("body")
}

/// The value of the sample whose name and labels are exactly these.
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let body = rest.strip_suffix('}')?;
        let mut got: Vec<(String, String)> = body
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k.to_owned(), v.trim_matches('"').to_owned()))
            })
            .collect();
        got.sort();
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        want.sort();
        (got == want).then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn metrics_count_rpcs_by_method_and_code_audit_appends_and_pools() {
    let app = TestApp::spawn().await;
    app.create_org("Counted", "counted", "admin@counted.test").await;
    for _ in 0..3 {
        app.orgs()
            .get_organization(req(
                &root(),
                GetOrganizationRequest {
                    slug: "counted".into(),
                },
            ))
            .await
            .expect("get");
    }
    for _ in 0..2 {
        let _ = app
            .orgs()
            .get_organization(req(
                &root(),
                GetOrganizationRequest {
                    slug: "missing".into(),
                },
            ))
            .await;
    }
    let text = scrape(&app).await;
    fn get(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut labels = vec![
            ("grpc_service", "orgd.v1.OrganizationService"),
            ("grpc_method", "GetOrganization"),
            ("grpc_type", "unary"),
        ];
        labels.extend_from_slice(extra);
        labels
    }
    assert_eq!(
        sample(&text, "grpc_server_started_total", &get(&[])),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "grpc_server_handled_total", &get(&[("grpc_code", "OK")])),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "grpc_server_handled_total",
            &get(&[("grpc_code", "NotFound")])
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "grpc_server_handling_seconds_count", &get(&[])),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, "grpc_server_handling_seconds_bucket", &{
            let mut l = get(&[]);
            l.push(("le", "+Inf"));
            l
        }),
        Some(5.0)
    );
    // One change so far: the organization's creation.
    assert_eq!(
        sample(&text, "orgd_audit_appends_total", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orgd_db_write_acquire_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "orgd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    let pool = if backend() == "postgres" { "main" } else { "writer" };
    let idle = sample(
        &text,
        "orgd_db_pool_connections",
        &[("pool", pool), ("state", "idle")],
    );
    let in_use = sample(
        &text,
        "orgd_db_pool_connections",
        &[("pool", pool), ("state", "in_use")],
    );
    assert!(idle.is_some() && in_use.is_some(), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));

    // A refusal is an audit append too.
    let _ = app
        .orgs()
        .update_organization(req(
            &token("stranger@counted.test"),
            UpdateOrganizationRequest {
                slug: "counted".into(),
                description: Some("x".into()),
                ..Default::default()
            },
        ))
        .await;
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, "orgd_audit_appends_total", &[]),
        Some(2.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prometheus_server_scrapes_the_metrics() {
    let prometheus = std::env::var("ORGD_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let app = TestApp::spawn().await;
    app.create_org("Scraped", "scraped", "admin@scraped.test").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: orgd\n    static_configs:\n      - targets: ['{}']\n",
            app.metrics_addr
        ),
    )
    .expect("config");
    let port = free_port();
    let mut child = tokio::process::Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {prometheus} (scripts/test.sh installs it): {e}"));
    let http = reqwest::Client::new();
    let query = |q: &str| {
        let encoded: String = q
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        http.get(format!("http://127.0.0.1:{port}/api/v1/query?query={encoded}"))
            .send()
    };
    let mut found = None;
    for _ in 0..300 {
        if let Ok(reply) = query("grpc_server_handled_total{grpc_method=\"CreateOrganization\"}").await
            && let Ok(body) = reply.json::<serde_json::Value>().await
            && let Some(first) = body["data"]["result"].as_array().and_then(|r| r.first())
        {
            found = Some(first.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.start_kill();
    let sample = found.expect("Prometheus scraped orgd's metrics");
    assert_eq!(sample["metric"]["grpc_code"], "OK", "{sample}");
    assert_eq!(sample["metric"]["job"], "orgd", "{sample}");
    assert_eq!(sample["value"][1], "1", "{sample}");
}

// ---------------------------------------------------------------------------
// Traces
// ---------------------------------------------------------------------------

mod otlp {
    use std::sync::{Arc, Mutex};

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::trace::v1::Span;
    use tonic::{Request, Response, Status};

    /// A real OTLP/gRPC trace receiver that keeps what it is sent.
    #[derive(Clone, Default)]
    pub struct Receiver(pub Arc<Mutex<Vec<Span>>>);

    #[tonic::async_trait]
    impl TraceService for Receiver {
        async fn export(
            &self,
            request: Request<ExportTraceServiceRequest>,
        ) -> Result<Response<ExportTraceServiceResponse>, Status> {
            let mut kept = self.0.lock().map_err(|_| Status::internal("poisoned"))?;
            for resource in request.into_inner().resource_spans {
                for scope in resource.scope_spans {
                    kept.extend(scope.spans);
                }
            }
            Ok(Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        }
    }

    pub async fn start() -> (Receiver, std::net::SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let receiver = Receiver::default();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        (receiver, addr)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_reach_an_otlp_receiver_continuing_the_callers_trace() {
    let (receiver, collector) = otlp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let metrics_port = free_port();
    let mut cmd = crate::cli::orgd();
    cmd.args(["serve", "--grpc-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("ORGD_JWT_SECRET", SECRET)
        .env("ORGD_SUPERADMINS", SUPERADMIN)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start orgd serve");
    let mut client = None;
    for _ in 0..200 {
        if let Ok(c) = OrganizationServiceClient::connect(format!("http://127.0.0.1:{port}")).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = client.expect("orgd serve answers");
    client
        .create_organization(req(
            &root(),
            CreateOrganizationRequest {
                name: "Traced".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create");
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let mut request = req(
        &root(),
        GetOrganizationRequest {
            slug: "traced".into(),
        },
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().expect("header"),
    );
    client.get_organization(request).await.expect("get");

    let wanted_trace = hex::decode(trace_id).expect("hex");
    type Span = opentelemetry_proto::tonic::trace::v1::Span;
    let operation = |s: &Span| {
        s.attributes
            .iter()
            .find(|a| a.key == "db.operation")
            .and_then(|a| a.value.as_ref())
            .map(|v| format!("{:?}", v.value))
            .unwrap_or_default()
    };
    // Whether `span` descends from `ancestor` (through the handler's span).
    let descends = |spans: &[Span], span: &Span, ancestor: &[u8]| {
        let mut parent = span.parent_span_id.clone();
        for _ in 0..10 {
            if parent == ancestor {
                return true;
            }
            match spans.iter().find(|s| s.span_id == parent) {
                Some(up) => parent = up.parent_span_id.clone(),
                None => return false,
            }
        }
        false
    };
    let mut found = None;
    for _ in 0..100 {
        let spans = receiver.0.lock().expect("spans").clone();
        let rpc = spans
            .iter()
            .find(|s| s.name == "/orgd.v1.OrganizationService/GetOrganization" && s.trace_id == wanted_trace);
        if let Some(rpc) = rpc {
            let access = spans.iter().find(|s| {
                s.trace_id == wanted_trace
                    && s.name == "db"
                    && operation(s).contains("organization_view")
                    && descends(&spans, s, &rpc.span_id)
            });
            if let Some(access) = access {
                found = Some((rpc.clone(), access.clone()));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.start_kill();
    let (rpc, access) = found.expect("the RPC's span and its database span reached the receiver");
    assert_eq!(
        hex::encode(&rpc.parent_span_id),
        caller_span,
        "the caller's span is the parent"
    );
    assert!(access.end_time_unix_nano >= access.start_time_unix_nano);
}
