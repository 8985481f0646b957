-- Users, organizations, memberships, spaces and space members.
-- Timestamps are microseconds since the Unix epoch (BIGINT), the same
-- representation as on SQLite, so both backends share queries and cursors.

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,          -- stored lowercased
    display_name  TEXT NOT NULL DEFAULT '',
    is_superadmin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL
);

CREATE TABLE organizations (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX organizations_newest ON organizations (created_at DESC, id DESC);

CREATE TABLE memberships (
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id, organization_id, role);
CREATE INDEX memberships_newest ON memberships (organization_id, created_at DESC, user_id DESC);
CREATE INDEX memberships_by_role ON memberships (organization_id, role, created_at DESC, user_id DESC);

-- The database keeps at least one admin in every organization, also when two
-- transactions demote or remove two admins at once: each locks the
-- organization row first, so the second counts after the first commits
-- (READ COMMITTED takes a fresh snapshot per statement).
CREATE FUNCTION orgd_keep_an_admin() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    admins integer;
BEGIN
    IF OLD.role <> 'admin' OR (TG_OP = 'UPDATE' AND NEW.role = 'admin') THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    PERFORM 1 FROM organizations WHERE id = OLD.organization_id FOR UPDATE;
    IF NOT FOUND THEN
        -- The organization itself is being deleted.
        RETURN OLD;
    END IF;
    SELECT count(*) INTO admins FROM memberships
    WHERE organization_id = OLD.organization_id AND role = 'admin';
    IF admins <= 1 THEN
        RAISE EXCEPTION 'LAST_ADMIN' USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER memberships_keep_an_admin
BEFORE UPDATE OF role OR DELETE ON memberships
FOR EACH ROW EXECUTE FUNCTION orgd_keep_an_admin();

CREATE TABLE spaces (
    id              UUID PRIMARY KEY,
    name            TEXT NOT NULL,
    slug            TEXT NOT NULL UNIQUE,
    description     TEXT NOT NULL DEFAULT '',
    visibility      TEXT NOT NULL CHECK (visibility IN ('organization', 'restricted')),
    repo            TEXT NOT NULL DEFAULT '',
    agent_id        TEXT,
    agent_status    TEXT CHECK (agent_status IN ('ACTIVE', 'IDLE', 'SUSPENDED', 'ERROR')),
    agent_autonomy  INTEGER CHECK (agent_autonomy BETWEEN 0 AND 5),
    -- A space belongs to at most one organization: one nullable column.
    organization_id UUID REFERENCES organizations (id) ON DELETE SET NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    CHECK ((agent_id IS NULL) = (agent_status IS NULL) AND (agent_id IS NULL) = (agent_autonomy IS NULL))
);
CREATE INDEX spaces_newest ON spaces (created_at DESC, id DESC);
CREATE INDEX spaces_by_organization ON spaces (organization_id, created_at DESC, id DESC);

CREATE TABLE space_members (
    space_id   UUID NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (space_id, user_id)
);
CREATE INDEX space_members_by_user ON space_members (user_id, space_id, role);
CREATE INDEX space_members_newest ON space_members (space_id, created_at DESC, user_id DESC);
