package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/keyhold/keyhold/internal/store"
	"github.com/keyhold/keyhold/internal/store/postgres/pgtest"
	"github.com/keyhold/keyhold/internal/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t *testing.T, url string) *DB {
	t.Helper()
	db, err := Open(context.Background(), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	pgtest.Need(t)
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, pgtest.URL(t)) })
}

// TestConformanceObserved: the store latency metric's decorator over
// PostgreSQL passes the suite and reports each call.
func TestConformanceObserved(t *testing.T) {
	pgtest.Need(t)
	storetest.RunObserved(t, func(t *testing.T) store.Store { return open(t, pgtest.URL(t)) })
}

func TestSchemaVersion(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	db := open(t, url)
	ms, _ := migrations()
	if v, err := db.SchemaVersion(ctx); err != nil || v != len(ms) {
		t.Fatalf("schema version %d, %v; want %d", v, err, len(ms))
	}
	// A second replica opening the same database finds it migrated.
	open(t, url)
	if _, err := db.db.Exec("UPDATE keyhold_schema SET version = 99"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, url, Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("opening a newer schema: %v, want a refusal", err)
	}
}

func TestUnreachable(t *testing.T) {
	ctx := context.Background()
	start := time.Now()
	_, err := Open(ctx, "postgres://keyhold:secret-pw@127.0.0.1:1/x?sslmode=disable", Options{ConnectTimeout: time.Second})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open of a closed port: %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "secret-pw") {
		t.Fatalf("the error shows the password: %v", err)
	}
	// A hang would end at the test binary's deadline; how long it took is
	// logged, not asserted.
	t.Logf("Open of a closed port gave up after %v", time.Since(start))
	if _, err := Open(ctx, "postgres://keyhold:secret-pw@127.0.0.1:1/x?sslmode=nonsense", Options{}); err == nil || strings.Contains(err.Error(), "secret-pw") {
		t.Fatalf("bad URL: %v", err)
	}
}

// TestRegionMigration: a database from before Regions, and one from a
// keyhold that assigned Regions at every start (before region_assignment),
// keeps its rows of the empty Region and the first start gives them its Region,
// once.
func TestRegionMigration(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	regions, marker := -1, -1
	for i, m := range ms {
		if strings.Contains(m, "ALTER TABLE keys ADD COLUMN region") {
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
		t.Run(fmt.Sprintf("from schema %d", from), func(t *testing.T) {
			ctx := context.Background()
			url := pgtest.URL(t)
			cfg, err := pgx.ParseConfig(url)
			if err != nil {
				t.Fatal(err)
			}
			raw := stdlib.OpenDB(*cfg)
			defer raw.Close()
			qs := append([]string{}, ms[:from]...)
			qs = append(qs,
				"CREATE TABLE keyhold_schema (version INTEGER NOT NULL)",
				fmt.Sprintf("INSERT INTO keyhold_schema (version) VALUES (%d)", from),
				`INSERT INTO keys (account_id, id, state, version, data, rotation_due) VALUES ('111122223333', 'k1', 'Enabled', 3, '{"c":"2024-01-01T00:00:00Z","u":"ENCRYPT_DECRYPT","s":"SYMMETRIC_DEFAULT","o":"AWS_KMS","p":"{}","r":{}}', 0)`,
				`INSERT INTO aliases (account_id, name, key_id, created, updated) VALUES ('111122223333', 'alias/one', 'k1', 1, 1)`,
				`INSERT INTO grants (account_id, key_id, id, grantee, data) VALUES ('111122223333', 'k1', 'g1', 'arn:aws:iam::111122223333:user/x', '{"ia":"111122223333","o":["Encrypt"],"c":"2024-01-01T00:00:00Z"}')`,
				`INSERT INTO custom_key_stores (account_id, id, name, version, data) VALUES ('111122223333', 'cks-1', 'one', 1, '{"t":"AWS_CLOUDHSM","c":"2024-01-01T00:00:00Z","cs":"DISCONNECTED"}')`,
			)
			for _, q := range qs {
				if _, err := raw.ExecContext(ctx, q); err != nil {
					t.Fatalf("%.80s: %v", q, err)
				}
			}
			db := open(t, url)
			if err := db.AssignRegion(ctx, "eu-central-1"); err != nil {
				t.Fatal(err)
			}
			if err := db.AssignRegion(ctx, "us-east-1"); err != nil { // the next start
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
		})
	}
}
