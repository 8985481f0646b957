//! The audit trail's signed checkpoints and proofs, the NDJSON export and
//! its offline verification, pruning, and WatchEvents. Hashes and signatures
//! are recomputed here from the proto's documentation, with this file's own
//! code, as a third party would.

use std::collections::BTreeMap;
use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use orgd::proto::*;
use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::*;

// ---------------------------------------------------------------------------
// A third party's view: the documented encodings
// ---------------------------------------------------------------------------

fn net(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(format!("{}:", s.len()).as_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(b',');
}

fn micros(t: &Option<prost_types::Timestamp>) -> i64 {
    let t = t.as_ref().expect("timestamp");
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000
}

fn metadata(e: &AuditEvent) -> BTreeMap<String, String> {
    e.metadata
        .as_ref()
        .map(|s| {
            s.fields
                .iter()
                .map(|(k, v)| match &v.kind {
                    Some(prost_types::value::Kind::StringValue(s)) => (k.clone(), s.clone()),
                    other => panic!("metadata {k} is not a string: {other:?}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The hash AuditEvent's proto comment defines.
fn event_hash(e: &AuditEvent) -> String {
    let mut m = Vec::new();
    net(&mut m, "orgd.audit.v1");
    net(&mut m, &e.prev_hash);
    net(&mut m, &e.organization_id);
    net(&mut m, &e.seq.to_string());
    net(&mut m, &e.id);
    net(&mut m, &micros(&e.created_at).to_string());
    net(&mut m, &e.actor);
    net(&mut m, &e.action);
    net(&mut m, &e.result);
    net(&mut m, &e.target);
    let meta = metadata(e);
    net(&mut m, &meta.len().to_string());
    for (k, v) in &meta {
        net(&mut m, k);
        net(&mut m, v);
    }
    hex::encode(Sha256::digest(&m))
}

/// Checks a checkpoint's signature as AuditCheckpoint's comment defines it.
fn signature_holds(key: &GetAuditSigningKeyResponse, c: &AuditCheckpoint) -> bool {
    let public: [u8; 32] = hex::decode(&key.public_key)
        .expect("hex key")
        .try_into()
        .expect("32 bytes");
    let public = VerifyingKey::from_bytes(&public).expect("key");
    let Ok(sig) = hex::decode(&c.signature) else {
        return false;
    };
    let Ok(sig) = <[u8; 64]>::try_from(sig) else {
        return false;
    };
    let mut m = Vec::new();
    net(&mut m, "orgd.checkpoint.v1");
    net(&mut m, &c.organization_id);
    net(&mut m, &c.seq.to_string());
    net(&mut m, &c.hash);
    net(&mut m, &micros(&c.signed_at).to_string());
    net(&mut m, &c.key_id);
    use ed25519_dalek::Verifier;
    c.key_id == key.key_id && public.verify(&m, &Signature::from_bytes(&sig)).is_ok()
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Every event of a chain, oldest first, read through ListAuditEvents.
async fn all_events(app: &TestApp, slug: &str, organization_id: &str) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .orgs()
            .list_audit_events(req(
                &root(),
                ListAuditEventsRequest {
                    slug: slug.into(),
                    organization_id: organization_id.into(),
                    size: 100,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list audit events")
            .into_inner();
        out.extend(page.items);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    out.reverse();
    out
}

async fn checkpoint(app: &TestApp, slug: &str) -> AuditCheckpoint {
    app.orgs()
        .get_audit_checkpoint(req(
            &root(),
            GetAuditCheckpointRequest {
                slug: slug.into(),
                organization_id: String::new(),
            },
        ))
        .await
        .expect("checkpoint")
        .into_inner()
        .checkpoint
        .expect("checkpoint in response")
}

async fn signing_key(app: &TestApp, tok: &str) -> GetAuditSigningKeyResponse {
    app.orgs()
        .get_audit_signing_key(req(tok, GetAuditSigningKeyRequest {}))
        .await
        .expect("signing key")
        .into_inner()
}

async fn verify(app: &TestApp, slug: &str, organization_id: &str) -> VerifyAuditChainResponse {
    app.orgs()
        .verify_audit_chain(req(
            &root(),
            VerifyAuditChainRequest {
                slug: slug.into(),
                organization_id: organization_id.into(),
            },
        ))
        .await
        .expect("verify")
        .into_inner()
}

async fn prove(
    app: &TestApp,
    slug: &str,
    checkpoint: &AuditCheckpoint,
    max_events: i32,
) -> Result<ProveAuditChainResponse, tonic::Status> {
    app.orgs()
        .prove_audit_chain(req(
            &root(),
            ProveAuditChainRequest {
                slug: slug.into(),
                organization_id: String::new(),
                checkpoint: Some(checkpoint.clone()),
                max_events,
            },
        ))
        .await
        .map(|r| r.into_inner())
}

/// An organization with `n` members added after it was created.
async fn org_with_members(app: &TestApp, slug: &str, n: usize) -> OrganizationDetails {
    let org = app.create_org(slug, slug, &format!("admin@{slug}.test")).await;
    for i in 0..n {
        app.add_user(slug, &format!("m{i}@{slug}.test"), "member").await;
    }
    org
}

/// Rewrites one event's target directly in the database, then recomputes
/// every later hash and the head, as a forger who knows the encoding would.
async fn rewrite_history(app: &TestApp, events: &[AuditEvent], at_seq: i64, new_target: &str) {
    let mut rewritten = events.to_vec();
    let mut prev = String::new();
    for e in rewritten.iter_mut() {
        if e.seq == at_seq {
            e.target = new_target.into();
        }
        if e.seq > at_seq {
            e.prev_hash = prev.clone();
        }
        if e.seq >= at_seq {
            e.hash = event_hash(e);
        }
        prev = e.hash.clone();
    }
    let mut db = Db::connect(&app.database_url).await;
    for e in rewritten.iter().filter(|e| e.seq >= at_seq) {
        db.execute(
            "UPDATE audit_events SET target = $3, prev_hash = $4, hash = $5 \
             WHERE organization_id = $1 AND seq = $2",
            &[
                chain_arg(e),
                Arg::I64(e.seq),
                Arg::Text(e.target.clone()),
                Arg::Text(e.prev_hash.clone()),
                Arg::Text(e.hash.clone()),
            ],
        )
        .await;
    }
    let last = rewritten.last().expect("events");
    db.execute(
        "UPDATE audit_heads SET hash = $2 WHERE organization_id = $1",
        &[chain_arg(last), Arg::Text(last.hash.clone())],
    )
    .await;
    db.close().await;
}

fn chain_arg(e: &AuditEvent) -> Arg {
    Arg::Uuid(Uuid::parse_str(&e.organization_id).expect("organization id"))
}

/// The whole export of a chain over gRPC, as bytes.
async fn export(app: &TestApp, slug: &str, organization_id: &str) -> Vec<u8> {
    let mut stream = app
        .orgs()
        .export_audit_events(req(
            &root(),
            ExportAuditEventsRequest {
                slug: slug.into(),
                organization_id: organization_id.into(),
            },
        ))
        .await
        .expect("export")
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        assert_eq!(chunk.content_type, "application/x-ndjson");
        out.extend_from_slice(&chunk.data);
    }
    out
}

async fn offline_verify(file: &std::path::Path, public_key: Option<&str>) -> std::process::Output {
    let mut cmd = crate::cli::orgd();
    cmd.args(["audit", "verify"]).arg(file);
    if let Some(key) = public_key {
        cmd.args(["--public-key", key]);
    }
    crate::cli::run(cmd).await
}

// ---------------------------------------------------------------------------
// Checkpoints and proofs
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_are_signed_and_a_proof_shows_the_chain_extends_them() {
    let app = TestApp::spawn().await;
    let org = org_with_members(&app, "proved", 2).await;
    let key = signing_key(&app, &token("anyone@x.test")).await;
    assert_eq!(key.algorithm, "Ed25519");

    let old = checkpoint(&app, "proved").await;
    assert_eq!(old.organization_id, org.id);
    assert_eq!(old.seq, 3, "create + 2 members");
    assert!(signature_holds(&key, &old), "{old:?}");
    let events = all_events(&app, "proved", "").await;
    assert_eq!(
        old.hash,
        events.last().map(|e| e.hash.clone()).unwrap_or_default()
    );

    for i in 0..5 {
        app.add_user("proved", &format!("later{i}@proved.test"), "member")
            .await;
    }
    let proof = prove(&app, "proved", &old, 0).await.expect("proof");
    assert!(proof.consistent, "{proof:?}");
    assert!(proof.complete);
    assert_eq!(
        proof.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8]
    );
    // Chain the returned events from the old checkpoint with our own code.
    let mut prev = old.hash.clone();
    for e in &proof.events {
        assert_eq!(e.prev_hash, prev, "seq {}", e.seq);
        assert_eq!(event_hash(e), e.hash, "seq {}", e.seq);
        prev = e.hash.clone();
    }
    let next = proof.checkpoint.expect("next checkpoint");
    assert_eq!((next.seq, next.hash.clone()), (8, prev));
    assert!(signature_holds(&key, &next));

    // A proof in steps: at most two events, then from the returned checkpoint.
    let first = prove(&app, "proved", &old, 2).await.expect("proof");
    assert!(first.consistent && !first.complete, "{first:?}");
    assert_eq!(first.events.len(), 2);
    let step = first.checkpoint.expect("checkpoint");
    let rest = prove(&app, "proved", &step, 0).await.expect("proof");
    assert!(rest.consistent && rest.complete, "{rest:?}");
    assert_eq!(rest.events.first().map(|e| e.seq), Some(6));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewritten_history_fails_the_proof_even_with_every_hash_recomputed() {
    let app = TestApp::spawn().await;
    org_with_members(&app, "forged", 4).await;
    let kept = checkpoint(&app, "forged").await;
    app.add_user("forged", "after@forged.test", "member").await;
    let events = all_events(&app, "forged", "").await;
    assert_eq!(events.len(), 6);

    rewrite_history(&app, &events, 2, "organizations/somewhere-else").await;
    // Every hash was recomputed: the chain alone looks intact...
    let v = verify(&app, "forged", "").await;
    assert!(v.valid, "a consistent rewrite passes the hash walk: {v:?}");
    // ...but it no longer extends the checkpoint the client kept.
    let proof = prove(&app, "forged", &kept, 0).await.expect("proof");
    assert!(!proof.consistent, "{proof:?}");
    assert_eq!(proof.first_invalid_seq, Some(kept.seq));
    assert!(proof.events.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_not_signed_by_the_service_is_refused() {
    let app = TestApp::spawn().await;
    org_with_members(&app, "signed", 1).await;
    let mut forged = checkpoint(&app, "signed").await;
    forged.seq -= 1;
    let e = prove(&app, "signed", &forged, 0).await;
    assert_error(e, Code::InvalidArgument, "INVALID_CHECKPOINT");

    // A checkpoint of another organization does not prove this one.
    let other = org_with_members(&app, "signed-too", 0).await;
    let theirs = checkpoint(&app, "signed-too").await;
    assert_eq!(theirs.organization_id, other.id);
    let e = prove(&app, "signed", &theirs, 0).await;
    assert_error(e, Code::InvalidArgument, "INVALID_CHECKPOINT");

    // Only admins may ask.
    let denied = app
        .orgs()
        .get_audit_checkpoint(req(
            &token("m0@signed.test"),
            GetAuditCheckpointRequest {
                slug: "signed".into(),
                organization_id: String::new(),
            },
        ))
        .await;
    assert_error(denied, Code::PermissionDenied, "NOT_AUTHORIZED");
}

// ---------------------------------------------------------------------------
// Export and offline verification
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_export_verifies_offline_and_a_changed_line_is_named() {
    let app = TestApp::spawn().await;
    org_with_members(&app, "exported", 3).await;
    let key = signing_key(&app, &root()).await;
    let bytes = export(&app, "exported", "").await;
    let text = String::from_utf8(bytes).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 4, "header and four events:\n{text}");
    let header: serde_json::Value = serde_json::from_str(lines[0]).expect("header");
    assert_eq!(header["format"], "orgd.audit.v1");
    assert_eq!(header["public_key"], key.public_key.as_str());
    assert_eq!(header["head_checkpoint"]["seq"], 4);

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("trail.ndjson");
    std::fs::write(&file, &text).expect("write");
    let out = offline_verify(&file, Some(&key.public_key)).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("valid: 4 events"), "{said}");

    // One changed byte in event 3 is found, with its seq.
    let tampered: String = text.replacen("\"member.add\"", "\"member.rem\"", 2);
    std::fs::write(&file, &tampered).expect("write");
    let out = offline_verify(&file, Some(&key.public_key)).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("INVALID at seq 2"), "{err}");

    // A dropped line is a gap.
    let mut without: Vec<&str> = lines.clone();
    without.remove(3);
    std::fs::write(&file, without.join("\n")).expect("write");
    let out = offline_verify(&file, Some(&key.public_key)).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("INVALID at seq 3"));

    // A file re-signed with another key fails against the pinned key.
    std::fs::write(&file, &text).expect("write");
    let other = orgd::signing::AuditSigner::ephemeral().public_key_hex();
    let out = offline_verify(&file, Some(&other)).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("INVALID at seq 0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_export_reads_the_database_and_verifies() {
    let app = TestApp::spawn().await;
    let org = org_with_members(&app, "cli-export", 2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("out.ndjson");
    let mut cmd = crate::cli::orgd();
    cmd.args(["audit", "export", "--organization", "cli-export", "--out"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path())
        .env("DATABASE_URL", &app.database_url);
    let out = crate::cli::run(cmd).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&file).expect("export file");
    assert_eq!(text.lines().count(), 1 + 3);
    assert!(text.lines().nth(1).is_some_and(|l| l.contains(&org.id)));
    // Not on a terminal, progress is plain lines on stderr: every line
    // written is counted.
    assert_eq!(crate::cli::finished_phase(&out, "exporting events"), (4, None));
    let out = offline_verify(&file, None).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid: 3 events"));
    let size = std::fs::metadata(&file).expect("size").len();
    assert_eq!(
        crate::cli::finished_phase(&out, "verifying bytes"),
        (size, Some(size)),
        "verify reads the whole file"
    );
}

// ---------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn pruning_keeps_the_chain_verifiable_from_a_signed_checkpoint() {
    let signer = orgd::signing::AuditSigner::ephemeral();
    let kept_signer = signer.clone();
    // Deleted organizations are purged at once here: the trail of a purged
    // organization is what retention ends.
    let mut first = TestApp::spawn_with(move |c| {
        c.audit_signer = kept_signer;
        c.soft_delete_window = Duration::ZERO;
    })
    .await;
    org_with_members(&first, "pruned", 2).await;
    let old = checkpoint(&first, "pruned").await;
    first.add_user("pruned", "third@pruned.test", "member").await;
    first.create_org("Gone", "gone", "admin@gone.test").await;
    let gone_id = first
        .orgs()
        .get_organization(req(&root(), GetOrganizationRequest { slug: "gone".into() }))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("org")
        .id;
    first
        .orgs()
        .delete_organization(req(
            &root(),
            DeleteOrganizationRequest {
                slug: "gone".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete");
    first.stop().await;

    // The same database and key, now keeping events for a millisecond: the
    // server prunes as it starts.
    let (url, storage) = (first.database_url.clone(), first.storage_root.clone());
    let second = TestApp::spawn_with(move |c| {
        c.database_url = url;
        c.storage_root = storage;
        c.audit_signer = signer;
        c.audit_retention = Some(Duration::from_millis(1));
        c.soft_delete_window = Duration::ZERO;
    })
    .await;
    let mut v = verify(&second, "pruned", "").await;
    for _ in 0..100 {
        if v.base.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        v = verify(&second, "pruned", "").await;
    }
    let key = signing_key(&second, &root()).await;
    let base = v.base.clone().expect("a base checkpoint after pruning");
    assert!(v.valid, "{v:?}");
    assert_eq!((base.seq, v.head_seq, v.checked), (4, 4, 0), "{v:?}");
    assert!(signature_holds(&key, &base));
    assert!(all_events(&second, "pruned", "").await.is_empty());

    // New events chain on from the pruned base.
    second.add_user("pruned", "new@pruned.test", "member").await;
    let v = verify(&second, "pruned", "").await;
    assert!(v.valid, "{v:?}");
    assert_eq!((v.checked, v.head_seq), (1, 5));
    let events = all_events(&second, "pruned", "").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].prev_hash, base.hash);

    // The export starts from the signed base and verifies offline.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pruned.ndjson");
    std::fs::write(&file, export(&second, "pruned", "").await).expect("write");
    let out = offline_verify(&file, Some(&key.public_key)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid: 1 events"));

    // A checkpoint older than the base can no longer be proved; the base's
    // own one can.
    assert_eq!(old.seq, 3);
    let e = prove(&second, "pruned", &old, 0).await;
    assert_error(e, Code::FailedPrecondition, "CHECKPOINT_PRUNED");
    let from_base = prove(&second, "pruned", &base, 0).await.expect("proof");
    assert!(
        from_base.consistent && from_base.events.len() == 1,
        "{from_base:?}"
    );

    // The deleted organization's trail expired entirely.
    let e = second
        .orgs()
        .list_audit_events(req(
            &root(),
            ListAuditEventsRequest {
                organization_id: gone_id,
                ..Default::default()
            },
        ))
        .await;
    assert_error(e, Code::NotFound, "AUDIT_TRAIL_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_base_moved_without_a_signed_checkpoint_fails_verification() {
    let app = TestApp::spawn().await;
    org_with_members(&app, "moved", 3).await;
    let events = all_events(&app, "moved", "").await;
    // Someone deletes the first two events and points the base past them.
    let e = &events[1];
    let mut db = Db::connect(&app.database_url).await;
    db.execute(
        "DELETE FROM audit_events WHERE organization_id = $1 AND seq <= $2",
        &[chain_arg(e), Arg::I64(e.seq)],
    )
    .await;
    db.execute(
        "UPDATE audit_heads SET base_seq = $2, base_hash = $3 WHERE organization_id = $1",
        &[chain_arg(e), Arg::I64(e.seq), Arg::Text(e.hash.clone())],
    )
    .await;
    db.close().await;
    let v = verify(&app, "moved", "").await;
    assert!(!v.valid, "{v:?}");
    assert_eq!(v.first_invalid_seq, Some(2));
    assert!(v.reason.contains("without a signed checkpoint"), "{v:?}");
}

// ---------------------------------------------------------------------------
// WatchEvents
// ---------------------------------------------------------------------------

async fn watch(app: &TestApp, slug: &str, after_seq: i64) -> tonic::Streaming<WatchEventsResponse> {
    app.orgs()
        .watch_events(req(
            &root(),
            WatchEventsRequest {
                slug: slug.into(),
                organization_id: String::new(),
                after_seq,
            },
        ))
        .await
        .expect("watch")
        .into_inner()
}

async fn next_seq(stream: &mut tonic::Streaming<WatchEventsResponse>) -> i64 {
    tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("an event within 30 s")
        .expect("stream")
        .expect("open stream")
        .event
        .expect("event")
        .seq
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_delivers_every_event_of_a_thousand_concurrent_changes_in_order_and_resumes() {
    let app = TestApp::spawn().await;
    app.create_org("Watched", "watched", "admin@watched.test").await;
    let space = app
        .create_space("Watched space", "organization", "admin@watched.test")
        .await;
    app.attach("watched", &space.id).await;
    let mut stream = watch(&app, "watched", 0).await;
    assert_eq!(next_seq(&mut stream).await, 1);
    assert_eq!(next_seq(&mut stream).await, 2);

    // 1,000 changes from 16 concurrent writers.
    let changes = 1_000usize;
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let client = app.spaces();
            let space = space.id.clone();
            tokio::spawn(async move {
                for i in (w..changes).step_by(16) {
                    let item = Product {
                        id: Uuid::new_v4().to_string(),
                        name: format!("p{i}"),
                        ..Default::default()
                    };
                    client
                        .clone()
                        .batch_upsert_products(req(
                            &root(),
                            BatchUpsertProductsRequest {
                                space_id: space.clone(),
                                items: vec![item],
                                ..Default::default()
                            },
                        ))
                        .await
                        .expect("upsert");
                }
            })
        })
        .collect();
    let head = 2 + changes as i64;
    let mut expected = 3;
    // Read half, hang up, and resume from the last seq received.
    while expected <= head / 2 {
        assert_eq!(next_seq(&mut stream).await, expected);
        expected += 1;
    }
    drop(stream);
    let mut resumed = watch(&app, "watched", expected - 1).await;
    while expected <= head {
        assert_eq!(next_seq(&mut resumed).await, expected, "in order, none missing");
        expected += 1;
    }
    for w in writers {
        w.await.expect("writer");
    }
    let v = verify(&app, "watched", "").await;
    assert!(v.valid && v.head_seq == head, "{v:?}");

    // The stream ends after the organization's last event.
    app.orgs()
        .delete_organization(req(
            &root(),
            DeleteOrganizationRequest {
                slug: "watched".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("delete");
    assert_eq!(next_seq(&mut resumed).await, head + 1);
    let end = tokio::time::timeout(Duration::from_secs(30), resumed.message())
        .await
        .expect("the stream ends");
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn watching_takes_an_admin_and_ends_when_the_right_goes() {
    let app = TestApp::spawn().await;
    app.create_org("Kept", "kept", "admin@kept.test").await;
    let second = app.add_user("kept", "second@kept.test", "admin").await;
    app.add_user("kept", "member@kept.test", "member").await;
    let refused = app
        .orgs()
        .watch_events(req(
            &token("member@kept.test"),
            WatchEventsRequest {
                slug: "kept".into(),
                organization_id: String::new(),
                after_seq: 0,
            },
        ))
        .await;
    assert_error(refused, Code::PermissionDenied, "NOT_AUTHORIZED");

    let mut stream = app
        .orgs()
        .watch_events(req(
            &token("second@kept.test"),
            WatchEventsRequest {
                slug: "kept".into(),
                organization_id: String::new(),
                after_seq: 3,
            },
        ))
        .await
        .expect("watch")
        .into_inner();
    app.orgs()
        .update_user_role(req(
            &root(),
            UpdateUserRoleRequest {
                slug: "kept".into(),
                user_id: second.user_id.clone(),
                role: "member".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("demote");
    assert_eq!(next_seq(&mut stream).await, 4);
    let end = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends within the recheck interval");
    let status = end.expect_err("ended with an error");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_from_zero_first_delivers_the_backlog_in_order() {
    let app = TestApp::spawn().await;
    org_with_members(&app, "listed", 4).await;
    let seqs: Vec<i64> = watch(&app, "listed", 0)
        .await
        .take(5)
        .map(|r| r.expect("event").event.expect("event").seq)
        .collect()
        .await;
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
}

// ---------------------------------------------------------------------------
// Through Envoy
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_proofs_exports_and_watches_work_over_rest() {
    let app = TestApp::spawn().await;
    org_with_members(&app, "rested", 2).await;
    let envoy = crate::envoy::Envoy::start(&[app.addr]).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(envoy.url(path)).bearer_auth(root());

    let key: serde_json::Value = get("/audit-signing-key")
        .send()
        .await
        .expect("key")
        .json()
        .await
        .expect("json");
    assert_eq!(key["algorithm"], "Ed25519");

    let reply = get("/organizations/rested/audit:checkpoint")
        .send()
        .await
        .expect("checkpoint");
    assert_eq!(reply.status(), 200);
    let checkpoint: serde_json::Value = reply.json().await.expect("json");
    assert_eq!(
        checkpoint["seq"], "3",
        "int64 prints as a JSON string: {checkpoint}"
    );
    assert!(checkpoint["signature"].as_str().is_some_and(|s| s.len() == 128));

    app.add_user("rested", "late@rested.test", "member").await;
    let reply = http
        .post(envoy.url("/organizations/rested/audit:prove"))
        .bearer_auth(root())
        .header("content-type", "application/json")
        .body(serde_json::json!({ "checkpoint": checkpoint }).to_string())
        .send()
        .await
        .expect("prove");
    assert_eq!(reply.status(), 200);
    let proof: serde_json::Value = reply.json().await.expect("json");
    assert_eq!(proof["consistent"], true, "{proof}");
    assert_eq!(proof["events"][0]["action"], "member.add", "{proof}");
    assert_eq!(proof["events"][0]["seq"], "4");

    // The export is NDJSON, byte for byte what the offline verifier takes.
    let reply = get("/organizations/rested/audit:export")
        .send()
        .await
        .expect("export");
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-ndjson")
    );
    let body = reply.text().await.expect("body");
    assert_eq!(body.lines().count(), 1 + 4, "{body}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rest.ndjson");
    std::fs::write(&file, &body).expect("write");
    let out = offline_verify(&file, key["public_key"].as_str()).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A watch delivers one JSON object per line as events commit.
    let mut watch = get("/organizations/rested/audit:watch?after_seq=3")
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status(), 200);
    let mut received = String::new();
    let mut lines = Vec::new();
    let mut added = false;
    while lines.len() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(30), watch.chunk())
            .await
            .expect("a chunk within 30 s")
            .expect("chunk")
            .expect("the stream stays open");
        received.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = received.find('\n') {
            let line: String = received.drain(..=end).collect();
            if !line.trim().is_empty() {
                lines.push(serde_json::from_str::<serde_json::Value>(line.trim()).expect("a JSON line"));
            }
        }
        if lines.len() == 1 && !added {
            app.add_user("rested", "watched@rested.test", "member").await;
            added = true;
        }
    }
    assert_eq!(lines[0]["event"]["seq"], "4", "{lines:?}");
    assert_eq!(lines[1]["event"]["seq"], "5", "{lines:?}");
    assert_eq!(lines[1]["event"]["metadata"]["email"], "watched@rested.test");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_look_into_a_restricted_space_is_recorded() {
    let app = TestApp::spawn().await;
    app.create_org("Hidden", "hidden", "admin@hidden.test").await;
    app.add_user("hidden", "plain@hidden.test", "member").await;
    let space = app
        .create_space("Secret space", "restricted", "admin@hidden.test")
        .await;
    app.attach("hidden", &space.id).await;
    let refused = orgd::proto::aggregation_service_client::AggregationServiceClient::new(app.channel.clone())
        .list_products(req(
            &token("plain@hidden.test"),
            ListProductsRequest {
                slug: "hidden".into(),
                space_id: space.id.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_error(refused, Code::PermissionDenied, "NOT_AUTHORIZED");
    let events = all_events(&app, "hidden", "").await;
    let last = events.last().expect("events");
    assert_eq!(
        (last.action.as_str(), last.result.as_str(), last.target.clone()),
        ("content.read", "denied", format!("spaces/{}", space.id))
    );
    assert_eq!(
        metadata(last).get("rpc").map(String::as_str),
        Some("ListProducts")
    );
    assert!(verify(&app, "hidden", "").await.valid);
}
