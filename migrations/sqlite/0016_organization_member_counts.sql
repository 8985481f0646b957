-- The number of members of each organization, kept by triggers on
-- memberships, so GetStats, GetOrganization and ListOrganizations do not
-- count 10,000 index entries per request. A removal only updates, never
-- inserts: when an organization is purged, its memberships and its row
-- here go in the same cascade, in no set order.
CREATE TABLE organization_member_counts (
    organization_id BLOB PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    members         INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER memberships_counted_in AFTER INSERT ON memberships
BEGIN
    INSERT INTO organization_member_counts (organization_id, members)
    VALUES (new.organization_id, 1)
    ON CONFLICT (organization_id) DO UPDATE SET members = members + 1;
END;

CREATE TRIGGER memberships_counted_out AFTER DELETE ON memberships
BEGIN
    UPDATE organization_member_counts SET members = members - 1
    WHERE organization_id = old.organization_id;
END;

INSERT INTO organization_member_counts (organization_id, members)
SELECT organization_id, count(*) FROM memberships GROUP BY organization_id;
