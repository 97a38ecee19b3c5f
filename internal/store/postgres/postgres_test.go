package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

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
