-- Text search within one organization: the trigram indexes also hold the
-- organization, so a search reads only that organization's matches instead
-- of every match in the database and filtering afterwards.

CREATE EXTENSION IF NOT EXISTS btree_gin;

DROP INDEX products_name_trgm;
DROP INDEX products_description_trgm;
CREATE INDEX products_name_trgm ON products USING gin (organization_id, name gin_trgm_ops);
CREATE INDEX products_description_trgm ON products USING gin (organization_id, description gin_trgm_ops);

DROP INDEX contracts_name_trgm;
DROP INDEX contracts_description_trgm;
CREATE INDEX contracts_name_trgm ON contracts USING gin (organization_id, name gin_trgm_ops);
CREATE INDEX contracts_description_trgm ON contracts USING gin (organization_id, description gin_trgm_ops);
