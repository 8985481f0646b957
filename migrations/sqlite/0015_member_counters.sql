-- Per-member statistics of the restricted spaces, so a plain member's
-- GetStats and list totals read two rows whatever the number of spaces it
-- belongs to.
--
-- A plain member sees an organization's open spaces (counted together in
-- organization_stats, migration 0014) and the restricted spaces it is a
-- member of. member_stats holds, per organization and user, the number of
-- attached live restricted spaces of the organization the user is a member
-- of and the sum of their space_stats counters; member_expiries does the
-- same for contract_expiries. They follow space_members alone, whatever the
-- user's role in the organization (an admin's are kept, not read).
--
-- Triggers keep both in step with every change of space_stats,
-- contract_expiries, space_members and of a space's organization,
-- visibility or deletion, inside the statement that makes the change. A
-- change to a restricted space's counters updates one row per member of
-- the space (fan-out on write); an open space's changes touch none. Rows
-- whose space count reaches 0 go, and so do expiry rows that reach 0;
-- expiry rows may go negative for a while, like the per-space ones.
CREATE TABLE member_stats (
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
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
    PRIMARY KEY (organization_id, user_id)
) WITHOUT ROWID;

CREATE TABLE member_expiries (
    organization_id BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day             INTEGER NOT NULL,
    n               INTEGER NOT NULL,
    PRIMARY KEY (organization_id, user_id, day)
) WITHOUT ROWID;

