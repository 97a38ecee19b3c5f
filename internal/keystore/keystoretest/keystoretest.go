// Package keystoretest is the conformance suite every key store driver
// passes: the default store's (RunDefault) and each custom key store
// type's (RunDriver). It checks what the domain relies on: round trips of
// the sizes KMS allows, a wrong encryption context and tampered or
// truncated payloads failing without a plaintext, keys not opening each
// other's ciphertexts, connect and disconnect, creating and destroying a
// key's backing material, an unavailable backend failing with a
// ConnectionErrorCode and recovering, and concurrent use.
//
// It is for tests only.
package keystoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/keystore"
)

var ctx = context.Background()

// newKeyID returns a random key id in the UUID form keys have.
func newKeyID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return blob.FormatUUID(u)
}

// aad is what the domain binds: the 34-byte blob header, then the
// encryption context.
func aad(k keystore.KeyRef, kind blob.Kind, ec string) []byte {
	h := blob.Header{Kind: kind}
	h.KeyID, _ = blob.ParseUUID(k.ID)
	copy(h.BackingKeyID[:], k.BackingKeyID)
	return blob.AAD(h.Bytes(), map[string]string{"purpose": ec})
}

var call = keystore.Call{PrincipalARN: "arn:aws:iam::111122223333:user/keystoretest", Operation: "Encrypt", RequestID: "keystoretest"}

// failsClosed checks a decrypt that must fail: an error, no plaintext, and
// an error the domain can answer without leaking (invalid ciphertext, or a
// client-safe keystore.Error).
func failsClosed(t *testing.T, what string, pt []byte, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: decrypt succeeded (%d bytes)", what, len(pt))
	}
	if pt != nil {
		t.Fatalf("%s: a plaintext came back with the error %v", what, err)
	}
	var ke *keystore.Error
	if !errors.Is(err, keystore.ErrInvalidCiphertext) && !errors.As(err, &ke) {
		t.Fatalf("%s: %v is neither ErrInvalidCiphertext nor a keystore.Error", what, err)
	}
}

