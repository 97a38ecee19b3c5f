package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// keyUsage: the last use of a key survives in the store; a batch from a
// replica that is older than what is stored changes nothing; deleting the
// key deletes its usage.
func keyUsage(t *testing.T, s store.Store) {
	before := time.Now().Add(-time.Minute)
	k := store.Key{AccountID: "111122223333", ID: "k-used", State: "Enabled", CreationDate: before, Policy: "{}"}
	other := store.Key{AccountID: "111122223333", ID: "k-other", State: "Enabled", CreationDate: before, Policy: "{}"}
	for _, k := range []store.Key{k, other} {
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	u, since, err := s.GetKeyUsage(ctx, k.AccountID, "", k.ID)
	if err != nil || !u.Time.IsZero() {
		t.Fatalf("GetKeyUsage of an unused key = %+v, %v", u, err)
	}
	if since.Before(before) || since.After(time.Now().Add(time.Minute)) {
		t.Fatalf("tracking start %v is not when the store was made", since)
	}
	t1 := time.Unix(1800000000, 123456789).UTC()
	uses := []store.KeyUsage{
		{AccountID: k.AccountID, KeyID: k.ID, Operation: "Encrypt", RequestID: "r1", Time: t1},
		{AccountID: other.AccountID, KeyID: other.ID, Operation: "Sign", RequestID: "r2", Time: t1},
	}
	if err := s.RecordKeyUsage(ctx, uses); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordKeyUsage(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	got, since2, err := s.GetKeyUsage(ctx, k.AccountID, "", k.ID)
	if err != nil || got.Operation != "Encrypt" || got.RequestID != "r1" || !got.Time.Equal(t1) || !since2.Equal(since) {
		t.Fatalf("GetKeyUsage = %+v, %v, %v", got, since2, err)
	}
	// An older use (a slower replica's batch) does not replace a newer one.
	if err := s.RecordKeyUsage(ctx, []store.KeyUsage{{AccountID: k.AccountID, KeyID: k.ID, Operation: "Decrypt", RequestID: "r0", Time: t1.Add(-time.Second)}}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.GetKeyUsage(ctx, k.AccountID, "", k.ID); got.Operation != "Encrypt" {
		t.Fatalf("an older use replaced the last one: %+v", got)
	}
	if err := s.RecordKeyUsage(ctx, []store.KeyUsage{{AccountID: k.AccountID, KeyID: k.ID, Operation: "Decrypt", RequestID: "r3", Time: t1.Add(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.GetKeyUsage(ctx, k.AccountID, "", k.ID); got.Operation != "Decrypt" || got.RequestID != "r3" {
		t.Fatalf("a newer use did not replace the last one: %+v", got)
	}
	// A large batch (written in chunks), a key twice in it: each key's
	// latest use, whatever its place in the batch.
	var bulk []store.KeyUsage
	for i := range 150 {
		bulk = append(bulk, store.KeyUsage{AccountID: k.AccountID, KeyID: fmt.Sprintf("bulk-%03d", i), Operation: "Encrypt", RequestID: fmt.Sprint("b", i), Time: t1})
	}
	bulk = append([]store.KeyUsage{{AccountID: k.AccountID, KeyID: "bulk-070", Operation: "Sign", RequestID: "later", Time: t1.Add(time.Second)}}, bulk...)
	bulk = append(bulk, store.KeyUsage{AccountID: k.AccountID, KeyID: "bulk-071", Operation: "Sign", RequestID: "earlier", Time: t1.Add(-time.Second)})
	if err := s.RecordKeyUsage(ctx, bulk); err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		want := fmt.Sprint("b", i)
		if i == 70 {
			want = "later"
		}
		if got, _, err := s.GetKeyUsage(ctx, k.AccountID, "", fmt.Sprintf("bulk-%03d", i)); err != nil || got.RequestID != want {
			t.Fatalf("bulk-%03d: %+v, %v; want request %s", i, got, err, want)
		}
	}
	if err := s.DeleteKey(ctx, k.AccountID, k.Region, k.ID); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.GetKeyUsage(ctx, k.AccountID, "", k.ID); !got.Time.IsZero() {
		t.Fatalf("usage of a deleted key remains: %+v", got)
	}
	if got, _, _ := s.GetKeyUsage(ctx, other.AccountID, "", other.ID); got.Operation != "Sign" {
		t.Fatalf("another key's usage changed: %+v", got)
	}
}
