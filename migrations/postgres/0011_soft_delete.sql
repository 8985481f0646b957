-- Soft delete (AIP-164): a deleted organization or space keeps its row
-- (and so its slug, members, spaces and content) until purge_at, hidden
-- from every read. A space detached by a deletion remembers the
-- organization it came from (detached_from), so that an undelete can put it
-- back.

ALTER TABLE organizations ADD COLUMN deleted_at BIGINT;
ALTER TABLE organizations ADD COLUMN purge_at BIGINT;
ALTER TABLE spaces ADD COLUMN deleted_at BIGINT;
ALTER TABLE spaces ADD COLUMN purge_at BIGINT;
ALTER TABLE spaces ADD COLUMN detached_from UUID;

CREATE INDEX organizations_to_purge ON organizations (purge_at) WHERE purge_at IS NOT NULL;
CREATE INDEX spaces_to_purge ON spaces (purge_at) WHERE purge_at IS NOT NULL;
CREATE INDEX spaces_detached_from ON spaces (detached_from) WHERE detached_from IS NOT NULL;
