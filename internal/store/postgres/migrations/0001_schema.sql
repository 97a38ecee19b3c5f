-- The schema of SQLite's migrations 1-5 in PostgreSQL's types. Text that
-- is ordered or paged by uses the C collation: byte order, as in SQLite,
-- whatever the database's locale.
CREATE TABLE accounts (id TEXT COLLATE "C" PRIMARY KEY, created BIGINT NOT NULL);
CREATE TABLE access_keys (id TEXT COLLATE "C" PRIMARY KEY, account_id TEXT NOT NULL, principal_arn TEXT COLLATE "C" NOT NULL,
  sealed_secret BYTEA NOT NULL, active BOOLEAN NOT NULL, created BIGINT NOT NULL,
  session_token_hash BYTEA, role_arn TEXT NOT NULL DEFAULT '', expires BIGINT NOT NULL DEFAULT 0);
CREATE INDEX access_keys_principal ON access_keys (principal_arn);
CREATE TABLE keys (account_id TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, state TEXT NOT NULL,
  deletion_date BIGINT NOT NULL DEFAULT 0, custom_key_store_id TEXT COLLATE "C" NOT NULL DEFAULT '',
  xks_key_id TEXT COLLATE "C" NOT NULL DEFAULT '', version BIGINT NOT NULL, data BYTEA NOT NULL,
  PRIMARY KEY (account_id, id));
CREATE INDEX keys_deletion ON keys (state, deletion_date);
CREATE INDEX keys_store ON keys (account_id, custom_key_store_id, xks_key_id);
CREATE INDEX keys_id ON keys (id);
CREATE UNIQUE INDEX keys_xks_key ON keys (account_id, custom_key_store_id, xks_key_id) WHERE xks_key_id != '';
CREATE TABLE aliases (account_id TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, key_id TEXT COLLATE "C" NOT NULL,
  created BIGINT NOT NULL, updated BIGINT NOT NULL, PRIMARY KEY (account_id, name));
CREATE INDEX aliases_key ON aliases (account_id, key_id);
CREATE TABLE custom_key_stores (account_id TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL,
  version BIGINT NOT NULL, data BYTEA NOT NULL, backup_history TEXT NOT NULL DEFAULT '', PRIMARY KEY (account_id, id));
CREATE UNIQUE INDEX custom_key_stores_name ON custom_key_stores (account_id, name);
CREATE UNIQUE INDEX custom_key_stores_backup_history ON custom_key_stores (backup_history) WHERE backup_history != '';
CREATE TABLE principals (arn TEXT COLLATE "C" PRIMARY KEY, account_id TEXT COLLATE "C" NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL,
  id TEXT NOT NULL, trust_policy TEXT NOT NULL DEFAULT '', tags BYTEA, created BIGINT NOT NULL);
CREATE INDEX principals_account ON principals (account_id);
CREATE TABLE principal_policies (principal_arn TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, document TEXT NOT NULL,
  PRIMARY KEY (principal_arn, name));
CREATE TABLE grants (account_id TEXT COLLATE "C" NOT NULL, key_id TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL,
  grantee TEXT COLLATE "C" NOT NULL, retiring TEXT COLLATE "C" NOT NULL DEFAULT '', data BYTEA NOT NULL,
  PRIMARY KEY (account_id, key_id, id));
CREATE UNIQUE INDEX grants_id ON grants (id);
CREATE INDEX grants_retiring ON grants (retiring, id);
CREATE TABLE vpc_endpoint_services (name TEXT COLLATE "C" PRIMARY KEY, data BYTEA NOT NULL);
CREATE TABLE hsm_clusters (id TEXT COLLATE "C" PRIMARY KEY, state TEXT NOT NULL, created BIGINT NOT NULL, record BYTEA NOT NULL);
CREATE TABLE hsm_backups (id TEXT COLLATE "C" PRIMARY KEY, cluster_id TEXT COLLATE "C" NOT NULL, state TEXT NOT NULL,
  created BIGINT NOT NULL, record BYTEA NOT NULL);
