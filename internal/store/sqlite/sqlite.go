// Package sqlite is the embedded Store: one SQLite database in the data
// directory, WAL journal whose every commit is fsynced before the write
// returns (synchronous=FULL, or NORMAL plus keyhold's own fsync of the WAL
// off Go's scheduler: wal.go), and migrations tracked by a schema version. The
// queries are sqlstore's; this package owns the connection and the schema.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/keyhold/keyhold/internal/store"
	"github.com/keyhold/keyhold/internal/store/sqlstore"
)

// migrations are applied in order; the schema version is their count.
// postgres/ keeps the same schema in its dialect.
var migrations = []string{
	`CREATE TABLE accounts (id TEXT PRIMARY KEY, created INTEGER NOT NULL);
	 CREATE TABLE access_keys (id TEXT PRIMARY KEY, account_id TEXT NOT NULL, principal_arn TEXT NOT NULL,
	   sealed_secret BLOB NOT NULL, active INTEGER NOT NULL, created INTEGER NOT NULL);
	 CREATE TABLE keys (account_id TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL,
	   deletion_date INTEGER NOT NULL DEFAULT 0, custom_key_store_id TEXT NOT NULL DEFAULT '',
	   xks_key_id TEXT NOT NULL DEFAULT '', version INTEGER NOT NULL, data BLOB NOT NULL,
	   PRIMARY KEY (account_id, id));
	 CREATE INDEX keys_deletion ON keys (state, deletion_date);
	 CREATE INDEX keys_store ON keys (account_id, custom_key_store_id, xks_key_id);
	 CREATE TABLE aliases (account_id TEXT NOT NULL, name TEXT NOT NULL, key_id TEXT NOT NULL,
	   created INTEGER NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (account_id, name));
	 CREATE INDEX aliases_key ON aliases (account_id, key_id);
	 CREATE TABLE custom_key_stores (account_id TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,
	   version INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (account_id, id));
	 CREATE UNIQUE INDEX custom_key_stores_name ON custom_key_stores (account_id, name);`,
	`ALTER TABLE access_keys ADD COLUMN session_token_hash BLOB;
	 ALTER TABLE access_keys ADD COLUMN role_arn TEXT NOT NULL DEFAULT '';
	 ALTER TABLE access_keys ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;
	 CREATE INDEX access_keys_principal ON access_keys (principal_arn);
	 CREATE TABLE principals (arn TEXT PRIMARY KEY, account_id TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL,
	   id TEXT NOT NULL, trust_policy TEXT NOT NULL DEFAULT '', tags BLOB, created INTEGER NOT NULL);
	 CREATE INDEX principals_account ON principals (account_id);
	 CREATE TABLE principal_policies (principal_arn TEXT NOT NULL, name TEXT NOT NULL, document TEXT NOT NULL,
	   PRIMARY KEY (principal_arn, name));`,
	`CREATE INDEX keys_id ON keys (id);`,
	`CREATE TABLE grants (account_id TEXT NOT NULL, key_id TEXT NOT NULL, id TEXT NOT NULL,
	   grantee TEXT NOT NULL, retiring TEXT NOT NULL DEFAULT '', data BLOB NOT NULL,
	   PRIMARY KEY (account_id, key_id, id));
	 CREATE UNIQUE INDEX grants_id ON grants (id);
	 CREATE INDEX grants_retiring ON grants (retiring, id);`,
	// Everything that lived outside the database (the HSM registry's JSON
	// files, the VPC endpoint services file) and the uniqueness rules that
	// were in-memory reservations.
	`CREATE UNIQUE INDEX keys_xks_key ON keys (account_id, custom_key_store_id, xks_key_id) WHERE xks_key_id != '';
	 ALTER TABLE custom_key_stores ADD COLUMN backup_history TEXT NOT NULL DEFAULT '';
	 CREATE UNIQUE INDEX custom_key_stores_backup_history ON custom_key_stores (backup_history) WHERE backup_history != '';
	 CREATE TABLE vpc_endpoint_services (name TEXT PRIMARY KEY, data BLOB NOT NULL);
	 CREATE TABLE hsm_clusters (id TEXT PRIMARY KEY, state TEXT NOT NULL, created INTEGER NOT NULL, record BLOB NOT NULL);
	 CREATE TABLE hsm_backups (id TEXT PRIMARY KEY, cluster_id TEXT NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL,
	   record BLOB NOT NULL);`,
	// When the key lifecycle job has work on a key (automatic rotation,
	// imported material expiring), unix ns; 0 = never.
	`ALTER TABLE keys ADD COLUMN rotation_due INTEGER NOT NULL DEFAULT 0;
	 CREATE INDEX keys_rotation_due ON keys (rotation_due);`,
	// GetKeyLastUsage: each key's last successful cryptographic use (unix
	// ns), and when recording began.
	`CREATE TABLE key_usage (account_id TEXT NOT NULL, region TEXT NOT NULL DEFAULT '', key_id TEXT NOT NULL,
	   operation TEXT NOT NULL, request_id TEXT NOT NULL, used_at INTEGER NOT NULL,
	   PRIMARY KEY (account_id, region, key_id));
	 CREATE TABLE key_usage_tracking (started INTEGER NOT NULL);
	 INSERT INTO key_usage_tracking (started) VALUES (CAST(strftime('%s', 'now') AS INTEGER) * 1000000000);`,
	// Regions: keys, aliases and grants are named within an account and a
	// Region (a multi-Region key has a row per Region under one id), custom
	// key store names are unique per account and Region. Rows from before
	// get Region '' here; the server gives them its default Region at start
	// (Store.AssignRegion). SQLite cannot change a primary key in place, so
	// the three tables are rebuilt.
	`CREATE TABLE keys_r (account_id TEXT NOT NULL, region TEXT NOT NULL DEFAULT '', id TEXT NOT NULL, state TEXT NOT NULL,
	   deletion_date INTEGER NOT NULL DEFAULT 0, custom_key_store_id TEXT NOT NULL DEFAULT '',
	   xks_key_id TEXT NOT NULL DEFAULT '', version INTEGER NOT NULL, data BLOB NOT NULL,
	   rotation_due INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (account_id, region, id));
	 INSERT INTO keys_r (account_id, region, id, state, deletion_date, custom_key_store_id, xks_key_id, version, data, rotation_due)
	   SELECT account_id, '', id, state, deletion_date, custom_key_store_id, xks_key_id, version, data, rotation_due FROM keys;
	 DROP TABLE keys;
	 ALTER TABLE keys_r RENAME TO keys;
	 CREATE INDEX keys_deletion ON keys (state, deletion_date);
	 CREATE INDEX keys_store ON keys (account_id, custom_key_store_id, xks_key_id);
	 CREATE INDEX keys_id ON keys (id);
	 CREATE UNIQUE INDEX keys_xks_key ON keys (account_id, custom_key_store_id, xks_key_id) WHERE xks_key_id != '';
	 CREATE INDEX keys_rotation_due ON keys (rotation_due);
	 CREATE TABLE aliases_r (account_id TEXT NOT NULL, region TEXT NOT NULL DEFAULT '', name TEXT NOT NULL, key_id TEXT NOT NULL,
	   created INTEGER NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (account_id, region, name));
	 INSERT INTO aliases_r (account_id, region, name, key_id, created, updated)
	   SELECT account_id, '', name, key_id, created, updated FROM aliases;
	 DROP TABLE aliases;
	 ALTER TABLE aliases_r RENAME TO aliases;
	 CREATE INDEX aliases_key ON aliases (account_id, region, key_id);
	 CREATE TABLE grants_r (account_id TEXT NOT NULL, region TEXT NOT NULL DEFAULT '', key_id TEXT NOT NULL, id TEXT NOT NULL,
	   grantee TEXT NOT NULL, retiring TEXT NOT NULL DEFAULT '', data BLOB NOT NULL,
	   PRIMARY KEY (account_id, region, key_id, id));
	 INSERT INTO grants_r (account_id, region, key_id, id, grantee, retiring, data)
	   SELECT account_id, '', key_id, id, grantee, retiring, data FROM grants;
	 DROP TABLE grants;
	 ALTER TABLE grants_r RENAME TO grants;
	 CREATE UNIQUE INDEX grants_id ON grants (id);
	 CREATE INDEX grants_retiring ON grants (retiring, id);
	 ALTER TABLE custom_key_stores ADD COLUMN region TEXT NOT NULL DEFAULT '';
	 DROP INDEX custom_key_stores_name;
	 CREATE UNIQUE INDEX custom_key_stores_name ON custom_key_stores (account_id, region, name);`,
	// Store.AssignRegion runs once (its UPDATEs scan whole tables): the row
	// says it has not yet; the assignment deletes it.
	`CREATE TABLE region_assignment (pending INTEGER NOT NULL);
	 INSERT INTO region_assignment (pending) VALUES (1);`,
	// Key records' data may be in sqlstore's binary form from here on
	// (keycodec.go); the version says so, and an older keyhold refuses the
	// database instead of failing on each such key. Nothing to change.
	`SELECT 1;`,
}

