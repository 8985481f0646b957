-- Per-organization statistics by visibility class, so GetStats and list
-- totals never sum the counters of every visible space.
--
-- organization_stats holds, per organization and class (`open` = 1 for
-- spaces every member sees, visibility 'organization'; 0 for restricted
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
-- other. Expiry rows may go negative for a while (a contract of a day
-- already folded changes); rows that reach 0 go.
CREATE TABLE organization_stats (
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    open            INTEGER NOT NULL,
    spaces          INTEGER NOT NULL DEFAULT 0,
    products_active INTEGER NOT NULL DEFAULT 0,
    products_archived INTEGER NOT NULL DEFAULT 0,
    contracts_draft INTEGER NOT NULL DEFAULT 0,
    contracts_active INTEGER NOT NULL DEFAULT 0,
    contracts_expired INTEGER NOT NULL DEFAULT 0,
    contracts_deprecated INTEGER NOT NULL DEFAULT 0,
    contracts_lapsed INTEGER NOT NULL DEFAULT 0,
    issues_status_open INTEGER NOT NULL DEFAULT 0,
    issues_status_in_progress INTEGER NOT NULL DEFAULT 0,
    issues_status_resolved INTEGER NOT NULL DEFAULT 0,
    issues_status_wont_fix INTEGER NOT NULL DEFAULT 0,
    checks_active INTEGER NOT NULL DEFAULT 0,
    checks_archived INTEGER NOT NULL DEFAULT 0,
    checks_ran INTEGER NOT NULL DEFAULT 0,
    checks_passed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, open)
) WITHOUT ROWID;

CREATE TABLE organization_expiries (
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    open            INTEGER NOT NULL,
    day             INTEGER NOT NULL,
    n               INTEGER NOT NULL,
    PRIMARY KEY (organization_id, open, day)
) WITHOUT ROWID;

