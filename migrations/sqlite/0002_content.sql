-- Space content (products, contracts, issues, quality checks), written by
-- internal services and read through the organization aggregations.
--
-- Content ids are the writer's own UUIDs and unique across spaces, so an id
-- can never be taken over by a writer of another space. Every row carries
-- its space's organization (kept in step on attach/detach), so that one
-- index serves an organization's newest-first list at any depth.

CREATE TABLE products (
    id              BLOB PRIMARY KEY NOT NULL,
    space_id        BLOB NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    organization_id BLOB,
    name            TEXT NOT NULL,
    slug            TEXT NOT NULL DEFAULT '',
    description     TEXT NOT NULL DEFAULT '',
    product_type    TEXT NOT NULL DEFAULT '',
    provider        TEXT NOT NULL DEFAULT '',
    tags            TEXT NOT NULL DEFAULT '[]',   -- JSON array of strings
    quality_score   REAL CHECK (quality_score BETWEEN 0 AND 1),
    is_archived     INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (space_id, name)
);
CREATE INDEX products_by_org ON products (organization_id, is_archived, created_at DESC, id DESC, space_id);
CREATE INDEX products_by_org_all ON products (organization_id, created_at DESC, id DESC, space_id);
CREATE INDEX products_by_space ON products (space_id, is_archived, created_at DESC, id DESC);

CREATE TABLE contracts (
    id                  BLOB PRIMARY KEY NOT NULL,
    space_id            BLOB NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    organization_id     BLOB,
    name                TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL CHECK (status IN ('draft', 'active', 'expired', 'deprecated')),
    producer_id         TEXT NOT NULL DEFAULT '',
    producer_name       TEXT NOT NULL DEFAULT '',
    consumer_id         TEXT NOT NULL DEFAULT '',
    consumer_name       TEXT NOT NULL DEFAULT '',
    freshness_hours     INTEGER NOT NULL DEFAULT 0,
    availability_percent REAL NOT NULL DEFAULT 0 CHECK (availability_percent BETWEEN 0 AND 100),
    quality_score_min   REAL NOT NULL DEFAULT 0 CHECK (quality_score_min BETWEEN 0 AND 1),
    response_time_hours INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER
);
CREATE INDEX contracts_by_org ON contracts (organization_id, created_at DESC, id DESC, space_id, status);
CREATE INDEX contracts_by_status ON contracts (organization_id, status, created_at DESC, id DESC, space_id);
CREATE INDEX contracts_active ON contracts (organization_id, status, expires_at, space_id);
CREATE INDEX contracts_by_space ON contracts (space_id);

CREATE TABLE issues (
    id              BLOB PRIMARY KEY NOT NULL,
    space_id        BLOB NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    organization_id BLOB,
    title           TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL CHECK (status IN ('open', 'in_progress', 'resolved', 'wont_fix')),
    priority        TEXT NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'critical')),
    product_id      BLOB,
    assignee_id     BLOB,
    reporter_id     BLOB,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX issues_by_org ON issues (organization_id, created_at DESC, id DESC, space_id, status, priority);
CREATE INDEX issues_by_status ON issues (organization_id, status, created_at DESC, id DESC, space_id, priority);
CREATE INDEX issues_by_assignee ON issues (organization_id, assignee_id, created_at DESC, id DESC, space_id, status, priority);
CREATE INDEX issues_by_space ON issues (space_id, status);

CREATE TABLE quality_checks (
    id              BLOB PRIMARY KEY NOT NULL,
    space_id        BLOB NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    organization_id BLOB,
    name            TEXT NOT NULL,
    check_type      TEXT NOT NULL DEFAULT '',
    severity        TEXT NOT NULL CHECK (severity IN ('warning', 'error', 'critical')),
    product_ids     TEXT NOT NULL DEFAULT '[]',   -- JSON array of UUID strings
    last_status     TEXT CHECK (last_status IN ('pass', 'fail', 'warning', 'error')),
    last_run_at     INTEGER,
    is_archived     INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);
CREATE INDEX quality_checks_by_org ON quality_checks (organization_id, is_archived, created_at DESC, id DESC, space_id, last_status);
CREATE INDEX quality_checks_by_org_all ON quality_checks (organization_id, created_at DESC, id DESC, space_id, last_status);
CREATE INDEX quality_checks_by_space ON quality_checks (space_id, is_archived, last_status);

-- Per-space counters behind GetStats, recomputed in the transaction of every
-- content write (which locks the space), so statistics never scan an
-- organization's content.
CREATE TABLE space_stats (
    space_id        BLOB PRIMARY KEY NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    products_active INTEGER NOT NULL DEFAULT 0,
    issues_open     INTEGER NOT NULL DEFAULT 0,
    checks_ran      INTEGER NOT NULL DEFAULT 0,
    checks_passed   INTEGER NOT NULL DEFAULT 0
);

-- Substring search (3+ characters) through FTS5's trigram tokenizer, kept in
-- step with the tables by triggers.
CREATE VIRTUAL TABLE products_fts USING fts5(
    name, description, content = 'products', content_rowid = 'rowid', tokenize = 'trigram'
);
CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
    INSERT INTO products_fts (rowid, name, description) VALUES (new.rowid, new.name, new.description);
END;
CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, description)
    VALUES ('delete', old.rowid, old.name, old.description);
END;
CREATE TRIGGER products_fts_update AFTER UPDATE OF name, description ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, description)
    VALUES ('delete', old.rowid, old.name, old.description);
    INSERT INTO products_fts (rowid, name, description) VALUES (new.rowid, new.name, new.description);
END;

CREATE VIRTUAL TABLE contracts_fts USING fts5(
    name, description, content = 'contracts', content_rowid = 'rowid', tokenize = 'trigram'
);
CREATE TRIGGER contracts_fts_insert AFTER INSERT ON contracts BEGIN
    INSERT INTO contracts_fts (rowid, name, description) VALUES (new.rowid, new.name, new.description);
END;
CREATE TRIGGER contracts_fts_delete AFTER DELETE ON contracts BEGIN
    INSERT INTO contracts_fts (contracts_fts, rowid, name, description)
    VALUES ('delete', old.rowid, old.name, old.description);
END;
CREATE TRIGGER contracts_fts_update AFTER UPDATE OF name, description ON contracts BEGIN
    INSERT INTO contracts_fts (contracts_fts, rowid, name, description)
    VALUES ('delete', old.rowid, old.name, old.description);
    INSERT INTO contracts_fts (rowid, name, description) VALUES (new.rowid, new.name, new.description);
END;
