package kms

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/keystore/soft"
	"github.com/keyhold/keyhold/internal/policy"
	"github.com/keyhold/keyhold/internal/principal"
	"github.com/keyhold/keyhold/internal/rootkey"
	"github.com/keyhold/keyhold/internal/store"
	"github.com/keyhold/keyhold/internal/store/sqlite"
)

func TestGrantsGoWithTheirKey(t *testing.T) {
	s, clk, st := newService(t)
	ctx := context.Background()
	c := Request{Principal: principal.Principal{AccountID: "111122223333", ARN: "arn:aws:iam::111122223333:user/admin"}}
	retirer := "arn:aws:iam::111122223333:user/r"
	doomed, _ := s.CreateKey(ctx, c, CreateKeyInput{})
	kept, _ := s.CreateKey(ctx, c, CreateKeyInput{})
	var tokens []string
	for _, k := range []KeyMetadata{doomed, kept} {
		g, err := s.CreateGrant(ctx, c, CreateGrantInput{KeyID: k.KeyID, GranteePrincipal: "arn:aws:iam::111122223333:user/g",
			RetiringPrincipal: retirer, Operations: []string{"Encrypt"}})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, g.GrantToken)
	}
	if _, err := s.ScheduleKeyDeletion(ctx, c, doomed.KeyID, 7); err != nil {
		t.Fatal(err)
	}
	clk.add(7*24*time.Hour + time.Second)
	if n, err := s.DeleteDueKeys(ctx); err != nil || n != 1 {
		t.Fatalf("DeleteDueKeys = %d, %v", n, err)
	}
	if gs, _ := st.ListGrants(ctx, store.GrantFilter{AccountID: c.AccountID, KeyID: doomed.KeyID}); len(gs) != 0 {
		t.Fatalf("grants of a deleted key survive: %v", gs)
	}
	r, _, err := s.ListRetirableGrants(ctx, c, retirer, 0, "")
	if err != nil || len(r) != 1 || r[0].KeyARN != kept.ARN {
		t.Fatalf("retirable grants after the deletion: %v, %v", r, err)
	}
	if err := s.RetireGrant(ctx, c, RetireGrantInput{GrantToken: tokens[0]}); code(err) != NotFound {
		t.Fatalf("retiring a grant of a deleted key: %v", err)
	}
	if err := s.RetireGrant(ctx, c, RetireGrantInput{GrantToken: tokens[1]}); err != nil {
		t.Fatalf("the other key's grant: %v", err)
	}
}

func TestGrantTokens(t *testing.T) {
	s, _, _ := newService(t)
	other, _, _ := newService(t) // another root key
	g := store.Grant{AccountID: "111122223333", KeyID: "1234abcd-12ab-34cd-56ef-1234567890ab", ID: strings.Repeat("ab", 32)}
	t1, err := s.grantToken(g)
	if err != nil {
		t.Fatal(err)
	}
	t2, _ := s.grantToken(g)
	if t1 == t2 {
		t.Fatal("two tokens for one grant are equal; each must be new")
	}
	for _, tok := range []string{t1, t2} {
		a, k, id, err := s.parseGrantToken(tok)
		if err != nil || a != g.AccountID || k != g.KeyID || id != g.ID {
			t.Fatalf("parse = %s %s %s, %v", a, k, id, err)
		}
	}
	flipped := []byte(t1)
	flipped[len(flipped)/2] ^= 1
	for name, tok := range map[string]string{"empty": "", "not base64": "!!", "tampered": string(flipped),
		"truncated": t1[:len(t1)-3], "other root key": func() string { x, _ := other.grantToken(g); return x }()} {
		if _, _, _, err := s.parseGrantToken(tok); code(err) != InvalidGrantToken {
			t.Errorf("%s: %v, want InvalidGrantTokenException", name, err)
		}
	}
	if err := s.checkGrantTokens(Request{GrantTokens: []string{t1, "bad"}}); code(err) != InvalidGrantToken {
		t.Fatalf("one bad token among good ones: %v", err)
	}
	if err := s.checkGrantTokens(Request{GrantTokens: []string{t1, t2}}); err != nil {
		t.Fatal(err)
	}
}

