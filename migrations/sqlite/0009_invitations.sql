-- Invitations (SPEC §7): an email invited to an organization with a role.
-- The state is 'pending' until accepted or revoked; a pending invitation
-- past its expires_at is expired (computed when read, not stored).

CREATE TABLE invitations (
    id              BLOB PRIMARY KEY NOT NULL,
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           TEXT NOT NULL,                -- stored lowercased
    role            TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    state           TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'revoked')),
    invited_by      BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    accepted_by     BLOB,
    accepted_at     INTEGER,
    revoked_at      INTEGER
);
CREATE INDEX invitations_newest ON invitations (organization_id, created_at DESC, id DESC);
CREATE INDEX invitations_by_email ON invitations (organization_id, email, state);
