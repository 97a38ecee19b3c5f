package kms

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/keystore/soft"
	"github.com/keyhold/keyhold/internal/principal"
	"github.com/keyhold/keyhold/internal/rootkey"
	"github.com/keyhold/keyhold/internal/store"
	"github.com/keyhold/keyhold/internal/store/sqlite"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newService(t *testing.T) (*Service, *clock, store.Store) {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	root, err := rootkey.LoadOrCreateFile(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	s, err := New(Config{Region: "us-east-1", Store: st, Root: root, Now: clk.now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), IdentityPolicies: noPolicies, Default: soft.New(root)})
	if err != nil {
		t.Fatal(err)
	}
	// These tests exercise the rules of the seeds, not authorization (the
	// integration tests do, through the server).
	s.authz.skip = true
	t.Cleanup(s.Close)
	return s, clk, st
}

func noPolicies(context.Context, Request) ([]string, error) { return nil, nil }

func TestNewRefusesWithoutPolicySource(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if s, err := New(Config{Region: "us-east-1", Store: st}); !errors.Is(err, ErrNoPolicySource) || s != nil {
		t.Fatalf("New without IdentityPolicies = %v, %v; want ErrNoPolicySource", s, err)
	}
}

func TestAuthorizationDeniesWithoutAPolicy(t *testing.T) {
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	root, err := rootkey.LoadOrCreateFile(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Region: "us-east-1", Store: st, Root: root, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), IdentityPolicies: noPolicies, Default: soft.New(root)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A user with no identity policy may not create keys.
	c := NewRequest(principal.Principal{AccountID: "111122223333", ARN: "arn:aws:iam::111122223333:user/nobody"}, "CreateKey")
	_, err = s.CreateKey(context.Background(), c, CreateKeyInput{})
	if code(err) != AccessDenied {
		t.Fatalf("CreateKey without any policy: %v, want AccessDeniedException", err)
	}
}

func code(err error) Code {
	if e, ok := AsError(err); ok {
		return e.Code
	}
	return ""
}

func TestDeletionJobDeletesOnlyDueKeys(t *testing.T) {
	s, clk, st := newService(t)
	ctx := context.Background()
	c := Request{Principal: principal.Principal{AccountID: "111122223333"}}
	doomed, err := s.CreateKey(ctx, c, CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	kept, _ := s.CreateKey(ctx, c, CreateKeyInput{})
	later, _ := s.CreateKey(ctx, c, CreateKeyInput{})
	if err := s.CreateAlias(ctx, c, "alias/doomed", doomed.KeyID); err != nil {
		t.Fatal(err)
	}
	enc, err := s.Encrypt(ctx, c, EncryptInput{KeyID: doomed.KeyID, Plaintext: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ScheduleKeyDeletion(ctx, c, doomed.KeyID, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ScheduleKeyDeletion(ctx, c, later.KeyID, 30); err != nil {
		t.Fatal(err)
	}
	clk.add(7*24*time.Hour - time.Second)
	if n, err := s.DeleteDueKeys(ctx); err != nil || n != 0 {
		t.Fatalf("before the date: deleted %d, %v", n, err)
	}
	clk.add(2 * time.Second)
	if n, err := s.DeleteDueKeys(ctx); err != nil || n != 1 {
		t.Fatalf("after the date: deleted %d, %v; want 1", n, err)
	}
	if _, err := s.DescribeKey(ctx, c, doomed.KeyID); code(err) != NotFound {
		t.Fatalf("deleted key: %v, want NotFound", err)
	}
	if _, err := st.GetAlias(ctx, c.AccountID, "us-east-1", "alias/doomed"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("alias of a deleted key survives: %v", err)
	}
	if _, err := s.Decrypt(ctx, c, DecryptInput{CiphertextBlob: enc.CiphertextBlob}); code(err) != InvalidCiphertext {
		t.Fatalf("ciphertext of a deleted key: %v", err)
	}
	for _, k := range []KeyMetadata{kept, later} {
		if _, err := s.DescribeKey(ctx, c, k.KeyID); err != nil {
			t.Fatalf("key %s should survive: %v", k.KeyID, err)
		}
	}
}

func TestConcurrentUpdatesAreNotLost(t *testing.T) {
	s, _, _ := newService(t)
	ctx := context.Background()
	c := Request{Principal: principal.Principal{AccountID: "111122223333"}}
	k, _ := s.CreateKey(ctx, c, CreateKeyInput{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			key := string(rune('a' + i))
			if err := s.TagResource(ctx, c, k.KeyID, []store.Tag{{Key: key, Value: "v"}}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	tags, _, err := s.ListResourceTags(ctx, c, k.KeyID, 0, "")
	if err != nil || len(tags) != 8 {
		t.Fatalf("got %d tags (%v), want 8: a concurrent update was lost", len(tags), err)
	}
}
