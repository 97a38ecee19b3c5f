package kms

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/principal"
)

// TestImportedMaterialExpiry: with several materials, expiry of any
// material bound to the key (current or not) makes the key PendingImport;
// expiry of material pending rotation leaves the key alone but it can no
// longer be rotated in until imported again.
func TestImportedMaterialExpiry(t *testing.T) {
	s, clk, _ := newService(t)
	ctx := context.Background()
	c := Request{Principal: principal.Principal{AccountID: "111122223333"}}
	k, err := s.CreateKey(ctx, c, CreateKeyInput{Origin: OriginExternal})
	if err != nil {
		t.Fatal(err)
	}
	imp := func(material []byte, typ string, validFor time.Duration) error {
		p, err := s.GetParametersForImport(ctx, c, k.KeyID, "RSAES_OAEP_SHA_256", "RSA_2048")
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := x509.ParsePKIXPublicKey(p.PublicKey)
		wrapped, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.(*rsa.PublicKey), material, nil)
		_, _, err = s.ImportKeyMaterial(ctx, c, ImportInput{KeyID: k.KeyID, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapped,
			ImportType: typ, ExpirationModel: ExpiresModel, ValidTo: clk.now().Add(validFor)})
		return err
	}
	state := func() string {
		m, err := s.DescribeKey(ctx, c, k.KeyID)
		if err != nil {
			t.Fatal(err)
		}
		return m.KeyState
	}
	m1, m2, m3 := make([]byte, 32), make([]byte, 32), make([]byte, 32)
	for _, m := range [][]byte{m1, m2, m3} {
		rand.Read(m)
	}
	if err := imp(m1, "", 10*day); err != nil {
		t.Fatal(err)
	}
	if err := imp(m2, ImportNewMaterial, 20*day); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateKeyOnDemand(ctx, c, k.KeyID); err != nil {
		t.Fatal(err)
	}
	// m1 (NON_CURRENT) expires: the key needs it.
	clk.add(10*day + time.Second)
	if n, err := s.RotateDueKeys(ctx); err != nil || n != 1 {
		t.Fatalf("RotateDueKeys: %d, %v", n, err)
	}
	if st := state(); st != StatePendingImport {
		t.Fatalf("state after the non-current material expired: %s", st)
	}
	if err := imp(m1, ImportExistingMaterial, 30*day); err != nil {
		t.Fatal(err)
	}
	if st := state(); st != StateEnabled {
		t.Fatalf("state after re-import: %s", st)
	}
	// Material pending rotation expires: the key stays Enabled, rotation
	// waits for it to be imported again.
	if err := imp(m3, ImportNewMaterial, day); err != nil {
		t.Fatal(err)
	}
	clk.add(day + time.Second)
	if _, err := s.RotateDueKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if st := state(); st != StateEnabled {
		t.Fatalf("expired pending material changed the key to %s", st)
	}
	if _, err := s.RotateKeyOnDemand(ctx, c, k.KeyID); code(err) != InvalidState {
		t.Fatalf("rotation onto expired pending material: %v", err)
	}
	if err := imp(m3, "", 5*day); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateKeyOnDemand(ctx, c, k.KeyID); err != nil {
		t.Fatalf("rotation after re-import of the pending material: %v", err)
	}
}
