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
	t.Run("regions", func(t *testing.T) { regions(t, open(t)) })
	t.Run("assign region", func(t *testing.T) { assignRegion(t, open(t)) })
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

// R is the Region the suite's records belong to; regions() checks that
// another Region sees none of them.
const R = "us-east-1"

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
	return store.Key{AccountID: acct, Region: R, ID: id, CreationDate: time.Unix(1700000000, 0).UTC(), KeyUsage: "ENCRYPT_DECRYPT",
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
	k, err := s.GetKey(ctx, a, R, "k1")
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
	k2, _ := s.GetKey(ctx, a, R, "k1")
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
	page, err := s.ListKeyIDs(ctx, a, R, "k1", 2)
	if err != nil || len(page) != 2 || page[0] != "k2" || page[1] != "k3" {
		t.Fatalf("ListKeyIDs after k1 = %v, %v", page, err)
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
	if got, err := s.FindKey(ctx, R, "x1"); err != nil || got.AccountID != a {
		t.Fatalf("FindKey = %+v, %v", got, err)
	}
	if _, err := s.FindKey(ctx, R, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("FindKey of an unknown id: %v", err)
	}
	if err := s.DeleteKey(ctx, a, R, "k1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetKey(ctx, a, R, "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	if err := s.DeleteKey(ctx, a, R, "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if _, err := s.GetKey(ctx, "444455556666", R, "k1"); err != nil {
		t.Fatalf("other account's key gone: %v", err)
	}
}

func aliases(t *testing.T, s store.Store) {
	a := "111122223333"
	now := time.Unix(1700000000, 0).UTC()
	s.CreateKey(ctx, key(a, "k1"))
	s.CreateKey(ctx, key(a, "k2"))
	if err := s.CreateAlias(ctx, store.Alias{AccountID: a, Region: R, Name: "alias/x", KeyID: "missing", Created: now, Updated: now}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("alias to a missing key: %v", err)
	}
	for _, n := range []string{"alias/a", "alias/b", "alias/c"} {
		if err := s.CreateAlias(ctx, store.Alias{AccountID: a, Region: R, Name: n, KeyID: "k1", Created: now, Updated: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateAlias(ctx, store.Alias{AccountID: a, Region: R, Name: "alias/a", KeyID: "k2", Created: now, Updated: now}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate alias: %v", err)
	}
	if err := s.UpdateAlias(ctx, store.Alias{AccountID: a, Region: R, Name: "alias/b", KeyID: "k2", Updated: now.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAlias(ctx, a, R, "alias/b"); got.KeyID != "k2" || !got.Created.Equal(now) {
		t.Fatalf("UpdateAlias stored %+v", got)
	}
	if l, _ := s.ListAliases(ctx, a, R, "k1", "", 10); len(l) != 2 {
		t.Fatalf("aliases of k1: %v", l)
	}
	if l, _ := s.ListAliases(ctx, a, R, "", "alias/a", 1); len(l) != 1 || l[0].Name != "alias/b" {
		t.Fatalf("page after alias/a: %v", l)
	}
	if err := s.DeleteKey(ctx, a, R, "k1"); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.ListAliases(ctx, a, R, "", "", 10); len(l) != 1 || l[0].Name != "alias/b" {
		t.Fatalf("aliases after deleting k1: %v (they must go with the key)", l)
	}
	if err := s.DeleteAlias(ctx, a, R, "alias/b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAlias(ctx, a, R, "alias/b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func customKeyStores(t *testing.T, s store.Store) {
	a := "111122223333"
	c := store.CustomKeyStore{AccountID: a, Region: R, ID: "cks-1", Name: "one", Type: "AWS_CLOUDHSM", Created: time.Unix(1700000000, 0).UTC(),
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
	rotating := store.Key{AccountID: "111122223333", Region: R, ID: "k-rotating", State: "Enabled", CreationDate: base, Policy: "{}",
		Rotation:  store.Rotation{Enabled: true, PeriodDays: 90, Next: base.Add(time.Hour)},
		Materials: []store.KeyMaterial{{ID: []byte{1}, Sealed: []byte{2}, Created: base}}}
	expiring := store.Key{AccountID: "111122223333", Region: R, ID: "k-expiring", State: "Enabled", CreationDate: base, Policy: "{}",
		Materials: []store.KeyMaterial{{ID: []byte{3}, Sealed: []byte{4}, Created: base, ValidTo: base.Add(2 * time.Hour), ExpirationModel: "KEY_MATERIAL_EXPIRES"}}}
	plain := store.Key{AccountID: "111122223333", Region: R, ID: "k-plain", State: "Enabled", CreationDate: base, Policy: "{}"}
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
	k, err := s.GetKey(ctx, "111122223333", R, "k-rotating")
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

// regions: keys, aliases, grants and custom key store names belong to one
// Region; a multi-Region key has one row per Region under one id.
func regions(t *testing.T, s store.Store) {
	a, other := "111122223333", "eu-west-1"
	now := time.Unix(1700000000, 0).UTC()
	primary := key(a, "mrk-1")
	primary.MultiRegion = &store.MultiRegion{PrimaryRegion: R, ReplicaRegions: []string{other}}
	primary.Rotation = store.Rotation{Enabled: true, PeriodDays: 90, Next: now.Add(time.Hour)}
	replica := primary
	replica.Region = other
	for _, k := range []store.Key{primary, replica, key(a, "single")} {
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateKey(ctx, replica); !errors.Is(err, store.ErrExists) {
		t.Fatalf("the same id twice in one Region: %v, want ErrExists", err)
	}
	got, err := s.GetKey(ctx, a, other, "mrk-1")
	if err != nil || got.Region != other || got.MultiRegion == nil || got.MultiRegion.PrimaryRegion != R ||
		len(got.MultiRegion.ReplicaRegions) != 1 || got.MultiRegion.ReplicaRegions[0] != other {
		t.Fatalf("replica round trip: %+v, %v", got, err)
	}
	if _, err := s.GetKey(ctx, a, other, "single"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a key seen from another Region: %v", err)
	}
	if _, err := s.FindKey(ctx, other, "single"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("FindKey from another Region: %v", err)
	}
	if k, err := s.FindKey(ctx, other, "mrk-1"); err != nil || k.Region != other {
		t.Fatalf("FindKey of the replica: %+v, %v", k, err)
	}
	if l, err := s.ListKeyIDs(ctx, a, other, "", 10); err != nil || len(l) != 1 || l[0] != "mrk-1" {
		t.Fatalf("ListKeyIDs of %s = %v, %v", other, l, err)
	}
	if l, err := s.ListKeyIDs(ctx, a, R, "", 10); err != nil || len(l) != 2 {
		t.Fatalf("ListKeyIDs of %s = %v, %v", R, l, err)
	}
	rows, err := s.ListKeyRegions(ctx, a, "mrk-1")
	if err != nil || len(rows) != 2 || rows[0].Region != other || rows[1].Region != R {
		t.Fatalf("ListKeyRegions = %+v, %v", rows, err)
	}
	// Only the primary is due for rotation: replicas follow it.
	if due, err := s.KeysDueForRotation(ctx, now.Add(2*time.Hour)); err != nil || len(due) != 1 || due[0].Region != R {
		t.Fatalf("KeysDueForRotation = %+v, %v", due, err)
	}
	// Updating one Region's row leaves the other's.
	got.Description = "replica only"
	if _, err := s.UpdateKey(ctx, got); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.GetKey(ctx, a, R, "mrk-1"); p.Description != "" || p.Version != 1 {
		t.Fatalf("the primary changed with its replica: %+v", p)
	}
	// Aliases: the same name in two Regions, for each Region's key.
	for _, r := range []string{R, other} {
		if err := s.CreateAlias(ctx, store.Alias{AccountID: a, Region: r, Name: "alias/app", KeyID: "mrk-1", Created: now, Updated: now}); err != nil {
			t.Fatalf("alias in %s: %v", r, err)
		}
	}
	if err := s.CreateAlias(ctx, store.Alias{AccountID: a, Region: other, Name: "alias/s", KeyID: "single", Created: now, Updated: now}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("alias to a key of another Region: %v, want ErrNotFound", err)
	}
	if l, _ := s.ListAliases(ctx, a, other, "", "", 10); len(l) != 1 || l[0].Region != other {
		t.Fatalf("ListAliases of %s = %+v", other, l)
	}
	// Grants belong to one Region's key.
	g := grant(a, "mrk-1", "g-replica")
	g.Region = other
	if err := s.CreateGrant(ctx, g, 10); err != nil {
		t.Fatal(err)
	}
	if gs, _ := s.ListGrants(ctx, store.GrantFilter{AccountID: a, Region: R, KeyID: "mrk-1"}); len(gs) != 0 {
		t.Fatalf("the replica's grant listed on the primary: %v", gs)
	}
	if _, err := s.GetGrant(ctx, a, other, "mrk-1", "g-replica"); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.ListRetirableGrants(ctx, R, g.RetiringPrincipal, "", 0); len(r) != 0 {
		t.Fatalf("retirable grants of another Region: %v", r)
	}
	// Deleting the replica leaves the primary, its alias and its Region.
	if err := s.DeleteKey(ctx, a, other, "mrk-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetKey(ctx, a, R, "mrk-1"); err != nil {
		t.Fatalf("primary gone with its replica: %v", err)
	}
	if l, _ := s.ListAliases(ctx, a, R, "", "", 10); len(l) != 1 {
		t.Fatalf("primary's alias gone with the replica: %v", l)
	}
	if l, _ := s.ListAliases(ctx, a, other, "", "", 10); len(l) != 0 {
		t.Fatalf("replica's alias outlived it: %v", l)
	}
	// Custom key store names are unique per Region.
	c := store.CustomKeyStore{AccountID: a, Region: R, ID: "cks-r1", Name: "same", Type: "AWS_CLOUDHSM", Created: now, ConnectionState: "DISCONNECTED"}
	if err := s.CreateCustomKeyStore(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.ID, c.Region = "cks-r2", other
	if err := s.CreateCustomKeyStore(ctx, c); err != nil {
		t.Fatalf("the same store name in another Region: %v", err)
	}
	c.ID = "cks-r3"
	if err := s.CreateCustomKeyStore(ctx, c); !errors.Is(err, store.ErrExists) {
		t.Fatalf("the same store name twice in a Region: %v", err)
	}
	if got, err := s.GetCustomKeyStore(ctx, a, "cks-r2"); err != nil || got.Region != other {
		t.Fatalf("GetCustomKeyStore = %+v, %v", got, err)
	}
}

// assignRegion: rows written before Regions existed (Region "") go to the
// Region given, once; rows of a Region stay.
func assignRegion(t *testing.T, s store.Store) {
	a := "111122223333"
	now := time.Unix(1700000000, 0).UTC()
	old := key(a, "old")
	old.Region = ""
	kept := key(a, "kept")
	kept.Region = "eu-west-1"
	for _, k := range []store.Key{old, kept} {
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateAlias(ctx, store.Alias{AccountID: a, Name: "alias/old", KeyID: "old", Created: now, Updated: now}); err != nil {
		t.Fatal(err)
	}
	g := grant(a, "old", "g-old")
	g.Region = ""
	if err := s.CreateGrant(ctx, g, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCustomKeyStore(ctx, store.CustomKeyStore{AccountID: a, ID: "cks-old", Name: "old", Type: "AWS_CLOUDHSM", Created: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.AssignRegion(ctx, "ap-southeast-2"); err != nil {
		t.Fatal(err)
	}
	// Once per database: a later call (another start) reads nothing, so a
	// row written since with Region "" stays where it is.
	late := key(a, "late")
	late.Region = ""
	if err := s.CreateKey(ctx, late); err != nil {
		t.Fatal(err)
	}
	if err := s.AssignRegion(ctx, "us-west-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetKey(ctx, a, "", "late"); err != nil {
		t.Fatalf("the second AssignRegion assigned again: %v", err)
	}
	if _, err := s.GetKey(ctx, a, "us-west-2", "old"); err == nil {
		t.Fatal("the second AssignRegion moved a key")
	}
	if k, err := s.GetKey(ctx, a, "ap-southeast-2", "old"); err != nil || k.Region != "ap-southeast-2" {
		t.Fatalf("old key: %+v, %v", k, err)
	}
	if _, err := s.GetKey(ctx, a, "eu-west-1", "kept"); err != nil {
		t.Fatalf("a key of a Region moved: %v", err)
	}
	if al, err := s.GetAlias(ctx, a, "ap-southeast-2", "alias/old"); err != nil || al.KeyID != "old" {
		t.Fatalf("old alias: %+v, %v", al, err)
	}
	if _, err := s.GetGrant(ctx, a, "ap-southeast-2", "old", "g-old"); err != nil {
		t.Fatalf("old grant: %v", err)
	}
	if c, err := s.GetCustomKeyStore(ctx, a, "cks-old"); err != nil || c.Region != "ap-southeast-2" {
		t.Fatalf("old custom key store: %+v, %v", c, err)
	}
}
