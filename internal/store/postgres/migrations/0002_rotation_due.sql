-- When the key lifecycle job has work on a key (automatic rotation,
-- imported material expiring), unix ns; 0 = never.
ALTER TABLE keys ADD COLUMN rotation_due BIGINT NOT NULL DEFAULT 0;
CREATE INDEX keys_rotation_due ON keys (rotation_due);
