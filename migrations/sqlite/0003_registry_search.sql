-- Substring search (3+ characters) over organizations, spaces and users
-- through FTS5's trigram tokenizer, kept in step by triggers.

CREATE VIRTUAL TABLE organizations_fts USING fts5(
    name, slug, content = 'organizations', content_rowid = 'rowid', tokenize = 'trigram'
);
INSERT INTO organizations_fts (rowid, name, slug) SELECT rowid, name, slug FROM organizations;
CREATE TRIGGER organizations_fts_insert AFTER INSERT ON organizations BEGIN
    INSERT INTO organizations_fts (rowid, name, slug) VALUES (new.rowid, new.name, new.slug);
END;
CREATE TRIGGER organizations_fts_delete AFTER DELETE ON organizations BEGIN
    INSERT INTO organizations_fts (organizations_fts, rowid, name, slug) VALUES ('delete', old.rowid, old.name, old.slug);
END;
CREATE TRIGGER organizations_fts_update AFTER UPDATE OF name, slug ON organizations BEGIN
    INSERT INTO organizations_fts (organizations_fts, rowid, name, slug) VALUES ('delete', old.rowid, old.name, old.slug);
    INSERT INTO organizations_fts (rowid, name, slug) VALUES (new.rowid, new.name, new.slug);
END;

CREATE VIRTUAL TABLE spaces_fts USING fts5(
    name, slug, content = 'spaces', content_rowid = 'rowid', tokenize = 'trigram'
);
INSERT INTO spaces_fts (rowid, name, slug) SELECT rowid, name, slug FROM spaces;
CREATE TRIGGER spaces_fts_insert AFTER INSERT ON spaces BEGIN
    INSERT INTO spaces_fts (rowid, name, slug) VALUES (new.rowid, new.name, new.slug);
END;
CREATE TRIGGER spaces_fts_delete AFTER DELETE ON spaces BEGIN
    INSERT INTO spaces_fts (spaces_fts, rowid, name, slug) VALUES ('delete', old.rowid, old.name, old.slug);
END;
CREATE TRIGGER spaces_fts_update AFTER UPDATE OF name, slug ON spaces BEGIN
    INSERT INTO spaces_fts (spaces_fts, rowid, name, slug) VALUES ('delete', old.rowid, old.name, old.slug);
    INSERT INTO spaces_fts (rowid, name, slug) VALUES (new.rowid, new.name, new.slug);
END;

CREATE VIRTUAL TABLE users_fts USING fts5(
    email, display_name, content = 'users', content_rowid = 'rowid', tokenize = 'trigram'
);
INSERT INTO users_fts (rowid, email, display_name) SELECT rowid, email, display_name FROM users;
CREATE TRIGGER users_fts_insert AFTER INSERT ON users BEGIN
    INSERT INTO users_fts (rowid, email, display_name) VALUES (new.rowid, new.email, new.display_name);
END;
CREATE TRIGGER users_fts_delete AFTER DELETE ON users BEGIN
    INSERT INTO users_fts (users_fts, rowid, email, display_name)
    VALUES ('delete', old.rowid, old.email, old.display_name);
END;
CREATE TRIGGER users_fts_update AFTER UPDATE OF email, display_name ON users BEGIN
    INSERT INTO users_fts (users_fts, rowid, email, display_name)
    VALUES ('delete', old.rowid, old.email, old.display_name);
    INSERT INTO users_fts (rowid, email, display_name) VALUES (new.rowid, new.email, new.display_name);
END;
