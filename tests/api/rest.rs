//! REST through a real Envoy: every documented path, the seed's JSON shapes,
//! status codes, query mapping and Envoy's own error replies.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::envoy::Envoy;
use crate::helpers::*;

pub(crate) struct Rest {
    pub(crate) envoy: Envoy,
    pub(crate) app: TestApp,
    pub(crate) http: reqwest::Client,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    #[track_caller]
    pub(crate) fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        if status == 204 {
            return Value::Null;
        }
        assert_eq!(
            self.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{}",
            self.text
        );
        self.json()
    }

    /// Asserts an error reply: the HTTP status, and a JSON body with the gRPC
    /// code and an ErrorInfo of domain orgd with this reason.
    #[track_caller]
    pub(crate) fn expect_error(&self, status: u16, code: i64, reason: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        let info = body["details"]
            .as_array()
            .and_then(|d| {
                d.iter()
                    .find(|x| x["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
            })
            .unwrap_or_else(|| panic!("no ErrorInfo in {body}"));
        assert_eq!(info["domain"], "orgd", "{body}");
        assert_eq!(info["reason"], reason, "{body}");
        body
    }
}

impl Rest {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Envoy in front of a server whose configuration the test adjusts.
    pub(crate) async fn start_with(tweak: impl FnOnce(&mut orgd::ServerConfig)) -> Self {
        let app = TestApp::spawn_with(tweak).await;
        let envoy = Envoy::start(&[app.addr]).await;
        Self {
            envoy,
            app,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) async fn call(&self, method: Method, path: &str, token: &str, body: Option<&str>) -> Reply {
        let mut request = self.http.request(method, self.envoy.url(path));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.expect("request through Envoy");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        Reply {
            status,
            headers,
            text,
        }
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(&body.to_string()))
            .await
    }

    pub(crate) async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, token, Some(&body.to_string()))
            .await
    }

    pub(crate) async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, token, None).await
    }
}