// DB is the SQLite Store.
type DB struct {
	*sqlstore.DB
	db  *sql.DB
	wal *walSync // nil: SQLite syncs its own commits
}

// dialect: SQLite's transactions take the write lock at BEGIN
// (_txlock=immediate), so nothing more is needed to serialise. SQLite has
// one writer at a time and every commit is an fsync (wal.go), so
// concurrent writes share commits (sqlstore's group commit).
var dialect = sqlstore.Dialect{Name: "sqlite", Classify: classify, GroupCommit: true}

// Open opens (creating if needed) the database at path and migrates it. It
// refuses a database whose schema is newer than this binary knows.
func Open(ctx context.Context, path string) (*DB, error) {
	if err := restrictFiles(path); err != nil {
		return nil, err
	}
	// SQLite reads the name as a URI: a '#' would end it (and '?' start
	// its query, '%' an escape), opening another file than path.
	name := path
	plain := !strings.HasPrefix(path, ":memory:") && !strings.HasPrefix(path, "file:")
	// A database file (not :memory: or a file: URI) runs with
	// synchronous=NORMAL and gets its WAL fsynced by keyhold after every
	// commit, off Go's scheduler (wal.go); the others sync in SQLite.
	var wal *walSync
	syncMode := "FULL"
	if plain {
		name = uriPath.Replace(path)
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("sqlite.Open: %w", err)
		}
		wal, syncMode = newWALSync(abs), "NORMAL"
	}
	// Each connection keeps its prepared statements (parsing a query costs
	// more than running it) and 8 MiB of pages (the upper levels of the
	// keys B-trees stay cached with a million keys); 4 connections, all
	// kept open: database/sql keeps 2 idle by default and closes the
	// others as they are returned, so under load connections were opened
	// again and again, each with an empty page cache and no prepared
	// statements (with a million keys, most of a GetKey's time).
	dsn := "file:" + name + "?_journal_mode=WAL&_synchronous=" + syncMode + "&_busy_timeout=10000&_txlock=immediate&_foreign_keys=1&_stmt_cache_size=64&_cache_size=-8192"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		wal.close()
		return nil, fmt.Errorf("sqlite.Open: %w", err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	d := dialect
	if wal != nil {
		d.AfterCommit = wal.sync
	}
	if err := migrate(ctx, db, d.AfterCommit); err != nil {
		db.Close()
		wal.close()
		return nil, err
	}
	return &DB{DB: sqlstore.New(db, d), db: db, wal: wal}, nil
}

