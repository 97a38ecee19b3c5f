package soft

import (
	"path/filepath"
	"testing"

	"github.com/keyhold/keyhold/internal/keystore/keystoretest"
	"github.com/keyhold/keyhold/internal/rootkey"
)

func TestConformance(t *testing.T) {
	root, err := rootkey.LoadOrCreateFile(filepath.Join(t.TempDir(), "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	keystoretest.RunDefault(t, New(root))
}
