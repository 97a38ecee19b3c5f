package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/store"
	"github.com/keyhold/keyhold/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

// TestConformanceObserved: the store latency metric's decorator over
// SQLite passes the suite and reports each call.
func TestConformanceObserved(t *testing.T) {
	storetest.RunObserved(t, func(t *testing.T) store.Store {
		db, err := Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

func TestSchemaVersion(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := db.SchemaVersion(ctx); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d, %v; want %d", v, err, len(migrations))
	}
	var mode string
	db.db.QueryRow("PRAGMA journal_mode").Scan(&mode)
	if mode != "wal" {
		t.Fatalf("journal_mode %s, want wal", mode)
	}
	var sync int
	db.db.QueryRow("PRAGMA synchronous").Scan(&sync)
	// NORMAL: SQLite does not fsync at commit; keyhold fsyncs the WAL
	// after every group commit (wal_test.go).
	if sync != 1 || db.wal == nil {
		t.Fatalf("synchronous = %d (keyhold syncs the WAL: %v), want 1 (NORMAL) and keyhold's WAL fsync", sync, db.wal != nil)
	}
	if _, err := db.db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("opening a newer schema: %v, want a refusal", err)
	}
}

// A data directory whose name holds characters a URI gives a meaning to
// ('#', '?', '%') still gets its database inside it.
func TestOpenPathWithURICharacters(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	dir := filepath.Join(parent, "data#1?x=%41")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "k.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateAccount(ctx, store.Account{ID: "111122223333", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 || entries[0].Name() != "data#1?x=%41" {
		t.Fatalf("files beside the data directory: %v", entries)
	}
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		t.Fatalf("the database is not in the data directory: %v", err)
	}
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if as, err := db.ListAccounts(ctx); err != nil || len(as) != 1 {
		t.Fatalf("reopened: %v %v", as, err)
	}
}

// TestRegionMigration: a database from before Regions keeps its keys,
// aliases, grants and custom key stores through the migration, and the
// server's default Region then owns them; so does one that has the Region
// columns from a keyhold that assigned them at every start (before
// region_assignment), rows of the empty Region included.
func TestRegionMigration(t *testing.T) {
	regions, marker := -1, -1
	for i, m := range migrations {
		if strings.Contains(m, "CREATE TABLE keys_r") {
			regions = i
		}
		if strings.Contains(m, "CREATE TABLE region_assignment") {
			marker = i
		}
	}
	if regions < 0 || marker < 0 {
		t.Fatal("no Region migration or no region_assignment migration")
	}
	for _, from := range []int{regions, marker} {
		t.Run(fmt.Sprintf("from schema %d", from), func(t *testing.T) { regionMigration(t, from) })
	}
}

func regionMigration(t *testing.T, from int) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range migrations[:from] {
		if _, err := raw.Exec(m); err != nil {
			t.Fatalf("migration %d: %v", i+1, err)
		}
	}
	for _, q := range []string{
		fmt.Sprintf("PRAGMA user_version = %d", from),
		`INSERT INTO keys (account_id, id, state, version, data, rotation_due) VALUES ('111122223333', 'k1', 'Enabled', 3, '{"c":"2024-01-01T00:00:00Z","u":"ENCRYPT_DECRYPT","s":"SYMMETRIC_DEFAULT","o":"AWS_KMS","p":"{}","r":{}}', 0)`,
		`INSERT INTO aliases (account_id, name, key_id, created, updated) VALUES ('111122223333', 'alias/one', 'k1', 1, 1)`,
		`INSERT INTO grants (account_id, key_id, id, grantee, data) VALUES ('111122223333', 'k1', 'g1', 'arn:aws:iam::111122223333:user/x', '{"ia":"111122223333","o":["Encrypt"],"c":"2024-01-01T00:00:00Z"}')`,
		`INSERT INTO custom_key_stores (account_id, id, name, version, data) VALUES ('111122223333', 'cks-1', 'one', 1, '{"t":"AWS_CLOUDHSM","c":"2024-01-01T00:00:00Z","cs":"DISCONNECTED"}')`,
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw.Close()
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.AssignRegion(ctx, "eu-central-1"); err != nil {
		t.Fatal(err)
	}
	k, err := db.GetKey(ctx, "111122223333", "eu-central-1", "k1")
	if err != nil || k.Version != 3 || k.KeySpec != "SYMMETRIC_DEFAULT" {
		t.Fatalf("migrated key: %+v, %v", k, err)
	}
	if a, err := db.GetAlias(ctx, "111122223333", "eu-central-1", "alias/one"); err != nil || a.KeyID != "k1" {
		t.Fatalf("migrated alias: %+v, %v", a, err)
	}
	if g, err := db.GetGrant(ctx, "111122223333", "eu-central-1", "k1", "g1"); err != nil || g.Operations[0] != "Encrypt" {
		t.Fatalf("migrated grant: %+v, %v", g, err)
	}
	if c, err := db.GetCustomKeyStore(ctx, "111122223333", "cks-1"); err != nil || c.Region != "eu-central-1" || c.Name != "one" {
		t.Fatalf("migrated custom key store: %+v, %v", c, err)
	}
	if _, err := db.GetKey(ctx, "111122223333", "us-east-1", "k1"); err == nil {
		t.Fatal("the migrated key is seen from another Region")
	}
	// The next start does not assign again.
	if err := db.AssignRegion(ctx, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetKey(ctx, "111122223333", "eu-central-1", "k1"); err != nil {
		t.Fatalf("the second start moved the key: %v", err)
	}
}

// TestPoolKeepsConnections: connections returned to the pool stay open
// (each holds its page cache and prepared statements); database/sql's
// default would close all but 2.
func TestPoolKeepsConnections(t *testing.T) {
	db := openTemp(t)
	ctx := context.Background()
	var conns []*sql.Conn
	for range maxConns {
		c, err := db.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	if st := db.db.Stats(); st.Idle != maxConns || st.MaxIdleClosed != 0 {
		t.Fatalf("after %d connections were returned: %d idle, %d closed", maxConns, st.Idle, st.MaxIdleClosed)
	}
}
