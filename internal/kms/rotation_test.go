package kms

import (
	"github.com/keyhold/keyhold/internal/principal"

	"context"
	"testing"
	"time"
)

func TestAutomaticRotationWhenDue(t *testing.T) {
	s, clk, _ := newService(t)
	ctx := context.Background()
	c := Request{Principal: principal.Principal{AccountID: "111122223333"}}
	k, err := s.CreateKey(ctx, c, CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnableKeyRotation(ctx, c, k.KeyID, 90); err != nil {
		t.Fatal(err)
	}
	ct, err := s.Encrypt(ctx, c, EncryptInput{KeyID: k.KeyID, Plaintext: []byte("old")})
	if err != nil {
		t.Fatal(err)
	}
	clk.add(89 * day)
	if n, err := s.RotateDueKeys(ctx); err != nil || n != 0 {
		t.Fatalf("RotateDueKeys before the period: %d, %v", n, err)
	}
	clk.add(day + time.Second)
	if n, err := s.RotateDueKeys(ctx); err != nil || n != 1 {
		t.Fatalf("RotateDueKeys when due: %d, %v", n, err)
	}
	m, _ := s.DescribeKey(ctx, c, k.KeyID)
	if m.CurrentKeyMaterialID == k.CurrentKeyMaterialID {
		t.Fatal("material did not change")
	}
	st, _ := s.GetKeyRotationStatus(ctx, c, k.KeyID)
	if want := NextRotation(clk.now(), 90); st.Next.Sub(want) > time.Second || want.Sub(st.Next) > time.Second {
		t.Fatalf("next rotation %v, want %v", st.Next, want)
	}
	if n, _ := s.RotateDueKeys(ctx); n != 0 {
		t.Fatal("rotated twice in one period")
	}
	dec, err := s.Decrypt(ctx, c, DecryptInput{CiphertextBlob: ct.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "old" {
		t.Fatalf("old ciphertext after automatic rotation: %v", err)
	}
	rs, _, err := s.ListKeyRotations(ctx, c, k.KeyID, false, 0, "")
	if err != nil || len(rs) != 1 || rs[0].Type != RotationAutomatic {
		t.Fatalf("ListKeyRotations = %+v, %v", rs, err)
	}

	// A disabled key is not rotated while disabled; it rotates once enabled.
	clk.add(91 * day)
	if err := s.DisableKey(ctx, c, k.KeyID); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.RotateDueKeys(ctx); n != 0 {
		t.Fatal("a disabled key was rotated")
	}
	s.EnableKey(ctx, c, k.KeyID)
	if n, _ := s.RotateDueKeys(ctx); n != 1 {
		t.Fatal("an overdue key was not rotated after enabling")
	}
}

func TestNextRotation(t *testing.T) {
	from := time.Date(2026, 1, 31, 10, 0, 0, 500, time.UTC)
	if got := NextRotation(from, 365); !got.Equal(time.Date(2027, 1, 31, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("NextRotation = %v", got)
	}
}
