// Package storetest is the conformance suite every store.Store must pass.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// Run exercises a fresh, empty store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("accounts and access keys", func(t *testing.T) { accounts(t, open(t)) })
	t.Run("keys", func(t *testing.T) { keys(t, open(t)) })
	t.Run("keys due for rotation", func(t *testing.T) { keysDueForRotation(t, open(t)) })
	t.Run("key usage", func(t *testing.T) { keyUsage(t, open(t)) })
	t.Run("aliases", func(t *testing.T) { aliases(t, open(t)) })
	t.Run("custom key stores", func(t *testing.T) { customKeyStores(t, open(t)) })
	t.Run("grants", func(t *testing.T) { grants(t, open(t)) })
	t.Run("principals and policies", func(t *testing.T) { principals(t, open(t)) })
	t.Run("external key uniqueness", func(t *testing.T) { externalKeyUnique(t, open(t)) })
	t.Run("backup history uniqueness", func(t *testing.T) { backupHistoryUnique(t, open(t)) })
	t.Run("VPC endpoint services", func(t *testing.T) { vpcEndpointServices(t, open(t)) })
	t.Run("HSM clusters and backups", func(t *testing.T) { hsmRecords(t, open(t)) })
	t.Run("transactions", func(t *testing.T) { transactions(t, open(t)) })
	t.Run("concurrent read-modify-write", func(t *testing.T) { concurrentUpdates(t, open(t)) })
}

var ctx = context.Background()

func accounts(t *testing.T, s store.Store) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	if err := s.CreateAccount(ctx, store.Account{ID: "111122223333", Created: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(ctx, store.Account{ID: "111122223333", Created: now}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate account: %v, want ErrExists", err)
	}
	as, err := s.ListAccounts(ctx)
	if err != nil || len(as) != 1 || as[0].ID != "111122223333" {
		t.Fatalf("ListAccounts = %v, %v", as, err)
	}
	k := store.AccessKey{ID: "AKIA1", AccountID: "111122223333", PrincipalARN: "arn:aws:iam::111122223333:user/a", SealedSecret: []byte{1, 2}, Active: true, Created: now}
	if err := s.PutAccessKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAccessKey(ctx, "AKIA1")
	if err != nil || got.PrincipalARN != k.PrincipalARN || string(got.SealedSecret) != string(k.SealedSecret) || !got.Active {
		t.Fatalf("GetAccessKey = %+v, %v", got, err)
	}
	k.Active = false
	if err := s.PutAccessKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAccessKey(ctx, "AKIA1"); got.Active {
		t.Fatal("deactivation not stored")
	}
	if _, err := s.GetAccessKey(ctx, "AKIA2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown access key: %v", err)
	}
}

func key(acct, id string) store.Key {
	return store.Key{AccountID: acct, ID: id, CreationDate: time.Unix(1700000000, 0).UTC(), KeyUsage: "ENCRYPT_DECRYPT",
		KeySpec: "SYMMETRIC_DEFAULT", Origin: "AWS_KMS", State: "Enabled", Policy: "{}", BackingKeyID: []byte{9}, SealedMaterial: []byte{7, 7}}
}

