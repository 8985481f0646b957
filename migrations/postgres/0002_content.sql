-- Space content (products, contracts, issues, quality checks), written by
-- internal services and read through the organization aggregations.
--
-- Content ids are the writer's own UUIDs and unique across spaces, so an id
-- can never be taken over by a writer of another space. Every row carries
-- its space's organization (kept in step on attach/detach), so that one
-- index serves an organization's newest-first list at any depth.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE products (
    id              UUID PRIMARY KEY,
    space_id        UUID NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    organization_id UUID,
    name            TEXT NOT NULL,
    slug            TEXT NOT NULL DEFAULT '',
    description     TEXT NOT NULL DEFAULT '',
    product_type    TEXT NOT NULL DEFAULT '',
    provider        TEXT NOT NULL DEFAULT '',
    tags            TEXT NOT NULL DEFAULT '[]',   -- JSON array of strings
    quality_score   DOUBLE PRECISION CHECK (quality_score BETWEEN 0 AND 1),
    is_archived     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (space_id, name)
);
CREATE INDEX products_by_org ON products (organization_id, is_archived, created_at DESC, id DESC) INCLUDE (space_id);
CREATE INDEX products_by_org_all ON products (organization_id, created_at DESC, id DESC) INCLUDE (space_id);
CREATE INDEX products_by_space ON products (space_id, is_archived, created_at DESC, id DESC);
CREATE INDEX products_name_trgm ON products USING gin (name gin_trgm_ops);
CREATE INDEX products_description_trgm ON products USING gin (description gin_trgm_ops);

CREATE TABLE contracts (
    id                  UUID PRIMARY KEY,
    space_id            UUID NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    organization_id     UUID,
    name                TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL CHECK (status IN ('draft', 'active', 'expired', 'deprecated')),
    producer_id         TEXT NOT NULL DEFAULT '',
    producer_name       TEXT NOT NULL DEFAULT '',
    consumer_id         TEXT NOT NULL DEFAULT '',
    consumer_name       TEXT NOT NULL DEFAULT '',
    freshness_hours     INTEGER NOT NULL DEFAULT 0,
    availability_percent DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (availability_percent BETWEEN 0 AND 100),
    quality_score_min   DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (quality_score_min BETWEEN 0 AND 1),
    response_time_hours INTEGER NOT NULL DEFAULT 0,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT
);
CREATE INDEX contracts_by_org ON contracts (organization_id, created_at DESC, id DESC) INCLUDE (space_id, status);
CREATE INDEX contracts_by_status ON contracts (organization_id, status, created_at DESC, id DESC) INCLUDE (space_id);
CREATE INDEX contracts_active ON contracts (organization_id, status, expires_at) INCLUDE (space_id);
CREATE INDEX contracts_by_space ON contracts (space_id);
CREATE INDEX contracts_name_trgm ON contracts USING gin (name gin_trgm_ops);
CREATE INDEX contracts_description_trgm ON contracts USING gin (description gin_trgm_ops);

CREATE TABLE issues (
    id              UUID PRIMARY KEY,
    space_id        UUID NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    organization_id UUID,
    title           TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL CHECK (status IN ('open', 'in_progress', 'resolved', 'wont_fix')),
    priority        TEXT NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'critical')),
    product_id      UUID,
    assignee_id     UUID,
    reporter_id     UUID,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX issues_by_org ON issues (organization_id, created_at DESC, id DESC) INCLUDE (space_id, status, priority);
CREATE INDEX issues_by_status ON issues (organization_id, status, created_at DESC, id DESC) INCLUDE (space_id, priority);
CREATE INDEX issues_by_assignee ON issues (organization_id, assignee_id, created_at DESC, id DESC) INCLUDE (space_id, status, priority);
CREATE INDEX issues_by_space ON issues (space_id, status);

CREATE TABLE quality_checks (
    id              UUID PRIMARY KEY,
    space_id        UUID NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    organization_id UUID,
    name            TEXT NOT NULL,
    check_type      TEXT NOT NULL DEFAULT '',
    severity        TEXT NOT NULL CHECK (severity IN ('warning', 'error', 'critical')),
    product_ids     TEXT NOT NULL DEFAULT '[]',   -- JSON array of UUID strings
    last_status     TEXT CHECK (last_status IN ('pass', 'fail', 'warning', 'error')),
    last_run_at     BIGINT,
    is_archived     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT NOT NULL
);
CREATE INDEX quality_checks_by_org ON quality_checks (organization_id, is_archived, created_at DESC, id DESC) INCLUDE (space_id, last_status);
CREATE INDEX quality_checks_by_org_all ON quality_checks (organization_id, created_at DESC, id DESC) INCLUDE (space_id, last_status);
CREATE INDEX quality_checks_by_space ON quality_checks (space_id, is_archived, last_status);

-- Per-space counters behind GetStats, recomputed in the transaction of every
-- content write (which locks the space), so statistics never scan an
-- organization's content.
CREATE TABLE space_stats (
    space_id        UUID PRIMARY KEY REFERENCES spaces (id) ON DELETE CASCADE,
    products_active BIGINT NOT NULL DEFAULT 0,
    issues_open     BIGINT NOT NULL DEFAULT 0,
    checks_ran      BIGINT NOT NULL DEFAULT 0,
    checks_passed   BIGINT NOT NULL DEFAULT 0
);