// Close closes the store, then stops the WAL's fsync thread.
func (d *DB) Close() error {
	err := d.DB.Close()
	d.wal.close()
	return err
}

// maxConns is the size of the connection pool: readers run alongside the
// one writer (WAL), each connection with its own page cache.
const maxConns = 4

var uriPath = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// restrictFiles makes the database file exist with mode 0600 before SQLite
// opens it: SQLite gives the -wal and -shm files the database file's mode,
// so all three stay readable by the owner only. Files an older keyhold made
// 0644 are narrowed.
func restrictFiles(path string) error {
	if strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file:") {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite.Open: %w", err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("sqlite.Open: %w", err)
		}
	}
	return nil
}

// migrate applies the missing migrations, each made durable (sync) before
// the next.
func migrate(ctx context.Context, db *sql.DB, sync func() error) error {
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("sqlite.migrate: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("sqlite.migrate: database schema version %d is newer than this keyhold (%d)", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite.migrate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite.migrate to %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite.migrate: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite.migrate: %w", err)
		}
		if sync != nil {
			if err := sync(); err != nil {
				return fmt.Errorf("sqlite.migrate: %w", err)
			}
		}
	}
	return nil
}

// SchemaVersion reports the applied schema version.
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := d.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// classify maps SQLite's constraint errors to the store's; the index names
// tell the uniqueness rules apart.
func classify(err error) error {
	if !isUnique(err) { // unique_cgo.go: without cgo there is no SQLite
		return nil
	}
	switch msg := err.Error(); {
	case strings.Contains(msg, "xks_key_id"):
		return store.ErrExternalKeyInUse
	case strings.Contains(msg, "backup_history"):
		return store.ErrBackupHistoryInUse
	}
	return store.ErrExists
}
