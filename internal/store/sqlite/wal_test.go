package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/keyhold/keyhold/internal/store"
)

// countFsyncs wraps db's WAL fsync: it counts the fsyncs of the WAL file and
// answers fail instead of syncing when fail is set.
func countFsyncs(t *testing.T, db *DB) (n func() int, fail func(error)) {
	t.Helper()
	if db.wal == nil {
		t.Fatal("a database file must have its WAL synced by keyhold")
	}
	var mu sync.Mutex
	count := 0
	var failWith error
	real := db.wal.fsync
	db.wal.mu.Lock()
	db.wal.fsync = func(f *os.File) error {
		if filepath.Base(f.Name()) != "k.db-wal" {
			t.Errorf("fsync of %s, want the WAL", f.Name())
		}
		mu.Lock()
		defer mu.Unlock()
		if failWith != nil {
			return failWith
		}
		count++
		return real(f)
	}
	db.wal.mu.Unlock()
	return func() int { mu.Lock(); defer mu.Unlock(); return count },
		func(err error) { mu.Lock(); defer mu.Unlock(); failWith = err }
}

// TestCommitsSyncTheWAL: with synchronous=NORMAL SQLite no longer fsyncs at
// commit, so every acknowledged write must have been followed by keyhold's
// fsync of the WAL.
func TestCommitsSyncTheWAL(t *testing.T) {
	ctx := context.Background()
	db := openTemp(t)
	n, _ := countFsyncs(t, db)
	for i, id := range []string{"a", "b", "c"} {
		if err := db.CreateKey(ctx, testKey(id)); err != nil {
			t.Fatal(err)
		}
		if got := n(); got != i+1 {
			t.Fatalf("after %d writes, %d fsyncs of the WAL", i+1, got)
		}
	}
	// Reads sync nothing.
	if _, err := db.GetKey(ctx, "111122223333", "", "a"); err != nil {
		t.Fatal(err)
	}
	if got := n(); got != 3 {
		t.Fatalf("a read fsynced the WAL (%d fsyncs)", got)
	}
}

// TestWALSyncFailureFailsTheWrite: a write whose commit could not be made
// durable is not acknowledged.
func TestWALSyncFailureFailsTheWrite(t *testing.T) {
	ctx := context.Background()
	db := openTemp(t)
	_, fail := countFsyncs(t, db)
	fail(errors.New("disk on fire"))
	err := db.CreateKey(ctx, testKey("x"))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("CreateKey with a failing fsync = %v, want ErrUnavailable", err)
	}
	fail(nil)
	if err := db.CreateKey(ctx, testKey("y")); err != nil {
		t.Fatalf("CreateKey once fsync works again: %v", err)
	}
}

// TestWALSyncFollowsANewWAL: when SQLite deleted the WAL (its last
// connection closed) and made a new one, the fsync goes to the new file.
func TestWALSyncFollowsANewWAL(t *testing.T) {
	dir := t.TempDir()
	w := newWALSync(filepath.Join(dir, "k.db"))
	defer w.close()
	if err := w.sync(); err != nil {
		t.Fatalf("sync without a WAL: %v", err)
	}
	walPath := filepath.Join(dir, "k.db-wal")
	if err := os.WriteFile(walPath, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.sync(); err != nil {
		t.Fatal(err)
	}
	first := w.f
	os.Remove(walPath)
	if err := os.WriteFile(walPath, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.sync(); err != nil {
		t.Fatal(err)
	}
	if w.f == first {
		t.Fatal("still syncing the deleted WAL")
	}
	a, _ := w.f.Stat()
	b, _ := os.Stat(walPath)
	if !os.SameFile(a, b) {
		t.Fatal("the synced descriptor is not the WAL file now at the path")
	}
}
