package kms

import (
	"context"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/principal"
)

// TestMultiRegionDeletionWaitsForReplicas: a primary scheduled while it
// has replicas waits in PendingReplicaDeletion; its own waiting period
// starts when the last replica is deleted, and then it is deleted too.
func TestMultiRegionDeletionWaitsForReplicas(t *testing.T) {
	s, clk, _ := newService(t)
	ctx := context.Background()
	east := Request{Principal: principal.Principal{AccountID: "111122223333"}, Region: "us-east-1"}
	west, south := east, east
	west.Region, south.Region = "eu-west-1", "ap-southeast-2"
	p, err := s.CreateKey(ctx, east, CreateKeyInput{MultiRegion: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"eu-west-1", "ap-southeast-2"} {
		if _, err := s.ReplicateKey(ctx, east, ReplicateKeyInput{KeyID: p.KeyID, ReplicaRegion: r}); err != nil {
			t.Fatal(err)
		}
	}
	k, err := s.ScheduleKeyDeletion(ctx, east, p.KeyID, 7)
	if err != nil || k.State != StatePendingReplicaDeletion || !k.DeletionDate.IsZero() {
		t.Fatalf("primary with replicas: %s %v, %v", k.State, k.DeletionDate, err)
	}
	if _, err := s.ScheduleKeyDeletion(ctx, west, p.KeyID, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ScheduleKeyDeletion(ctx, south, p.KeyID, 30); err != nil {
		t.Fatal(err)
	}
	clk.add(7*day + time.Second)
	if n, err := s.DeleteDueKeys(ctx); err != nil || n != 1 {
		t.Fatalf("first replica due: deleted %d, %v", n, err)
	}
	if _, err := s.DescribeKey(ctx, west, p.KeyID); code(err) != NotFound {
		t.Fatalf("deleted replica: %v", err)
	}
	m, err := s.DescribeKey(ctx, east, p.KeyID)
	if err != nil || m.KeyState != StatePendingReplicaDeletion || len(m.MultiRegion.Replicas) != 1 || m.MultiRegion.Replicas[0].Region != "ap-southeast-2" {
		t.Fatalf("primary after one replica went: %+v, %v", m, err)
	}
	clk.add(30 * day)
	if n, err := s.DeleteDueKeys(ctx); err != nil || n != 1 {
		t.Fatalf("last replica due: deleted %d, %v", n, err)
	}
	m, err = s.DescribeKey(ctx, east, p.KeyID)
	if err != nil || m.KeyState != StatePendingDeletion || !m.DeletionDate.Equal(clk.now().Add(7*day).Truncate(time.Second)) || len(m.MultiRegion.Replicas) != 0 {
		t.Fatalf("primary after its last replica: %+v, %v", m, err)
	}
	if n, _ := s.DeleteDueKeys(ctx); n != 0 {
		t.Fatal("the primary went before its own waiting period")
	}
	clk.add(7*day + time.Second)
	if n, err := s.DeleteDueKeys(ctx); err != nil || n != 1 {
		t.Fatalf("primary due: deleted %d, %v", n, err)
	}
	if _, err := s.DescribeKey(ctx, east, p.KeyID); code(err) != NotFound {
		t.Fatalf("deleted primary: %v", err)
	}
}

// TestMultiRegionAutomaticRotation: the rotation job rotates the primary
// only, and the replica gets the new material in the same transaction.
func TestMultiRegionAutomaticRotation(t *testing.T) {
	s, clk, _ := newService(t)
	ctx := context.Background()
	east := Request{Principal: principal.Principal{AccountID: "111122223333"}, Region: "us-east-1"}
	west := east
	west.Region = "eu-west-1"
	p, err := s.CreateKey(ctx, east, CreateKeyInput{MultiRegion: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReplicateKey(ctx, east, ReplicateKeyInput{KeyID: p.KeyID, ReplicaRegion: "eu-west-1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.EnableKeyRotation(ctx, east, p.KeyID, 90); err != nil {
		t.Fatal(err)
	}
	clk.add(90*day + time.Second)
	if n, err := s.RotateDueKeys(ctx); err != nil || n != 1 {
		t.Fatalf("rotation job: %d keys, %v; want the primary only", n, err)
	}
	pm, _ := s.DescribeKey(ctx, east, p.KeyID)
	rm, _ := s.DescribeKey(ctx, west, p.KeyID)
	if pm.CurrentKeyMaterialID == p.CurrentKeyMaterialID || rm.CurrentKeyMaterialID != pm.CurrentKeyMaterialID {
		t.Fatalf("after the rotation job: primary %s replica %s (was %s)", pm.CurrentKeyMaterialID, rm.CurrentKeyMaterialID, p.CurrentKeyMaterialID)
	}
	ct, err := s.Encrypt(ctx, east, EncryptInput{KeyID: p.KeyID, Plaintext: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := s.Decrypt(ctx, west, DecryptInput{CiphertextBlob: ct.CiphertextBlob}); err != nil || string(out.Plaintext) != "x" {
		t.Fatalf("rotated material at the replica: %v", err)
	}
	if n, _ := s.RotateDueKeys(ctx); n != 0 {
		t.Fatal("rotated twice")
	}
}
