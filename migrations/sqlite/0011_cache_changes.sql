-- The change feed that keeps every process's in-process snapshot of hot
-- reads in step: each change that touches cached state appends the tags
-- of what it touched, in its own transaction. Rows are kept for a minute.
CREATE TABLE cache_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tags TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX cache_changes_created_at ON cache_changes (created_at);
