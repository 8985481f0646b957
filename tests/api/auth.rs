//! Authentication: which bearer tokens are accepted (HS256, RS256, ES256,
//! issuer and audience), how callers are provisioned, where superadmins come
//! from, and the endpoints that need no token (health, reflection).

use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orgd::auth::{Claims, Secret, issue_token};
use orgd::proto::*;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::Serialize;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::helpers::{SECRET, SUPERADMIN, TestApp, assert_error, req, root, token, token_with};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims for `email`, valid for an hour, nothing else set.
fn claims(email: &str) -> Claims {
    Claims {
        email: email.into(),
        exp: now() + 3600,
        name: None,
        sub: None,
        iat: None,
        iss: None,
        aud: None,
    }
}

/// Signs `claims` with `alg` and a PEM private key (RSA or EC).
fn sign_pem(alg: Algorithm, private_pem: &str, claims: &impl Serialize) -> String {
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
    }
    .expect("private key PEM");
    jsonwebtoken::encode(&Header::new(alg), claims, &key).expect("sign")
}

/// Signs any serializable claims with HS256 and the test secret.
fn sign_hs256_raw(claims: &impl Serialize) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

struct KeyPair {
    private_pem: String,
    public_pem: String,
}

fn rsa_pair() -> KeyPair {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
    KeyPair {
        private_pem: key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("RSA private PEM")
            .as_str()
            .to_owned(),
        public_pem: key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("RSA public PEM"),
    }
}

fn ec_pair() -> KeyPair {
    let key = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    KeyPair {
        private_pem: key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("EC private PEM")
            .as_str()
            .to_owned(),
        public_pem: key
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("EC public PEM"),
    }
}

/// The RSA key the RS256 servers trust (generated once: slow in debug).
fn rsa_key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(rsa_pair)
}

/// Another RSA key, which no server trusts.
fn other_rsa_key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(rsa_pair)
}

async fn spawn_with_public_key(public_pem: &str) -> TestApp {
    let pem = public_pem.as_bytes().to_vec();
    TestApp::spawn_with(move |c| c.auth.public_key_pem = Some(pem)).await
}

async fn list(app: &TestApp, tok: &str) -> Result<ListOrganizationsResponse, Status> {
    app.orgs()
        .list_organizations(req(tok, ListOrganizationsRequest::default()))
        .await
        .map(tonic::Response::into_inner)
}