func TestConstraintsHold(t *testing.T) {
	ab := map[string]string{"a": "1", "b": "2"}
	for _, c := range []struct {
		name           string
		equals, subset map[string]string
		req            map[string]string
		want           bool
	}{
		{"no constraint", nil, nil, nil, true},
		{"equals exact", ab, nil, ab, true},
		{"equals key case", ab, nil, map[string]string{"A": "1", "b": "2"}, true},
		{"equals value case", ab, nil, map[string]string{"a": "1", "b": "X"}, false},
		{"equals more", ab, nil, map[string]string{"a": "1", "b": "2", "c": "3"}, false},
		{"equals fewer", ab, nil, map[string]string{"a": "1"}, false},
		{"equals none", ab, nil, nil, false},
		{"subset exact", nil, ab, ab, true},
		{"subset more", nil, ab, map[string]string{"a": "1", "b": "2", "c": "3"}, true},
		{"subset fewer", nil, ab, map[string]string{"a": "1"}, false},
		{"subset other value", nil, ab, map[string]string{"a": "1", "b": "3"}, false},
		{"both", map[string]string{"a": "1"}, map[string]string{"a": "1"}, map[string]string{"a": "1"}, true},
	} {
		pc := policy.NewContext().SetEncryptionContext(c.req)
		if got := constraintsHold(c.equals, c.subset, requestContext(pc)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestGrantAllowsAction(t *testing.T) {
	s, _, _ := newService(t)
	user := Request{Principal: principal.Principal{AccountID: "111122223333", ARN: "arn:aws:iam::111122223333:user/u"}}
	sess := Request{Principal: principal.Principal{AccountID: "111122223333", ARN: "arn:aws:sts::111122223333:assumed-role/r/s", RoleARN: "arn:aws:iam::111122223333:role/r"}}
	gs := []store.Grant{
		{GranteePrincipal: user.ARN, Operations: []string{"Encrypt", "DescribeKey"}, EncryptionContextSubset: map[string]string{"t": "a"}},
		{GranteePrincipal: sess.RoleARN, Operations: []string{"Decrypt"}},
		{GranteePrincipal: "arn:aws:iam::111122223333:user/other", Operations: []string{"GenerateDataKey"}},
	}
	ecA := policy.NewContext().SetEncryptionContext(map[string]string{"t": "a"})
	ecB := policy.NewContext().SetEncryptionContext(map[string]string{"t": "b"})
	for _, c := range []struct {
		name   string
		caller Request
		action string
		pc     policy.Context
		want   bool
	}{
		{"grantee, op, context", user, "kms:Encrypt", ecA, true},
		{"grantee, op, other context", user, "kms:Encrypt", ecB, false},
		{"constraint ignored for DescribeKey", user, "kms:DescribeKey", ecB, true},
		{"op not granted", user, "kms:Decrypt", ecA, false},
		{"grant to the session's role", sess, "kms:Decrypt", nil, true},
		{"someone else's grant", user, "kms:GenerateDataKey", ecA, false},
		{"not a kms action", user, "Encrypt", ecA, false},
	} {
		pc := c.pc
		if pc == nil {
			pc = policy.NewContext()
		}
		if got := s.grantAllowsAction(context.Background(), gs, c.caller, c.action, pc); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestWithinGrant(t *testing.T) {
	parent := &store.Grant{Operations: []string{"Encrypt", "CreateGrant"}, EncryptionContextSubset: map[string]string{"t": "a"}}
	eqParent := &store.Grant{Operations: []string{"Encrypt", "CreateGrant"}, EncryptionContextEquals: map[string]string{"t": "a"}}
	for _, c := range []struct {
		name   string
		parent *store.Grant
		req    grantRequest
		want   bool
	}{
		{"same", parent, grantRequest{ops: []string{"Encrypt"}, subset: map[string]string{"t": "a"}}, true},
		{"stricter subset", parent, grantRequest{ops: []string{"Encrypt"}, subset: map[string]string{"T": "a", "x": "y"}}, true},
		{"equals within subset", parent, grantRequest{ops: []string{"Encrypt"}, equals: map[string]string{"t": "a", "x": "y"}}, true},
		{"no constraint", parent, grantRequest{ops: []string{"Encrypt"}}, false},
		{"other value", parent, grantRequest{ops: []string{"Encrypt"}, subset: map[string]string{"t": "b"}}, false},
		{"more operations", parent, grantRequest{ops: []string{"Decrypt"}, subset: map[string]string{"t": "a"}}, false},
		{"equals parent, same equals", eqParent, grantRequest{ops: []string{"Encrypt"}, equals: map[string]string{"t": "a"}}, true},
		{"equals parent, subset child", eqParent, grantRequest{ops: []string{"Encrypt"}, subset: map[string]string{"t": "a"}}, false},
		{"unconstrained parent", &store.Grant{Operations: []string{"Encrypt", "CreateGrant"}}, grantRequest{ops: []string{"Encrypt", "CreateGrant"}}, true},
	} {
		if got := withinGrant(Request{grant: &c.req}, c.parent); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if withinGrant(Request{}, parent) {
		t.Error("no grant request: allowed")
	}
}

// BenchmarkGrantAllowsNoGrants is the cost grants add to a request the
// policies deny, on a key without grants (the common case).
func BenchmarkGrantAllowsNoGrants(b *testing.B) {
	dir := b.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	root, err := rootkey.LoadOrCreateFile(filepath.Join(dir, "root.key"))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{Region: "us-east-1", Store: st, Root: root, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), IdentityPolicies: noPolicies, Default: soft.New(root)})
	if err != nil {
		b.Fatal(err)
	}
	s.authz.skip = true
	defer s.Close()
	ctx := context.Background()
	c := Request{Principal: principal.Principal{AccountID: "111122223333", ARN: "arn:aws:iam::111122223333:user/u"}}
	m, err := s.CreateKey(ctx, c, CreateKeyInput{})
	if err != nil {
		b.Fatal(err)
	}
	k, _ := s.getKey(ctx, c.AccountID, s.regionOf(c), m.KeyID)
	pc := policy.NewContext()
	s.grantAllows(ctx, c, "kms:Encrypt", &k, pc) // fill the cache
	b.ReportAllocs()
	for b.Loop() {
		if s.grantAllows(ctx, c, "kms:Encrypt", &k, pc) {
			b.Fatal("allowed")
		}
	}
}
