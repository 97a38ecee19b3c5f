-- GetKeyLastUsage: each key's last successful cryptographic use (unix ns),
-- and when recording began.
CREATE TABLE key_usage (account_id TEXT NOT NULL, region TEXT NOT NULL DEFAULT '', key_id TEXT NOT NULL,
  operation TEXT NOT NULL, request_id TEXT NOT NULL, used_at BIGINT NOT NULL,
  PRIMARY KEY (account_id, region, key_id));
CREATE TABLE key_usage_tracking (started BIGINT NOT NULL);
INSERT INTO key_usage_tracking (started) VALUES (CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) * 1000000000);
