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
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
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
    PRIMARY KEY (organization_id, user_id)
);

CREATE TABLE member_expiries (
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day             BIGINT NOT NULL,
    n               BIGINT NOT NULL,
    PRIMARY KEY (organization_id, user_id, day)
);

-- The members (in key order) gain (direction 1) or lose (-1) the space's
-- counters and expiry days in the organization's rows.
CREATE FUNCTION orgd_members_move(space UUID, org UUID, members UUID[], direction BIGINT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(members) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO member_stats AS m (organization_id, user_id, spaces, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT org, u.user_id, direction,
        direction * COALESCE(st.products_active, 0),
        direction * COALESCE(st.products_archived, 0),
        direction * COALESCE(st.contracts_draft, 0),
        direction * COALESCE(st.contracts_active, 0),
        direction * COALESCE(st.contracts_expired, 0),
        direction * COALESCE(st.contracts_deprecated, 0),
        direction * COALESCE(st.contracts_lapsed, 0),
        direction * COALESCE(st.issues_status_open, 0),
        direction * COALESCE(st.issues_status_in_progress, 0),
        direction * COALESCE(st.issues_status_resolved, 0),
        direction * COALESCE(st.issues_status_wont_fix, 0),
        direction * COALESCE(st.checks_active, 0),
        direction * COALESCE(st.checks_archived, 0),
        direction * COALESCE(st.checks_ran, 0),
        direction * COALESCE(st.checks_passed, 0)
    FROM unnest(members) AS u (user_id) LEFT JOIN space_stats st ON st.space_id = space
    ORDER BY u.user_id
    ON CONFLICT (organization_id, user_id) DO UPDATE SET spaces = m.spaces + excluded.spaces,
        products_active = m.products_active + excluded.products_active,
        products_archived = m.products_archived + excluded.products_archived,
        contracts_draft = m.contracts_draft + excluded.contracts_draft,
        contracts_active = m.contracts_active + excluded.contracts_active,
        contracts_expired = m.contracts_expired + excluded.contracts_expired,
        contracts_deprecated = m.contracts_deprecated + excluded.contracts_deprecated,
        contracts_lapsed = m.contracts_lapsed + excluded.contracts_lapsed,
        issues_status_open = m.issues_status_open + excluded.issues_status_open,
        issues_status_in_progress = m.issues_status_in_progress + excluded.issues_status_in_progress,
        issues_status_resolved = m.issues_status_resolved + excluded.issues_status_resolved,
        issues_status_wont_fix = m.issues_status_wont_fix + excluded.issues_status_wont_fix,
        checks_active = m.checks_active + excluded.checks_active,
        checks_archived = m.checks_archived + excluded.checks_archived,
        checks_ran = m.checks_ran + excluded.checks_ran,
        checks_passed = m.checks_passed + excluded.checks_passed;
    DELETE FROM member_stats m
    WHERE m.organization_id = org AND m.user_id = ANY (members) AND m.spaces = 0;
    INSERT INTO member_expiries AS m (organization_id, user_id, day, n)
    SELECT org, u.user_id, e.day, direction * e.n
    FROM unnest(members) AS u (user_id) JOIN contract_expiries e ON e.space_id = space
    WHERE e.n <> 0
    ORDER BY u.user_id, e.day
    ON CONFLICT (organization_id, user_id, day) DO UPDATE SET n = m.n + excluded.n;
    DELETE FROM member_expiries m
    WHERE m.organization_id = org AND m.user_id = ANY (members) AND m.n = 0
      AND m.day IN (SELECT e.day FROM contract_expiries e WHERE e.space_id = space);
END
$$;

-- A member joins or leaves a restricted space.
CREATE FUNCTION orgd_space_members_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM orgd_members_move(s.id, s.organization_id, ARRAY[NEW.user_id], 1)
        FROM spaces s WHERE s.id = NEW.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization';
    ELSE
        PERFORM orgd_members_move(s.id, s.organization_id, ARRAY[OLD.user_id], -1)
        FROM spaces s WHERE s.id = OLD.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER space_members_counts AFTER INSERT OR DELETE ON space_members
FOR EACH ROW EXECUTE FUNCTION orgd_space_members_changed();

-- A space becomes restricted and counted (made restricted, attached,
-- undeleted) or stops being so: its members gain or lose it, the two
-- organizations' rows in key order. A new space has no members yet: its
-- creator's membership joins it after.
CREATE FUNCTION orgd_spaces_members_moved() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    was BOOLEAN := OLD.organization_id IS NOT NULL AND OLD.deleted_at IS NULL AND OLD.visibility <> 'organization';
    is_now BOOLEAN := NEW.organization_id IS NOT NULL AND NEW.deleted_at IS NULL AND NEW.visibility <> 'organization';
    members UUID[];
BEGIN
    IF was AND is_now AND NEW.organization_id = OLD.organization_id THEN
        RETURN NULL;
    END IF;
    members := ARRAY(SELECT sm.user_id FROM space_members sm WHERE sm.space_id = NEW.id ORDER BY sm.user_id);
    IF was AND is_now AND NEW.organization_id < OLD.organization_id THEN
        PERFORM orgd_members_move(NEW.id, NEW.organization_id, members, 1);
        PERFORM orgd_members_move(OLD.id, OLD.organization_id, members, -1);
        RETURN NULL;
    END IF;
    IF was THEN
        PERFORM orgd_members_move(OLD.id, OLD.organization_id, members, -1);
    END IF;
    IF is_now THEN
        PERFORM orgd_members_move(NEW.id, NEW.organization_id, members, 1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER spaces_members_change_class AFTER UPDATE OF organization_id, visibility, deleted_at ON spaces
FOR EACH ROW WHEN ((OLD.organization_id IS NOT NULL AND OLD.deleted_at IS NULL AND OLD.visibility <> 'organization') OR (NEW.organization_id IS NOT NULL AND NEW.deleted_at IS NULL AND NEW.visibility <> 'organization'))
EXECUTE FUNCTION orgd_spaces_members_moved();

-- A purged space's members leave it one by one while the space is still
-- there to say where they counted. (The class trigger of 0014 sorts
-- first and removes the expiry rows before.)
CREATE FUNCTION orgd_spaces_members_purged() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM space_members WHERE space_id = OLD.id;
    RETURN OLD;
END
$$;

CREATE TRIGGER spaces_purged_from_members BEFORE DELETE ON spaces
FOR EACH ROW WHEN (OLD.organization_id IS NOT NULL AND OLD.deleted_at IS NULL AND OLD.visibility <> 'organization')
EXECUTE FUNCTION orgd_spaces_members_purged();

-- Counter changes of a counted restricted space move its members' rows by
-- the same amount, in key order.
CREATE FUNCTION orgd_space_stats_to_members() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prior space_stats%ROWTYPE;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        prior := OLD;
    END IF;
    INSERT INTO member_stats AS m (organization_id, user_id, products_active, products_archived, contracts_draft, contracts_active, contracts_expired, contracts_deprecated, contracts_lapsed, issues_status_open, issues_status_in_progress, issues_status_resolved, issues_status_wont_fix, checks_active, checks_archived, checks_ran, checks_passed)
    SELECT s.organization_id, sm.user_id,
        NEW.products_active - COALESCE(prior.products_active, 0),
        NEW.products_archived - COALESCE(prior.products_archived, 0),
        NEW.contracts_draft - COALESCE(prior.contracts_draft, 0),
        NEW.contracts_active - COALESCE(prior.contracts_active, 0),
        NEW.contracts_expired - COALESCE(prior.contracts_expired, 0),
        NEW.contracts_deprecated - COALESCE(prior.contracts_deprecated, 0),
        NEW.contracts_lapsed - COALESCE(prior.contracts_lapsed, 0),
        NEW.issues_status_open - COALESCE(prior.issues_status_open, 0),
        NEW.issues_status_in_progress - COALESCE(prior.issues_status_in_progress, 0),
        NEW.issues_status_resolved - COALESCE(prior.issues_status_resolved, 0),
        NEW.issues_status_wont_fix - COALESCE(prior.issues_status_wont_fix, 0),
        NEW.checks_active - COALESCE(prior.checks_active, 0),
        NEW.checks_archived - COALESCE(prior.checks_archived, 0),
        NEW.checks_ran - COALESCE(prior.checks_ran, 0),
        NEW.checks_passed - COALESCE(prior.checks_passed, 0)
    FROM spaces s JOIN space_members sm ON sm.space_id = s.id
    WHERE s.id = NEW.space_id AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization'
    ORDER BY sm.user_id
    ON CONFLICT (organization_id, user_id) DO UPDATE SET
        products_active = m.products_active + excluded.products_active,
        products_archived = m.products_archived + excluded.products_archived,
        contracts_draft = m.contracts_draft + excluded.contracts_draft,
        contracts_active = m.contracts_active + excluded.contracts_active,
        contracts_expired = m.contracts_expired + excluded.contracts_expired,
        contracts_deprecated = m.contracts_deprecated + excluded.contracts_deprecated,
        contracts_lapsed = m.contracts_lapsed + excluded.contracts_lapsed,
        issues_status_open = m.issues_status_open + excluded.issues_status_open,
        issues_status_in_progress = m.issues_status_in_progress + excluded.issues_status_in_progress,
        issues_status_resolved = m.issues_status_resolved + excluded.issues_status_resolved,
        issues_status_wont_fix = m.issues_status_wont_fix + excluded.issues_status_wont_fix,
        checks_active = m.checks_active + excluded.checks_active,
        checks_archived = m.checks_archived + excluded.checks_archived,
        checks_ran = m.checks_ran + excluded.checks_ran,
        checks_passed = m.checks_passed + excluded.checks_passed;
    RETURN NULL;
END
$$;

CREATE TRIGGER space_stats_to_members AFTER INSERT OR UPDATE ON space_stats
FOR EACH ROW EXECUTE FUNCTION orgd_space_stats_to_members();

CREATE FUNCTION orgd_contract_expiries_to_members() RETURNS trigger
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
        INSERT INTO member_expiries AS m (organization_id, user_id, day, n)
        SELECT s.organization_id, sm.user_id, row_day, delta
        FROM spaces s JOIN space_members sm ON sm.space_id = s.id
        WHERE s.id = row_space AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization'
        ORDER BY sm.user_id
        ON CONFLICT (organization_id, user_id, day) DO UPDATE SET n = m.n + excluded.n;
        DELETE FROM member_expiries m
        USING spaces s, space_members sm
        WHERE s.id = row_space AND s.organization_id IS NOT NULL AND s.deleted_at IS NULL AND s.visibility <> 'organization' AND sm.space_id = s.id
          AND m.organization_id = s.organization_id AND m.user_id = sm.user_id
          AND m.day = row_day AND m.n = 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER contract_expiries_to_members AFTER INSERT OR UPDATE OR DELETE ON contract_expiries
FOR EACH ROW EXECUTE FUNCTION orgd_contract_expiries_to_members();

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
