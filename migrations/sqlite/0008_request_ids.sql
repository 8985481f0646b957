-- Idempotent retries (AIP-155): the outcome of each change made with a
-- request_id, written in the transaction of the change itself, so a
-- committed change always has its answer recorded and an uncommitted one
-- never has. Keyed per caller; rows older than a day are pruned.

CREATE TABLE request_ids (
    caller      BLOB NOT NULL,
    request_id  BLOB NOT NULL,
    rpc         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,        -- SHA-256 of the request without its id
    outcome     TEXT,                 -- JSON of the result, when it succeeded
    error       TEXT,                 -- JSON of the refusal, when it failed
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (caller, request_id)
);
CREATE INDEX request_ids_by_age ON request_ids (created_at);
