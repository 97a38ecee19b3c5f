package soft

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/keystore"
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

// With more keys in use than CacheSize, unsealed material stays bounded and
// an evicted key still works (it is unsealed again).
func TestMaterialCacheBounded(t *testing.T) {
	root, err := rootkey.LoadOrCreateFile(filepath.Join(t.TempDir(), "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	b := New(root)
	ctx := context.Background()
	refs := make([]keystore.KeyRef, CacheSize+50)
	cts := make([][]byte, len(refs))
	for i := range refs {
		id := fmt.Sprintf("key-%d", i)
		m, err := b.NewMaterial(id)
		if err != nil {
			t.Fatal(err)
		}
		refs[i] = keystore.KeyRef{ID: id, BackingKeyID: m.BackingKeyID, SealedMaterial: m.SealedMaterial}
		if cts[i], err = b.Encrypt(ctx, refs[i], keystore.Call{}, []byte("pt"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.aeads.Len(); n > CacheSize {
		t.Fatalf("%d keys' material cached, bound is %d", n, CacheSize)
	}
	for _, i := range []int{0, 1, len(refs) - 1} {
		if pt, err := b.Decrypt(ctx, refs[i], keystore.Call{}, cts[i], nil); err != nil || string(pt) != "pt" {
			t.Fatalf("key %d after eviction: %q, %v", i, pt, err)
		}
	}
	b.Forget("key-1")
	if _, ok := b.aeads.Get("key-1" + string(refs[1].BackingKeyID)); ok {
		t.Error("Forget left the material cached")
	}
}

// BenchmarkSealOpen is a symmetric ciphertext's whole life in the default
// key store: the blob header and encryption-context AAD, AES-GCM seal under
// the key's (cached) material, then decode and open.
func BenchmarkSealOpen(b *testing.B) {
	root, err := rootkey.LoadOrCreateFile(filepath.Join(b.TempDir(), "root.key"))
	if err != nil {
		b.Fatal(err)
	}
	be := New(root)
	const keyID = "1234abcd-12ab-34cd-56ef-1234567890ab"
	m, err := be.NewMaterial(keyID)
	if err != nil {
		b.Fatal(err)
	}
	ref := keystore.KeyRef{ID: keyID, BackingKeyID: m.BackingKeyID, SealedMaterial: m.SealedMaterial}
	ctx := context.Background()
	ec := map[string]string{"purpose": "bench", "tenant": "t-42"}
	pt := make([]byte, 32)
	h := blob.Header{Kind: blob.KindSoft}
	h.KeyID, _ = blob.ParseUUID(keyID)
	copy(h.BackingKeyID[:], m.BackingKeyID)
	b.ReportAllocs()
	for b.Loop() {
		hdr := h.Bytes()
		payload, err := be.Encrypt(ctx, ref, keystore.Call{}, pt, blob.AAD(hdr, ec))
		if err != nil {
			b.Fatal(err)
		}
		ct := blob.Encode(h, payload)
		_, body, err := blob.Decode(ct)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := be.Decrypt(ctx, ref, keystore.Call{}, body, blob.AAD(ct[:blob.HeaderLen], ec)); err != nil {
			b.Fatal(err)
		}
	}
}
