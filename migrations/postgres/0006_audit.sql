-- The audit trail: one hash chain per organization (SPEC §6).
--
-- `audit_heads` holds each chain's newest event; appending an event locks and
-- updates it in the same transaction as the change the event records, so the
-- appends of one chain run one after another and `seq` has no gaps. A head
-- outlives its organization (no foreign key): a deleted organization's trail
-- stays readable. `base_seq`/`base_hash` are the newest pruned event's seq
-- and hash (0 and '0' before any pruning): verification starts from them,
-- after checking the signed checkpoint pruning left for them.
-- The nil organization id holds the chain of spaces that belong to no
-- organization.

CREATE TABLE audit_heads (
    organization_id UUID PRIMARY KEY,
    seq             BIGINT NOT NULL,
    hash            TEXT NOT NULL,
    base_seq        BIGINT NOT NULL DEFAULT 0,
    base_hash       TEXT NOT NULL DEFAULT '0',
    -- The signed checkpoint of the base (set by pruning): when it was signed
    -- (microseconds), by which key, and the signature (hex).
    base_signed_at  BIGINT,
    base_key_id     TEXT,
    base_signature  TEXT,
    -- When the organization was deleted (microseconds), NULL while it lives.
    deleted_at      BIGINT
);

CREATE TABLE audit_events (
    organization_id UUID NOT NULL,
    seq             BIGINT NOT NULL,
    id              UUID NOT NULL UNIQUE,
    actor           UUID NOT NULL,
    action          TEXT NOT NULL,
    result          TEXT NOT NULL CHECK (result IN ('success', 'denied')),
    target          TEXT NOT NULL,
    -- A JSON object of string values, kept as text: exactly what was hashed.
    metadata        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL,
    PRIMARY KEY (organization_id, seq)
);
CREATE INDEX audit_events_by_action ON audit_events (organization_id, action text_pattern_ops, seq DESC);
CREATE INDEX audit_events_by_actor ON audit_events (organization_id, actor, seq DESC);
CREATE INDEX audit_events_by_time ON audit_events (organization_id, created_at DESC, seq DESC);
