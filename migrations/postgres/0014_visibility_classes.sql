-- Per-organization statistics by visibility class, so GetStats and list
-- totals never sum the counters of every visible space.
--
-- organization_stats holds, per organization and class (`open`: the spaces
-- every member sees, visibility 'organization'; not open: restricted
-- spaces), the number of attached live spaces and the sum of their
-- space_stats counters. organization_expiries does the same for
-- contract_expiries. A plain member's figures are the open row plus the
-- restricted spaces it belongs to (few, read one by one); an admin's are
-- both rows.
--
-- Triggers keep both in step with every change of space_stats,
-- contract_expiries and of a space's organization, visibility or deletion,
-- inside the statement that makes the change: no code path can forget them.
-- A space whose class changes carries its counters from one row to the
-- other, touching the two rows in key order (two such moves never wait on
-- each other in a cycle). Expiry rows may go negative for a while (a
-- contract of a day already folded changes); rows that reach 0 go.
--
-- Every writer of space_stats and contract_expiries holds the space's row
-- lock (content writes lock the space, the expiry fold locks its spaces
-- first), and a change of the space's class updates that row: so the class
-- a trigger reads cannot change under it before it commits.
CREATE TABLE organization_stats (
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    open            BOOLEAN NOT NULL,
    spaces          BIGINT NOT NULL DEFAULT 0,
    products_active BIGINT NOT NULL DEFAULT 0,
    products_archived BIGINT NOT NULL DEFAULT 0,
    contracts_draft BIGINT NOT NULL DEFAULT 0,
    contracts_active BIGINT NOT NULL DEFAULT 0,
    contracts_expired BIGINT NOT NULL DEFAULT 0,
    contracts_deprecated BIGINT NOT NULL DEFAULT 0,
    contracts_lapsed BIGINT NOT NULL DEFAULT 0,
    issues_status_open BIGINT NOT NULL DEFAULT 0,
    issues_status_in_progress BIGINT NOT NULL DEFAULT 0,
    issues_status_resolved BIGINT NOT NULL DEFAULT 0,
    issues_status_wont_fix BIGINT NOT NULL DEFAULT 0,
    checks_active BIGINT NOT NULL DEFAULT 0,
    checks_archived BIGINT NOT NULL DEFAULT 0,
    checks_ran BIGINT NOT NULL DEFAULT 0,
    checks_passed BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, open)
);

CREATE TABLE organization_expiries (
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    open            BOOLEAN NOT NULL,
    day             BIGINT NOT NULL,
    n               BIGINT NOT NULL,
    PRIMARY KEY (organization_id, open, day)
);

-- The space leaves the (organization, open) row: its counters and its
-- expiry days come off.
CREATE FUNCTION orgd_class_leave(space UUID, org UUID, is_open BOOLEAN) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE organization_stats o SET spaces = o.spaces - 1,
        products_active = o.products_active - COALESCE(st.products_active, 0),
        products_archived = o.products_archived - COALESCE(st.products_archived, 0),
        contracts_draft = o.contracts_draft - COALESCE(st.contracts_draft, 0),
        contracts_active = o.contracts_active - COALESCE(st.contracts_active, 0),
        contracts_expired = o.contracts_expired - COALESCE(st.contracts_expired, 0),
        contracts_deprecated = o.contracts_deprecated - COALESCE(st.contracts_deprecated, 0),
        contracts_lapsed = o.contracts_lapsed - COALESCE(st.contracts_lapsed, 0),
        issues_status_open = o.issues_status_open - COALESCE(st.issues_status_open, 0),
        issues_status_in_progress = o.issues_status_in_progress - COALESCE(st.issues_status_in_progress, 0),
        issues_status_resolved = o.issues_status_resolved - COALESCE(st.issues_status_resolved, 0),
        issues_status_wont_fix = o.issues_status_wont_fix - COALESCE(st.issues_status_wont_fix, 0),
        checks_active = o.checks_active - COALESCE(st.checks_active, 0),
        checks_archived = o.checks_archived - COALESCE(st.checks_archived, 0),
        checks_ran = o.checks_ran - COALESCE(st.checks_ran, 0),
        checks_passed = o.checks_passed - COALESCE(st.checks_passed, 0)
    FROM (SELECT 1) one LEFT JOIN space_stats st ON st.space_id = space
    WHERE o.organization_id = org AND o.open = is_open;
    INSERT INTO organization_expiries AS o (organization_id, open, day, n)
    SELECT org, is_open, e.day, -e.n FROM contract_expiries e WHERE e.space_id = space AND e.n <> 0
    ORDER BY e.day
    ON CONFLICT (organization_id, open, day) DO UPDATE SET n = o.n + excluded.n;
    DELETE FROM organization_expiries o
    WHERE o.organization_id = org AND o.open = is_open AND o.n = 0
      AND o.day IN (SELECT e.day FROM contract_expiries e WHERE e.space_id = space);
