-- Users, organizations, memberships, spaces and space members.
-- Ids are UUIDs (16-byte blobs); timestamps are microseconds since the Unix
-- epoch, so both backends share one representation and index order.

CREATE TABLE users (
    id            BLOB PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL UNIQUE,          -- stored lowercased
    display_name  TEXT NOT NULL DEFAULT '',
    is_superadmin INTEGER NOT NULL DEFAULT 0 CHECK (is_superadmin IN (0, 1)),
    created_at    INTEGER NOT NULL
);

CREATE TABLE organizations (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX organizations_newest ON organizations (created_at DESC, id DESC);

CREATE TABLE memberships (
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id, organization_id, role);
CREATE INDEX memberships_newest ON memberships (organization_id, created_at DESC, user_id DESC);
CREATE INDEX memberships_by_role ON memberships (organization_id, role, created_at DESC, user_id DESC);

-- The database keeps at least one admin in every organization. SQLite runs
-- one writer at a time, so the count below cannot race another change.
CREATE TRIGGER memberships_keep_an_admin_on_update
BEFORE UPDATE OF role ON memberships
WHEN OLD.role = 'admin' AND NEW.role <> 'admin'
BEGIN
    SELECT RAISE(ABORT, 'LAST_ADMIN')
    WHERE (SELECT count(*) FROM memberships
           WHERE organization_id = OLD.organization_id AND role = 'admin') <= 1;
END;

-- Deleting the organization itself removes every membership: allowed.
CREATE TRIGGER memberships_keep_an_admin_on_delete
BEFORE DELETE ON memberships
WHEN OLD.role = 'admin'
BEGIN
    SELECT RAISE(ABORT, 'LAST_ADMIN')
    WHERE EXISTS (SELECT 1 FROM organizations WHERE id = OLD.organization_id)
      AND (SELECT count(*) FROM memberships
           WHERE organization_id = OLD.organization_id AND role = 'admin') <= 1;
END;

CREATE TABLE spaces (
    id              BLOB PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL,
    slug            TEXT NOT NULL UNIQUE,
    description     TEXT NOT NULL DEFAULT '',
    visibility      TEXT NOT NULL CHECK (visibility IN ('organization', 'restricted')),
    repo            TEXT NOT NULL DEFAULT '',
    agent_id        TEXT,
    agent_status    TEXT CHECK (agent_status IN ('ACTIVE', 'IDLE', 'SUSPENDED', 'ERROR')),
    agent_autonomy  INTEGER CHECK (agent_autonomy BETWEEN 0 AND 5),
    -- A space belongs to at most one organization: one nullable column.
    organization_id BLOB REFERENCES organizations (id) ON DELETE SET NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CHECK ((agent_id IS NULL) = (agent_status IS NULL) AND (agent_id IS NULL) = (agent_autonomy IS NULL))
);
CREATE INDEX spaces_newest ON spaces (created_at DESC, id DESC);
CREATE INDEX spaces_by_organization ON spaces (organization_id, created_at DESC, id DESC);

CREATE TABLE space_members (
    space_id   BLOB NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (space_id, user_id)
);
CREATE INDEX space_members_by_user ON space_members (user_id, space_id, role);
CREATE INDEX space_members_newest ON space_members (space_id, created_at DESC, user_id DESC);
