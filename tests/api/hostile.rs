//! Hostile input: control characters, oversized values and forged tokens get
//! a clear INVALID_ARGUMENT or NOT_FOUND naming the field, never INTERNAL,
//! on both backends alike, and the error stays small.

use orgd::proto::aggregation_service_client::AggregationServiceClient;
use orgd::proto::*;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn control_characters_in_a_search_term_are_invalid_in_every_list() {
    let app = TestApp::spawn().await;
    app.create_org("Acme", "acme", "admin@acme.test").await;
    let term = "rev\0enue".to_owned();
    let check = |r: Result<(), tonic::Status>, what: &str| {
        let s = assert_error(r, Code::InvalidArgument, "INVALID_TEXT");
        assert_eq!(info_meta(&s, "field").as_deref(), Some("search"), "{what}");
    };
    check(
        app.orgs()
            .list_organizations(req(
                &root(),
                ListOrganizationsRequest {
                    search: term.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListOrganizations",
    );
    check(
        app.orgs()
            .list_users(req(
                &root(),
                ListUsersRequest {
                    slug: "acme".into(),
                    search: term.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListUsers",
    );
    check(
        app.spaces()
            .list_spaces(req(
                &root(),
                ListSpacesRequest {
                    search: term.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "ListSpaces",
    );
    let mut agg = AggregationServiceClient::new(app.channel.clone());
    check(
        agg.list_products(req(
            &root(),
            ListProductsRequest {
                slug: "acme".into(),
                search: term.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(drop),
        "ListProducts",
    );
    check(
        agg.list_contracts(req(
            &root(),
            ListContractsRequest {
                slug: "acme".into(),
                search: term.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(drop),
        "ListContracts",
    );
}

#[tokio::test]
async fn control_characters_in_names_slugs_and_descriptions_are_invalid() {
    let app = TestApp::spawn().await;
    let create = |name: &str, slug: &str, description: &str| {
        let mut orgs = app.orgs();
        let request = CreateOrganizationRequest {
            name: name.into(),
            slug: Some(slug.into()),
            description: description.into(),
            admin_email: String::new(),
            ..Default::default()
        };
        async move { orgs.create_organization(req(&root(), request)).await }
    };
    let s = assert_error(
        create("Ac\0me", "acme", "").await,
        Code::InvalidArgument,
        "INVALID_NAME",
    );
    assert_eq!(info_meta(&s, "field").as_deref(), Some("name"));
    assert_error(
        create("Acme", "ac\0me", "").await,
        Code::InvalidArgument,
        "INVALID_SLUG",
    );
    let s = assert_error(
        create("Acme", "acme", "nul \0 inside").await,
        Code::InvalidArgument,
        "INVALID_TEXT",
    );
    assert_eq!(info_meta(&s, "field").as_deref(), Some("description"));
    // Newlines and tabs are text.
    create("Acme", "acme", "line one\n\tline two")
        .await
        .expect("multi-line description");
    let s = assert_error(
        app.orgs()
            .update_organization(req(
                &root(),
                UpdateOrganizationRequest {
                    slug: "acme".into(),
                    description: Some("\u{7}bell".into()),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_TEXT",
    );
    assert_eq!(info_meta(&s, "field").as_deref(), Some("description"));
    // Nothing was changed by the refused calls.
    let org = app
        .orgs()
        .get_organization(req(&root(), GetOrganizationRequest { slug: "acme".into() }))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("org");
    assert_eq!(org.description, "line one\n\tline two");
}

#[tokio::test]
async fn a_path_slug_that_cannot_exist_is_not_found_and_echoed_briefly() {
    let app = TestApp::spawn().await;
    for slug in [
        "ac\0me".to_owned(),
        "a".repeat(100_000),
        "ACME".into(),
        "\u{0}".into(),
    ] {
        let got = app
            .orgs()
            .get_organization(req(&root(), GetOrganizationRequest { slug: slug.clone() }))
            .await;
        let s = assert_error(got, Code::NotFound, "ORG_NOT_FOUND");
        assert!(
            s.message().len() < 1_200,
            "message of {} bytes",
            s.message().len()
        );
        assert!(
            info_meta(&s, "slug").is_some_and(|v| v.len() <= 300),
            "{:?}",
            info_meta(&s, "slug").map(|v| v.len())
        );
        let update = app
            .orgs()
            .update_organization(req(
                &root(),
                UpdateOrganizationRequest {
                    slug: slug.clone(),
                    description: Some("x".into()),
                    ..Default::default()
                },
            ))
            .await;
        assert_error(update, Code::NotFound, "ORG_NOT_FOUND");
    }
}

#[tokio::test]
async fn a_forged_page_token_for_an_absurd_page_is_invalid() {
    let app = TestApp::spawn().await;
    let forged = hex::encode(format!("v1:4294967295:0:{}", uuid::Uuid::nil()));
    let got = app
        .orgs()
        .list_organizations(req(
            &root(),
            ListOrganizationsRequest {
                page_token: forged,
                ..Default::default()
            },
        ))
        .await;
    let s = assert_error(got, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
    assert_eq!(info_meta(&s, "field").as_deref(), Some("page_token"));
}

// ---------------------------------------------------------------------------
// What the transport itself refuses
// ---------------------------------------------------------------------------

/// Sends bytes as they are, as a broken or hostile client would.
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

async fn raw_call(app: &TestApp, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("ready");
    grpc.unary(
        req(&root(), body),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

/// No internal type or crate names in what a caller reads.
#[track_caller]
fn plain(status: &tonic::Status) {
    let message = status.message();
    for internal in ["prost", "DecodeError", "tonic", "::", "Protobuf"] {
        assert!(!message.contains(internal), "{message}");
    }
}

#[tokio::test]
async fn undecodable_requests_are_invalid_argument_in_orgd_s_shape() {
    let app = TestApp::spawn().await;
    const GET: &str = "/orgd.v1.OrganizationService/GetOrganization";
    // Field 1 (slug) holding bytes that are not UTF-8.
    let s = assert_error(
        raw_call(&app, GET, vec![0x0a, 0x02, 0xff, 0xfe]).await,
        Code::InvalidArgument,
        "MALFORMED_REQUEST",
    );
    assert!(s.message().contains("UTF-8"), "{s:?}");
    plain(&s);
    // A length that runs past the end of the message.
    let s = assert_error(
        raw_call(&app, GET, vec![0x0a, 0x40, b'a']).await,
        Code::InvalidArgument,
        "MALFORMED_REQUEST",
    );
    plain(&s);
    // A well-formed request still works through the same path.
    let ok = raw_call(&app, "/orgd.v1.OrganizationService/ListOrganizations", Vec::new()).await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn oversized_requests_and_unknown_methods_answer_in_orgd_s_shape() {
    let app = TestApp::spawn().await;
    // 5 MiB for a method that takes a slug.
    let mut big = vec![0x0a];
    let len = 5 * 1024 * 1024usize;
    let mut v = len;
    while v >= 0x80 {
        big.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    big.push(v as u8);
    big.extend(std::iter::repeat_n(b'a', len));
    let s = assert_error(
        raw_call(&app, "/orgd.v1.OrganizationService/GetOrganization", big).await,
        Code::ResourceExhausted,
        "REQUEST_TOO_LARGE",
    );
    plain(&s);
    let s = assert_error(
        raw_call(&app, "/orgd.v1.OrganizationService/NoSuchMethod", Vec::new()).await,
        Code::Unimplemented,
        "METHOD_NOT_FOUND",
    );
    assert_eq!(
        info_meta(&s, "method").as_deref(),
        Some("/orgd.v1.OrganizationService/NoSuchMethod")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_callers_get_json_errors_for_bad_bytes_and_long_paths() {
    let app = TestApp::spawn().await;
    let envoy = crate::envoy::Envoy::start(&[app.addr]).await;
    let http = reqwest::Client::new();
    let reply = http
        .get(envoy.url("/organizations?search=%ff"))
        .bearer_auth(root())
        .send()
        .await
        .expect("request");
    assert_eq!(reply.status(), 400);
    let body: serde_json::Value = reply.json().await.expect("a JSON error");
    assert_eq!(body["details"][0]["domain"], "orgd", "{body}");
    assert_eq!(body["details"][0]["reason"], "MALFORMED_REQUEST", "{body}");

    // Headers beyond Envoy's limit (60 KiB) are refused by Envoy itself.
    let reply = http
        .get(envoy.url("/organizations"))
        .bearer_auth(root())
        .header("x-padding", "a".repeat(100_000))
        .send()
        .await
        .expect("request");
    assert_eq!(reply.status(), 431);
    assert_eq!(
        reply.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body: serde_json::Value = reply.json().await.expect("a JSON error");
    assert_eq!(body["details"][0]["domain"], "orgd", "{body}");
    assert_eq!(body["details"][0]["reason"], "HEADERS_TOO_LARGE", "{body}");
}