-- A member joins or leaves a restricted space.
CREATE TRIGGER space_members_join_counts AFTER INSERT ON space_members
WHEN EXISTS (SELECT 1 FROM spaces s WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization')
BEGIN
    INSERT INTO member_stats (organization_id, user_id, spaces, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT s.organization_id, new.user_id, 1,
        COALESCE(st.products_active, 0), COALESCE(st.products_archived, 0), COALESCE(st.contracts_draft, 0), COALESCE(st.contracts_active, 0), COALESCE(st.contracts_expired, 0), COALESCE(st.contracts_deprecated, 0), COALESCE(st.contracts_lapsed, 0), COALESCE(st.issues_status_open, 0), COALESCE(st.issues_status_in_progress, 0), COALESCE(st.issues_status_resolved, 0), COALESCE(st.issues_status_wont_fix, 0), COALESCE(st.checks_active, 0), COALESCE(st.checks_archived, 0), COALESCE(st.checks_ran, 0), COALESCE(st.checks_passed, 0)
    FROM spaces s LEFT JOIN space_stats st ON st.space_id = s.id WHERE s.id = new.space_id
    ON CONFLICT (organization_id, user_id) DO UPDATE SET spaces = spaces + excluded.spaces,
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
    INSERT INTO member_expiries (organization_id, user_id, day, n)
    SELECT s.organization_id, new.user_id, e.day, e.n
    FROM spaces s JOIN contract_expiries e ON e.space_id = s.id WHERE s.id = new.space_id AND e.n <> 0
    ON CONFLICT (organization_id, user_id, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM member_expiries WHERE user_id = new.user_id AND n = 0
      AND organization_id = (SELECT organization_id FROM spaces WHERE id = new.space_id)
      AND day IN (SELECT e.day FROM contract_expiries e WHERE e.space_id = new.space_id);
END;

CREATE TRIGGER space_members_leave_counts AFTER DELETE ON space_members
WHEN EXISTS (SELECT 1 FROM spaces s WHERE s.id = old.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization')
BEGIN
    INSERT INTO member_stats (organization_id, user_id, spaces, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT s.organization_id, old.user_id, -1,
        -COALESCE(st.products_active, 0), -COALESCE(st.products_archived, 0), -COALESCE(st.contracts_draft, 0), -COALESCE(st.contracts_active, 0), -COALESCE(st.contracts_expired, 0), -COALESCE(st.contracts_deprecated, 0), -COALESCE(st.contracts_lapsed, 0), -COALESCE(st.issues_status_open, 0), -COALESCE(st.issues_status_in_progress, 0), -COALESCE(st.issues_status_resolved, 0), -COALESCE(st.issues_status_wont_fix, 0), -COALESCE(st.checks_active, 0), -COALESCE(st.checks_archived, 0), -COALESCE(st.checks_ran, 0), -COALESCE(st.checks_passed, 0)
    FROM spaces s LEFT JOIN space_stats st ON st.space_id = s.id WHERE s.id = old.space_id
    ON CONFLICT (organization_id, user_id) DO UPDATE SET spaces = spaces + excluded.spaces,
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
    DELETE FROM member_stats WHERE user_id = old.user_id AND spaces = 0
      AND organization_id = (SELECT organization_id FROM spaces WHERE id = old.space_id);
    INSERT INTO member_expiries (organization_id, user_id, day, n)
    SELECT s.organization_id, old.user_id, e.day, -e.n
    FROM spaces s JOIN contract_expiries e ON e.space_id = s.id WHERE s.id = old.space_id AND e.n <> 0
    ON CONFLICT (organization_id, user_id, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM member_expiries WHERE user_id = old.user_id AND n = 0
      AND organization_id = (SELECT organization_id FROM spaces WHERE id = old.space_id)
      AND day IN (SELECT e.day FROM contract_expiries e WHERE e.space_id = old.space_id);
END;

-- A space becomes restricted and counted (made restricted, attached,
-- undeleted) or stops being so: its members gain or lose it. A new space
-- has no members yet: its creator's membership joins it after.
CREATE TRIGGER spaces_leave_members AFTER UPDATE OF organization_id, visibility, deleted_at ON spaces
WHEN old.organization_id IS NOT NULL AND old.deleted_at IS NULL AND old.visibility <> 'organization' AND NOT (new.organization_id IS NOT NULL AND new.deleted_at IS NULL AND new.visibility <> 'organization' AND new.organization_id IS old.organization_id)
BEGIN
    INSERT INTO member_stats (organization_id, user_id, spaces, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT old.organization_id, sm.user_id, -1,
        -COALESCE(st.products_active, 0), -COALESCE(st.products_archived, 0), -COALESCE(st.contracts_draft, 0), -COALESCE(st.contracts_active, 0), -COALESCE(st.contracts_expired, 0), -COALESCE(st.contracts_deprecated, 0), -COALESCE(st.contracts_lapsed, 0), -COALESCE(st.issues_status_open, 0), -COALESCE(st.issues_status_in_progress, 0), -COALESCE(st.issues_status_resolved, 0), -COALESCE(st.issues_status_wont_fix, 0), -COALESCE(st.checks_active, 0), -COALESCE(st.checks_archived, 0), -COALESCE(st.checks_ran, 0), -COALESCE(st.checks_passed, 0)
    FROM space_members sm LEFT JOIN space_stats st ON st.space_id = sm.space_id WHERE sm.space_id = old.id
    ON CONFLICT (organization_id, user_id) DO UPDATE SET spaces = spaces + excluded.spaces,
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
    DELETE FROM member_stats WHERE organization_id = old.organization_id AND spaces = 0
      AND user_id IN (SELECT sm.user_id FROM space_members sm WHERE sm.space_id = old.id);
    INSERT INTO member_expiries (organization_id, user_id, day, n)
    SELECT old.organization_id, sm.user_id, e.day, -e.n
    FROM space_members sm JOIN contract_expiries e ON e.space_id = sm.space_id
    WHERE sm.space_id = old.id AND e.n <> 0
    ON CONFLICT (organization_id, user_id, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM member_expiries WHERE organization_id = old.organization_id AND n = 0
      AND user_id IN (SELECT sm.user_id FROM space_members sm WHERE sm.space_id = old.id)
      AND day IN (SELECT e.day FROM contract_expiries e WHERE e.space_id = old.id);
END;

CREATE TRIGGER spaces_join_members AFTER UPDATE OF organization_id, visibility, deleted_at ON spaces
WHEN new.organization_id IS NOT NULL AND new.deleted_at IS NULL AND new.visibility <> 'organization' AND NOT (old.organization_id IS NOT NULL AND old.deleted_at IS NULL AND old.visibility <> 'organization' AND new.organization_id IS old.organization_id)
BEGIN
    INSERT INTO member_stats (organization_id, user_id, spaces, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT new.organization_id, sm.user_id, 1,
        COALESCE(st.products_active, 0), COALESCE(st.products_archived, 0), COALESCE(st.contracts_draft, 0), COALESCE(st.contracts_active, 0), COALESCE(st.contracts_expired, 0), COALESCE(st.contracts_deprecated, 0), COALESCE(st.contracts_lapsed, 0), COALESCE(st.issues_status_open, 0), COALESCE(st.issues_status_in_progress, 0), COALESCE(st.issues_status_resolved, 0), COALESCE(st.issues_status_wont_fix, 0), COALESCE(st.checks_active, 0), COALESCE(st.checks_archived, 0), COALESCE(st.checks_ran, 0), COALESCE(st.checks_passed, 0)
    FROM space_members sm LEFT JOIN space_stats st ON st.space_id = sm.space_id WHERE sm.space_id = new.id
    ON CONFLICT (organization_id, user_id) DO UPDATE SET spaces = spaces + excluded.spaces,
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
    INSERT INTO member_expiries (organization_id, user_id, day, n)
    SELECT new.organization_id, sm.user_id, e.day, e.n
    FROM space_members sm JOIN contract_expiries e ON e.space_id = sm.space_id
    WHERE sm.space_id = new.id AND e.n <> 0
    ON CONFLICT (organization_id, user_id, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM member_expiries WHERE organization_id = new.organization_id AND n = 0
      AND user_id IN (SELECT sm.user_id FROM space_members sm WHERE sm.space_id = new.id)
      AND day IN (SELECT e.day FROM contract_expiries e WHERE e.space_id = new.id);
END;

-- A purged space's members leave it one by one while the space is still
-- there to say where they counted (whichever of this and the class
-- trigger of 0014 runs first, the expiry rows are taken off once).
CREATE TRIGGER spaces_purged_from_members BEFORE DELETE ON spaces
WHEN old.organization_id IS NOT NULL AND old.deleted_at IS NULL AND old.visibility <> 'organization'
BEGIN
    DELETE FROM space_members WHERE space_id = old.id;
END;

-- Counter changes of a counted restricted space move its members' rows by
-- the same amount.
CREATE TRIGGER space_stats_inserted_members AFTER INSERT ON space_stats
BEGIN
    INSERT INTO member_stats (organization_id, user_id, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT s.organization_id, sm.user_id, new.products_active, new.products_archived, new.contracts_draft, new.contracts_active, new.contracts_expired, new.contracts_deprecated, new.contracts_lapsed, new.issues_status_open, new.issues_status_in_progress, new.issues_status_resolved, new.issues_status_wont_fix, new.checks_active, new.checks_archived, new.checks_ran, new.checks_passed
    FROM spaces s JOIN space_members sm ON sm.space_id = s.id
    WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization'
    ON CONFLICT (organization_id, user_id) DO UPDATE SET
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

CREATE TRIGGER space_stats_updated_members AFTER UPDATE ON space_stats
BEGIN
    INSERT INTO member_stats (organization_id, user_id, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT s.organization_id, sm.user_id, new.products_active - old.products_active, new.products_archived - old.products_archived, new.contracts_draft - old.contracts_draft, new.contracts_active - old.contracts_active, new.contracts_expired - old.contracts_expired, new.contracts_deprecated - old.contracts_deprecated, new.contracts_lapsed - old.contracts_lapsed, new.issues_status_open - old.issues_status_open, new.issues_status_in_progress - old.issues_status_in_progress, new.issues_status_resolved - old.issues_status_resolved, new.issues_status_wont_fix - old.issues_status_wont_fix, new.checks_active - old.checks_active, new.checks_archived - old.checks_archived, new.checks_ran - old.checks_ran, new.checks_passed - old.checks_passed
    FROM spaces s JOIN space_members sm ON sm.space_id = s.id
    WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization'
    ON CONFLICT (organization_id, user_id) DO UPDATE SET
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

CREATE TRIGGER contract_expiries_inserted_members AFTER INSERT ON contract_expiries
BEGIN
    INSERT INTO member_expiries (organization_id, user_id, day, n)
    SELECT s.organization_id, sm.user_id, new.day, new.n
    FROM spaces s JOIN space_members sm ON sm.space_id = s.id
    WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization'
    ON CONFLICT (organization_id, user_id, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM member_expiries
    WHERE day = new.day AND n = 0
      AND organization_id = (SELECT s.organization_id FROM spaces s WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization')
      AND user_id IN (SELECT sm.user_id FROM space_members sm WHERE sm.space_id = new.space_id);
END;

CREATE TRIGGER contract_expiries_updated_members AFTER UPDATE ON contract_expiries
BEGIN
    INSERT INTO member_expiries (organization_id, user_id, day, n)
    SELECT s.organization_id, sm.user_id, new.day, new.n - old.n
    FROM spaces s JOIN space_members sm ON sm.space_id = s.id
    WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization'
    ON CONFLICT (organization_id, user_id, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM member_expiries
    WHERE day = new.day AND n = 0
      AND organization_id = (SELECT s.organization_id FROM spaces s WHERE s.id = new.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization')
      AND user_id IN (SELECT sm.user_id FROM space_members sm WHERE sm.space_id = new.space_id);
END;

CREATE TRIGGER contract_expiries_deleted_members AFTER DELETE ON contract_expiries
BEGIN
    INSERT INTO member_expiries (organization_id, user_id, day, n)
    SELECT s.organization_id, sm.user_id, old.day, -old.n
    FROM spaces s JOIN space_members sm ON sm.space_id = s.id
    WHERE s.id = old.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization'
    ON CONFLICT (organization_id, user_id, day) DO UPDATE SET n = n + excluded.n;
    DELETE FROM member_expiries
    WHERE day = old.day AND n = 0
      AND organization_id = (SELECT s.organization_id FROM spaces s WHERE s.id = old.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization')
      AND user_id IN (SELECT sm.user_id FROM space_members sm WHERE sm.space_id = old.space_id);
END;

-- Backfill from the counters already there.
INSERT INTO member_stats (organization_id, user_id, spaces, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
SELECT s.organization_id, sm.user_id, count(*),
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
FROM spaces s JOIN space_members sm ON sm.space_id = s.id
LEFT JOIN space_stats st ON st.space_id = s.id
WHERE s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization'
GROUP BY s.organization_id, sm.user_id;

INSERT INTO member_expiries (organization_id, user_id, day, n)
SELECT s.organization_id, sm.user_id, e.day, SUM(e.n)
FROM spaces s JOIN space_members sm ON sm.space_id = s.id
JOIN contract_expiries e ON e.space_id = s.id
WHERE s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization'
GROUP BY s.organization_id, sm.user_id, e.day
HAVING SUM(e.n) <> 0;
