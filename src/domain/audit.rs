//! The audit trail (SPEC §6): what an event holds, its canonical encoding
//! and hash, and the verification of a chain. No I/O here: the store appends
//! and reads events, this module decides what they must look like.
//!
//! ## Canonical encoding (version 1)
//!
//! `hash` is the lowercase hex SHA-256 of the concatenation of these
//! netstrings, in this order; a netstring is the decimal byte length of a
//! UTF-8 string, `:`, the bytes, and `,` (`5:hello,`):
//!
//! 1. `orgd.audit.v1`
//! 2. `prev_hash` (`0` for the first event of a chain)
//! 3. `organization_id` (lowercase hyphenated UUID; the nil UUID for the
//!    chain of spaces that belong to no organization)
//! 4. `seq` in decimal
//! 5. `id` (lowercase hyphenated UUID)
//! 6. `created_at` as microseconds since the Unix epoch, in decimal
//! 7. `actor` (lowercase hyphenated UUID; the nil UUID for orgd's own
//!    command line)
//! 8. `action`
//! 9. `result` (`success` or `denied`)
//! 10. `target`
//! 11. the number of metadata entries, in decimal
//! 12. each metadata entry sorted by key (byte order): the key, then the
//!     value
//!
//! The same text is in the proto comment of `AuditEvent`, for clients.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::{Error, Result};

/// The hash a chain starts from: the first event's `prev_hash`.
pub const GENESIS: &str = "0";

/// The chain of spaces that belong to no organization.
pub const SYSTEM_CHAIN: Uuid = Uuid::nil();

/// The actor of changes made by orgd's own command line (e.g. `generate`).
pub const SYSTEM_ACTOR: Uuid = Uuid::nil();

/// Was the attempt carried out?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(field: &'static str, raw: &str) -> Result<Self> {
        match raw.trim() {
            "success" => Ok(Outcome::Success),
            "denied" => Ok(Outcome::Denied),
            other => Err(Error::invalid(
                "INVALID_RESULT",
                field,
                format!("{field} must be 'success' or 'denied', got '{other}'"),
            )),
        }
    }
}

/// Who acts and through which RPC; given to every store mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Uuid,
    pub rpc: &'static str,
    /// The caller's idempotency key, when the request carried one.
    pub request: Option<RequestKey>,
}

/// A request_id (AIP-155) and the fingerprint of the request it came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestKey {
    pub request_id: Uuid,
    /// SHA-256 of the RPC's name and the request without its id.
    pub fingerprint: [u8; 32],
}

impl RequestKey {
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }
}

impl Actor {
    /// orgd's own command line, acting with superadmin rights.
    pub fn system(rpc: &'static str) -> Self {
        Self {
            user_id: SYSTEM_ACTOR,
            rpc,
            request: None,
        }
    }

    /// The same actor, acting under a request id.
    pub fn with_request(mut self, request: Option<RequestKey>) -> Self {
        self.request = request;
        self
    }

    pub fn is_system(&self) -> bool {
        self.user_id == SYSTEM_ACTOR
    }
}

/// An event about to be appended: everything but its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub actor: Uuid,
    pub action: &'static str,
    pub result: Outcome,
    pub target: String,
    pub metadata: BTreeMap<String, String>,
}

impl Draft {
    /// A successful change by `actor`, with the RPC in its metadata.
    pub fn success(actor: &Actor, action: &'static str, target: impl Into<String>) -> Self {
        Self::new(actor, action, Outcome::Success, target)
    }

    /// A refused attempt by `actor`, with the RPC in its metadata.
    pub fn denied(actor: &Actor, action: &'static str, target: impl Into<String>) -> Self {
        Self::new(actor, action, Outcome::Denied, target)
    }

