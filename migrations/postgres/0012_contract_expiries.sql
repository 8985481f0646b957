-- GetStats' active contracts without counting contracts per request.
-- contract_expiries counts, per space and per day of `expires_at`
-- (microseconds / 86,400,000,000, truncated), the contracts whose status is
-- 'active' and that have an expiry; changes keep it by deltas. Days before
-- today are folded into space_stats.contracts_lapsed by a background task.
-- Active now = contracts_active - contracts_lapsed - unfolded past days -
-- today's expiries up to now (an index range of one day).
CREATE TABLE contract_expiries (
    space_id UUID NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    day      BIGINT NOT NULL,
    n        BIGINT NOT NULL,
    PRIMARY KEY (space_id, day)
);
ALTER TABLE space_stats ADD COLUMN contracts_lapsed BIGINT NOT NULL DEFAULT 0;
INSERT INTO contract_expiries (space_id, day, n)
SELECT space_id, expires_at / 86400000000, count(*) FROM contracts
WHERE status = 'active' AND expires_at IS NOT NULL
GROUP BY space_id, expires_at / 86400000000;
