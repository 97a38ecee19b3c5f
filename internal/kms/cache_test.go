package kms

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/keyhold/keyhold/internal/principal"
)

// TestCachesBounded: with caches of two entries, twenty keys with an alias
// each still work (what is not cached is read from the store), and no
// cache holds more than its size.
func TestCachesBounded(t *testing.T) {
	s, _, _ := newService(t)
	small := CacheSizes{Keys: 2, Aliases: 2, Grants: 2, Policies: 2}.withDefaults()
	s2, err := New(Config{Region: "us-east-1", Store: s.st, Root: s.root, Logger: s.log, IdentityPolicies: noPolicies, Caches: small, Default: s.soft})
	if err != nil {
		t.Fatal(err)
	}
	s2.authz.skip = true
	t.Cleanup(s2.Close)
	ctx := context.Background()
	c := Request{Principal: principal.Principal{AccountID: "111122223333"}}
	type made struct {
		id, alias string
		ct        []byte
	}
	var all []made
	for i := range 20 {
		k, err := s2.CreateKey(ctx, c, CreateKeyInput{})
		if err != nil {
			t.Fatal(err)
		}
		alias := fmt.Sprintf("alias/bounded-%d", i)
		if err := s2.CreateAlias(ctx, c, alias, k.KeyID); err != nil {
			t.Fatal(err)
		}
		out, err := s2.Encrypt(ctx, c, EncryptInput{KeyID: alias, Plaintext: []byte(alias)})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, made{k.KeyID, alias, out.CiphertextBlob})
	}
	for _, m := range all {
		d, err := s2.DescribeKey(ctx, c, m.alias)
		if err != nil || d.KeyID != m.id {
			t.Fatalf("DescribeKey(%s) = %v, %v", m.alias, d.KeyID, err)
		}
		out, err := s2.Decrypt(ctx, c, DecryptInput{CiphertextBlob: m.ct})
		if err != nil || !bytes.Equal(out.Plaintext, []byte(m.alias)) {
			t.Fatalf("Decrypt: %v", err)
		}
	}
	if s2.keys.Len() > 2 || s2.aliases.Len() > 2 || s2.grants.byKey.Len() > 2 || s2.authz.docs.Len() > 2 {
		t.Fatalf("caches past their size: keys %d aliases %d grants %d policies %d",
			s2.keys.Len(), s2.aliases.Len(), s2.grants.byKey.Len(), s2.authz.docs.Len())
	}
}