    fn new(actor: &Actor, action: &'static str, result: Outcome, target: impl Into<String>) -> Self {
        let mut metadata = BTreeMap::new();
        metadata.insert("rpc".to_owned(), actor.rpc.to_owned());
        Self {
            actor: actor.user_id,
            action,
            result,
            target: target.into(),
            metadata,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub organization_id: Uuid,
    pub seq: i64,
    pub id: Uuid,
    pub actor: Uuid,
    pub action: String,
    pub result: String,
    pub target: String,
    pub metadata: BTreeMap<String, String>,
    pub created_at: i64,
    pub prev_hash: String,
    pub hash: String,
}

impl Event {
    /// Places a draft after `prev_hash` at `seq`, and hashes it.
    pub fn seal(draft: Draft, organization_id: Uuid, seq: i64, prev_hash: &str, created_at: i64) -> Self {
        let mut event = Self {
            organization_id,
            seq,
            id: Uuid::now_v7(),
            actor: draft.actor,
            action: draft.action.to_owned(),
            result: draft.result.as_str().to_owned(),
            target: draft.target,
            metadata: draft.metadata,
            created_at,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        event
    }

    /// The hash this event's fields call for (see the module docs).
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        let mut put = |s: &[u8]| {
            h.update(itoa::Buffer::new().format(s.len()).as_bytes());
            h.update(b":");
            h.update(s);
            h.update(b",");
        };
        let mut ids = [[0u8; uuid::fmt::Hyphenated::LENGTH]; 3];
        let [org, id, actor] = &mut ids;
        put(b"orgd.audit.v1");
        put(self.prev_hash.as_bytes());
        put(self.organization_id.hyphenated().encode_lower(org).as_bytes());
        put(itoa::Buffer::new().format(self.seq).as_bytes());
        put(self.id.hyphenated().encode_lower(id).as_bytes());
        put(itoa::Buffer::new().format(self.created_at).as_bytes());
        put(self.actor.hyphenated().encode_lower(actor).as_bytes());
        put(self.action.as_bytes());
        put(self.result.as_bytes());
        put(self.target.as_bytes());
        put(itoa::Buffer::new().format(self.metadata.len()).as_bytes());
        for (k, v) in &self.metadata {
            put(k.as_bytes());
            put(v.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// The metadata as stored: a JSON object of strings.
    pub fn metadata_json(&self) -> String {
        serde_json::to_string(&self.metadata).unwrap_or_else(|_| "{}".to_owned())
    }

    pub fn parse_metadata(raw: &str) -> std::result::Result<BTreeMap<String, String>, serde_json::Error> {
        serde_json::from_str(raw)
    }
}

/// `<byte length>:<bytes>,`
pub fn netstring(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 8);
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s.as_bytes());
    out.push(b',');
    out
}

/// A signed statement that a chain reached `seq` with `hash`.
///
/// `signature` is the hex Ed25519 signature over the concatenation of the
/// netstrings of: `orgd.checkpoint.v1`, `organization_id`, `seq` (decimal),
/// `hash`, `signed_at` (microseconds since the Unix epoch, decimal) and
/// `key_id`; `key_id` is the first 16 hex digits of the SHA-256 of the
/// 32-byte public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub organization_id: Uuid,
    pub seq: i64,
    pub hash: String,
    pub signed_at: i64,
    pub key_id: String,
    pub signature: String,
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub fn message(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in [
            "orgd.checkpoint.v1",
            &self.organization_id.to_string(),
            &self.seq.to_string(),
            &self.hash,
            &self.signed_at.to_string(),
            &self.key_id,
        ] {
            out.extend(netstring(part));
        }
        out
    }
}

/// Where a chain stands: its newest event, and where verification starts
/// (the newest pruned event, or the genesis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub organization_id: Uuid,
    pub seq: i64,
    pub hash: String,
    pub base_seq: i64,
    pub base_hash: String,
    /// The signed checkpoint of the base, once pruning has set one.
    pub base_checkpoint: Option<Checkpoint>,
    pub deleted_at: Option<i64>,
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub seq: i64,
    pub reason: String,
}

/// Walks a chain in order, one event at a time, and keeps the first break.
#[derive(Debug, Clone)]
pub struct Verifier {
    organization_id: Uuid,
    expected_seq: i64,
    prev_hash: String,
    checked: i64,
    broken: Option<Break>,
}

impl Verifier {
    /// Starts after `base_seq`, whose hash is `base_hash` (0 and "0" for a
    /// chain that was never pruned).
    pub fn new(organization_id: Uuid, base_seq: i64, base_hash: &str) -> Self {
        Self {
            organization_id,
            expected_seq: base_seq + 1,
            prev_hash: base_hash.to_owned(),
            checked: 0,
            broken: None,
        }
    }

    pub fn broken(&self) -> Option<&Break> {
        self.broken.as_ref()
    }

    pub fn checked(&self) -> i64 {
        self.checked
    }

    /// The last verified position: (seq, hash).
    pub fn position(&self) -> (i64, &str) {
        (self.expected_seq - 1, &self.prev_hash)
    }

