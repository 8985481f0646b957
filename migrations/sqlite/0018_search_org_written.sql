-- The organization token of the content search index (`search_org`,
-- 0017) becomes a plain column, written with the row. As a virtual
-- generated column SQLite evaluated its expression (nine hex() calls and
-- their arithmetic) for every inserted row, and again for the FTS insert
-- trigger: about 4 ms of a 1,000-row batch upsert's 14 ms INSERT.
--
-- Who writes it:
-- - the content upserts bind the token their space's organization has
--   (`search_token` in src/store/sqlite.rs, the same function searches
--   use);
-- - a change of a row's organization (attach, detach, an organization's
--   deletion) recomputes it here in SQL, by the `*_search_org` triggers,
--   from the same formula as 0017;
-- - this migration fills it for the rows already there, with that
--   formula, so the FTS indexes (built from the same values) stay as they
--   are.
-- The FTS update triggers now follow `search_org` instead of
-- `organization_id`: a move of organization re-indexes the row once, after
-- its token changed. The tests compare every row's token with the formula
-- and the FTS indexes with their tables after every kind of move.

-- products

DROP TRIGGER products_fts_insert;
DROP TRIGGER products_fts_delete;
DROP TRIGGER products_fts_update;
ALTER TABLE products DROP COLUMN search_org;
ALTER TABLE products ADD COLUMN search_org TEXT NOT NULL DEFAULT '';
UPDATE products SET search_org = CASE WHEN organization_id IS NULL THEN '' ELSE char(
        983040 + (unicode(substr(hex(organization_id), 24, 1)) - 48) * 529
        + (unicode(substr(hex(organization_id), 25, 1)) - 48) * 23 + (unicode(substr(hex(organization_id), 26, 1)) - 48),
        983040 + (unicode(substr(hex(organization_id), 27, 1)) - 48) * 529
        + (unicode(substr(hex(organization_id), 28, 1)) - 48) * 23 + (unicode(substr(hex(organization_id), 29, 1)) - 48),
        983040 + (unicode(substr(hex(organization_id), 30, 1)) - 48) * 529
        + (unicode(substr(hex(organization_id), 31, 1)) - 48) * 23 + (unicode(substr(hex(organization_id), 32, 1)) - 48)) END
WHERE organization_id IS NOT NULL;

CREATE TRIGGER products_search_org AFTER UPDATE OF organization_id ON products BEGIN
    UPDATE products SET search_org = CASE WHEN new.organization_id IS NULL THEN '' ELSE char(
        983040 + (unicode(substr(hex(new.organization_id), 24, 1)) - 48) * 529
        + (unicode(substr(hex(new.organization_id), 25, 1)) - 48) * 23 + (unicode(substr(hex(new.organization_id), 26, 1)) - 48),
        983040 + (unicode(substr(hex(new.organization_id), 27, 1)) - 48) * 529
        + (unicode(substr(hex(new.organization_id), 28, 1)) - 48) * 23 + (unicode(substr(hex(new.organization_id), 29, 1)) - 48),
        983040 + (unicode(substr(hex(new.organization_id), 30, 1)) - 48) * 529
        + (unicode(substr(hex(new.organization_id), 31, 1)) - 48) * 23 + (unicode(substr(hex(new.organization_id), 32, 1)) - 48)) END
    WHERE rowid = new.rowid;
END;
CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
    INSERT INTO products_fts (rowid, name, description, search_org)
    VALUES (new.rowid, new.name, new.description, new.search_org);
END;
CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, description, search_org)
    VALUES ('delete', old.rowid, old.name, old.description, old.search_org);
END;
CREATE TRIGGER products_fts_update AFTER UPDATE OF name, description, search_org ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, description, search_org)
    VALUES ('delete', old.rowid, old.name, old.description, old.search_org);
    INSERT INTO products_fts (rowid, name, description, search_org)
    VALUES (new.rowid, new.name, new.description, new.search_org);
END;

-- contracts

DROP TRIGGER contracts_fts_insert;
DROP TRIGGER contracts_fts_delete;
DROP TRIGGER contracts_fts_update;
ALTER TABLE contracts DROP COLUMN search_org;
ALTER TABLE contracts ADD COLUMN search_org TEXT NOT NULL DEFAULT '';
UPDATE contracts SET search_org = CASE WHEN organization_id IS NULL THEN '' ELSE char(
        983040 + (unicode(substr(hex(organization_id), 24, 1)) - 48) * 529
        + (unicode(substr(hex(organization_id), 25, 1)) - 48) * 23 + (unicode(substr(hex(organization_id), 26, 1)) - 48),
        983040 + (unicode(substr(hex(organization_id), 27, 1)) - 48) * 529
        + (unicode(substr(hex(organization_id), 28, 1)) - 48) * 23 + (unicode(substr(hex(organization_id), 29, 1)) - 48),
        983040 + (unicode(substr(hex(organization_id), 30, 1)) - 48) * 529
        + (unicode(substr(hex(organization_id), 31, 1)) - 48) * 23 + (unicode(substr(hex(organization_id), 32, 1)) - 48)) END
WHERE organization_id IS NOT NULL;

CREATE TRIGGER contracts_search_org AFTER UPDATE OF organization_id ON contracts BEGIN
    UPDATE contracts SET search_org = CASE WHEN new.organization_id IS NULL THEN '' ELSE char(
        983040 + (unicode(substr(hex(new.organization_id), 24, 1)) - 48) * 529
        + (unicode(substr(hex(new.organization_id), 25, 1)) - 48) * 23 + (unicode(substr(hex(new.organization_id), 26, 1)) - 48),
        983040 + (unicode(substr(hex(new.organization_id), 27, 1)) - 48) * 529
        + (unicode(substr(hex(new.organization_id), 28, 1)) - 48) * 23 + (unicode(substr(hex(new.organization_id), 29, 1)) - 48),
        983040 + (unicode(substr(hex(new.organization_id), 30, 1)) - 48) * 529
        + (unicode(substr(hex(new.organization_id), 31, 1)) - 48) * 23 + (unicode(substr(hex(new.organization_id), 32, 1)) - 48)) END
    WHERE rowid = new.rowid;
END;
CREATE TRIGGER contracts_fts_insert AFTER INSERT ON contracts BEGIN
    INSERT INTO contracts_fts (rowid, name, description, search_org)
    VALUES (new.rowid, new.name, new.description, new.search_org);
END;
CREATE TRIGGER contracts_fts_delete AFTER DELETE ON contracts BEGIN
    INSERT INTO contracts_fts (contracts_fts, rowid, name, description, search_org)
    VALUES ('delete', old.rowid, old.name, old.description, old.search_org);
END;
CREATE TRIGGER contracts_fts_update AFTER UPDATE OF name, description, search_org ON contracts BEGIN
    INSERT INTO contracts_fts (contracts_fts, rowid, name, description, search_org)
    VALUES ('delete', old.rowid, old.name, old.description, old.search_org);
    INSERT INTO contracts_fts (rowid, name, description, search_org)
    VALUES (new.rowid, new.name, new.description, new.search_org);
END;
