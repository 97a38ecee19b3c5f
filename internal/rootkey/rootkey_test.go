package rootkey

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.key")
	k1, err := LoadOrCreateFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	sealed, err := k1.Seal([]byte("material"), []byte("arn:1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("material")) {
		t.Fatal("plaintext visible in sealed value")
	}
	k2, err := LoadOrCreateFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := k2.Open(sealed, []byte("arn:1"))
	if err != nil || string(pt) != "material" {
		t.Fatalf("Open after reload = %q, %v", pt, err)
	}
	if _, err := k2.Open(sealed, []byte("arn:2")); err != ErrOpen {
		t.Fatalf("wrong aad: %v, want ErrOpen", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := k2.Open(sealed, []byte("arn:1")); err != ErrOpen {
		t.Fatalf("tampered: %v, want ErrOpen", err)
	}
	other, _ := LoadOrCreateFile(filepath.Join(t.TempDir(), "other.key"))
	sealed[len(sealed)-1] ^= 1
	if _, err := other.Open(sealed, []byte("arn:1")); err != ErrOpen {
		t.Fatalf("other root key: %v, want ErrOpen", err)
	}
	if s := k1.String(); bytes.Contains([]byte(s), []byte{0}) || s == "" {
		t.Fatalf("String() = %q", s)
	}
}
