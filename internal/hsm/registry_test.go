package hsm

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStoreRegistryImportsLegacyFiles: the JSON records of an older keyhold
// move into the store once, and their files go.
func TestStoreRegistryImportsLegacyFiles(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "hsm")
	c := ClusterRecord{ID: "cluster-abcdefghijk", State: ClusterActive, Created: time.Unix(1700000000, 0).UTC(),
		TokenDir: filepath.Join(dir, "clusters", "cluster-abcdefghijk", "tokens"), User: UserRecord{Name: "kmsuser", Exists: true, FailedLogins: 2}}
	b := BackupRecord{ID: "backup-abcdefghijk", State: BackupReady, ClusterID: c.ID, Created: time.Unix(1700000100, 0).UTC()}
	write := func(path string, v any) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		j, _ := json.Marshal(v)
		if err := os.WriteFile(path, j, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "clusters", c.ID, "cluster.json"), c)
	write(filepath.Join(dir, "backups", b.ID, "backup.json"), b)
	st, closeStore, err := openRecords(ctx, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	reg, err := NewStoreRegistry(ctx, st, dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := reg.GetCluster(ctx, c.ID)
	if err != nil || got.State != ClusterActive || got.User.FailedLogins != 2 || got.TokenDir != c.TokenDir {
		t.Fatalf("imported cluster = %+v, %v", got, err)
	}
	if gb, err := reg.GetBackup(ctx, b.ID); err != nil || gb.ClusterID != c.ID || gb.State != BackupReady {
		t.Fatalf("imported backup = %+v, %v", gb, err)
	}
	for _, f := range []string{filepath.Join(dir, "clusters", c.ID, "cluster.json"), filepath.Join(dir, "backups", b.ID, "backup.json")} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s still exists after the import: %v", f, err)
		}
	}
	// Opening again changes nothing (the records are the store's now).
	if _, err := reg.UpdateCluster(ctx, c.ID, func(r *ClusterRecord) error { r.User.FailedLogins = 0; return nil }); err != nil {
		t.Fatal(err)
	}
	reg2, err := NewStoreRegistry(ctx, st, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := reg2.GetCluster(ctx, c.ID); got.User.FailedLogins != 0 {
		t.Fatalf("a second open re-imported an old record: %+v", got.User)
	}
	if _, err := NewStoreRegistry(ctx, st, "relative/hsm"); err == nil {
		t.Fatal("a relative token directory was accepted")
	}
}
