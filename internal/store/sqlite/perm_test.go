package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestFilesOwnerOnly: the database and its -wal and -shm files are 0600,
// also when an older version left them 0644.
func TestFilesOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keyhold.db")
	for round := range 2 {
		db, err := Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("round %d: %s is %v, want 0600", round, filepath.Base(p), st.Mode().Perm())
			}
		}
		db.Close()
		// An older keyhold's files.
		os.Chmod(path, 0o644)
		os.Chmod(path+"-wal", 0o644)
	}
}
