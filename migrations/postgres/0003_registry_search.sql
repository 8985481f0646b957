-- Substring search (3+ characters) over organizations, spaces and users
-- through pg_trgm (the extension is created by 0002).

CREATE INDEX organizations_name_trgm ON organizations USING gin (name gin_trgm_ops);
CREATE INDEX organizations_slug_trgm ON organizations USING gin (slug gin_trgm_ops);
CREATE INDEX spaces_name_trgm ON spaces USING gin (name gin_trgm_ops);
CREATE INDEX spaces_slug_trgm ON spaces USING gin (slug gin_trgm_ops);
CREATE INDEX users_email_trgm ON users USING gin (email gin_trgm_ops);
CREATE INDEX users_display_name_trgm ON users USING gin (display_name gin_trgm_ops);
