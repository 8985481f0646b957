-- Content ids are unique within their space (SPEC §1), not across spaces:
-- the same upstream id may live in two spaces, a writer of one space cannot
-- take another space's ids, nor learn whether an id exists elsewhere.
--
-- SQLite cannot drop a primary key, so each content table is rebuilt with
-- (space_id, id) as its key, keeping every row's rowid (the FTS tables index
-- rows by rowid), then its indexes and triggers are made again.


-- products

CREATE TABLE products_rebuilt (
    id              BLOB NOT NULL,
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
    UNIQUE (space_id, name),
    PRIMARY KEY (space_id, id)
);
INSERT INTO products_rebuilt (rowid, id, space_id, organization_id, name, slug, description, product_type, provider, tags, quality_score, is_archived, created_at, updated_at)
SELECT rowid, id, space_id, organization_id, name, slug, description, product_type, provider, tags, quality_score, is_archived, created_at, updated_at FROM products;
DROP TABLE products;
ALTER TABLE products_rebuilt RENAME TO products;
CREATE INDEX products_by_org ON products (organization_id, is_archived, created_at DESC, id DESC, space_id);
CREATE INDEX products_by_org_all ON products (organization_id, created_at DESC, id DESC, space_id);
CREATE INDEX products_by_space ON products (space_id, is_archived, created_at DESC, id DESC);
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


-- contracts

CREATE TABLE contracts_rebuilt (
    id                  BLOB NOT NULL,
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
    expires_at          INTEGER,
    PRIMARY KEY (space_id, id)
);
INSERT INTO contracts_rebuilt (rowid, id, space_id, organization_id, name, description, status, producer_id, producer_name, consumer_id, consumer_name, freshness_hours, availability_percent, quality_score_min, response_time_hours, created_at, expires_at)
SELECT rowid, id, space_id, organization_id, name, description, status, producer_id, producer_name, consumer_id, consumer_name, freshness_hours, availability_percent, quality_score_min, response_time_hours, created_at, expires_at FROM contracts;
DROP TABLE contracts;
ALTER TABLE contracts_rebuilt RENAME TO contracts;
CREATE INDEX contracts_by_org ON contracts (organization_id, created_at DESC, id DESC, space_id, status);
CREATE INDEX contracts_by_status ON contracts (organization_id, status, created_at DESC, id DESC, space_id);
CREATE INDEX contracts_active ON contracts (organization_id, status, expires_at, space_id);
CREATE INDEX contracts_by_space_status ON contracts (space_id, status);
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


-- issues

CREATE TABLE issues_rebuilt (
    id              BLOB NOT NULL,
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
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (space_id, id)
);
INSERT INTO issues_rebuilt (rowid, id, space_id, organization_id, title, description, status, priority, product_id, assignee_id, reporter_id, created_at, updated_at)
SELECT rowid, id, space_id, organization_id, title, description, status, priority, product_id, assignee_id, reporter_id, created_at, updated_at FROM issues;
DROP TABLE issues;
ALTER TABLE issues_rebuilt RENAME TO issues;
CREATE INDEX issues_by_org ON issues (organization_id, created_at DESC, id DESC, space_id, status, priority);
CREATE INDEX issues_by_status ON issues (organization_id, status, created_at DESC, id DESC, space_id, priority);
CREATE INDEX issues_by_assignee ON issues (organization_id, assignee_id, created_at DESC, id DESC, space_id, status, priority);
CREATE INDEX issues_by_space ON issues (space_id, status);


-- quality_checks

CREATE TABLE quality_checks_rebuilt (
    id              BLOB NOT NULL,
    space_id        BLOB NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    organization_id BLOB,
    name            TEXT NOT NULL,
    check_type      TEXT NOT NULL DEFAULT '',
    severity        TEXT NOT NULL CHECK (severity IN ('warning', 'error', 'critical')),
    product_ids     TEXT NOT NULL DEFAULT '[]',   -- JSON array of UUID strings
    last_status     TEXT CHECK (last_status IN ('pass', 'fail', 'warning', 'error')),
    last_run_at     INTEGER,
    is_archived     INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (space_id, id)
);
INSERT INTO quality_checks_rebuilt (rowid, id, space_id, organization_id, name, check_type, severity, product_ids, last_status, last_run_at, is_archived, created_at)
SELECT rowid, id, space_id, organization_id, name, check_type, severity, product_ids, last_status, last_run_at, is_archived, created_at FROM quality_checks;
DROP TABLE quality_checks;
ALTER TABLE quality_checks_rebuilt RENAME TO quality_checks;
CREATE INDEX quality_checks_by_org ON quality_checks (organization_id, is_archived, created_at DESC, id DESC, space_id, last_status);
CREATE INDEX quality_checks_by_org_all ON quality_checks (organization_id, created_at DESC, id DESC, space_id, last_status);
CREATE INDEX quality_checks_by_space ON quality_checks (space_id, is_archived, last_status);