-- A space enters a class when it is created attached, attached, undeleted
-- or its visibility changes; it leaves when detached, deleted, purged or its
-- visibility changes.
CREATE TRIGGER spaces_enter_class AFTER INSERT ON spaces
WHEN new.organization_id IS NOT NULL AND new.deleted_at IS NULL
BEGIN
    INSERT INTO organization_stats (organization_id, open, spaces, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT new.organization_id, new.visibility = 'organization', 1,
        COALESCE(st.products_active, 0), COALESCE(st.products_archived, 0), COALESCE(st.contracts_draft, 0), COALESCE(st.contracts_active, 0), COALESCE(st.contracts_expired, 0), COALESCE(st.contracts_deprecated, 0), COALESCE(st.contracts_lapsed, 0), COALESCE(st.issues_status_open, 0), COALESCE(st.issues_status_in_progress, 0), COALESCE(st.issues_status_resolved, 0), COALESCE(st.issues_status_wont_fix, 0), COALESCE(st.checks_active, 0), COALESCE(st.checks_archived, 0), COALESCE(st.checks_ran, 0), COALESCE(st.checks_passed, 0)
    FROM (SELECT 1) LEFT JOIN space_stats st ON st.space_id = new.id WHERE true
    ON CONFLICT (organization_id, open) DO UPDATE SET spaces = spaces + excluded.spaces,
        products_active = products_active + excluded.products_active,
        products_archived = products_archived + excluded.products_archived,
        contracts_draft = contracts_draft + excluded.contracts_draft,
        contracts_active = contracts_active + excluded.contracts_active,
        contracts_expired = contracts_expired + excluded.contracts_expired,
        contracts_deprecated = contracts_deprecated + excluded.contracts_deprecated,
        contracts_lapsed = contracts_lapsed + excluded.contracts_lapsed,
        issues_status_open = issues_status_open + excluded.issues_status_open,
        issues_status_in_progress = issues_status_in_progress + excluded.issues_status_in_progress,
        issues_status_resolved = issues_status_resolved + excluded.issues_status_resolved,
        issues_status_wont_fix = issues_status_wont_fix + excluded.issues_status_wont_fix,
        checks_active = checks_active + excluded.checks_active,
        checks_archived = checks_archived + excluded.checks_archived,
        checks_ran = checks_ran + excluded.checks_ran,
        checks_passed = checks_passed + excluded.checks_passed;
    INSERT INTO organization_expiries (organization_id, open, day, n)
    SELECT new.organization_id, new.visibility = 'organization', day, n
    FROM contract_expiries WHERE space_id = new.id AND n <> 0
    ON CONFLICT (organization_id, open, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM organization_expiries
    WHERE organization_id = new.organization_id AND open = (new.visibility = 'organization') AND n = 0
      AND day IN (SELECT e.day FROM contract_expiries e WHERE e.space_id = new.id);
END;

CREATE TRIGGER spaces_leave_class AFTER UPDATE OF organization_id, visibility, deleted_at ON spaces
WHEN old.organization_id IS NOT NULL AND old.deleted_at IS NULL AND NOT (new.organization_id IS NOT NULL AND new.deleted_at IS NULL AND new.organization_id IS old.organization_id AND (new.visibility = 'organization') = (old.visibility = 'organization'))
BEGIN
    UPDATE organization_stats SET spaces = organization_stats.spaces - 1,
        products_active = organization_stats.products_active - COALESCE(st.products_active, 0),
        products_archived = organization_stats.products_archived - COALESCE(st.products_archived, 0),
        contracts_draft = organization_stats.contracts_draft - COALESCE(st.contracts_draft, 0),
        contracts_active = organization_stats.contracts_active - COALESCE(st.contracts_active, 0),
        contracts_expired = organization_stats.contracts_expired - COALESCE(st.contracts_expired, 0),
        contracts_deprecated = organization_stats.contracts_deprecated - COALESCE(st.contracts_deprecated, 0),
        contracts_lapsed = organization_stats.contracts_lapsed - COALESCE(st.contracts_lapsed, 0),
        issues_status_open = organization_stats.issues_status_open - COALESCE(st.issues_status_open, 0),
        issues_status_in_progress = organization_stats.issues_status_in_progress - COALESCE(st.issues_status_in_progress, 0),
        issues_status_resolved = organization_stats.issues_status_resolved - COALESCE(st.issues_status_resolved, 0),
        issues_status_wont_fix = organization_stats.issues_status_wont_fix - COALESCE(st.issues_status_wont_fix, 0),
        checks_active = organization_stats.checks_active - COALESCE(st.checks_active, 0),
        checks_archived = organization_stats.checks_archived - COALESCE(st.checks_archived, 0),
        checks_ran = organization_stats.checks_ran - COALESCE(st.checks_ran, 0),
        checks_passed = organization_stats.checks_passed - COALESCE(st.checks_passed, 0)
    FROM (SELECT 1) LEFT JOIN space_stats st ON st.space_id = old.id
    WHERE organization_stats.organization_id = old.organization_id
      AND organization_stats.open = (old.visibility = 'organization');
    INSERT INTO organization_expiries (organization_id, open, day, n)
    SELECT old.organization_id, old.visibility = 'organization', e.day, -e.n
    FROM contract_expiries e WHERE e.space_id = old.id AND e.n <> 0
    ON CONFLICT (organization_id, open, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM organization_expiries
    WHERE organization_id = old.organization_id AND open = (old.visibility = 'organization') AND n = 0
      AND day IN (SELECT e.day FROM contract_expiries e WHERE e.space_id = old.id);
END;

CREATE TRIGGER spaces_join_class AFTER UPDATE OF organization_id, visibility, deleted_at ON spaces
WHEN new.organization_id IS NOT NULL AND new.deleted_at IS NULL AND NOT (old.organization_id IS NOT NULL AND old.deleted_at IS NULL AND new.organization_id IS old.organization_id AND (new.visibility = 'organization') = (old.visibility = 'organization'))
BEGIN
    INSERT INTO organization_stats (organization_id, open, spaces, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT new.organization_id, new.visibility = 'organization', 1,
        COALESCE(st.products_active, 0), COALESCE(st.products_archived, 0), COALESCE(st.contracts_draft, 0), COALESCE(st.contracts_active, 0), COALESCE(st.contracts_expired, 0), COALESCE(st.contracts_deprecated, 0), COALESCE(st.contracts_lapsed, 0), COALESCE(st.issues_status_open, 0), COALESCE(st.issues_status_in_progress, 0), COALESCE(st.issues_status_resolved, 0), COALESCE(st.issues_status_wont_fix, 0), COALESCE(st.checks_active, 0), COALESCE(st.checks_archived, 0), COALESCE(st.checks_ran, 0), COALESCE(st.checks_passed, 0)
    FROM (SELECT 1) LEFT JOIN space_stats st ON st.space_id = new.id WHERE true
    ON CONFLICT (organization_id, open) DO UPDATE SET spaces = spaces + excluded.spaces,
        products_active = products_active + excluded.products_active,
        products_archived = products_archived + excluded.products_archived,
        contracts_draft = contracts_draft + excluded.contracts_draft,
        contracts_active = contracts_active + excluded.contracts_active,
        contracts_expired = contracts_expired + excluded.contracts_expired,
        contracts_deprecated = contracts_deprecated + excluded.contracts_deprecated,
        contracts_lapsed = contracts_lapsed + excluded.contracts_lapsed,
        issues_status_open = issues_status_open + excluded.issues_status_open,
        issues_status_in_progress = issues_status_in_progress + excluded.issues_status_in_progress,
        issues_status_resolved = issues_status_resolved + excluded.issues_status_resolved,
        issues_status_wont_fix = issues_status_wont_fix + excluded.issues_status_wont_fix,
        checks_active = checks_active + excluded.checks_active,
        checks_archived = checks_archived + excluded.checks_archived,
        checks_ran = checks_ran + excluded.checks_ran,
        checks_passed = checks_passed + excluded.checks_passed;
    INSERT INTO organization_expiries (organization_id, open, day, n)
    SELECT new.organization_id, new.visibility = 'organization', day, n
    FROM contract_expiries WHERE space_id = new.id AND n <> 0
    ON CONFLICT (organization_id, open, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM organization_expiries
    WHERE organization_id = new.organization_id AND open = (new.visibility = 'organization') AND n = 0
      AND day IN (SELECT e.day FROM contract_expiries e WHERE e.space_id = new.id);
END;

-- A purged space's expiry rows go first, through their own trigger, while
-- the space is still there to say where they counted.
CREATE TRIGGER spaces_purged_from_class BEFORE DELETE ON spaces
WHEN old.organization_id IS NOT NULL AND old.deleted_at IS NULL
BEGIN
    DELETE FROM contract_expiries WHERE space_id = old.id;
    UPDATE organization_stats SET spaces = organization_stats.spaces - 1,
        products_active = organization_stats.products_active - COALESCE(st.products_active, 0),
        products_archived = organization_stats.products_archived - COALESCE(st.products_archived, 0),
        contracts_draft = organization_stats.contracts_draft - COALESCE(st.contracts_draft, 0),
        contracts_active = organization_stats.contracts_active - COALESCE(st.contracts_active, 0),
        contracts_expired = organization_stats.contracts_expired - COALESCE(st.contracts_expired, 0),
        contracts_deprecated = organization_stats.contracts_deprecated - COALESCE(st.contracts_deprecated, 0),
        contracts_lapsed = organization_stats.contracts_lapsed - COALESCE(st.contracts_lapsed, 0),
        issues_status_open = organization_stats.issues_status_open - COALESCE(st.issues_status_open, 0),
        issues_status_in_progress = organization_stats.issues_status_in_progress - COALESCE(st.issues_status_in_progress, 0),
        issues_status_resolved = organization_stats.issues_status_resolved - COALESCE(st.issues_status_resolved, 0),
        issues_status_wont_fix = organization_stats.issues_status_wont_fix - COALESCE(st.issues_status_wont_fix, 0),
        checks_active = organization_stats.checks_active - COALESCE(st.checks_active, 0),
        checks_archived = organization_stats.checks_archived - COALESCE(st.checks_archived, 0),
        checks_ran = organization_stats.checks_ran - COALESCE(st.checks_ran, 0),
        checks_passed = organization_stats.checks_passed - COALESCE(st.checks_passed, 0)
    FROM (SELECT 1) LEFT JOIN space_stats st ON st.space_id = old.id
    WHERE organization_stats.organization_id = old.organization_id
      AND organization_stats.open = (old.visibility = 'organization');
    INSERT INTO organization_expiries (organization_id, open, day, n)
    SELECT old.organization_id, old.visibility = 'organization', e.day, -e.n
    FROM contract_expiries e WHERE e.space_id = old.id AND e.n <> 0
    ON CONFLICT (organization_id, open, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM organization_expiries
    WHERE organization_id = old.organization_id AND open = (old.visibility = 'organization') AND n = 0
      AND day IN (SELECT e.day FROM contract_expiries e WHERE e.space_id = old.id);
END;

-- Counter changes of a counted space move its class's row by the same
-- amount.
CREATE TRIGGER space_stats_inserted AFTER INSERT ON space_stats
BEGIN
    INSERT INTO organization_stats (organization_id, open, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT s.organization_id, s.visibility = 'organization', new.products_active, new.products_archived, new.contracts_draft, new.contracts_active, new.contracts_expired, new.contracts_deprecated, new.contracts_lapsed, new.issues_status_open, new.issues_status_in_progress, new.issues_status_resolved, new.issues_status_wont_fix, new.checks_active, new.checks_archived, new.checks_ran, new.checks_passed
    FROM spaces s WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL
    ON CONFLICT (organization_id, open) DO UPDATE SET
        products_active = products_active + excluded.products_active,
        products_archived = products_archived + excluded.products_archived,
        contracts_draft = contracts_draft + excluded.contracts_draft,
        contracts_active = contracts_active + excluded.contracts_active,
        contracts_expired = contracts_expired + excluded.contracts_expired,
        contracts_deprecated = contracts_deprecated + excluded.contracts_deprecated,
        contracts_lapsed = contracts_lapsed + excluded.contracts_lapsed,
        issues_status_open = issues_status_open + excluded.issues_status_open,
        issues_status_in_progress = issues_status_in_progress + excluded.issues_status_in_progress,
        issues_status_resolved = issues_status_resolved + excluded.issues_status_resolved,
        issues_status_wont_fix = issues_status_wont_fix + excluded.issues_status_wont_fix,
        checks_active = checks_active + excluded.checks_active,
        checks_archived = checks_archived + excluded.checks_archived,
        checks_ran = checks_ran + excluded.checks_ran,
        checks_passed = checks_passed + excluded.checks_passed;
END;

CREATE TRIGGER space_stats_updated AFTER UPDATE ON space_stats
BEGIN
    INSERT INTO organization_stats (organization_id, open, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT s.organization_id, s.visibility = 'organization', new.products_active - old.products_active, new.products_archived - old.products_archived, new.contracts_draft - old.contracts_draft, new.contracts_active - old.contracts_active, new.contracts_expired - old.contracts_expired, new.contracts_deprecated - old.contracts_deprecated, new.contracts_lapsed - old.contracts_lapsed, new.issues_status_open - old.issues_status_open, new.issues_status_in_progress - old.issues_status_in_progress, new.issues_status_resolved - old.issues_status_resolved, new.issues_status_wont_fix - old.issues_status_wont_fix, new.checks_active - old.checks_active, new.checks_archived - old.checks_archived, new.checks_ran - old.checks_ran, new.checks_passed - old.checks_passed
    FROM spaces s WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL
    ON CONFLICT (organization_id, open) DO UPDATE SET
        products_active = products_active + excluded.products_active,
        products_archived = products_archived + excluded.products_archived,
        contracts_draft = contracts_draft + excluded.contracts_draft,
        contracts_active = contracts_active + excluded.contracts_active,
        contracts_expired = contracts_expired + excluded.contracts_expired,
        contracts_deprecated = contracts_deprecated + excluded.contracts_deprecated,
        contracts_lapsed = contracts_lapsed + excluded.contracts_lapsed,
        issues_status_open = issues_status_open + excluded.issues_status_open,
        issues_status_in_progress = issues_status_in_progress + excluded.issues_status_in_progress,
        issues_status_resolved = issues_status_resolved + excluded.issues_status_resolved,
        issues_status_wont_fix = issues_status_wont_fix + excluded.issues_status_wont_fix,
        checks_active = checks_active + excluded.checks_active,
        checks_archived = checks_archived + excluded.checks_archived,
        checks_ran = checks_ran + excluded.checks_ran,
        checks_passed = checks_passed + excluded.checks_passed;
END;

CREATE TRIGGER contract_expiries_inserted AFTER INSERT ON contract_expiries
BEGIN
    INSERT INTO organization_expiries (organization_id, open, day, n)
    SELECT s.organization_id, s.visibility = 'organization', new.day, new.n
    FROM spaces s WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL
    ON CONFLICT (organization_id, open, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM organization_expiries
    WHERE day = new.day AND n = 0 AND (organization_id, open) =
        (SELECT s.organization_id, s.visibility = 'organization' FROM spaces s
         WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL);
END;

CREATE TRIGGER contract_expiries_updated AFTER UPDATE ON contract_expiries
BEGIN
    INSERT INTO organization_expiries (organization_id, open, day, n)
    SELECT s.organization_id, s.visibility = 'organization', new.day, new.n - old.n
    FROM spaces s WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL
    ON CONFLICT (organization_id, open, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM organization_expiries
    WHERE day = new.day AND n = 0 AND (organization_id, open) =
        (SELECT s.organization_id, s.visibility = 'organization' FROM spaces s
         WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL);
END;

CREATE TRIGGER contract_expiries_deleted AFTER DELETE ON contract_expiries
BEGIN
    INSERT INTO organization_expiries (organization_id, open, day, n)
    SELECT s.organization_id, s.visibility = 'organization', old.day, -old.n
    FROM spaces s WHERE s.id = old.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL
    ON CONFLICT (organization_id, open, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM organization_expiries
    WHERE day = old.day AND n = 0 AND (organization_id, open) =
        (SELECT s.organization_id, s.visibility = 'organization' FROM spaces s
         WHERE s.id = old.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL);
END;

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

ALTER TABLE products ADD COLUMN space_open INTEGER NOT NULL DEFAULT 1;
UPDATE products SET space_open = 0 WHERE space_id IN (SELECT id FROM spaces WHERE visibility <> 'organization');
ALTER TABLE contracts ADD COLUMN space_open INTEGER NOT NULL DEFAULT 1;
UPDATE contracts SET space_open = 0 WHERE space_id IN (SELECT id FROM spaces WHERE visibility <> 'organization');
ALTER TABLE issues ADD COLUMN space_open INTEGER NOT NULL DEFAULT 1;
UPDATE issues SET space_open = 0 WHERE space_id IN (SELECT id FROM spaces WHERE visibility <> 'organization');
ALTER TABLE quality_checks ADD COLUMN space_open INTEGER NOT NULL DEFAULT 1;
UPDATE quality_checks SET space_open = 0 WHERE space_id IN (SELECT id FROM spaces WHERE visibility <> 'organization');

DROP INDEX products_by_org;
CREATE INDEX products_by_org ON products (organization_id, is_archived, created_at DESC, id DESC, space_id, space_open);
DROP INDEX products_by_org_all;
CREATE INDEX products_by_org_all ON products (organization_id, created_at DESC, id DESC, space_id, space_open);
DROP INDEX contracts_by_org;
CREATE INDEX contracts_by_org ON contracts (organization_id, created_at DESC, id DESC, space_id, status, space_open);
DROP INDEX contracts_by_status;
CREATE INDEX contracts_by_status ON contracts (organization_id, status, created_at DESC, id DESC, space_id, space_open);
DROP INDEX contracts_active;
CREATE INDEX contracts_active ON contracts (organization_id, status, expires_at, space_id, space_open);
DROP INDEX issues_by_org;
CREATE INDEX issues_by_org ON issues (organization_id, created_at DESC, id DESC, space_id, status, priority, space_open);
DROP INDEX issues_by_status;
CREATE INDEX issues_by_status ON issues (organization_id, status, created_at DESC, id DESC, space_id, priority, space_open);
DROP INDEX issues_by_assignee;
CREATE INDEX issues_by_assignee ON issues (organization_id, assignee_id, created_at DESC, id DESC, space_id, status, priority, space_open);
DROP INDEX quality_checks_by_org;
CREATE INDEX quality_checks_by_org ON quality_checks (organization_id, is_archived, created_at DESC, id DESC, space_id, last_status, space_open);
DROP INDEX quality_checks_by_org_all;
CREATE INDEX quality_checks_by_org_all ON quality_checks (organization_id, created_at DESC, id DESC, space_id, last_status, space_open);

CREATE TRIGGER spaces_content_class AFTER UPDATE OF visibility ON spaces
WHEN (new.visibility = 'organization') <> (old.visibility = 'organization')
BEGIN
    UPDATE products SET space_open = (new.visibility = 'organization') WHERE space_id = new.id;
    UPDATE contracts SET space_open = (new.visibility = 'organization') WHERE space_id = new.id;
    UPDATE issues SET space_open = (new.visibility = 'organization') WHERE space_id = new.id;
    UPDATE quality_checks SET space_open = (new.visibility = 'organization') WHERE space_id = new.id;
END;
