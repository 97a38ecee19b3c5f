-- Regions (SQLite's migration 8): keys, aliases and grants are named within
-- an account and a Region (a multi-Region key has a row per Region under
-- one id); custom key store names are unique per account and Region. Rows
-- from before get Region '' here; the server gives them its default Region
-- at start (Store.AssignRegion).
ALTER TABLE keys ADD COLUMN region TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE keys DROP CONSTRAINT keys_pkey;
ALTER TABLE keys ADD PRIMARY KEY (account_id, region, id);
ALTER TABLE aliases ADD COLUMN region TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE aliases DROP CONSTRAINT aliases_pkey;
ALTER TABLE aliases ADD PRIMARY KEY (account_id, region, name);
DROP INDEX aliases_key;
CREATE INDEX aliases_key ON aliases (account_id, region, key_id);
ALTER TABLE grants ADD COLUMN region TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE grants DROP CONSTRAINT grants_pkey;
ALTER TABLE grants ADD PRIMARY KEY (account_id, region, key_id, id);
ALTER TABLE custom_key_stores ADD COLUMN region TEXT COLLATE "C" NOT NULL DEFAULT '';
DROP INDEX custom_key_stores_name;
CREATE UNIQUE INDEX custom_key_stores_name ON custom_key_stores (account_id, region, name);
