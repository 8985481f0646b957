-- Per-space counters for list totals: an unfiltered (or status-filtered)
-- list's total is a sum over the visible spaces' counters instead of a count
-- over the organization's index entries. Recomputed, like the others, in
-- the transaction of every content write.

ALTER TABLE space_stats ADD COLUMN products_archived BIGINT NOT NULL DEFAULT 0;
ALTER TABLE space_stats ADD COLUMN contracts_draft BIGINT NOT NULL DEFAULT 0;
ALTER TABLE space_stats ADD COLUMN contracts_active BIGINT NOT NULL DEFAULT 0;
ALTER TABLE space_stats ADD COLUMN contracts_expired BIGINT NOT NULL DEFAULT 0;
ALTER TABLE space_stats ADD COLUMN contracts_deprecated BIGINT NOT NULL DEFAULT 0;
ALTER TABLE space_stats ADD COLUMN issues_status_open BIGINT NOT NULL DEFAULT 0;
ALTER TABLE space_stats ADD COLUMN issues_status_in_progress BIGINT NOT NULL DEFAULT 0;
ALTER TABLE space_stats ADD COLUMN issues_status_resolved BIGINT NOT NULL DEFAULT 0;
ALTER TABLE space_stats ADD COLUMN issues_status_wont_fix BIGINT NOT NULL DEFAULT 0;
ALTER TABLE space_stats ADD COLUMN checks_active BIGINT NOT NULL DEFAULT 0;
ALTER TABLE space_stats ADD COLUMN checks_archived BIGINT NOT NULL DEFAULT 0;
ALTER TABLE space_stats DROP COLUMN issues_open;

-- Counting contracts per status per space reads only this index.
CREATE INDEX contracts_by_space_status ON contracts (space_id, status);
DROP INDEX contracts_by_space;

-- Backfill from the content already there.
UPDATE space_stats SET
    products_archived = (SELECT count(*) FROM products p WHERE p.space_id = space_stats.space_id AND p.is_archived),
    contracts_draft = (SELECT count(*) FROM contracts c WHERE c.space_id = space_stats.space_id AND c.status = 'draft'),
    contracts_active = (SELECT count(*) FROM contracts c WHERE c.space_id = space_stats.space_id AND c.status = 'active'),
    contracts_expired = (SELECT count(*) FROM contracts c WHERE c.space_id = space_stats.space_id AND c.status = 'expired'),
    contracts_deprecated = (SELECT count(*) FROM contracts c WHERE c.space_id = space_stats.space_id AND c.status = 'deprecated'),
    issues_status_open = (SELECT count(*) FROM issues i WHERE i.space_id = space_stats.space_id AND i.status = 'open'),
    issues_status_in_progress = (SELECT count(*) FROM issues i WHERE i.space_id = space_stats.space_id AND i.status = 'in_progress'),
    issues_status_resolved = (SELECT count(*) FROM issues i WHERE i.space_id = space_stats.space_id AND i.status = 'resolved'),
    issues_status_wont_fix = (SELECT count(*) FROM issues i WHERE i.space_id = space_stats.space_id AND i.status = 'wont_fix'),
    checks_active = (SELECT count(*) FROM quality_checks q WHERE q.space_id = space_stats.space_id AND NOT q.is_archived),
    checks_archived = (SELECT count(*) FROM quality_checks q WHERE q.space_id = space_stats.space_id AND q.is_archived);
