package hsm

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestKeyLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.activeCluster("us-east-1a")
	s, err := e.m.Login(ctx, id, "kmsuser", userPass)
	if err != nil {
		t.Fatal(err)
	}
	label := "arn:aws:kms:us-east-1:111122223333:key/1234"
	h, err := s.GenerateKey(ctx, label)
	if err != nil || len(h) != 32 {
		t.Fatalf("GenerateKey: %q %v", h, err)
	}
	if _, err := s.GenerateKey(ctx, label); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("duplicate label: %v", err)
	}
	pt := []byte("thirty-two bytes of plaintext!!!")
	iv, ct, err := s.Encrypt(ctx, label, pt, []byte("aad"))
	if err != nil || len(iv) != 12 || len(ct) != len(pt)+16 {
		t.Fatalf("Encrypt: %d %d %v", len(iv), len(ct), err)
	}
	iv2, ct2, _ := s.Encrypt(ctx, label, pt, []byte("aad"))
	if bytes.Equal(iv, iv2) || bytes.Equal(ct, ct2) {
		t.Fatal("two encryptions reused an IV")
	}
	got, err := s.Decrypt(ctx, label, iv, ct, []byte("aad"))
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Decrypt: %q %v", got, err)
	}
	if _, err := s.Decrypt(ctx, label, iv, ct, []byte("other")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong AAD: %v", err)
	}
	bad := bytes.Clone(ct)
	bad[0] ^= 1
	if _, err := s.Decrypt(ctx, label, iv, bad, []byte("aad")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("tampered: %v", err)
	}
	r, err := s.GenerateRandom(ctx, 32)
	if err != nil || len(r) != 32 {
		t.Fatalf("GenerateRandom: %v", err)
	}
	if err := s.DestroyKey(ctx, label); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decrypt(ctx, label, iv, ct, []byte("aad")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("after destroy: %v", err)
	}
	if err := s.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Encrypt(ctx, label, pt, nil); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("after logout: %v", err)
	}
}