/// ListOrganizations with a raw `authorization` header value.
async fn list_with_header(app: &TestApp, value: &str) -> Result<ListOrganizationsResponse, Status> {
    let mut request = Request::new(ListOrganizationsRequest::default());
    request
        .metadata_mut()
        .insert("authorization", value.parse().expect("ASCII header value"));
    app.orgs()
        .list_organizations(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn create_org_as(app: &TestApp, tok: &str, name: &str) -> Result<OrganizationDetails, Status> {
    app.orgs()
        .create_organization(req(
            tok,
            CreateOrganizationRequest {
                name: name.into(),
                slug: None,
                description: String::new(),
                admin_email: String::new(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().organization.expect("organization in response"))
}

/// Words that would betray library internals in a message meant for callers.
const INTERNAL_DETAILS: &[&str] = &[
    "ErrorKind",
    "InvalidSignature",
    "ExpiredSignature",
    "InvalidToken",
    "InvalidAlgorithm",
    "MissingRequiredClaim",
    "Json",
    "serde",
    "jsonwebtoken",
    "Base64",
    "Utf8",
    "missing field",
    "line ",
    "column",
    "Error(",
    "sqlx",
    "panicked",
    SECRET,
];

/// Asserts UNAUTHENTICATED with a message for a person, which reveals no
/// internals and none of `also_hidden` (the token itself, keys, ...).
#[track_caller]
fn assert_unauthenticated<T: std::fmt::Debug>(result: Result<T, Status>, also_hidden: &[&str]) -> Status {
    let status = assert_error(result, Code::Unauthenticated, "UNAUTHENTICATED");
    let message = status.message();
    assert!(!message.trim().is_empty(), "an empty message: {status:?}");
    let metadata: Vec<String> = status
        .get_error_details()
        .error_info()
        .map(|info| info.metadata.values().cloned().collect())
        .unwrap_or_default();
    for hidden in INTERNAL_DETAILS.iter().chain(also_hidden) {
        if hidden.is_empty() {
            continue;
        }
        assert!(
            !message.contains(hidden),
            "the message reveals {hidden:?}: {message:?}"
        );
        assert!(
            metadata.iter().all(|v| !v.contains(hidden)),
            "the ErrorInfo metadata reveals {hidden:?}: {metadata:?}"
        );
    }
    status
}

// ---------------------------------------------------------------------------
// Rejected tokens
// ---------------------------------------------------------------------------

#[tokio::test]
async fn requests_without_a_token_are_unauthenticated() {
    let app = TestApp::spawn().await;
    assert_unauthenticated(list(&app, "").await, &[]);
    // Every service checks, not only ListOrganizations.
    let get = app
        .orgs()
        .get_organization(req("", GetOrganizationRequest { slug: "acme".into() }))
        .await;
    assert_unauthenticated(get, &[]);
    let spaces = app
        .spaces()
        .list_spaces(req("", ListSpacesRequest::default()))
        .await;
    assert_unauthenticated(spaces, &[]);
}

#[tokio::test]
async fn malformed_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    for bad in ["abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30", "not a jwt at all"] {
        assert_unauthenticated(list(&app, bad).await, &[bad]);
    }
}

#[tokio::test]
async fn authorization_headers_without_the_bearer_scheme_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let valid = root();
    for value in [
        valid.clone(),
        format!("Token {valid}"),
        format!("Bearer{valid}"),
        "Basic cm9vdDpodW50ZXIy".to_owned(),
        "Bearer ".to_owned(),
        "Bearer    ".to_owned(),
    ] {
        assert_unauthenticated(list_with_header(&app, &value).await, &[&valid]);
    }
    // The same token with the scheme is fine (in either common spelling).
    list_with_header(&app, &format!("Bearer {valid}"))
        .await
        .expect("Bearer accepted");
    list_with_header(&app, &format!("bearer {valid}"))
        .await
        .expect("bearer accepted");
}

#[tokio::test]
async fn expired_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let expired = token_with(Claims {
        exp: now() - 3600,
        ..claims(SUPERADMIN)
    });
    let status = assert_unauthenticated(list(&app, &expired).await, &[&expired]);
    assert!(status.message().contains("expired"), "{status:?}");
}

#[tokio::test]
async fn tokens_signed_with_another_secret_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let other_secret = "another-secret-fedcba9876543210";
    let forged = issue_token(&Secret::new(other_secret), &claims(SUPERADMIN)).expect("sign");
    assert_unauthenticated(list(&app, &forged).await, &[&forged, other_secret]);
    // Nor can such a token do what the superadmin could.
    assert_unauthenticated(create_org_as(&app, &forged, "Forged Corp").await, &[]);
}

#[tokio::test]
async fn tokens_without_an_email_or_exp_claim_are_unauthenticated() {
    #[derive(Serialize)]
    struct OnlyExp {
        exp: i64,
    }
    #[derive(Serialize)]
    struct OnlyEmail<'a> {
        email: &'a str,
    }
    #[derive(Serialize)]
    struct NumericEmail {
        email: i64,
        exp: i64,
    }

    let app = TestApp::spawn().await;
    let no_email = sign_hs256_raw(&OnlyExp { exp: now() + 3600 });
    assert_unauthenticated(list(&app, &no_email).await, &[&no_email]);

    let no_exp = sign_hs256_raw(&OnlyEmail { email: SUPERADMIN });
    assert_unauthenticated(list(&app, &no_exp).await, &[&no_exp]);

    let wrong_type = sign_hs256_raw(&NumericEmail {
        email: 42,
        exp: now() + 3600,
    });
    assert_unauthenticated(list(&app, &wrong_type).await, &[&wrong_type]);
}

#[tokio::test]
async fn tokens_with_an_invalid_email_claim_are_unauthenticated() {
    let app = TestApp::spawn().await;
    for email in [
        "",
        "not-an-email",
        "two@@orgd.test",
        "spaces in@orgd.test",
        "x@.orgd.test",
    ] {
        let tok = token_with(claims(email));
        assert_unauthenticated(list(&app, &tok).await, &[&tok]);
    }
}

