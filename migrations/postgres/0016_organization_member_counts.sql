-- The number of members of each organization, kept by triggers on
-- memberships, so GetStats, GetOrganization and ListOrganizations do not
-- count 10,000 index entries per request. A removal only updates, never
-- inserts: when an organization is purged, its memberships and its row
-- here go in the same cascade, in no set order.
CREATE TABLE organization_member_counts (
    organization_id UUID PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    members         BIGINT NOT NULL
);

CREATE FUNCTION orgd_memberships_counted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO organization_member_counts AS c (organization_id, members)
        VALUES (NEW.organization_id, 1)
        ON CONFLICT (organization_id) DO UPDATE SET members = c.members + 1;
    ELSE
        UPDATE organization_member_counts SET members = members - 1
        WHERE organization_id = OLD.organization_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER memberships_counted AFTER INSERT OR DELETE ON memberships
FOR EACH ROW EXECUTE FUNCTION orgd_memberships_counted();

INSERT INTO organization_member_counts (organization_id, members)
SELECT organization_id, count(*) FROM memberships GROUP BY organization_id;
