package kms

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/principal"
	"github.com/keyhold/keyhold/internal/store"
)

// countingStore counts the writes of key usage.
type countingStore struct {
	store.Store
	mu     sync.Mutex
	writes int
	uses   int
}

func (c *countingStore) RecordKeyUsage(ctx context.Context, uses []store.KeyUsage) error {
	c.mu.Lock()
	c.writes++
	c.uses += len(uses)
	c.mu.Unlock()
	return c.Store.RecordKeyUsage(ctx, uses)
}

// TestKeyUsageIsWrittenInBatches: the hot path writes nothing; a flush
// writes one batch with one row per key used, whatever the number of uses.
func TestKeyUsageIsWrittenInBatches(t *testing.T) {
	s, clk, st := newService(t)
	s.usage.interval = time.Hour // the test flushes by hand
	cs := &countingStore{Store: st}
	s.st = cs
	ctx := context.Background()
	c := Request{Principal: principal.Principal{AccountID: "111122223333"}, Operation: "Encrypt"}
	var ids []string
	for range 3 {
		k, err := s.CreateKey(ctx, c, CreateKeyInput{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.KeyID)
	}
	for i := range 300 {
		clk.add(time.Millisecond)
		c.RequestID = "req-" + string(rune('a'+i%3))
		if _, err := s.Encrypt(ctx, c, EncryptInput{KeyID: ids[i%3], Plaintext: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if cs.writes != 0 {
		t.Fatalf("%d writes on the hot path", cs.writes)
	}
	// This server answers from what it has not written yet.
	u, err := s.GetKeyLastUsage(ctx, c, ids[2])
	if err != nil || u.Last == nil || u.Last.Operation != "Encrypt" || u.Last.RequestID != "req-c" {
		t.Fatalf("before the flush: %+v, %v", u.Last, err)
	}
	if err := s.FlushKeyUsage(ctx); err != nil {
		t.Fatal(err)
	}
	if cs.writes != 1 || cs.uses != 3 {
		t.Fatalf("flush wrote %d batches of %d uses, want 1 of 3", cs.writes, cs.uses)
	}
	if err := s.FlushKeyUsage(ctx); err != nil || cs.writes != 1 {
		t.Fatalf("an empty flush wrote: %d, %v", cs.writes, err)
	}
	// What was written is what a fresh reader (another replica) sees.
	for i, id := range ids {
		got, _, err := st.GetKeyUsage(ctx, "111122223333", s.Region(), id)
		want := clk.now().Add(-time.Duration(2-i) * time.Millisecond)
		if err != nil || got.Operation != "Encrypt" || !got.Time.Equal(want) {
			t.Fatalf("stored use of key %d = %+v, %v; want at %v", i, got, err, want)
		}
	}
	// An operation that is not a tracked one records nothing.
	c.Operation = "DescribeKey"
	s.recordUse(ctx, c, store.Key{AccountID: "111122223333", ID: ids[0]})
	if err := s.FlushKeyUsage(ctx); err != nil || cs.writes != 1 {
		t.Fatalf("untracked operation written: %d, %v", cs.writes, err)
	}
}