#[tokio::test]
async fn unsigned_tokens_with_alg_none_are_unauthenticated() {
    let app = TestApp::spawn().await;
    // The superadmin's real payload, re-headed with {"alg":"none","typ":"JWT"}
    // and stripped of its signature.
    let real = root();
    let payload = real.split('.').nth(1).expect("payload part");
    for header in [
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
        "eyJhbGciOiJOb25lIiwidHlwIjoiSldUIn0",
    ] {
        let unsigned = format!("{header}.{payload}.");
        assert_unauthenticated(list(&app, &unsigned).await, &[&unsigned]);
    }
}

#[tokio::test]
async fn tokens_with_an_unsupported_hmac_algorithm_are_unauthenticated() {
    let app = TestApp::spawn().await;
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let tok = jsonwebtoken::encode(
            &Header::new(alg),
            &claims(SUPERADMIN),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign");
        assert_unauthenticated(list(&app, &tok).await, &[&tok]);
    }
}

// ---------------------------------------------------------------------------
// Public-key tokens
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rs256_tokens_signed_with_the_configured_key_are_accepted() {
    let key = rsa_key();
    let app = spawn_with_public_key(&key.public_pem).await;
    let tok = sign_pem(Algorithm::RS256, &key.private_pem, &claims("rsa-user@orgd.test"));
    let page = list(&app, &tok).await.expect("RS256 token accepted");
    assert_eq!(page.total, 0);
    // The identity is the token's: RS256 tokens of the superadmin are superadmin.
    let root_rs = sign_pem(Algorithm::RS256, &key.private_pem, &claims(SUPERADMIN));
    let org = create_org_as(&app, &root_rs, "Rsa Corp")
        .await
        .expect("create as RS256 superadmin");
    assert_eq!(org.slug, "rsa-corp");
    // HS256 tokens with the shared secret keep working next to the key.
    list(&app, &root()).await.expect("HS256 still accepted");
}

#[tokio::test]
async fn rs256_tokens_signed_by_another_key_are_unauthenticated() {
    let trusted = rsa_key();
    let untrusted = other_rsa_key();
    let app = spawn_with_public_key(&trusted.public_pem).await;
    let tok = sign_pem(Algorithm::RS256, &untrusted.private_pem, &claims(SUPERADMIN));
    assert_unauthenticated(list(&app, &tok).await, &[&tok]);
}

#[tokio::test]
async fn rs256_tokens_are_unauthenticated_when_no_public_key_is_configured() {
    let app = TestApp::spawn().await;
    let tok = sign_pem(Algorithm::RS256, &rsa_key().private_pem, &claims(SUPERADMIN));
    assert_unauthenticated(list(&app, &tok).await, &[&tok]);
}

#[tokio::test]
async fn hs256_tokens_keyed_with_the_public_key_are_unauthenticated() {
    // The classic algorithm confusion: the public key is no HMAC secret.
    let key = rsa_key();
    let app = spawn_with_public_key(&key.public_pem).await;
    let tok = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(SUPERADMIN),
        &EncodingKey::from_secret(key.public_pem.as_bytes()),
    )
    .expect("sign");
    assert_unauthenticated(list(&app, &tok).await, &[&tok]);
}

#[tokio::test]
async fn es256_tokens_signed_with_the_configured_key_are_accepted() {
    let key = ec_pair();
    let app = spawn_with_public_key(&key.public_pem).await;
    let tok = sign_pem(Algorithm::ES256, &key.private_pem, &claims("ec-user@orgd.test"));
    let page = list(&app, &tok).await.expect("ES256 token accepted");
    assert_eq!(page.total, 0);
    let root_es = sign_pem(Algorithm::ES256, &key.private_pem, &claims(SUPERADMIN));
    let org = create_org_as(&app, &root_es, "Ec Corp")
        .await
        .expect("create as ES256 superadmin");
    assert_eq!(org.slug, "ec-corp");
}