END
$$;

-- The space joins the (organization, open) row with its counters and expiry
-- days.
CREATE FUNCTION orgd_class_join(space UUID, org UUID, is_open BOOLEAN) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO organization_stats AS o (organization_id, open, spaces, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT org, is_open, 1, COALESCE(st.products_active, 0), COALESCE(st.products_archived, 0), COALESCE(st.contracts_draft, 0), COALESCE(st.contracts_active, 0), COALESCE(st.contracts_expired, 0), COALESCE(st.contracts_deprecated, 0), COALESCE(st.contracts_lapsed, 0), COALESCE(st.issues_status_open, 0), COALESCE(st.issues_status_in_progress, 0), COALESCE(st.issues_status_resolved, 0), COALESCE(st.issues_status_wont_fix, 0), COALESCE(st.checks_active, 0), COALESCE(st.checks_archived, 0), COALESCE(st.checks_ran, 0), COALESCE(st.checks_passed, 0)
    FROM (SELECT 1) one LEFT JOIN space_stats st ON st.space_id = space
    ON CONFLICT (organization_id, open) DO UPDATE SET spaces = o.spaces + excluded.spaces,
        products_active = o.products_active + excluded.products_active,
        products_archived = o.products_archived + excluded.products_archived,
        contracts_draft = o.contracts_draft + excluded.contracts_draft,
        contracts_active = o.contracts_active + excluded.contracts_active,
        contracts_expired = o.contracts_expired + excluded.contracts_expired,
        contracts_deprecated = o.contracts_deprecated + excluded.contracts_deprecated,
        contracts_lapsed = o.contracts_lapsed + excluded.contracts_lapsed,
        issues_status_open = o.issues_status_open + excluded.issues_status_open,
        issues_status_in_progress = o.issues_status_in_progress + excluded.issues_status_in_progress,
        issues_status_resolved = o.issues_status_resolved + excluded.issues_status_resolved,
        issues_status_wont_fix = o.issues_status_wont_fix + excluded.issues_status_wont_fix,
        checks_active = o.checks_active + excluded.checks_active,
        checks_archived = o.checks_archived + excluded.checks_archived,
        checks_ran = o.checks_ran + excluded.checks_ran,
        checks_passed = o.checks_passed + excluded.checks_passed;
    INSERT INTO organization_expiries AS o (organization_id, open, day, n)
    SELECT org, is_open, e.day, e.n FROM contract_expiries e WHERE e.space_id = space AND e.n <> 0
    ORDER BY e.day
    ON CONFLICT (organization_id, open, day) DO UPDATE SET n = o.n + excluded.n;
    DELETE FROM organization_expiries o
    WHERE o.organization_id = org AND o.open = is_open AND o.n = 0
      AND o.day IN (SELECT e.day FROM contract_expiries e WHERE e.space_id = space);
END
$$;

CREATE FUNCTION orgd_spaces_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM orgd_class_join(NEW.id, NEW.organization_id, NEW.visibility = 'organization');
    RETURN NULL;
END
$$;

CREATE FUNCTION orgd_spaces_moved() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    was BOOLEAN := OLD.organization_id IS NOT NULL AND OLD.deleted_at IS NULL;
    is_now BOOLEAN := NEW.organization_id IS NOT NULL AND NEW.deleted_at IS NULL;
    old_open BOOLEAN := OLD.visibility = 'organization';
    new_open BOOLEAN := NEW.visibility = 'organization';
BEGIN
    IF was AND is_now AND (NEW.organization_id, new_open) < (OLD.organization_id, old_open) THEN
        PERFORM orgd_class_join(NEW.id, NEW.organization_id, new_open);
        PERFORM orgd_class_leave(OLD.id, OLD.organization_id, old_open);
        RETURN NULL;
    END IF;
    IF was THEN
        PERFORM orgd_class_leave(OLD.id, OLD.organization_id, old_open);
    END IF;
    IF is_now THEN
        PERFORM orgd_class_join(NEW.id, NEW.organization_id, new_open);
    END IF;
    RETURN NULL;
END
$$;

-- A purged space's expiry rows go first, through their own trigger, while
-- the space is still there to say where they counted.
CREATE FUNCTION orgd_spaces_purged() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM contract_expiries WHERE space_id = OLD.id;
    PERFORM orgd_class_leave(OLD.id, OLD.organization_id, OLD.visibility = 'organization');
    RETURN OLD;
END
$$;

CREATE TRIGGER spaces_enter_class AFTER INSERT ON spaces
FOR EACH ROW WHEN (NEW.organization_id IS NOT NULL AND NEW.deleted_at IS NULL)
EXECUTE FUNCTION orgd_spaces_inserted();

CREATE TRIGGER spaces_change_class AFTER UPDATE OF organization_id, visibility, deleted_at ON spaces
FOR EACH ROW WHEN ((OLD.organization_id IS NOT NULL AND OLD.deleted_at IS NULL OR NEW.organization_id IS NOT NULL AND NEW.deleted_at IS NULL)
    AND NOT (OLD.organization_id IS NOT NULL AND OLD.deleted_at IS NULL AND NEW.organization_id IS NOT NULL AND NEW.deleted_at IS NULL AND NEW.organization_id IS NOT DISTINCT FROM OLD.organization_id AND (NEW.visibility = 'organization') = (OLD.visibility = 'organization')))
EXECUTE FUNCTION orgd_spaces_moved();

CREATE TRIGGER spaces_purged_from_class BEFORE DELETE ON spaces
FOR EACH ROW WHEN (OLD.organization_id IS NOT NULL AND OLD.deleted_at IS NULL)
EXECUTE FUNCTION orgd_spaces_purged();

-- Counter changes of a counted space move its class's row by the same
-- amount.
CREATE FUNCTION orgd_space_stats_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO organization_stats AS o (organization_id, open, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
        SELECT s.organization_id, s.visibility = 'organization', NEW.products_active, NEW.products_archived, NEW.contracts_draft, NEW.contracts_active, NEW.contracts_expired, NEW.contracts_deprecated, NEW.contracts_lapsed, NEW.issues_status_open, NEW.issues_status_in_progress, NEW.issues_status_resolved, NEW.issues_status_wont_fix, NEW.checks_active, NEW.checks_archived, NEW.checks_ran, NEW.checks_passed
        FROM spaces s WHERE s.id = NEW.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL
        ON CONFLICT (organization_id, open) DO UPDATE SET
            products_active = o.products_active + excluded.products_active,
            products_archived = o.products_archived + excluded.products_archived,
            contracts_draft = o.contracts_draft + excluded.contracts_draft,
            contracts_active = o.contracts_active + excluded.contracts_active,
            contracts_expired = o.contracts_expired + excluded.contracts_expired,
            contracts_deprecated = o.contracts_deprecated + excluded.contracts_deprecated,
            contracts_lapsed = o.contracts_lapsed + excluded.contracts_lapsed,
            issues_status_open = o.issues_status_open + excluded.issues_status_open,
            issues_status_in_progress = o.issues_status_in_progress + excluded.issues_status_in_progress,
            issues_status_resolved = o.issues_status_resolved + excluded.issues_status_resolved,
            issues_status_wont_fix = o.issues_status_wont_fix + excluded.issues_status_wont_fix,
            checks_active = o.checks_active + excluded.checks_active,
            checks_archived = o.checks_archived + excluded.checks_archived,
            checks_ran = o.checks_ran + excluded.checks_ran,
            checks_passed = o.checks_passed + excluded.checks_passed;
    ELSE
        INSERT INTO organization_stats AS o (organization_id, open, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
        SELECT s.organization_id, s.visibility = 'organization', NEW.products_active - OLD.products_active, NEW.products_archived - OLD.products_archived, NEW.contracts_draft - OLD.contracts_draft, NEW.contracts_active - OLD.contracts_active, NEW.contracts_expired - OLD.contracts_expired, NEW.contracts_deprecated - OLD.contracts_deprecated, NEW.contracts_lapsed - OLD.contracts_lapsed, NEW.issues_status_open - OLD.issues_status_open, NEW.issues_status_in_progress - OLD.issues_status_in_progress, NEW.issues_status_resolved - OLD.issues_status_resolved, NEW.issues_status_wont_fix - OLD.issues_status_wont_fix, NEW.checks_active - OLD.checks_active, NEW.checks_archived - OLD.checks_archived, NEW.checks_ran - OLD.checks_ran, NEW.checks_passed - OLD.checks_passed
        FROM spaces s WHERE s.id = NEW.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL
        ON CONFLICT (organization_id, open) DO UPDATE SET
            products_active = o.products_active + excluded.products_active,
            products_archived = o.products_archived + excluded.products_archived,
            contracts_draft = o.contracts_draft + excluded.contracts_draft,
            contracts_active = o.contracts_active + excluded.contracts_active,
            contracts_expired = o.contracts_expired + excluded.contracts_expired,
            contracts_deprecated = o.contracts_deprecated + excluded.contracts_deprecated,
            contracts_lapsed = o.contracts_lapsed + excluded.contracts_lapsed,
            issues_status_open = o.issues_status_open + excluded.issues_status_open,
            issues_status_in_progress = o.issues_status_in_progress + excluded.issues_status_in_progress,
            issues_status_resolved = o.issues_status_resolved + excluded.issues_status_resolved,
            issues_status_wont_fix = o.issues_status_wont_fix + excluded.issues_status_wont_fix,
            checks_active = o.checks_active + excluded.checks_active,
            checks_archived = o.checks_archived + excluded.checks_archived,
            checks_ran = o.checks_ran + excluded.checks_ran,
            checks_passed = o.checks_passed + excluded.checks_passed;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER space_stats_changed AFTER INSERT OR UPDATE ON space_stats
FOR EACH ROW EXECUTE FUNCTION orgd_space_stats_changed();

CREATE FUNCTION orgd_contract_expiries_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta BIGINT;
    row_space UUID;
    row_day BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        delta := NEW.n; row_space := NEW.space_id; row_day := NEW.day;
    ELSIF TG_OP = 'UPDATE' THEN
        delta := NEW.n - OLD.n; row_space := NEW.space_id; row_day := NEW.day;
    ELSE
        delta := -OLD.n; row_space := OLD.space_id; row_day := OLD.day;
    END IF;
    IF delta <> 0 THEN
        INSERT INTO organization_expiries AS o (organization_id, open, day, n)
        SELECT s.organization_id, s.visibility = 'organization', row_day, delta
        FROM spaces s WHERE s.id = row_space AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL
        ON CONFLICT (organization_id, open, day) DO UPDATE SET n = o.n + excluded.n;
        DELETE FROM organization_expiries o
        USING spaces s
        WHERE s.id = row_space AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL
          AND o.organization_id = s.organization_id AND o.open = (s.visibility = 'organization')
          AND o.day = row_day AND o.n = 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER contract_expiries_changed AFTER INSERT OR UPDATE OR DELETE ON contract_expiries
FOR EACH ROW EXECUTE FUNCTION orgd_contract_expiries_changed();

-- Backfill from the counters already there.
INSERT INTO organization_stats (organization_id, open, spaces, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
SELECT s.organization_id, s.visibility = 'organization', count(*),
    COALESCE(SUM(st.products_active), 0),
    COALESCE(SUM(st.products_archived), 0),
    COALESCE(SUM(st.contracts_draft), 0),
    COALESCE(SUM(st.contracts_active), 0),
    COALESCE(SUM(st.contracts_expired), 0),
    COALESCE(SUM(st.contracts_deprecated), 0),
    COALESCE(SUM(st.contracts_lapsed), 0),
    COALESCE(SUM(st.issues_status_open), 0),
    COALESCE(SUM(st.issues_status_in_progress), 0),
    COALESCE(SUM(st.issues_status_resolved), 0),
    COALESCE(SUM(st.issues_status_wont_fix), 0),
    COALESCE(SUM(st.checks_active), 0),
    COALESCE(SUM(st.checks_archived), 0),
    COALESCE(SUM(st.checks_ran), 0),
    COALESCE(SUM(st.checks_passed), 0)
FROM spaces s LEFT JOIN space_stats st ON st.space_id = s.id
WHERE s.organization_id IS NOT NULL AND s.deleted_at IS NULL
GROUP BY s.organization_id, s.visibility = 'organization';

INSERT INTO organization_expiries (organization_id, open, day, n)
SELECT s.organization_id, s.visibility = 'organization', e.day, SUM(e.n)
FROM spaces s JOIN contract_expiries e ON e.space_id = s.id
WHERE s.organization_id IS NOT NULL AND s.deleted_at IS NULL
GROUP BY s.organization_id, s.visibility = 'organization', e.day
HAVING SUM(e.n) <> 0;


-- Content rows carry `space_open`: whether their space's visibility is
-- 'organization' (every member of its organization sees it), beside the
-- organization they already carry, and the organization's indexes include
-- it. A plain member's list then tests each index entry for "open, or a
-- space the member belongs to" without looking the space up, and never
-- collects the organization's visible spaces first. A trigger keeps it in
-- step when a space's visibility changes; writes set it from the space they
-- lock.

ALTER TABLE products ADD COLUMN space_open BOOLEAN NOT NULL DEFAULT TRUE;
UPDATE products SET space_open = FALSE WHERE space_id IN (SELECT id FROM spaces WHERE visibility <> 'organization');
ALTER TABLE contracts ADD COLUMN space_open BOOLEAN NOT NULL DEFAULT TRUE;
UPDATE contracts SET space_open = FALSE WHERE space_id IN (SELECT id FROM spaces WHERE visibility <> 'organization');
ALTER TABLE issues ADD COLUMN space_open BOOLEAN NOT NULL DEFAULT TRUE;
UPDATE issues SET space_open = FALSE WHERE space_id IN (SELECT id FROM spaces WHERE visibility <> 'organization');
ALTER TABLE quality_checks ADD COLUMN space_open BOOLEAN NOT NULL DEFAULT TRUE;
UPDATE quality_checks SET space_open = FALSE WHERE space_id IN (SELECT id FROM spaces WHERE visibility <> 'organization');

DROP INDEX products_by_org;
CREATE INDEX products_by_org ON products (organization_id, is_archived, created_at DESC, id DESC) INCLUDE (space_id, space_open);
DROP INDEX products_by_org_all;
CREATE INDEX products_by_org_all ON products (organization_id, created_at DESC, id DESC) INCLUDE (space_id, space_open);
DROP INDEX contracts_by_org;
CREATE INDEX contracts_by_org ON contracts (organization_id, created_at DESC, id DESC) INCLUDE (space_id, status, space_open);
DROP INDEX contracts_by_status;
CREATE INDEX contracts_by_status ON contracts (organization_id, status, created_at DESC, id DESC) INCLUDE (space_id, space_open);
DROP INDEX contracts_active;
CREATE INDEX contracts_active ON contracts (organization_id, status, expires_at) INCLUDE (space_id, space_open);
DROP INDEX issues_by_org;
CREATE INDEX issues_by_org ON issues (organization_id, created_at DESC, id DESC) INCLUDE (space_id, status, priority, space_open);
DROP INDEX issues_by_status;
CREATE INDEX issues_by_status ON issues (organization_id, status, created_at DESC, id DESC) INCLUDE (space_id, priority, space_open);
DROP INDEX issues_by_assignee;
CREATE INDEX issues_by_assignee ON issues (organization_id, assignee_id, created_at DESC, id DESC) INCLUDE (space_id, status, priority, space_open);
DROP INDEX quality_checks_by_org;
CREATE INDEX quality_checks_by_org ON quality_checks (organization_id, is_archived, created_at DESC, id DESC) INCLUDE (space_id, last_status, space_open);
DROP INDEX quality_checks_by_org_all;
CREATE INDEX quality_checks_by_org_all ON quality_checks (organization_id, created_at DESC, id DESC) INCLUDE (space_id, last_status, space_open);

CREATE FUNCTION orgd_spaces_content_class() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE products SET space_open = (NEW.visibility = 'organization') WHERE space_id = NEW.id;
    UPDATE contracts SET space_open = (NEW.visibility = 'organization') WHERE space_id = NEW.id;
    UPDATE issues SET space_open = (NEW.visibility = 'organization') WHERE space_id = NEW.id;
    UPDATE quality_checks SET space_open = (NEW.visibility = 'organization') WHERE space_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER spaces_content_class AFTER UPDATE OF visibility ON spaces
FOR EACH ROW WHEN ((NEW.visibility = 'organization') <> (OLD.visibility = 'organization'))
EXECUTE FUNCTION orgd_spaces_content_class();
