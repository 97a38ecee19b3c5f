package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

func grant(acct, keyID, id string) store.Grant {
	return store.Grant{AccountID: acct, Region: R, KeyID: keyID, ID: id, GranteePrincipal: "arn:aws:iam::" + acct + ":user/g",
		IssuingAccount: acct, Operations: []string{"Encrypt", "Decrypt"}, Created: time.Unix(1700000000, 0).UTC()}
}

func grants(t *testing.T, s store.Store) {
	a, b := "111122223333", "444455556666"
	for _, k := range []store.Key{key(a, "k1"), key(a, "k2"), key(b, "k3")} {
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateGrant(ctx, grant(a, "missing", "g0"), 10); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("grant on a missing key: %v, want ErrNotFound", err)
	}
	full := grant(a, "k1", "g1")
	full.Name, full.RetiringPrincipal = "n1", "arn:aws:iam::"+a+":user/r"
	full.EncryptionContextSubset = map[string]string{"tenant": "a"}
	full.EncryptionContextEquals = map[string]string{"x": "y"}
	if err := s.CreateGrant(ctx, full, 10); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetGrant(ctx, a, R, "k1", "g1")
	if err != nil || !reflect.DeepEqual(got, full) {
		t.Fatalf("GetGrant = %+v, %v; want %+v", got, err, full)
	}
	if err := s.CreateGrant(ctx, full, 10); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate grant id: %v, want ErrExists", err)
	}
	for i := 2; i <= 4; i++ {
		g := grant(a, "k1", fmt.Sprintf("g%d", i))
		if i == 3 {
			g.GranteePrincipal = "arn:aws:iam::" + a + ":user/other"
			g.RetiringPrincipal = full.RetiringPrincipal
		}
		if err := s.CreateGrant(ctx, g, 4); err != nil {
			t.Fatalf("grant %d: %v", i, err)
		}
	}
	if err := s.CreateGrant(ctx, grant(a, "k1", "g5"), 4); !errors.Is(err, store.ErrLimit) {
		t.Fatalf("grant over the per-key quota: %v, want ErrLimit", err)
	}
	if err := s.CreateGrant(ctx, grant(a, "k2", "g6"), 4); err != nil {
		t.Fatalf("the quota is per key: %v", err)
	}
	other := grant(b, "k3", "g7")
	other.RetiringPrincipal = full.RetiringPrincipal
	if err := s.CreateGrant(ctx, other, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetGrant(ctx, a, R, "k2", "g1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("grant looked up under another key: %v", err)
	}
	ids := func(gs []store.Grant) []string {
		out := []string{}
		for _, g := range gs {
			out = append(out, g.ID)
		}
		return out
	}
	for _, c := range []struct {
		name string
		f    store.GrantFilter
		want []string
	}{
		{"all of k1", store.GrantFilter{AccountID: a, Region: R, KeyID: "k1"}, []string{"g1", "g2", "g3", "g4"}},
		{"page", store.GrantFilter{AccountID: a, Region: R, KeyID: "k1", After: "g1", Limit: 2}, []string{"g2", "g3"}},
		{"by id", store.GrantFilter{AccountID: a, Region: R, KeyID: "k1", GrantID: "g3"}, []string{"g3"}},
		{"by id of another key", store.GrantFilter{AccountID: a, Region: R, KeyID: "k2", GrantID: "g3"}, []string{}},
		{"by grantee", store.GrantFilter{AccountID: a, Region: R, KeyID: "k1", GranteePrincipal: "arn:aws:iam::" + a + ":user/other"}, []string{"g3"}},
		{"other account", store.GrantFilter{AccountID: b, Region: R, KeyID: "k1"}, []string{}},
	} {
		gs, err := s.ListGrants(ctx, c.f)
		if err != nil || !reflect.DeepEqual(ids(gs), c.want) {
			t.Errorf("ListGrants %s = %v, %v; want %v", c.name, ids(gs), err, c.want)
		}
	}
	r, err := s.ListRetirableGrants(ctx, R, full.RetiringPrincipal, "", 0)
	if err != nil || !reflect.DeepEqual(ids(r), []string{"g1", "g3", "g7"}) {
		t.Fatalf("ListRetirableGrants = %v, %v (grants of every account, by id)", ids(r), err)
	}
	if r, _ := s.ListRetirableGrants(ctx, R, full.RetiringPrincipal, "g1", 1); !reflect.DeepEqual(ids(r), []string{"g3"}) {
		t.Fatalf("ListRetirableGrants page = %v", ids(r))
	}
	if err := s.DeleteGrant(ctx, a, R, "k1", "g2"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteGrant(ctx, a, R, "k1", "g2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if err := s.CreateGrant(ctx, grant(a, "k1", "g8"), 4); err != nil {
		t.Fatalf("a deleted grant frees quota: %v", err)
	}
	if err := s.DeleteKey(ctx, a, R, "k1"); err != nil {
		t.Fatal(err)
	}
	if gs, _ := s.ListGrants(ctx, store.GrantFilter{AccountID: a, Region: R, KeyID: "k1"}); len(gs) != 0 {
		t.Fatalf("grants survive their key: %v", ids(gs))
	}
	if r, _ := s.ListRetirableGrants(ctx, R, full.RetiringPrincipal, "", 0); !reflect.DeepEqual(ids(r), []string{"g7"}) {
		t.Fatalf("retirable grants after deleting k1: %v", ids(r))
	}
	if gs, _ := s.ListGrants(ctx, store.GrantFilter{AccountID: a, Region: R, KeyID: "k2"}); len(gs) != 1 {
		t.Fatalf("another key's grants went too: %v", ids(gs))
	}
}