    /// Marks the chain broken at `seq` (a check made outside the walk).
    pub fn fail_at(&mut self, seq: i64, reason: String) {
        self.fail(seq, reason);
    }

    fn fail(&mut self, seq: i64, reason: String) {
        if self.broken.is_none() {
            self.broken = Some(Break { seq, reason });
        }
    }

    /// Checks the next event; false once the chain is broken.
    pub fn push(&mut self, event: &Event) -> bool {
        if self.broken.is_some() {
            return false;
        }
        if event.organization_id != self.organization_id {
            self.fail(event.seq, "the event belongs to another organization".into());
            return false;
        }
        if event.seq != self.expected_seq {
            let missing = self.expected_seq;
            self.fail(
                missing,
                if event.seq > missing {
                    format!("event {missing} is missing (the next event is {})", event.seq)
                } else {
                    format!("event {} appears out of order", event.seq)
                },
            );
            return false;
        }
        if event.prev_hash != self.prev_hash {
            self.fail(
                event.seq,
                "prev_hash does not match the previous event's hash".into(),
            );
            return false;
        }
        if event.compute_hash() != event.hash {
            self.fail(event.seq, "the hash does not match the event's fields".into());
            return false;
        }
        self.checked += 1;
        self.expected_seq += 1;
        self.prev_hash = event.hash.clone();
        true
    }

    /// Checks that the walk ended where the head says the chain ends.
    pub fn finish(&mut self, head_seq: i64, head_hash: &str) {
        if self.broken.is_some() {
            return;
        }
        let (seq, hash) = (self.expected_seq - 1, self.prev_hash.clone());
        if seq < head_seq {
            self.fail(seq + 1, format!("events {} to {head_seq} are missing", seq + 1));
        } else if seq > head_seq {
            self.fail(
                head_seq + 1,
                "events exist beyond the chain's recorded head".into(),
            );
        } else if hash != head_hash {
            self.fail(
                seq,
                "the newest event's hash differs from the chain's recorded head".into(),
            );
        }
    }
}

/// An action filter: exact (`member.add`) or a prefix ending in `.`
/// (`member.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionFilter {
    Exact(String),
    Prefix(String),
}

impl ActionFilter {
    pub fn parse(field: &'static str, raw: &str) -> Result<Option<Self>> {
        let s = raw.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let valid = s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if !valid {
            return Err(Error::invalid(
                "INVALID_ACTION",
                field,
                format!("{field} must be an action such as 'member.add' or a prefix such as 'member.'"),
            ));
        }
        Ok(Some(if s.ends_with('.') {
            ActionFilter::Prefix(s.to_owned())
        } else {
            ActionFilter::Exact(s.to_owned())
        }))
    }
}

/// Which events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub action: Option<ActionFilter>,
    pub actor: Option<Uuid>,
    pub result: Option<Outcome>,
    /// Events created at or after this time (microseconds).
    pub since: Option<i64>,
    /// Events created before this time (microseconds).
    pub until: Option<i64>,
}

