-- Store.AssignRegion runs once (SQLite's migration 9): its UPDATEs scan
-- whole tables, minutes with a million keys. The row says it has not run
-- yet; the assignment deletes it.
CREATE TABLE region_assignment (pending INTEGER NOT NULL);
INSERT INTO region_assignment (pending) VALUES (1);
