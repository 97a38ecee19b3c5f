-- Key records' data may be in sqlstore's binary form from here on
-- (keycodec.go; SQLite's migration 10): the version says so, and an older
-- keyhold refuses the database (a replica of another version among the
-- replicas included) instead of failing on each such key. Nothing to change.
SELECT 1;