pub(crate) fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_answer_in_the_seed_shapes() {
    let rest = Rest::start().await;
    let root = root();
    let created = rest
        .post(
            "/organizations",
            &root,
            json!({"name": "Acme Corp", "slug": "acme"}),
        )
        .await
        .expect(201);
    assert_eq!(
        (created["name"].as_str(), created["slug"].as_str()),
        (Some("Acme Corp"), Some("acme"))
    );
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(is_rfc3339(&created["created_at"]));
    assert_eq!(created["user_count"], 1, "counts are JSON numbers");
    assert_eq!(created["members"][0]["role"], "admin");

    let space = rest
        .post(
            "/spaces",
            &root,
            json!({"name": "Analytics", "admin_email": SUPERADMIN}),
        )
        .await
        .expect(201);
    let space_id = space["id"].as_str().expect("id").to_owned();
    assert_eq!(space["visibility"], "organization");
    let attached = rest
        .post("/organizations/acme/spaces", &root, json!({"space_id": space_id}))
        .await
        .expect(201);
    assert_eq!(attached["organization_id"], id.as_str());

    // GET /organizations: a bare array, the total in x-total-count.
    let list = rest.get("/organizations", &root).await;
    let body = list.expect(200);
    assert_eq!(
        list.headers.get("x-total-count").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert!(list.headers.get("x-http-status").is_none() && list.headers.get("x-json-body").is_none());
    let items = body.as_array().expect("a bare JSON array");
    assert_eq!(items.len(), 1);
    let org = &items[0];
    for key in ["id", "name", "slug", "spaces", "user_count", "created_at"] {
        assert!(org.get(key).is_some(), "list item lacks {key}: {org}");
    }
    assert_eq!(
        org["spaces"],
        json!([{"id": space_id, "name": "Analytics", "slug": "analytics"}])
    );
    assert!(org["user_count"].is_i64() && org["space_count"].is_i64());
    assert!(is_rfc3339(&org["created_at"]));

    // GET /organizations/{slug}: the details object itself.
    let details = rest.get("/organizations/acme", &root).await.expect(200);
    assert_eq!(details["id"], id.as_str());
    assert_eq!(details["spaces"][0]["id"], space_id.as_str());
    assert_eq!(details["spaces"][0]["visibility"], "organization");
    assert_eq!(
        keys(&details["members"][0]),
        // The seed's fields, and the etag of SPEC §7.
        vec!["display_name", "email", "etag", "joined_at", "role", "user_id"]
    );

    let patched = rest
        .patch(
            "/organizations/acme",
            &root,
            json!({"description": "Makers", "new_slug": "acme-co"}),
        )
        .await
        .expect(200);
    assert_eq!(
        (patched["slug"].as_str(), patched["description"].as_str()),
        (Some("acme-co"), Some("Makers"))
    );
    assert_eq!(patched["name"], "Acme Corp");

    let removed = rest
        .delete(&format!("/organizations/acme-co/spaces/{space_id}"), &root)
        .await;
    removed.expect(204);
    assert!(removed.text.is_empty());
    let deleted = rest.delete("/organizations/acme-co", &root).await;
    deleted.expect(204);
    assert!(deleted.text.is_empty(), "204 has an empty body");
    rest.get("/organizations/acme-co", &root)
        .await
        .expect_error(404, 5, "ORG_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_members_over_rest() {
    let rest = Rest::start().await;
    rest.app.create_org("Team", "team", "lead@rest.test").await;
    let lead = token("lead@rest.test");
    let added = rest
        .post(
            "/organizations/team/users",
            &lead,
            json!({"user_email": "dev@rest.test", "role": "member"}),
        )
        .await
        .expect(201);
    assert_eq!(
        (added["email"].as_str(), added["role"].as_str()),
        (Some("dev@rest.test"), Some("member"))
    );
    let user_id = added["user_id"].as_str().expect("user_id").to_owned();
    let promoted = rest
        .patch(
            &format!("/organizations/team/users/{user_id}"),
            &lead,
            json!({"role": "admin"}),
        )
        .await
        .expect(200);
    assert_eq!(promoted["role"], "admin");

    let page = rest
        .get("/organizations/team/users?size=1&page=2", &lead)
        .await
        .expect(200);
    assert_eq!(
        keys(&page),
        vec!["items", "next_page_token", "page", "size", "total"]
    );
    assert_eq!(
        (
            page["total"].as_i64(),
            page["page"].as_i64(),
            page["size"].as_i64()
        ),
        (Some(2), Some(2), Some(1))
    );
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let admins = rest
        .get("/organizations/team/users?role=admin&search=DEV", &lead)
        .await
        .expect(200);
    assert_eq!(admins["total"], 1);

    rest.delete(&format!("/organizations/team/users/{user_id}"), &lead)
        .await
        .expect(204);
    // The last admin stays: FAILED_PRECONDITION is a 400.
    let lead_id =
        rest.get("/organizations/team/users", &lead).await.expect(200)["items"][0]["user_id"].clone();
    let last = rest
        .delete(
            &format!("/organizations/team/users/{}", lead_id.as_str().expect("id")),
            &lead,
        )
        .await;
    last.expect_error(400, 9, "LAST_ADMIN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spaces_over_rest() {
    let rest = Rest::start().await;
    let root = root();
    let space = rest
        .post(
            "/spaces",
            &root,
            json!({"name": "Lake", "visibility": "restricted", "repo": "github.com/acme/lake",
                   "agent": {"agent_id": "a-1", "status": "ACTIVE", "autonomy_level": 2},
                   "admin_email": "keeper@rest.test"}),
        )
        .await
        .expect(201);
    let id = space["id"].as_str().expect("id").to_owned();
    assert_eq!(
        space["agent"],
        json!({"agent_id": "a-1", "status": "ACTIVE", "autonomy_level": 2})
    );
    assert_eq!(space["visibility"], "restricted");

    let keeper = token("keeper@rest.test");
    assert_eq!(
        rest.get(&format!("/spaces/{id}"), &keeper).await.expect(200)["slug"],
        "lake"
    );
    let listed = rest.get("/spaces?search=lak", &keeper).await.expect(200);
    assert_eq!(
        (listed["total"].as_i64(), listed["items"][0]["id"].as_str()),
        (Some(1), Some(id.as_str()))
    );
    let patched = rest
        .patch(&format!("/spaces/{id}"), &keeper, json!({"description": "wet"}))
        .await
        .expect(200);
    assert_eq!(
        (patched["description"].as_str(), patched["name"].as_str()),
        (Some("wet"), Some("Lake"))
    );

    let member = rest
        .post(
            &format!("/spaces/{id}/members"),
            &keeper,
            json!({"user_email": "v@rest.test", "role": "viewer"}),
        )
        .await
        .expect(201);
    let uid = member["user_id"].as_str().expect("uid").to_owned();
    assert_eq!(
        rest.patch(
            &format!("/spaces/{id}/members/{uid}"),
            &keeper,
            json!({"role": "editor"})
        )
        .await
        .expect(200)["role"],
        "editor"
    );
    let members = rest
        .get(&format!("/spaces/{id}/members"), &keeper)
        .await
        .expect(200);
    assert_eq!(members["total"], 2);
    rest.delete(&format!("/spaces/{id}/members/{uid}"), &keeper)
        .await
        .expect(204);
    rest.delete(&format!("/spaces/{id}"), &keeper).await.expect(204);
    rest.get(&format!("/spaces/{id}"), &keeper)
        .await
        .expect_error(404, 5, "SPACE_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_status_is_json_with_error_info() {
    let rest = Rest::start().await;
    let root = root();
    rest.app.create_org("Acme", "acme", "a@rest.test").await;

    let missing = rest
        .post("/organizations", &root, json!({"slug": "nameless"}))
        .await;
    let body = missing.expect_error(400, 3, "MISSING_FIELD");
    assert_eq!(body["message"], "organization name is required");
    assert_eq!(body["details"][0]["metadata"]["field"], "name");
    rest.post(
        "/organizations",
        &root,
        json!({"name": "Bad", "slug": "Bad Slug"}),
    )
    .await
    .expect_error(400, 3, "INVALID_SLUG");
    rest.get("/organizations", "")
        .await
        .expect_error(401, 16, "UNAUTHENTICATED");
    rest.get("/organizations", "garbage")
        .await
        .expect_error(401, 16, "UNAUTHENTICATED");
    let forbidden = rest
        .get("/organizations/acme", &token("stranger@rest.test"))
        .await;
    assert_eq!(
        forbidden.expect_error(403, 7, "NOT_AUTHORIZED")["message"],
        "not authorized for this organization"
    );
    rest.get("/organizations/nope", &root)
        .await
        .expect_error(404, 5, "ORG_NOT_FOUND");
    rest.post("/organizations", &root, json!({"name": "Acme"}))
        .await
        .expect_error(409, 6, "ORG_ALREADY_EXISTS");
    rest.post("/organizations", &token("a@rest.test"), json!({"name": "Nope"}))
        .await
        .expect_error(403, 7, "NOT_AUTHORIZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_rejects_what_it_cannot_transcode_with_json_errors() {
    let rest = Rest::start().await;
    let root = root();
    rest.app.create_org("Acme", "acme", "a@rest.test").await;
    rest.get("/no/such/path", &root)
        .await
        .expect_error(404, 5, "ROUTE_NOT_FOUND");
    rest.call(Method::PUT, "/organizations/acme", &root, Some("{}"))
        .await
        .expect_error(404, 5, "ROUTE_NOT_FOUND");
    rest.call(Method::POST, "/organizations", &root, Some("{\"name\": "))
        .await
        .expect_error(400, 3, "INVALID_REQUEST");
    rest.get("/organizations?page=abc", &root)
        .await
        .expect_error(400, 3, "INVALID_REQUEST");
    // A body field that collides with a path variable is refused, and the
    // organization is untouched.
    rest.patch(
        "/organizations/acme",
        &root,
        json!({"slug": "other", "description": "x"}),
    )
    .await
    .expect_error(400, 3, "INVALID_REQUEST");
    assert_eq!(
        rest.get("/organizations/acme", &root).await.expect(200)["description"],
        ""
    );
    // Unknown query parameters are ignored.
    let ok = rest.get("/organizations?utm_source=mail&page=1", &root).await;
    ok.expect(200);
    assert_eq!(
        ok.headers.get("x-total-count").and_then(|v| v.to_str().ok()),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_map_to_the_request() {
    let rest = Rest::start().await;
    let root = root();
    for (name, slug) in [
        ("Acme Corp", "acme"),
        ("Acme Labs", "acme-labs"),
        ("Zeta Works", "zeta"),
    ] {
        rest.app.create_org(name, slug, "a@rest.test").await;
    }
    let slugs = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|o| o["slug"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    for query in ["search=acme+corp", "search=acme%20corp", "search=ACME%20Corp"] {
        let r = rest.get(&format!("/organizations?{query}"), &root).await;
        assert_eq!(slugs(&r.expect(200)), vec!["acme"], "{query}");
        assert_eq!(
            r.headers.get("x-total-count").and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
    let page = rest.get("/organizations?size=2&page=2", &root).await;
    assert_eq!(
        slugs(&page.expect(200)),
        vec!["acme"],
        "newest first: zeta, acme-labs | acme"
    );
    assert_eq!(
        page.headers.get("x-total-count").and_then(|v| v.to_str().ok()),
        Some("3")
    );
    let capped = rest
        .get("/organizations/acme/users?size=1000", &root)
        .await
        .expect(200);
    assert_eq!(capped["size"], 100);
    let defaulted = rest
        .get("/organizations/acme/users?size=0", &root)
        .await
        .expect(200);
    assert_eq!(defaulted["size"], 20);
    let past = rest.get("/organizations?page=7", &root).await;
    assert_eq!(past.expect(200), json!([]));
    assert_eq!(
        past.headers.get("x-total-count").and_then(|v| v.to_str().ok()),
        Some("3")
    );
    rest.get("/organizations?page=0", &root)
        .await
        .expect_error(400, 3, "INVALID_PAGE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_path_reaches_orgd() {
    // Each path of SPEC §3 is transcoded to its RPC: none is Envoy's
    // ROUTE_NOT_FOUND. Without a token, orgd itself answers 401 (its
    // authentication layer runs before every RPC).
    let rest = Rest::start().await;
    let id = uuid::Uuid::new_v4();
    let paths: Vec<(Method, String)> = vec![
        (Method::GET, "/organizations".into()),
        (Method::POST, "/organizations".into()),
        (Method::GET, "/organizations/acme".into()),
        (Method::PATCH, "/organizations/acme".into()),
        (Method::DELETE, "/organizations/acme".into()),
        (Method::POST, "/organizations/acme/spaces".into()),
        (Method::DELETE, format!("/organizations/acme/spaces/{id}")),
        (Method::POST, "/organizations/acme/users".into()),
        (Method::PATCH, format!("/organizations/acme/users/{id}")),
        (Method::DELETE, format!("/organizations/acme/users/{id}")),
        (Method::GET, "/organizations/acme/users".into()),
        (Method::GET, "/organizations/acme/audit".into()),
        (Method::GET, "/organizations/acme/audit:verify".into()),
        (Method::GET, "/organizations/acme/audit:checkpoint".into()),
        (Method::POST, "/organizations/acme/audit:prove".into()),
        (Method::GET, "/organizations/acme/audit:export".into()),
        (Method::GET, "/organizations/acme/audit:watch".into()),
        (Method::GET, format!("/audit-trails/{id}/events")),
        (Method::GET, format!("/audit-trails/{id}:verify")),
        (Method::GET, format!("/audit-trails/{id}:checkpoint")),
        (Method::POST, format!("/audit-trails/{id}:prove")),
        (Method::GET, format!("/audit-trails/{id}:export")),
        (Method::GET, format!("/audit-trails/{id}:watch")),
        (Method::GET, "/audit-signing-key".into()),
        (Method::GET, "/organizations/acme/products".into()),
        (Method::GET, "/organizations/acme/contracts".into()),
        (Method::GET, "/organizations/acme/issues".into()),
        (Method::GET, "/organizations/acme/quality".into()),
        (Method::GET, "/organizations/acme/stats".into()),
        (Method::POST, "/spaces".into()),
        (Method::GET, "/spaces".into()),
        (Method::GET, format!("/spaces/{id}")),
        (Method::PATCH, format!("/spaces/{id}")),
        (Method::DELETE, format!("/spaces/{id}")),
        (Method::GET, format!("/spaces/{id}/members")),
        (Method::POST, format!("/spaces/{id}/members")),
        (Method::PATCH, format!("/spaces/{id}/members/{id}")),
        (Method::DELETE, format!("/spaces/{id}/members/{id}")),
        (Method::POST, format!("/spaces/{id}/products:batchUpsert")),
        (Method::DELETE, format!("/spaces/{id}/products/{id}")),
        (Method::POST, format!("/spaces/{id}/contracts:batchUpsert")),
        (Method::DELETE, format!("/spaces/{id}/contracts/{id}")),
        (Method::POST, format!("/spaces/{id}/issues:batchUpsert")),
        (Method::DELETE, format!("/spaces/{id}/issues/{id}")),
        (Method::POST, format!("/spaces/{id}/quality-checks:batchUpsert")),
        (Method::DELETE, format!("/spaces/{id}/quality-checks/{id}")),
    ];
    for (method, path) in paths {
        let body = (method == Method::POST || method == Method::PATCH).then_some("{}");
        let reply = rest.call(method.clone(), &path, "", body).await;
        let json = reply.json();
        let reason = json["details"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            reply.status == 401 && reason == "UNAUTHENTICATED",
            "{method} {path}: {} {}",
            reply.status,
            reply.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_behind_one_envoy_share_writes_and_survive_one_stopping() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // Two orgd instances on one database, behind one Envoy balancing over
    // both (the multi-instance variant of envoy.yaml: one endpoint each).
    let mut first = TestApp::spawn().await;
    let shared = first.database_url.clone();
    let second = TestApp::spawn_with(|c| c.database_url = shared).await;
    let envoy = Envoy::start(&[first.addr, second.addr]).await;
    let http = reqwest::Client::new();
    let root = root();

    let created = http
        .post(envoy.url("/organizations"))
        .bearer_auth(&root)
        .json(&json!({"name": "Shared", "slug": "shared"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    // Whichever instance took the write, both read it.
    for instance in [&first, &second] {
        let got = instance
            .orgs()
            .get_organization(req(
                &root,
                orgd::proto::GetOrganizationRequest {
                    slug: "shared".into(),
                },
            ))
            .await
            .expect("each instance reads the write")
            .into_inner()
            .organization
            .expect("org");
        assert_eq!(got.name, "Shared");
    }

    // Reads keep flowing while one instance stops: Envoy retries idempotent
    // GETs on the other, so none is lost.
    let done = Arc::new(AtomicUsize::new(0));
    let reader = {
        let done = done.clone();
        let url = envoy.url("/organizations/shared");
        let root = root.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..300 {
                match http.get(&url).bearer_auth(&root).send().await {
                    Ok(r) if r.status() == 200 => {}
                    Ok(r) => failures.push(format!(
                        "request {i}: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => failures.push(format!("request {i}: {e}")),
                }
                done.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            failures
        })
    };
    while done.load(Ordering::SeqCst) < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    first.stop().await;
    let failures = reader.await.expect("reader");
    assert!(
        failures.is_empty(),
        "{} reads lost:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(done.load(Ordering::SeqCst), 300);

    // Writes still work through the remaining instance.
    let after = http
        .post(envoy.url("/organizations"))
        .bearer_auth(&root)
        .json(&json!({"name": "After", "slug": "after"}))
        .send()
        .await
        .expect("create");
    assert_eq!(after.status(), 201);
    drop(second);
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_and_aggregations_over_rest() {
    let rest = Rest::start().await;
    rest.app.create_org("Acme", "acme", "lead@rest.test").await;
    rest.app.add_user("acme", "member@rest.test", "member").await;
    let open = rest
        .app
        .create_space("Analytics", "organization", "lead@rest.test")
        .await;
    let locked = rest
        .app
        .create_space("Finance", "restricted", "lead@rest.test")
        .await;
    rest.app.attach("acme", &open.id).await;
    rest.app.attach("acme", &locked.id).await;
    let lead = token("lead@rest.test");
    let member = token("member@rest.test");
    let pid = uuid::Uuid::new_v4().to_string();

    let upserted = rest
        .post(
            &format!("/spaces/{}/products:batchUpsert", open.id),
            &lead,
            json!({"items": [
                {"id": pid, "name": "Revenue Daily", "description": "daily revenue", "product_type": "table",
                 "tags": ["finance", "daily"], "quality_score": 0.9, "created_at": "2025-01-01T00:00:00Z"},
                {"id": uuid::Uuid::new_v4().to_string(), "name": "Churn Model", "product_type": "ml_model",
                 "created_at": "2025-01-02T00:00:00Z"}
            ]}),
        )
        .await
        .expect(200);
    assert_eq!(upserted, json!({"upserted": 2}));
    rest.post(
        &format!("/spaces/{}/products:batchUpsert", locked.id),
        &lead,
        json!({"items": [{"id": uuid::Uuid::new_v4().to_string(), "name": "Ledger"}]}),
    )
    .await
    .expect(200);
    rest.post(
        &format!("/spaces/{}/contracts:batchUpsert", open.id),
        &lead,
        json!({"items": [
            {"id": uuid::Uuid::new_v4().to_string(), "name": "Orders", "status": "active",
             "sla": {"freshness_hours": 24, "availability_percent": 99.5, "quality_score_min": 0.8}},
            {"id": uuid::Uuid::new_v4().to_string(), "name": "Billing", "status": "draft"},
            {"id": uuid::Uuid::new_v4().to_string(), "name": "Legacy", "status": "deprecated"}
        ]}),
    )
    .await
    .expect(200);
    rest.post(
        &format!("/spaces/{}/issues:batchUpsert", open.id),
        &lead,
        json!({"items": [
            {"id": uuid::Uuid::new_v4().to_string(), "title": "Broken", "status": "open", "priority": "high"},
            {"id": uuid::Uuid::new_v4().to_string(), "title": "Slow", "status": "in_progress", "priority": "low"},
            {"id": uuid::Uuid::new_v4().to_string(), "title": "Done", "status": "resolved", "priority": "high"}
        ]}),
    )
    .await
    .expect(200);
    rest.post(
        &format!("/spaces/{}/quality-checks:batchUpsert", open.id),
        &lead,
        json!({"items": [
            {"id": uuid::Uuid::new_v4().to_string(), "name": "nulls", "severity": "error", "last_status": "pass",
             "last_run_at": "2025-01-03T00:00:00Z"},
            {"id": uuid::Uuid::new_v4().to_string(), "name": "old", "severity": "warning", "last_status": "fail",
             "is_archived": true}
        ]}),
    )
    .await
    .expect(200);

    let products = rest
        .get("/organizations/acme/products?search=revenue+daily", &member)
        .await
        .expect(200);
    assert_eq!(
        keys(&products),
        vec!["items", "next_page_token", "page", "size", "total"]
    );
    assert_eq!(
        (
            products["total"].as_i64(),
            products["page"].as_i64(),
            products["size"].as_i64()
        ),
        (Some(1), Some(1), Some(20))
    );
    let item = &products["items"][0];
    assert_eq!(
        item["space"],
        json!({"id": open.id, "name": "Analytics", "slug": "analytics"})
    );
    assert_eq!(item["tags"], json!(["finance", "daily"]));
    assert_eq!(item["quality_score"], 0.9);
    assert_eq!(item["created_at"], "2025-01-01T00:00:00Z");
    let all = rest
        .get("/organizations/acme/products?size=1&page=2", &lead)
        .await
        .expect(200);
    assert_eq!(
        (all["total"].as_i64(), all["items"].as_array().map(Vec::len)),
        (Some(3), Some(1))
    );
    let member_total = rest
        .get("/organizations/acme/products", &member)
        .await
        .expect(200)["total"]
        .clone();
    assert_eq!(member_total, 2, "the restricted space stays hidden");
    let only = rest
        .get(
            &format!("/organizations/acme/products?space_id={}", open.id),
            &lead,
        )
        .await
        .expect(200);
    assert_eq!(only["total"], 2);

    let contracts = rest
        .get("/organizations/acme/contracts?status=active,draft", &member)
        .await
        .expect(200);
    let mut names: Vec<&str> = contracts["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, vec!["Billing", "Orders"]);
    let orders = contracts["items"]
        .as_array()
        .and_then(|items| items.iter().find(|c| c["name"] == "Orders"))
        .expect("Orders");
    assert_eq!(orders["sla"]["availability_percent"], 99.5);
    assert_eq!(orders["status"], "active");
    rest.get("/organizations/acme/contracts?status=active,closed", &member)
        .await
        .expect_error(400, 3, "INVALID_STATUS");

    let issues = rest
        .get(
            "/organizations/acme/issues?status=open,in_progress&priority=high&limit=5",
            &member,
        )
        .await
        .expect(200);
    assert_eq!(
        (issues["total"].as_i64(), issues["size"].as_i64()),
        (Some(1), Some(5))
    );
    assert_eq!(issues["items"][0]["title"], "Broken");
    assert_eq!(issues["items"][0]["priority"], "high");
    let quality = rest
        .get("/organizations/acme/quality?include_archived=true", &member)
        .await
        .expect(200);
    assert_eq!(quality["total"], 2);
    let passing = rest
        .get("/organizations/acme/quality?status=pass", &member)
        .await
        .expect(200);
    assert_eq!(passing["items"][0]["last_status"], "pass");

    let stats = rest.get("/organizations/acme/stats", &member).await.expect(200);
    assert_eq!(stats["quality_score"].as_f64(), Some(1.0), "{stats}");
    let mut counts = stats.clone();
    counts.as_object_mut().expect("object").remove("quality_score");
    assert_eq!(
        counts,
        json!({"total_spaces": 1, "total_products": 2, "total_users": 2, "open_issues": 2, "active_contracts": 1})
    );
    let admin_stats = rest.get("/organizations/acme/stats", &lead).await.expect(200);
    assert_eq!(
        (
            admin_stats["total_spaces"].as_i64(),
            admin_stats["total_products"].as_i64()
        ),
        (Some(2), Some(3))
    );

    let bad = rest
        .post(
            &format!("/spaces/{}/issues:batchUpsert", open.id),
            &lead,
            json!({"items": [{"id": uuid::Uuid::new_v4().to_string(), "title": "x", "status": "open", "priority": "urgent"}]}),
        )
        .await;
    let body = bad.expect_error(400, 3, "INVALID_PRIORITY");
    assert_eq!(body["details"][0]["metadata"]["field"], "items[0].priority");

    let deleted = rest
        .delete(&format!("/spaces/{}/products/{pid}", open.id), &lead)
        .await;
    deleted.expect(204);
    assert!(deleted.text.is_empty());
    rest.delete(&format!("/spaces/{}/products/{pid}", open.id), &lead)
        .await
        .expect_error(404, 5, "PRODUCT_NOT_FOUND");
    rest.get("/organizations/acme/stats", &token("outsider@rest.test"))
        .await
        .expect_error(403, 7, "NOT_AUTHORIZED");

    // No check has run in a fresh organization: quality_score is absent.
    rest.app.create_org("Empty", "empty", "lead@rest.test").await;
    let empty = rest.get("/organizations/empty/stats", &lead).await.expect(200);
    assert!(empty.get("quality_score").is_none(), "{empty}");
    assert_eq!(empty["total_products"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_of_large_items_passes_through_envoy() {
    let rest = Rest::start().await;
    let space = rest.app.create_space("Bulk", "organization", SUPERADMIN).await;
    let long = "x".repeat(3000);
    let items: Vec<Value> = (0..1000)
        .map(
            |i| json!({"id": uuid::Uuid::new_v4().to_string(), "name": format!("p{i}"), "description": long}),
        )
        .collect();
    let reply = rest
        .post(
            &format!("/spaces/{}/products:batchUpsert", space.id),
            &root(),
            json!({ "items": items }),
        )
        .await;
    assert_eq!(reply.expect(200), json!({"upserted": 1000}));
}

#[tokio::test]
async fn envoy_validates_the_repository_config() {
    // envoy.yaml as shipped (its own ports), with the descriptor and the
    // OpenAPI document the build writes for `orgd descriptor` and
    // `orgd openapi`.
    let dir = tempfile::tempdir().expect("tempdir");
    let descriptor = dir.path().join("orgd.pb");
    std::fs::write(&descriptor, orgd::proto::FILE_DESCRIPTOR_SET).expect("descriptor");
    let openapi = orgd::openapi::document().expect("the OpenAPI document");
    std::fs::write(dir.path().join("openapi.json"), openapi.to_string()).expect("openapi.json");
    let upstream: std::net::SocketAddr = "127.0.0.1:50051".parse().expect("addr");
    let config = dir.path().join("envoy.yaml");
    std::fs::write(&config, crate::envoy::config_for(8080, &[upstream], &descriptor)).expect("config");
    let out = tokio::process::Command::new(crate::envoy::envoy_binary())
        .args(["--mode", "validate", "-c"])
        .arg(&config)
        .output()
        .await
        .expect("run envoy");
    let log = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("OK"), "{log}");
}
