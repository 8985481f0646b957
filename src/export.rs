//! The NDJSON form of an audit chain (ExportAuditEvents, `orgd audit
//! export`) and its offline verification (`orgd audit verify FILE`), which
//! needs nothing but the file (and, to pin it, the public key).
//!
//! Line 1 is a header: `format` ("orgd.audit.v1"), `organization_id`,
//! `base_seq`, `base_hash` (where the exported events start from),
//! `base_checkpoint` (the signed checkpoint of the newest pruned event, or
//! null), `head_checkpoint` (signed at export time for the last event),
//! `public_key` (hex Ed25519). Every further line is one event, in chain
//! order, with the fields of the proto's AuditEvent; `created_at_micros` is
//! the value the hash covers.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::audit::{Checkpoint, Event, Verifier};
use crate::signing;

pub const FORMAT: &str = "orgd.audit.v1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointLine {
    pub organization_id: Uuid,
    pub seq: i64,
    pub hash: String,
    pub signed_at_micros: i64,
    pub key_id: String,
    pub signature: String,
}

impl From<&Checkpoint> for CheckpointLine {
    fn from(c: &Checkpoint) -> Self {
        Self {
            organization_id: c.organization_id,
            seq: c.seq,
            hash: c.hash.clone(),
            signed_at_micros: c.signed_at,
            key_id: c.key_id.clone(),
            signature: c.signature.clone(),
        }
    }
}

impl From<&CheckpointLine> for Checkpoint {
    fn from(c: &CheckpointLine) -> Self {
        Self {
            organization_id: c.organization_id,
            seq: c.seq,
            hash: c.hash.clone(),
            signed_at: c.signed_at_micros,
            key_id: c.key_id.clone(),
            signature: c.signature.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    pub format: String,
    pub organization_id: Uuid,
    pub base_seq: i64,
    pub base_hash: String,
    pub base_checkpoint: Option<CheckpointLine>,
    pub head_checkpoint: CheckpointLine,
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct EventLine {
    organization_id: Uuid,
    seq: i64,
    id: Uuid,
    actor: Uuid,
    action: String,
    result: String,
    target: String,
    metadata: BTreeMap<String, String>,
    created_at: String,
    created_at_micros: i64,
    prev_hash: String,
    hash: String,
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// The header line, newline included.
pub fn header_line(header: &Header) -> String {
    let mut line = serde_json::to_string(header).unwrap_or_default();
    line.push('\n');
    line
}

/// An event's line, newline included.
pub fn event_line(e: &Event) -> String {
    let line = EventLine {
        organization_id: e.organization_id,
        seq: e.seq,
        id: e.id,
        actor: e.actor,
        action: e.action.clone(),
        result: e.result.clone(),
        target: e.target.clone(),
        metadata: e.metadata.clone(),
        created_at: rfc3339(e.created_at),
        created_at_micros: e.created_at,
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
    };
    let mut out = serde_json::to_string(&line).unwrap_or_default();
    out.push('\n');
    out
}

fn parse_event(raw: &str) -> Result<Event, serde_json::Error> {
    let l: EventLine = serde_json::from_str(raw)?;
    Ok(Event {
        organization_id: l.organization_id,
        seq: l.seq,
        id: l.id,
        actor: l.actor,
        action: l.action,
        result: l.result,
        target: l.target,
        metadata: l.metadata,
        created_at: l.created_at_micros,
        prev_hash: l.prev_hash,
        hash: l.hash,
    })
}

/// What an offline verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub organization_id: Uuid,
    pub checked: i64,
    pub head_seq: i64,
    pub head_hash: String,
    /// The key that signed the checkpoints (hex).
    pub public_key: String,
    /// Whether the key was pinned by the caller rather than read from the
    /// file.
    pub key_pinned: bool,
    /// `None` when everything verifies; else the first failing seq (0 for
    /// the file as a whole) and why.
    pub broken: Option<(i64, String)>,
}

/// Verifies an export: the header's checkpoints with the public key (the
/// pinned one if given, else the file's), then every event's seq, link and
/// hash from the base to the head checkpoint.
pub fn verify(reader: impl BufRead, pinned: Option<&str>) -> Result<Report, String> {
    let mut lines = reader.lines();
    let first = lines
        .next()
        .ok_or("the file is empty")?
        .map_err(|e| format!("reading the file: {e}"))?;
    let header: Header =
        serde_json::from_str(&first).map_err(|e| format!("line 1 is not an export header: {e}"))?;
    if header.format != FORMAT {
        return Err(format!("unknown format '{}' (expected {FORMAT})", header.format));
    }
    let key_hex = pinned.unwrap_or(&header.public_key).trim().to_owned();
    let key = signing::public_key_from_hex(&key_hex).ok_or("the public key is not a hex Ed25519 key")?;
    let mut report = Report {
        organization_id: header.organization_id,
        checked: 0,
        head_seq: header.head_checkpoint.seq,
        head_hash: header.head_checkpoint.hash.clone(),
        public_key: key_hex,
        key_pinned: pinned.is_some(),
        broken: None,
    };
    let head = Checkpoint::from(&header.head_checkpoint);
    if head.organization_id != header.organization_id || !signing::verify_with(&key, &head) {
        report.broken = Some((0, "the head checkpoint's signature does not verify".into()));
        return Ok(report);
    }
    match &header.base_checkpoint {
        Some(base) => {
            let base = Checkpoint::from(base);
            if base.seq != header.base_seq
                || base.hash != header.base_hash
                || !signing::verify_with(&key, &base)
            {
                report.broken = Some((header.base_seq, "the base checkpoint does not verify".into()));
                return Ok(report);
            }
        }
        None if header.base_seq != 0 || header.base_hash != crate::domain::audit::GENESIS => {
            report.broken = Some((
                header.base_seq,
                "events were removed without a signed checkpoint".into(),
            ));
            return Ok(report);
        }
        None => {}
    }
    let mut verifier = Verifier::new(header.organization_id, header.base_seq, &header.base_hash);
    for (n, line) in lines.enumerate() {
        let line = line.map_err(|e| format!("reading the file: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = match parse_event(&line) {
            Ok(e) => e,
            Err(e) => {
                let seq = verifier.position().0 + 1;
                verifier.fail_at(seq, format!("line {} is not an event: {e}", n + 2));
                break;
            }
        };
        if !verifier.push(&event) {
            break;
        }
    }
    verifier.finish(head.seq, &head.hash);
    report.checked = verifier.checked();
    report.broken = verifier.broken().map(|b| (b.seq, b.reason.clone()));
    Ok(report)
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn event_lines_round_trip(
            action in "\\PC{0,20}",
            target in "\\PC{0,40}",
            metadata in prop::collection::btree_map("\\PC{0,8}", "\\PC{0,12}", 0..5),
            seq in 1..i64::MAX,
            at in 0..253_402_300_799_000_000i64,
        ) {
            let e = Event {
                organization_id: Uuid::from_u128(1),
                seq,
                id: Uuid::from_u128(2),
                actor: Uuid::from_u128(3),
                action,
                result: "success".into(),
                target,
                metadata,
                created_at: at,
                prev_hash: "0".into(),
                hash: "abc".into(),
            };
            let line = event_line(&e);
            prop_assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
            prop_assert_eq!(parse_event(line.trim_end()).ok(), Some(e));
        }
    }
}
