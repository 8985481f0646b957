-- Content ids are unique within their space (SPEC §1), not across spaces:
-- the same upstream id may live in two spaces, a writer of one space cannot
-- take another space's ids, nor learn whether an id exists elsewhere.

ALTER TABLE products DROP CONSTRAINT products_pkey, ADD PRIMARY KEY (space_id, id);
ALTER TABLE contracts DROP CONSTRAINT contracts_pkey, ADD PRIMARY KEY (space_id, id);
ALTER TABLE issues DROP CONSTRAINT issues_pkey, ADD PRIMARY KEY (space_id, id);
ALTER TABLE quality_checks DROP CONSTRAINT quality_checks_pkey, ADD PRIMARY KEY (space_id, id);
