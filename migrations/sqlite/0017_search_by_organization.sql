-- A content search reads only its organization's matches. The FTS5
-- indexes of products and contracts were database-wide: a search found
-- every match in the database (13,807 for 'revenue' at 270,000 rows) and
-- looked each one up to test its organization. Each row now also indexes
-- a short token of its organization (`search_org`, three characters of the
-- private use area made from the last nine hex digits of the
-- organization's id, which are random in UUIDv4 and v7 alike), and a
-- search asks FTS5 for `search_org : "<token>" AND {name description} :
-- "<term>"`. Two organizations may share a token (one chance in about
-- 1.8e12 per pair): that costs a few more lookups, never a wrong row,
-- since every search still tests `organization_id` itself.
--
-- The token is a virtual generated column, so the FTS tables keep their
-- content tables (rebuild and integrity-check read it from there). The
-- update triggers now also fire when a row's organization changes
-- (attach, detach). `src/store/sqlite.rs` (`search_token`) computes the
-- same token for a query; a test checks that the two agree.

-- products

DROP TRIGGER products_fts_insert;
DROP TRIGGER products_fts_delete;
DROP TRIGGER products_fts_update;
DROP TABLE products_fts;

ALTER TABLE products ADD COLUMN search_org TEXT GENERATED ALWAYS AS (
    CASE WHEN organization_id IS NULL THEN '' ELSE char(
        983040 + (unicode(substr(hex(organization_id), 24, 1)) - 48) * 529
        + (unicode(substr(hex(organization_id), 25, 1)) - 48) * 23 + (unicode(substr(hex(organization_id), 26, 1)) - 48),
        983040 + (unicode(substr(hex(organization_id), 27, 1)) - 48) * 529
        + (unicode(substr(hex(organization_id), 28, 1)) - 48) * 23 + (unicode(substr(hex(organization_id), 29, 1)) - 48),
        983040 + (unicode(substr(hex(organization_id), 30, 1)) - 48) * 529
        + (unicode(substr(hex(organization_id), 31, 1)) - 48) * 23 + (unicode(substr(hex(organization_id), 32, 1)) - 48)) END
) VIRTUAL;

CREATE VIRTUAL TABLE products_fts USING fts5(
    name, description, search_org, content = 'products', content_rowid = 'rowid', tokenize = 'trigram'
);
INSERT INTO products_fts (products_fts) VALUES ('rebuild');
CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
    INSERT INTO products_fts (rowid, name, description, search_org)
    VALUES (new.rowid, new.name, new.description, new.search_org);
END;
CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, description, search_org)
    VALUES ('delete', old.rowid, old.name, old.description, old.search_org);
END;
CREATE TRIGGER products_fts_update AFTER UPDATE OF name, description, organization_id ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, description, search_org)
    VALUES ('delete', old.rowid, old.name, old.description, old.search_org);
    INSERT INTO products_fts (rowid, name, description, search_org)
    VALUES (new.rowid, new.name, new.description, new.search_org);
END;

-- contracts

DROP TRIGGER contracts_fts_insert;
DROP TRIGGER contracts_fts_delete;
DROP TRIGGER contracts_fts_update;
DROP TABLE contracts_fts;

ALTER TABLE contracts ADD COLUMN search_org TEXT GENERATED ALWAYS AS (
    CASE WHEN organization_id IS NULL THEN '' ELSE char(
        983040 + (unicode(substr(hex(organization_id), 24, 1)) - 48) * 529
        + (unicode(substr(hex(organization_id), 25, 1)) - 48) * 23 + (unicode(substr(hex(organization_id), 26, 1)) - 48),
        983040 + (unicode(substr(hex(organization_id), 27, 1)) - 48) * 529
        + (unicode(substr(hex(organization_id), 28, 1)) - 48) * 23 + (unicode(substr(hex(organization_id), 29, 1)) - 48),
        983040 + (unicode(substr(hex(organization_id), 30, 1)) - 48) * 529
        + (unicode(substr(hex(organization_id), 31, 1)) - 48) * 23 + (unicode(substr(hex(organization_id), 32, 1)) - 48)) END
) VIRTUAL;

CREATE VIRTUAL TABLE contracts_fts USING fts5(
    name, description, search_org, content = 'contracts', content_rowid = 'rowid', tokenize = 'trigram'
);
INSERT INTO contracts_fts (contracts_fts) VALUES ('rebuild');
CREATE TRIGGER contracts_fts_insert AFTER INSERT ON contracts BEGIN
    INSERT INTO contracts_fts (rowid, name, description, search_org)
    VALUES (new.rowid, new.name, new.description, new.search_org);
END;
CREATE TRIGGER contracts_fts_delete AFTER DELETE ON contracts BEGIN
    INSERT INTO contracts_fts (contracts_fts, rowid, name, description, search_org)
    VALUES ('delete', old.rowid, old.name, old.description, old.search_org);
END;
CREATE TRIGGER contracts_fts_update AFTER UPDATE OF name, description, organization_id ON contracts BEGIN
    INSERT INTO contracts_fts (contracts_fts, rowid, name, description, search_org)
    VALUES ('delete', old.rowid, old.name, old.description, old.search_org);
    INSERT INTO contracts_fts (rowid, name, description, search_org)
    VALUES (new.rowid, new.name, new.description, new.search_org);
END;