#[tokio::test]
async fn es256_tokens_signed_by_another_key_are_unauthenticated() {
    let trusted = ec_pair();
    let untrusted = ec_pair();
    let app = spawn_with_public_key(&trusted.public_pem).await;
    let tok = sign_pem(Algorithm::ES256, &untrusted.private_pem, &claims(SUPERADMIN));
    assert_unauthenticated(list(&app, &tok).await, &[&tok]);
    // An RSA-signed token does not fit an EC key either.
    let rs = sign_pem(Algorithm::RS256, &rsa_key().private_pem, &claims(SUPERADMIN));
    assert_unauthenticated(list(&app, &rs).await, &[&rs]);
}

// ---------------------------------------------------------------------------
// Issuer and audience
// ---------------------------------------------------------------------------

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "orgd";

async fn spawn_with_issuer_and_audience() -> TestApp {
    TestApp::spawn_with(|c| {
        c.auth.issuer = Some(ISSUER.into());
        c.auth.audience = Some(AUDIENCE.into());
    })
    .await
}

fn claims_with(iss: Option<&str>, aud: Option<&str>) -> Claims {
    Claims {
        iss: iss.map(Into::into),
        aud: aud.map(Into::into),
        ..claims("aud-user@orgd.test")
    }
}

#[tokio::test]
async fn tokens_with_the_configured_issuer_and_audience_are_accepted() {
    let app = spawn_with_issuer_and_audience().await;
    let tok = token_with(claims_with(Some(ISSUER), Some(AUDIENCE)));
    list(&app, &tok).await.expect("matching iss and aud accepted");
}

#[tokio::test]
async fn tokens_from_another_or_no_issuer_are_unauthenticated() {
    let app = spawn_with_issuer_and_audience().await;
    for iss in [Some("https://evil.test"), Some("https://issuer.test/"), None] {
        let tok = token_with(claims_with(iss, Some(AUDIENCE)));
        assert_unauthenticated(list(&app, &tok).await, &[&tok]);
    }
}

#[tokio::test]
async fn tokens_for_another_or_no_audience_are_unauthenticated() {
    let app = spawn_with_issuer_and_audience().await;
    for aud in [None, Some("someone-else"), Some("")] {
        let tok = token_with(claims_with(Some(ISSUER), aud));
        assert_unauthenticated(list(&app, &tok).await, &[&tok]);
    }
}

#[tokio::test]
async fn issuer_and_audience_are_not_checked_when_not_configured() {
    let app = TestApp::spawn().await;
    let tok = token_with(claims_with(Some("https://anyone.test"), Some("anything")));
    list(&app, &tok)
        .await
        .expect("iss and aud ignored without configuration");
}

// ---------------------------------------------------------------------------
// Provisioning
// ---------------------------------------------------------------------------

#[tokio::test]
async fn new_users_are_provisioned_on_first_sight_with_no_organizations() {
    let app = TestApp::spawn().await;
    app.create_org("Someone Elses", "someone-elses", "owner@orgd.test")
        .await;
    let tok = token("newcomer@orgd.test");
    for _ in 0..2 {
        // A second call finds the user the first one created.
        let page = list(&app, &tok).await.expect("a new user may list");
        assert!(page.items.is_empty(), "{page:?}");
        assert_eq!(page.total, 0);
    }
}

#[tokio::test]
async fn emails_in_tokens_are_case_insensitive() {
    let app = TestApp::spawn().await;
    let first = token_with(Claims {
        name: Some("Ann Example".into()),
        ..claims("Ann@Example.org")
    });
    list(&app, &first).await.expect("first sight");

    app.create_org("Acme", "acme", "admin@orgd.test").await;
    let member = app.add_user("acme", "ann@example.org", "member").await;
    assert_eq!(member.email, "ann@example.org");
    // The name only reached the user through the mixed-case token: AddUser
    // found the user it provisioned instead of creating another.
    assert_eq!(member.display_name, "Ann Example");

    let details = app
        .orgs()
        .get_organization(req(
            &token("ANN@example.org"),
            GetOrganizationRequest { slug: "acme".into() },
        ))
        .await
        .expect("the upper-case token is the same member")
        .into_inner()
        .organization
        .expect("organization");
    assert_eq!(details.user_count, 2, "{details:?}");
    let anns: Vec<&Member> = details
        .members
        .iter()
        .filter(|m| m.email == "ann@example.org")
        .collect();
    assert_eq!(anns.len(), 1, "{:?}", details.members);
    assert_eq!(anns[0].user_id, member.user_id);
    assert!(
        details.members.iter().all(|m| m.email == m.email.to_lowercase()),
        "{:?}",
        details.members
    );
}

