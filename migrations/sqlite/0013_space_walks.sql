-- ListSpaces by index walks. A caller reaches spaces through
-- (organization, visibility) pairs (an organization admin both visibilities,
-- a member 'organization' only), each walked newest first and merged, plus
-- the spaces it is a member of. The walks cover live spaces only and carry
-- every column they read, so neither a count nor a page reads space rows.
CREATE INDEX spaces_live_by_visibility
    ON spaces (organization_id, visibility, created_at DESC, id DESC, deleted_at)
    WHERE deleted_at IS NULL;
-- A superadmin's list of every live space.
CREATE INDEX spaces_live_newest ON spaces (created_at DESC, id DESC, deleted_at) WHERE deleted_at IS NULL;
-- A caller's own spaces (space member), looked up by id without their rows.
CREATE INDEX spaces_listed_by_id ON spaces (id, organization_id, visibility, created_at, deleted_at);
-- ListOrganizations embeds each organization's first spaces by name.
CREATE INDEX spaces_by_organization_name ON spaces (organization_id, name, id, slug);
