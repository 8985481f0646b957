-- ListSpaces by index walks. A caller reaches spaces through
-- (organization, visibility) pairs (an organization admin both visibilities,
-- a member 'organization' only), each walked newest first and merged (a
-- Merge Append), plus the spaces it is a member of. Live spaces only.
CREATE INDEX spaces_live_by_visibility
    ON spaces (organization_id, visibility, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
-- A superadmin's list of every live space.
CREATE INDEX spaces_live_newest ON spaces (created_at DESC, id DESC) WHERE deleted_at IS NULL;
-- ListOrganizations embeds each organization's first spaces by name.
CREATE INDEX spaces_by_organization_name ON spaces (organization_id, name, id) INCLUDE (slug);