#[tokio::test]
async fn the_name_claim_fills_the_display_name() {
    let app = TestApp::spawn().await;
    let grace = token_with(Claims {
        name: Some("  Grace Hopper  ".into()),
        ..claims("grace@orgd.test")
    });
    list(&app, &grace).await.expect("first sight");
    app.create_org("Navy", "navy", "admin@orgd.test").await;
    let member = app.add_user("navy", "grace@orgd.test", "member").await;
    assert_eq!(member.display_name, "Grace Hopper");

    // A later token with another name does not overwrite it.
    let renamed = token_with(Claims {
        name: Some("G. Hopper".into()),
        ..claims("grace@orgd.test")
    });
    let users = app
        .orgs()
        .list_users(req(
            &renamed,
            ListUsersRequest {
                slug: "navy".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("a member may list users")
        .into_inner();
    let listed = users
        .items
        .iter()
        .find(|m| m.user_id == member.user_id)
        .expect("grace listed");
    assert_eq!(listed.display_name, "Grace Hopper");
}

#[tokio::test]
async fn invited_users_get_their_display_name_when_they_first_sign_in() {
    let app = TestApp::spawn().await;
    app.create_org("Labs", "labs", "admin@orgd.test").await;
    let invited = app.add_user("labs", "linus@orgd.test", "member").await;
    assert_eq!(invited.display_name, "");

    let tok = token_with(Claims {
        name: Some("Linus".into()),
        ..claims("linus@orgd.test")
    });
    let details = app
        .orgs()
        .get_organization(req(&tok, GetOrganizationRequest { slug: "labs".into() }))
        .await
        .expect("the invited user is a member")
        .into_inner()
        .organization
        .expect("organization");
    let me = details
        .members
        .iter()
        .find(|m| m.user_id == invited.user_id)
        .expect("listed");
    assert_eq!(me.display_name, "Linus");
}

// ---------------------------------------------------------------------------
// Superadmins
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_configured_superadmin_can_create_organizations() {
    let app = TestApp::spawn().await;
    let org = create_org_as(&app, &root(), "Root Corp")
        .await
        .expect("superadmin creates");
    assert_eq!(org.slug, "root-corp");
    // With no admin_email, the caller is the first admin.
    assert!(
        org.members
            .iter()
            .any(|m| m.email == SUPERADMIN && m.role == "admin"),
        "{:?}",
        org.members
    );
}

#[tokio::test]
async fn superadmins_added_to_the_configuration_can_create_organizations() {
    let app = TestApp::spawn_with(|c| c.superadmins.push("Boss@Orgd.Test".into())).await;
    let org = create_org_as(&app, &token("boss@orgd.test"), "Boss Corp")
        .await
        .expect("boss creates");
    assert_eq!(org.slug, "boss-corp");
    // A superadmin sees every organization, not only their own.
    app.create_org("Other", "other", "someone@orgd.test").await;
    let page = list(&app, &token("boss@orgd.test")).await.expect("list");
    assert_eq!(page.total, 2, "{page:?}");
}

#[tokio::test]
async fn ordinary_users_may_not_create_organizations() {
    let app = TestApp::spawn().await;
    let result = create_org_as(&app, &token("nobody@orgd.test"), "Nobody Corp").await;
    assert_error(result, Code::PermissionDenied, "NOT_AUTHORIZED");
    // Nothing was created.
    let page = list(&app, &root()).await.expect("list");
    assert_eq!(page.total, 0, "{page:?}");
}

// ---------------------------------------------------------------------------
// Health and reflection
// ---------------------------------------------------------------------------

#[tokio::test]
async fn health_reports_serving_without_a_token() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in [
        "",
        "orgd.v1.OrganizationService",
        "orgd.v1.SpaceService",
        "orgd.v1.AggregationService",
    ] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health check of {service:?}: {e:?}"))
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "service {service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "orgd.v1.NoSuchService".into(),
        })
        .await;
    assert_eq!(unknown.expect_err("unknown service").code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_v1_lists_the_services_without_a_token() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "orgd.v1.OrganizationService".into(),
            )),
        },
    ];
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection stream")
        .into_inner();

    let first: ServerReflectionResponse = stream.message().await.expect("response").expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("expected a service list, got {first:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "orgd.v1.OrganizationService",
        "orgd.v1.SpaceService",
        "orgd.v1.AggregationService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }

    let second = stream
        .message()
        .await
        .expect("response")
        .expect("second response");
    let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
        panic!("expected file descriptors, got {second:?}");
    };
    let files: Vec<prost_types::FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost::Message::decode(bytes.as_slice()).expect("a FileDescriptorProto"))
        .collect();
    let file = files
        .iter()
        .find(|f| f.name() == "orgd/v1/organization_service.proto")
        .unwrap_or_else(|| {
            panic!(
                "no organization_service.proto in {:?}",
                files.iter().map(|f| f.name()).collect::<Vec<_>>()
            )
        });
    assert_eq!(file.package(), "orgd.v1");
    assert!(file.service.iter().any(|s| s.name() == "OrganizationService"));
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_services_without_a_token() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection stream")
        .into_inner();
    let response = stream.message().await.expect("response").expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list, got {response:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "orgd.v1.OrganizationService",
        "orgd.v1.SpaceService",
        "orgd.v1.AggregationService",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
}