// cryptoSuite runs the checks every Backend passes on keys made by newKey.
func cryptoSuite(t *testing.T, b keystore.Backend, newKey func(t *testing.T) keystore.KeyRef) {
	t.Run("round trip", func(t *testing.T) {
		k := newKey(t)
		a := aad(k, b.Kind(), "round trip")
		for _, n := range []int{1, 32, 1000, 4096} {
			pt := make([]byte, n)
			rand.Read(pt)
			c1, err := b.Encrypt(ctx, k, call, pt, a)
			if err != nil {
				t.Fatalf("encrypt %d bytes: %v", n, err)
			}
			c2, err := b.Encrypt(ctx, k, call, pt, a)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(c1, c2) {
				t.Fatalf("two encryptions of %d bytes are equal: the IV is not fresh", n)
			}
			if bytes.Contains(c1, pt) && n >= 16 {
				t.Fatalf("the payload of %d bytes contains the plaintext", n)
			}
			for _, c := range [][]byte{c1, c2} {
				got, err := b.Decrypt(ctx, k, call, c, a)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("decrypt %d bytes: %v (equal %v)", n, err, bytes.Equal(got, pt))
				}
			}
		}
	})
	t.Run("wrong encryption context", func(t *testing.T) {
		k := newKey(t)
		c, err := b.Encrypt(ctx, k, call, []byte("secret"), aad(k, b.Kind(), "right"))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := b.Decrypt(ctx, k, call, c, aad(k, b.Kind(), "wrong"))
		if !errors.Is(err, keystore.ErrInvalidCiphertext) {
			t.Fatalf("wrong encryption context: %v, want ErrInvalidCiphertext", err)
		}
		if pt != nil {
			t.Fatal("a plaintext came back")
		}
	})
	t.Run("tampered and truncated payloads", func(t *testing.T) {
		k := newKey(t)
		a := aad(k, b.Kind(), "tamper")
		c, err := b.Encrypt(ctx, k, call, []byte("do not change me"), a)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, len(c) / 2, len(c) - 1} {
			bad := bytes.Clone(c)
			bad[i] ^= 0x01
			pt, err := b.Decrypt(ctx, k, call, bad, a)
			failsClosed(t, fmt.Sprintf("byte %d of %d flipped", i, len(c)), pt, err)
		}
		for _, n := range []int{0, 1, len(c) / 2, len(c) - 1} {
			pt, err := b.Decrypt(ctx, k, call, c[:n], a)
			failsClosed(t, fmt.Sprintf("truncated to %d of %d bytes", n, len(c)), pt, err)
		}
	})
	t.Run("keys do not open each other's ciphertexts", func(t *testing.T) {
		k1, k2 := newKey(t), newKey(t)
		c, err := b.Encrypt(ctx, k1, call, []byte("for k1"), aad(k1, b.Kind(), "x"))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := b.Decrypt(ctx, k2, call, c, aad(k2, b.Kind(), "x"))
		failsClosed(t, "another key's ciphertext", pt, err)
	})
	t.Run("concurrent use", func(t *testing.T) {
		keys := []keystore.KeyRef{newKey(t), newKey(t)}
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				k := keys[g%len(keys)]
				for i := 0; i < 10; i++ {
					pt := []byte(fmt.Sprintf("goroutine %d message %d", g, i))
					a := aad(k, b.Kind(), fmt.Sprint(g))
					c, err := b.Encrypt(ctx, k, call, pt, a)
					if err != nil {
						errs <- err
						return
					}
					got, err := b.Decrypt(ctx, k, call, c, a)
					if err != nil || !bytes.Equal(got, pt) {
						errs <- fmt.Errorf("goroutine %d round %d: %v", g, i, err)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// RunDefault runs the suite against the default key store's driver.
func RunDefault(t *testing.T, d keystore.Default) {
	newKey := func(t *testing.T) keystore.KeyRef {
		id := newKeyID()
		m, err := d.NewMaterial(id)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.BackingKeyID) == 0 || len(m.SealedMaterial) == 0 {
			t.Fatalf("NewMaterial = %+v: no backing key id or no sealed material", m)
		}
		return keystore.KeyRef{AccountID: "111122223333", ID: id, ARN: "arn:aws:kms:us-east-1:111122223333:key/" + id,
			BackingKeyID: m.BackingKeyID, SealedMaterial: m.SealedMaterial}
	}
	cryptoSuite(t, d, newKey)
	t.Run("material is bound to its key", func(t *testing.T) {
		k := newKey(t)
		other := newKey(t)
		moved := other
		moved.SealedMaterial = k.SealedMaterial // k's material under other's id
		moved.BackingKeyID = k.BackingKeyID
		if _, err := d.Encrypt(ctx, moved, call, []byte("x"), aad(moved, d.Kind(), "x")); err == nil {
			t.Fatal("sealed material opened under another key's id")
		}
	})
	t.Run("destroy", func(t *testing.T) {
		k := newKey(t)
		a := aad(k, d.Kind(), "forget")
		c, err := d.Encrypt(ctx, k, call, []byte("x"), a)
		if err != nil {
			t.Fatal(err)
		}
		d.Forget(k.ID)
		// The material is the record's: a key whose record is gone has
		// nothing to decrypt with; Forget only drops the cache.
		k.SealedMaterial = nil
		pt, err := d.Decrypt(ctx, k, call, c, a)
		if err == nil || pt != nil {
			t.Fatalf("decrypt after Forget without the record's material: %v", err)
		}
	})
}

// Harness is one custom key store driver under test.
type Harness struct {
	Driver keystore.Driver
	// Store is a configured store that connects.
	Store keystore.Store
	// XksKeyID is the external key new KMS keys use (external key stores).
	XksKeyID string
	// BadSecret changes Store so that Connect fails, and names the
	// ConnectionErrorCode it must fail with.
	BadSecret func(s *keystore.Store) string
	// Break makes the backend unavailable; Restore makes it available
	// again. Nil skips the unavailable-backend checks (saying so).
	Break, Restore func(t *testing.T)
	// DestroyRemoves says DestroyKey removes the backing material, so a
	// ciphertext no longer decrypts (CloudHSM); external keys are never
	// touched.
	DestroyRemoves bool
}

// RunDriver runs the suite against a custom key store driver.
func RunDriver(t *testing.T, h Harness) {
	d := h.Driver
	s := h.Store
	var smu sync.Mutex
	save := func(_ context.Context, sec keystore.Secret) error {
		smu.Lock()
		s.Secret = sec
		smu.Unlock()
		return nil
	}
	current := func() keystore.Store {
		smu.Lock()
		defer smu.Unlock()
		return s
	}
	newKey := func(t *testing.T) keystore.KeyRef {
		id := newKeyID()
		k := keystore.KeyRef{AccountID: s.AccountID, ID: id, ARN: "arn:aws:kms:us-east-1:" + s.AccountID + ":key/" + id,
			CustomKeyStoreID: s.ID, XksKeyID: h.XksKeyID}
		m, err := d.CreateKey(ctx, current(), k, keystore.Call{Operation: "CreateKey"})
		if err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
		if len(m.BackingKeyID) == 0 {
			t.Fatalf("CreateKey = %+v: no backing key id", m)
		}
		k.BackingKeyID, k.SealedMaterial = m.BackingKeyID, m.SealedMaterial
		t.Cleanup(func() { d.DestroyKey(ctx, k) })
		return k
	}

	if d.Type() == keystore.TypeDefault {
		t.Fatal("RunDriver is for custom key store drivers; use RunDefault")
	}
	t.Run("not connected", func(t *testing.T) {
		k := keystore.KeyRef{AccountID: s.AccountID, ID: newKeyID(), CustomKeyStoreID: s.ID, XksKeyID: h.XksKeyID}
		if _, err := d.CreateKey(ctx, current(), k, call); err == nil {
			t.Fatal("CreateKey in a store that is not connected succeeded")
		}
		if _, err := d.Encrypt(ctx, k, call, []byte("x"), aad(k, d.Kind(), "x")); err == nil {
			t.Fatal("Encrypt in a store that is not connected succeeded")
		}
		if code := keystore.ConnectionCode(d.Health(ctx, s.ID)); code == "" {
			t.Fatal("Health of a store that is not connected is healthy")
		}
	})
	if h.BadSecret != nil {
		t.Run("connect failure names its ConnectionErrorCode", func(t *testing.T) {
			bad := current()
			want := h.BadSecret(&bad)
			err := d.Connect(ctx, bad, func(context.Context, keystore.Secret) error { return nil })
			var ce *keystore.ConnectError
			if !errors.As(err, &ce) || ce.Code != want {
				t.Fatalf("Connect with a bad secret = %v, want a ConnectError %s", err, want)
			}
			if code := keystore.ConnectionCode(d.Health(ctx, s.ID)); code == "" {
				t.Fatal("a failed connect left a live connection")
			}
		})
	}
	if err := d.CheckConnect(ctx, current()); err != nil {
		t.Fatalf("CheckConnect: %v", err)
	}
	if err := d.Connect(ctx, current(), save); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { d.Disconnect(ctx, current()) })
	if err := d.Health(ctx, s.ID); err != nil {
		t.Fatalf("Health of a connected store: %v", err)
	}
	cryptoSuite(t, d, newKey)

	t.Run("disconnect and reconnect", func(t *testing.T) {
		k := newKey(t)
		a := aad(k, d.Kind(), "reconnect")
		c, err := d.Encrypt(ctx, k, call, []byte("kept"), a)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Disconnect(ctx, current()); err != nil {
			t.Fatalf("Disconnect: %v", err)
		}
		if err := d.Disconnect(ctx, current()); err != nil {
			t.Fatalf("a second Disconnect: %v", err)
		}
		if pt, err := d.Decrypt(ctx, k, call, c, a); err == nil || pt != nil {
			t.Fatalf("decrypt while disconnected: %v", err)
		}
		if err := d.Connect(ctx, current(), save); err != nil {
			t.Fatalf("reconnect: %v", err)
		}
		pt, err := d.Decrypt(ctx, k, call, c, a)
		if err != nil || string(pt) != "kept" {
			t.Fatalf("a ciphertext from before the disconnect: %q, %v", pt, err)
		}
	})
	t.Run("create and destroy", func(t *testing.T) {
		k := newKey(t)
		a := aad(k, d.Kind(), "destroy")
		c, err := d.Encrypt(ctx, k, call, []byte("doomed"), a)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.DestroyKey(ctx, k); err != nil {
			t.Fatalf("DestroyKey: %v", err)
		}
		if h.DestroyRemoves {
			if pt, err := d.Decrypt(ctx, k, call, c, a); err == nil || pt != nil {
				t.Fatalf("decrypt after DestroyKey: %v", err)
			}
		}
	})
	t.Run("unavailable backend", func(t *testing.T) {
		if h.Break == nil {
			t.Skip("this harness cannot make the backend unavailable")
		}
		k := newKey(t)
		a := aad(k, d.Kind(), "outage")
		c, err := d.Encrypt(ctx, k, call, []byte("survives"), a)
		if err != nil {
			t.Fatal(err)
		}
		h.Break(t)
		if code := keystore.ConnectionCode(d.Health(ctx, s.ID)); code == "" {
			t.Error("Health reports a broken backend healthy")
		}
		if _, err := d.Encrypt(ctx, k, call, []byte("x"), a); err == nil {
			t.Error("Encrypt with the backend down succeeded")
		} else if errors.Is(err, keystore.ErrInvalidCiphertext) {
			t.Errorf("an outage reported as an invalid ciphertext: %v", err)
		}
		if pt, err := d.Decrypt(ctx, k, call, c, a); err == nil || pt != nil {
			t.Error("Decrypt with the backend down succeeded")
		} else if errors.Is(err, keystore.ErrInvalidCiphertext) {
			t.Errorf("an outage reported as an invalid ciphertext: %v", err)
		}
		h.Restore(t)
		if err := d.Health(ctx, s.ID); err != nil {
			// A driver may need a new connection after an outage.
			d.Disconnect(ctx, current())
			if err := d.Connect(ctx, current(), save); err != nil {
				t.Fatalf("reconnect after the outage: %v", err)
			}
		}
		pt, err := d.Decrypt(ctx, k, call, c, a)
		if err != nil || string(pt) != "survives" {
			t.Fatalf("after the outage: %q, %v", pt, err)
		}
	})
}