func keys(t *testing.T, s store.Store) {
	a := "111122223333"
	for i := 0; i < 5; i++ {
		if err := s.CreateKey(ctx, key(a, fmt.Sprintf("k%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateKey(ctx, key(a, "k1")); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate key: %v", err)
	}
	if err := s.CreateKey(ctx, key("444455556666", "k1")); err != nil {
		t.Fatalf("same id in another account: %v", err)
	}
	k, err := s.GetKey(ctx, a, "k1")
	if err != nil || k.Version != 1 || string(k.SealedMaterial) != "\x07\x07" || k.Origin != "AWS_KMS" {
		t.Fatalf("GetKey = %+v, %v", k, err)
	}
	k.State, k.Description = "PendingDeletion", "d"
	k.DeletionDate = time.Unix(1700000100, 0).UTC()
	k.Tags = []store.Tag{{Key: "a", Value: "b"}}
	v, err := s.UpdateKey(ctx, k)
	if err != nil || v != 2 {
		t.Fatalf("UpdateKey = %d, %v", v, err)
	}
	if _, err := s.UpdateKey(ctx, k); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	k2, _ := s.GetKey(ctx, a, "k1")
	if k2.Description != "d" || len(k2.Tags) != 1 || !k2.DeletionDate.Equal(k.DeletionDate) {
		t.Fatalf("update not stored: %+v", k2)
	}
	due, err := s.KeysDueForDeletion(ctx, time.Unix(1700000100, 0))
	if err != nil || len(due) != 1 || due[0].ID != "k1" {
		t.Fatalf("KeysDueForDeletion = %v, %v", due, err)
	}
	if due, _ := s.KeysDueForDeletion(ctx, time.Unix(1700000099, 0)); len(due) != 0 {
		t.Fatalf("key due too early: %v", due)
	}
	page, err := s.ListKeys(ctx, a, "k1", 2)
	if err != nil || len(page) != 2 || page[0].ID != "k2" || page[1].ID != "k3" {
		t.Fatalf("ListKeys after k1 = %v, %v", page, err)
	}
	x := key(a, "x1")
	x.CustomKeyStoreID, x.XksKeyID = "cks-1", "ext-1"
	if err := s.CreateKey(ctx, x); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountKeysInStore(ctx, a, "cks-1"); err != nil || n != 1 {
		t.Fatalf("CountKeysInStore = %d, %v", n, err)
	}
	if got, err := s.KeyByXksKeyID(ctx, a, "cks-1", "ext-1"); err != nil || got.ID != "x1" {
		t.Fatalf("KeyByXksKeyID = %v, %v", got.ID, err)
	}
	if _, err := s.KeyByXksKeyID(ctx, a, "cks-1", "ext-2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown xks key id: %v", err)
	}
	if got, err := s.FindKey(ctx, "x1"); err != nil || got.AccountID != a {
		t.Fatalf("FindKey = %+v, %v", got, err)
	}
	if _, err := s.FindKey(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("FindKey of an unknown id: %v", err)
	}
	if err := s.DeleteKey(ctx, a, "k1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetKey(ctx, a, "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	if err := s.DeleteKey(ctx, a, "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if _, err := s.GetKey(ctx, "444455556666", "k1"); err != nil {
		t.Fatalf("other account's key gone: %v", err)
	}
}

func aliases(t *testing.T, s store.Store) {
	a := "111122223333"
	now := time.Unix(1700000000, 0).UTC()
	s.CreateKey(ctx, key(a, "k1"))
	s.CreateKey(ctx, key(a, "k2"))
	if err := s.CreateAlias(ctx, store.Alias{AccountID: a, Name: "alias/x", KeyID: "missing", Created: now, Updated: now}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("alias to a missing key: %v", err)
	}
	for _, n := range []string{"alias/a", "alias/b", "alias/c"} {
		if err := s.CreateAlias(ctx, store.Alias{AccountID: a, Name: n, KeyID: "k1", Created: now, Updated: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateAlias(ctx, store.Alias{AccountID: a, Name: "alias/a", KeyID: "k2", Created: now, Updated: now}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate alias: %v", err)
	}
	if err := s.UpdateAlias(ctx, store.Alias{AccountID: a, Name: "alias/b", KeyID: "k2", Updated: now.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAlias(ctx, a, "alias/b"); got.KeyID != "k2" || !got.Created.Equal(now) {
		t.Fatalf("UpdateAlias stored %+v", got)
	}
	if l, _ := s.ListAliases(ctx, a, "k1", "", 10); len(l) != 2 {
		t.Fatalf("aliases of k1: %v", l)
	}
	if l, _ := s.ListAliases(ctx, a, "", "alias/a", 1); len(l) != 1 || l[0].Name != "alias/b" {
		t.Fatalf("page after alias/a: %v", l)
	}
	if err := s.DeleteKey(ctx, a, "k1"); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.ListAliases(ctx, a, "", "", 10); len(l) != 1 || l[0].Name != "alias/b" {
		t.Fatalf("aliases after deleting k1: %v (they must go with the key)", l)
	}
	if err := s.DeleteAlias(ctx, a, "alias/b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAlias(ctx, a, "alias/b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func customKeyStores(t *testing.T, s store.Store) {
	a := "111122223333"
	c := store.CustomKeyStore{AccountID: a, ID: "cks-1", Name: "one", Type: "AWS_CLOUDHSM", Created: time.Unix(1700000000, 0).UTC(),
		Config: []byte(`{"x":1}`), SealedSecret: []byte{1}, ConnectionState: "DISCONNECTED"}
	if err := s.CreateCustomKeyStore(ctx, c); err != nil {
		t.Fatal(err)
	}
	c2 := c
	c2.ID = "cks-2"
	if err := s.CreateCustomKeyStore(ctx, c2); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate name: %v, want ErrExists", err)
	}
	c2.Name = "two"
	if err := s.CreateCustomKeyStore(ctx, c2); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetCustomKeyStore(ctx, a, "cks-1")
	if err != nil || got.Version != 1 || string(got.Config) != `{"x":1}` || got.ConnectionState != "DISCONNECTED" {
		t.Fatalf("GetCustomKeyStore = %+v, %v", got, err)
	}
	got.ConnectionState, got.ConnectionErrorCode = "FAILED", "USER_NOT_FOUND"
	if _, err := s.UpdateCustomKeyStore(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateCustomKeyStore(ctx, got); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	got, _ = s.GetCustomKeyStore(ctx, a, "cks-1")
	got.Name = "two"
	if _, err := s.UpdateCustomKeyStore(ctx, got); !errors.Is(err, store.ErrExists) {
		t.Fatalf("rename onto a taken name: %v", err)
	}
	if l, err := s.ListCustomKeyStores(ctx, a); err != nil || len(l) != 2 || l[0].ConnectionErrorCode != "USER_NOT_FOUND" {
		t.Fatalf("ListCustomKeyStores = %+v, %v", l, err)
	}
	if err := s.DeleteCustomKeyStore(ctx, a, "cks-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetCustomKeyStore(ctx, a, "cks-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted store: %v", err)
	}
}

func keysDueForRotation(t *testing.T, s store.Store) {
	base := time.Unix(1700000000, 0).UTC()
	rotating := store.Key{AccountID: "111122223333", ID: "k-rotating", State: "Enabled", CreationDate: base, Policy: "{}",
		Rotation:  store.Rotation{Enabled: true, PeriodDays: 90, Next: base.Add(time.Hour)},
		Materials: []store.KeyMaterial{{ID: []byte{1}, Sealed: []byte{2}, Created: base}}}
	expiring := store.Key{AccountID: "111122223333", ID: "k-expiring", State: "Enabled", CreationDate: base, Policy: "{}",
		Materials: []store.KeyMaterial{{ID: []byte{3}, Sealed: []byte{4}, Created: base, ValidTo: base.Add(2 * time.Hour), ExpirationModel: "KEY_MATERIAL_EXPIRES"}}}
	plain := store.Key{AccountID: "111122223333", ID: "k-plain", State: "Enabled", CreationDate: base, Policy: "{}"}
	for _, k := range []store.Key{rotating, expiring, plain} {
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(at time.Time) map[string]bool {
		ks, err := s.KeysDueForRotation(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, k := range ks {
			m[k.ID] = true
		}
		return m
	}
	if got := ids(base); len(got) != 0 {
		t.Fatalf("due before anything is due: %v", got)
	}
	if got := ids(base.Add(time.Hour)); len(got) != 1 || !got["k-rotating"] {
		t.Fatalf("due at the rotation date: %v", got)
	}
	if got := ids(base.Add(3 * time.Hour)); len(got) != 2 || got["k-plain"] {
		t.Fatalf("due after expiry: %v", got)
	}
	// Rotating moves the due date; the round trip keeps the schedule and materials.
	k, err := s.GetKey(ctx, "111122223333", "k-rotating")
	if err != nil || !k.Rotation.Enabled || k.Rotation.PeriodDays != 90 || len(k.Materials) != 1 || string(k.Materials[0].Sealed) != string([]byte{2}) {
		t.Fatalf("round trip: %+v, %v", k, err)
	}
	k.Rotation.Next = base.Add(90 * 24 * time.Hour)
	if _, err := s.UpdateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if got := ids(base.Add(3 * time.Hour)); got["k-rotating"] {
		t.Fatal("a rotated key is still due")
	}
}
