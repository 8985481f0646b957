-- Labels on organizations and spaces (SPEC §7), and a version on every
-- resource that carries an etag (organizations, spaces, memberships).
--
-- A resource's labels are kept twice, in one transaction: as canonical JSON
-- on its row (what reads return) and one row per label in a side table
-- (what `label=key:value` filters use, through its (key, value) index).
-- The version starts at 1 and grows with every change; the etag is derived
-- from (id, created_at, version).

ALTER TABLE organizations ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE organizations ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE spaces ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE spaces ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE memberships ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE space_members ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

CREATE TABLE organization_labels (
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    key             TEXT NOT NULL,
    value           TEXT NOT NULL,
    PRIMARY KEY (organization_id, key)
);
CREATE INDEX organization_labels_by_value ON organization_labels (key, value, organization_id);

CREATE TABLE space_labels (
    space_id BLOB NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (space_id, key)
);
CREATE INDEX space_labels_by_value ON space_labels (key, value, space_id);