/// The digest of a batch's ids, for its event: hex SHA-256 of the ids,
/// sorted, each followed by a newline.
pub fn ids_digest(ids: &[Uuid]) -> String {
    let mut sorted: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    for id in sorted {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Event> {
        let org = Uuid::now_v7();
        let actor = Actor {
            request: None,
            user_id: Uuid::now_v7(),
            rpc: "Test",
        };
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let e = Event::seal(
                    Draft::success(&actor, "member.add", format!("t/{seq}")).with("k", "v"),
                    org,
                    seq,
                    &prev,
                    1_700_000_000_000_000 + seq,
                );
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn verify(events: &[Event], head: (i64, &str)) -> Option<Break> {
        let mut v = Verifier::new(events[0].organization_id, 0, GENESIS);
        for e in events {
            if !v.push(e) {
                break;
            }
        }
        v.finish(head.0, head.1);
        v.broken().cloned()
    }

    #[test]
    fn the_hash_follows_the_documented_encoding() {
        let e = Event {
            organization_id: Uuid::nil(),
            seq: 1,
            id: Uuid::nil(),
            actor: Uuid::nil(),
            action: "a".into(),
            result: "success".into(),
            target: "t".into(),
            metadata: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            created_at: 7,
            prev_hash: "0".into(),
            hash: String::new(),
        };
        let nil = "00000000-0000-0000-0000-000000000000";
        let text =
            format!("13:orgd.audit.v1,1:0,36:{nil},1:1,36:{nil},1:7,36:{nil},1:a,7:success,1:t,1:1,1:k,1:v,");
        assert_eq!(e.compute_hash(), hex::encode(Sha256::digest(text.as_bytes())));
    }

    #[test]
    fn an_intact_chain_verifies() {
        let events = chain(5);
        let head = events.last().map(|e| (e.seq, e.hash.clone())).unwrap_or_default();
        assert_eq!(verify(&events, (head.0, &head.1)), None);
    }

    #[test]
    fn edits_gaps_and_truncation_are_found_with_their_seq() {
        let events = chain(5);
        let head = (5, events[4].hash.clone());

        let mut edited = events.clone();
        edited[2].target = "elsewhere".into();
        assert_eq!(verify(&edited, (5, &head.1)).map(|b| b.seq), Some(3));

        let mut gap = events.clone();
        gap.remove(1);
        assert_eq!(verify(&gap, (5, &head.1)).map(|b| b.seq), Some(2));

        let truncated = &events[..4];
        assert_eq!(verify(truncated, (5, &head.1)).map(|b| b.seq), Some(5));

        // Rehashing an edited event breaks the link of the next one.
        let mut rehashed = events.clone();
        rehashed[1].metadata.insert("k".into(), "changed".into());
        rehashed[1].hash = rehashed[1].compute_hash();
        assert_eq!(verify(&rehashed, (5, &head.1)).map(|b| b.seq), Some(3));
    }

    #[test]
    fn action_filters_are_exact_or_prefixes() {
        assert_eq!(
            ActionFilter::parse("action", "member.").ok().flatten(),
            Some(ActionFilter::Prefix("member.".into()))
        );
        assert_eq!(
            ActionFilter::parse("action", " member.add ").ok().flatten(),
            Some(ActionFilter::Exact("member.add".into()))
        );
        assert_eq!(ActionFilter::parse("action", "").ok().flatten(), None);
        assert!(ActionFilter::parse("action", "member%").is_err());
    }

    #[test]
    fn the_ids_digest_ignores_order() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(ids_digest(&[a, b]), ids_digest(&[b, a]));
        assert_ne!(ids_digest(&[a]), ids_digest(&[b]));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn event(parts: (String, String, String, Vec<(String, String)>), seq: i64, at: i64) -> Event {
        let (action, result, target, metadata) = parts;
        Event {
            organization_id: Uuid::from_u128(7),
            seq,
            id: Uuid::from_u128(9),
            actor: Uuid::from_u128(11),
            action,
            result,
            target,
            metadata: metadata.into_iter().collect(),
            created_at: at,
            prev_hash: GENESIS.to_owned(),
            hash: String::new(),
        }
    }

    proptest! {
        #[test]
        fn the_hash_changes_with_every_field(
            parts in ("\\PC{0,20}", "\\PC{0,10}", "\\PC{0,30}", prop::collection::vec(("\\PC{0,8}", "\\PC{0,8}"), 0..4)),
            seq in 1..i64::MAX,
            at in any::<i64>(),
        ) {
            let e = event(parts, seq, at);
            let h = e.compute_hash();
            prop_assert_eq!(&h, &e.compute_hash());
            let mut other = e.clone();
            other.seq = seq - 1;
            prop_assert_ne!(&h, &other.compute_hash());
            let mut other = e.clone();
            other.created_at = at.wrapping_add(1);
            prop_assert_ne!(&h, &other.compute_hash());
            let mut other = e.clone();
            other.target.push('x');
            prop_assert_ne!(&h, &other.compute_hash());
            let mut other = e.clone();
            other.metadata.insert("\u{1}extra".into(), String::new());
            prop_assert_ne!(&h, &other.compute_hash());
        }

        #[test]
        fn moving_a_boundary_between_fields_changes_the_hash(a in "\\PC{1,10}", b in "\\PC{1,10}") {
            // "a|b" + "" versus "a" + "|b": netstrings keep them apart.
            let joined = event((format!("{a}{b}"), "success".into(), String::new(), Vec::new()), 1, 0);
            let split = event((a, "success".into(), b, Vec::new()), 1, 0);
            prop_assert_ne!(joined.compute_hash(), split.compute_hash());
        }
    }
}
