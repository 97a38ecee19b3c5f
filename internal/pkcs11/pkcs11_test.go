//go:build cgo

package pkcs11

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

const (
	softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"
	testLabel     = "keyhold-pkcs11-test"
	testSOPIN     = "so-pin-1234"
	testUserPIN   = "user-pin-1234"
)

// The whole test binary shares one token directory, because SoftHSM2 reads
// SOFTHSM2_CONF only at C_Initialize, once per process.
var (
	skipReason string
	testModule *Module
	testSlot   uint
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if _, err := os.Stat(softhsmModule); err != nil {
		skipReason = "SoftHSM2 not installed (apt-get install softhsm2 to run PKCS#11 tests)"
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "keyhold-pkcs11-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	tokens := filepath.Join(dir, "tokens")
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv("SOFTHSM2_CONF", conf)

	mod, err := Open(softhsmModule)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	defer mod.Close()
	if err := initTestToken(mod); err != nil {
		fmt.Fprintln(os.Stderr, "init token:", err)
		return 1
	}
	testModule = mod
	return m.Run()
}

func initTestToken(mod *Module) error {
	free, err := mod.FreeSlot()
	if err != nil {
		return err
	}
	if err := mod.InitToken(free, testSOPIN, testLabel); err != nil {
		return err
	}
	slot, err := mod.FindToken(testLabel)
	if err != nil {
		return err
	}
	so, err := mod.OpenSession(slot, SO, testSOPIN)
	if err != nil {
		return err
	}
	defer so.Close()
	if err := so.InitPIN(testUserPIN); err != nil {
		return err
	}
	testSlot = slot
	return nil
}

func userSession(t testing.TB) *Session {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	s, err := testModule.OpenSession(testSlot, User, testUserPIN)
	if err != nil {
		t.Fatalf("OpenSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenIsShared(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	m2, err := Open(softhsmModule)
	if err != nil {
		t.Fatal(err)
	}
	if m2 != testModule {
		t.Fatal("second Open of the same path returned a different Module")
	}
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	// The shared module must still work after the extra Close.
	if _, err := testModule.FindToken(testLabel); err != nil {
		t.Fatalf("FindToken after extra Close: %v", err)
	}
	if _, err := testModule.FindToken("no-such-token"); !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("FindToken(unknown) = %v, want ErrTokenNotFound", err)
	}
	if _, err := Open("/nonexistent/libnothing.so"); !errors.Is(err, ErrModule) {
		t.Fatalf("Open(missing) = %v, want ErrModule", err)
	}
}

func TestLoginErrors(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	_, err := testModule.OpenSession(testSlot, User, "wrong-pin-0000")
	if !errors.Is(err, ErrPINIncorrect) {
		t.Fatalf("OpenSession(wrong PIN) = %v, want ErrPINIncorrect", err)
	}
	if err != nil && bytes.Contains([]byte(err.Error()), []byte("wrong-pin-0000")) {
		t.Fatalf("error leaks the PIN: %v", err)
	}
	s := userSession(t)
	// While the user is logged in, a second login as the same user with a
	// different PIN is refused, and SO is refused.
	if _, err := testModule.OpenSession(testSlot, User, "other-pin-000"); !errors.Is(err, ErrPINIncorrect) {
		t.Fatalf("second OpenSession with another PIN = %v, want ErrPINIncorrect", err)
	}
	if _, err := testModule.OpenSession(testSlot, SO, testSOPIN); !errors.Is(err, ErrAnotherUserLoggedIn) {
		t.Fatalf("SO while user logged in = %v, want ErrAnotherUserLoggedIn", err)
	}
	s2, err := testModule.OpenSession(testSlot, User, testUserPIN)
	if err != nil {
		t.Fatalf("second OpenSession with the same PIN: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	// s must still be logged in after s2 closed.
	if _, err := s.GenerateRandom(16); err != nil {
		t.Fatalf("GenerateRandom after sibling Close: %v", err)
	}
	if got := fmt.Sprintf("%v %+v %#v", s.pin, s.pin, s.pin); bytes.Contains([]byte(got), []byte(testUserPIN)) {
		t.Fatalf("PIN prints: %q", got)
	}
}

func TestGCMRoundTrip(t *testing.T) {
	s := userSession(t)
	k, err := s.GenerateAESKey("roundtrip", []byte{1, 2}, KeyUsage{Encrypt: true, Decrypt: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	if k.Spec() != "AES_256" || !k.Usage.Encrypt || !k.Usage.Decrypt || k.Extractable || k.Persistent {
		t.Fatalf("unexpected key attributes: %+v", k)
	}
	tests := []struct {
		name   string
		ptLen  int
		aadLen int
		ivLen  int
	}{
		{"empty", 0, 0, 12},
		{"small", 32, 0, 12},
		{"aad", 32, 40, 12},
		{"xks-max", 4300, 8192, 12},
		{"iv16", 100, 10, 16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pt, aad, iv := randBytes(t, tc.ptLen), randBytes(t, tc.aadLen), randBytes(t, tc.ivLen)
			ct, ivUsed, err := s.EncryptGCM(k, iv, aad, pt)
			if err != nil {
				t.Fatal(err)
			}
			if len(ct) != len(pt)+16 {
				t.Fatalf("ciphertext length %d, want %d", len(ct), len(pt)+16)
			}
			if !bytes.Equal(ivUsed, iv) {
				t.Fatalf("SoftHSM2 should use the caller's IV")
			}
			got, err := s.DecryptGCM(k, ivUsed, aad, ct)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, pt) {
				t.Fatal("round trip changed the plaintext")
			}
		})
	}
}

func TestDecryptFailures(t *testing.T) {
	s := userSession(t)
	k, err := s.GenerateAESKey("tamper", nil, KeyUsage{Encrypt: true, Decrypt: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.GenerateAESKey("tamper-other", nil, KeyUsage{Encrypt: true, Decrypt: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	iv, aad, pt := randBytes(t, 12), []byte("context"), []byte("attack at dawn")
	ct, _, err := s.EncryptGCM(k, iv, aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte { c := append([]byte(nil), b...); c[i] ^= 1; return c }
	tests := []struct {
		name        string
		key         Key
		iv, aad, ct []byte
	}{
		{"tag", k, iv, aad, flip(ct, len(ct)-1)},
		{"body", k, iv, aad, flip(ct, 0)},
		{"aad", k, iv, []byte("contexT"), ct},
		{"no aad", k, iv, nil, ct},
		{"iv", k, flip(iv, 3), aad, ct},
		{"other key", other, iv, aad, ct},
		{"short", k, iv, aad, ct[:10]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.DecryptGCM(tc.key, tc.iv, tc.aad, tc.ct)
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("DecryptGCM = %v, want ErrDecrypt", err)
			}
		})
	}
	// The session pool must still be healthy after failures.
	if got, err := s.DecryptGCM(k, iv, aad, ct); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("decrypt after failures: %v", err)
	}
	for _, bad := range [][]byte{nil, {}, make([]byte, 8)} {
		if _, _, err := s.EncryptGCM(k, bad, nil, pt); !errors.Is(err, ErrInvalidIV) {
			t.Fatalf("EncryptGCM(iv len %d) = %v, want ErrInvalidIV", len(bad), err)
		}
	}
}

func TestKeyUsageEnforced(t *testing.T) {
	s := userSession(t)
	tests := []struct {
		name  string
		usage KeyUsage
	}{
		{"encrypt-only", KeyUsage{Encrypt: true}},
		{"decrypt-only", KeyUsage{Decrypt: true}},
		{"none", KeyUsage{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := s.GenerateAESKey("usage-"+tc.name, nil, tc.usage, false)
			if err != nil {
				t.Fatal(err)
			}
			found, err := s.FindKey("usage-" + tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if found.Usage != tc.usage {
				t.Fatalf("FindKey usage %+v, want %+v", found.Usage, tc.usage)
			}
			iv := randBytes(t, 12)
			_, _, err = s.EncryptGCM(k, iv, nil, []byte("x"))
			if tc.usage.Encrypt != (err == nil) {
				t.Fatalf("EncryptGCM err = %v with usage %+v", err, tc.usage)
			}
			if err != nil && !errors.Is(err, ErrKeyFunctionNotAllowed) {
				t.Fatalf("EncryptGCM err = %v, want ErrKeyFunctionNotAllowed", err)
			}
			_, err = s.DecryptGCM(k, iv, nil, make([]byte, 17))
			if !tc.usage.Decrypt && !errors.Is(err, ErrKeyFunctionNotAllowed) {
				t.Fatalf("DecryptGCM err = %v, want ErrKeyFunctionNotAllowed", err)
			}
			if tc.usage.Decrypt && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("DecryptGCM(garbage) err = %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestPersistentKeyLifecycle(t *testing.T) {
	s := userSession(t)
	k, err := s.GenerateAESKey("persistent", []byte("id-1"), KeyUsage{Encrypt: true, Decrypt: true}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Persistent || !bytes.Equal(k.ID, []byte("id-1")) || k.Label != "persistent" {
		t.Fatalf("key = %+v", k)
	}
	if _, err := s.GenerateAESKey("persistent", nil, KeyUsage{Encrypt: true}, true); !errors.Is(err, ErrDuplicateKey) {
		t.Fatalf("duplicate label = %v, want ErrDuplicateKey", err)
	}
	iv := randBytes(t, 12)
	ct, _, err := s.EncryptGCM(k, iv, nil, []byte("kept across logins"))
	if err != nil {
		t.Fatal(err)
	}

	// Handles do not survive a logout: after Logout the Session refuses work,
	// and after Login the old Key value is re-found by label.
	if err := s.Logout(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.EncryptGCM(k, iv, nil, []byte("x")); !errors.Is(err, ErrUserNotLoggedIn) {
		t.Fatalf("EncryptGCM after Logout = %v, want ErrUserNotLoggedIn", err)
	}
	if err := s.Login(testUserPIN); err != nil {
		t.Fatal(err)
	}
	pt, err := s.DecryptGCM(k, iv, nil, ct)
	if err != nil || string(pt) != "kept across logins" {
		t.Fatalf("DecryptGCM after re-login: %q, %v", pt, err)
	}

	if err := s.DestroyKey(k); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FindKey("persistent"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("FindKey after destroy = %v, want ErrKeyNotFound", err)
	}
	if _, _, err := s.EncryptGCM(k, iv, nil, []byte("x")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("EncryptGCM with destroyed key = %v, want ErrKeyNotFound", err)
	}
}

func TestRelogInAfterSiblingLogout(t *testing.T) {
	s := userSession(t)
	s2, err := testModule.OpenSession(testSlot, User, testUserPIN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	k, err := s.GenerateAESKey("sibling", nil, KeyUsage{Encrypt: true, Decrypt: true}, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.DestroyKey(k) })
	// s2 logs the whole token out; s must log in again by itself.
	if err := s2.Logout(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.EncryptGCM(k, randBytes(t, 12), nil, []byte("x")); err != nil {
		t.Fatalf("EncryptGCM after sibling logout: %v", err)
	}
}

func TestSetPIN(t *testing.T) {
	s := userSession(t)
	const newPIN = "rotated-pin-5678"
	if err := s.SetPIN("not-the-pin", newPIN); !errors.Is(err, ErrPINIncorrect) {
		t.Fatalf("SetPIN(wrong old) = %v, want ErrPINIncorrect", err)
	}
	if err := s.SetPIN(testUserPIN, newPIN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.SetPIN(newPIN, testUserPIN); err != nil {
			t.Errorf("restore PIN: %v", err)
		}
	})
	// A sibling must now present the new PIN.
	if _, err := testModule.OpenSession(testSlot, User, testUserPIN); !errors.Is(err, ErrPINIncorrect) {
		t.Fatalf("OpenSession(old PIN) = %v, want ErrPINIncorrect", err)
	}
	s2, err := testModule.OpenSession(testSlot, User, newPIN)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
}

func TestConcurrentUse(t *testing.T) {
	s := userSession(t)
	k, err := s.GenerateAESKey("concurrent", nil, KeyUsage{Encrypt: true, Decrypt: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				iv := randBytes(t, 12)
				pt := []byte(fmt.Sprintf("goroutine %d message %d", g, i))
				ct, _, err := s.EncryptGCM(k, iv, nil, pt)
				if err != nil {
					errs <- err
					return
				}
				got, err := s.DecryptGCM(k, iv, nil, ct)
				if err != nil || !bytes.Equal(got, pt) {
					errs <- fmt.Errorf("decrypt: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestGenerateRandom(t *testing.T) {
	s := userSession(t)
	a, err := s.GenerateRandom(32)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.GenerateRandom(32)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 32 || bytes.Equal(a, b) {
		t.Fatal("GenerateRandom returned short or repeated output")
	}
}

func BenchmarkEncryptGCM(b *testing.B) {
	s := userSession(b)
	k, err := s.GenerateAESKey("bench-"+b.Name(), nil, KeyUsage{Encrypt: true, Decrypt: true}, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.DestroyKey(k) })
	pt := make([]byte, 32)
	b.Run("serial", func(b *testing.B) {
		iv := make([]byte, 12)
		for i := 0; b.Loop(); i++ {
			rand.Read(iv)
			if _, _, err := s.EncryptGCM(k, iv, nil, pt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			iv := make([]byte, 12)
			for pb.Next() {
				rand.Read(iv)
				if _, _, err := s.EncryptGCM(k, iv, nil, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