// ---------------------------------------------------------------------------
// Standard claim shapes (RFC 7519) and identity
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_audience_array_containing_the_configured_audience_is_accepted() {
    let app = spawn_with_issuer_and_audience().await;
    let now = now();
    let tok = sign_hs256_raw(&serde_json::json!({
        "email": "array-aud@orgd.test",
        "exp": now + 600,
        "iss": ISSUER,
        "aud": ["someone-else", AUDIENCE],
    }));
    list(&app, &tok).await.expect("aud as an array holding ours");
    let other = sign_hs256_raw(&serde_json::json!({
        "email": "array-aud@orgd.test",
        "exp": now + 600,
        "iss": ISSUER,
        "aud": ["someone-else", "another"],
    }));
    assert_unauthenticated(list(&app, &other).await, &[&other]);
}

#[tokio::test]
async fn fractional_numeric_dates_are_accepted() {
    let app = TestApp::spawn().await;
    let tok = sign_hs256_raw(&serde_json::json!({
        "email": "fraction@orgd.test",
        "exp": now() as f64 + 600.5,
        "iat": now() as f64 - 0.25,
    }));
    list(&app, &tok).await.expect("exp with a fraction");
}

#[tokio::test]
async fn tokens_not_valid_yet_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let early = sign_hs256_raw(&serde_json::json!({
        "email": "early@orgd.test",
        "exp": now() + 3600,
        "nbf": now() + 600,
    }));
    let status = assert_unauthenticated(list(&app, &early).await, &[&early]);
    assert!(status.message().contains("not valid yet"), "{status:?}");
    // Within the leeway it is accepted.
    let almost = sign_hs256_raw(&serde_json::json!({
        "email": "early@orgd.test",
        "exp": now() + 3600,
        "nbf": now() + 5,
    }));
    list(&app, &almost).await.expect("nbf within the leeway");
}

#[tokio::test]
async fn only_ascii_letters_fold_in_emails() {
    let app = TestApp::spawn().await;
    app.create_org("Kelvin", "kelvin", "kate@example.com").await;
    // The Kelvin sign lowercases to "k" under Unicode rules; it must not
    // become kate.
    let kelvin = token("\u{212A}ate@example.com");
    let refused = app
        .orgs()
        .update_organization(req(
            &kelvin,
            UpdateOrganizationRequest {
                slug: "kelvin".into(),
                description: Some("taken over".into()),
                ..Default::default()
            },
        ))
        .await;
    assert_error(refused, Code::PermissionDenied, "NOT_AUTHORIZED");
    // ASCII case still folds.
    app.orgs()
        .update_organization(req(
            &token("KATE@Example.COM"),
            UpdateOrganizationRequest {
                slug: "kelvin".into(),
                description: Some("mine".into()),
                ..Default::default()
            },
        ))
        .await
        .expect("the same address in other ASCII case is the same user");
}
