package keyspec

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloudflare/circl/pki"
)

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// genCache keeps RSA generation (slow under -race) to once per spec.
var genCache = map[string][]byte{}

func gen(t *testing.T, spec string) (priv, pub []byte) {
	t.Helper()
	priv, ok := genCache[spec]
	if !ok {
		var err error
		if priv, err = Generate(spec); err != nil {
			t.Fatalf("Generate(%s): %v", spec, err)
		}
		genCache[spec] = priv
	}
	if info, _ := Lookup(spec); !info.IsAsymmetric() {
		return priv, nil
	}
	pub, err := PublicKey(spec, priv)
	if err != nil {
		t.Fatalf("PublicKey(%s): %v", spec, err)
	}
	return priv, pub
}

func openssl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed; install it to cross-check with OpenSSL")
	}
	return p
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// verifyOutside checks a signature with Go's crypto (or circl's own ML-DSA
// verifier), never through this package.
func verifyOutside(t *testing.T, spec string, pubDER []byte, alg string, msg, sig []byte) bool {
	t.Helper()
	if strings.HasPrefix(spec, "ML_DSA") {
		pk, err := pki.UnmarshalPKIXPublicKey(pubDER)
		if err != nil {
			t.Fatal(err)
		}
		return pk.Scheme().Verify(pk, msg, sig, nil)
	}
	if spec == Secp256k1 {
		return true // checked with openssl in TestSecp256k1OpenSSL
	}
	pub, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		t.Fatalf("x509 cannot parse %s public key: %v", spec, err)
	}
	var h crypto.Hash
	switch {
	case strings.HasSuffix(alg, "256"):
		h = crypto.SHA256
	case strings.HasSuffix(alg, "384"):
		h = crypto.SHA384
	default:
		h = crypto.SHA512
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		d := h.New()
		d.Write(msg)
		if strings.Contains(alg, "PSS") {
			return rsa.VerifyPSS(p, h, d.Sum(nil), sig, &rsa.PSSOptions{SaltLength: h.Size()}) == nil
		}
		return rsa.VerifyPKCS1v15(p, h, d.Sum(nil), sig) == nil
	case *ecdsa.PublicKey:
		d := h.New()
		d.Write(msg)
		return ecdsa.VerifyASN1(p, d.Sum(nil), sig)
	case ed25519.PublicKey:
		if alg == "ED25519_PH_SHA_512" {
			d := sha512.Sum512(msg)
			return ed25519.VerifyWithOptions(p, d[:], sig, &ed25519.Options{Hash: crypto.SHA512}) == nil
		}
		return ed25519.Verify(p, msg, sig)
	}
	t.Fatalf("unexpected key type %T", pub)
	return false
}

func TestSignVerifyEverySpec(t *testing.T) {
	msg := []byte("keyhold signs this message")
	for _, spec := range Specs() {
		info, _ := Lookup(spec)
		for _, alg := range info.Signing {
			t.Run(spec+"/"+alg, func(t *testing.T) {
				priv, pub := gen(t, spec)
				// ED25519_PH_SHA_512 takes only a digest; everything else is signed RAW here.
				msgType, in := MessageRaw, msg
				if alg == "ED25519_PH_SHA_512" {
					d := sha512.Sum512(msg)
					msgType, in = MessageDigest, d[:]
				}
				sig, err := Sign(spec, priv, alg, msgType, in)
				if err != nil {
					t.Fatal(err)
				}
				if !verifyOutside(t, spec, pub, alg, msg, sig) {
					t.Fatal("signature does not verify outside keyhold")
				}
				if err := Verify(spec, pub, alg, msgType, in, sig); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				bad := bytes.Clone(sig)
				bad[len(bad)/2] ^= 1
				if err := Verify(spec, pub, alg, msgType, in, bad); kindOf(err) != InvalidSignature {
					t.Fatalf("tampered signature: got %v, want InvalidSignature", err)
				}
				other := bytes.Clone(in)
				other[0] ^= 1
				if err := Verify(spec, pub, alg, msgType, other, sig); kindOf(err) != InvalidSignature {
					t.Fatalf("other message: got %v, want InvalidSignature", err)
				}
			})
		}
	}
}

func TestDigestMessages(t *testing.T) {
	msg := []byte("digest me")
	cases := []struct {
		spec, alg string
		digest    func([]byte) []byte
	}{
		{RSA2048, "RSASSA_PSS_SHA_384", func(b []byte) []byte { d := sha512.Sum384(b); return d[:] }},
		{RSA2048, "RSASSA_PKCS1_V1_5_SHA_256", func(b []byte) []byte { d := sha256.Sum256(b); return d[:] }},
		{P256, "ECDSA_SHA_256", func(b []byte) []byte { d := sha256.Sum256(b); return d[:] }},
		{P521, "ECDSA_SHA_512", func(b []byte) []byte { d := sha512.Sum512(b); return d[:] }},
		{Secp256k1, "ECDSA_SHA_256", func(b []byte) []byte { d := sha256.Sum256(b); return d[:] }},
	}
	for _, c := range cases {
		t.Run(c.spec+"/"+c.alg, func(t *testing.T) {
			priv, pub := gen(t, c.spec)
			d := c.digest(msg)
			sig, err := Sign(c.spec, priv, c.alg, MessageDigest, d)
			if err != nil {
				t.Fatal(err)
			}
			// A DIGEST signature is the RAW signature of the message.
			if err := Verify(c.spec, pub, c.alg, MessageRaw, msg, sig); err != nil {
				t.Fatalf("RAW verify of a DIGEST signature: %v", err)
			}
			if !verifyOutside(t, c.spec, pub, c.alg, msg, sig) {
				t.Fatal("does not verify outside keyhold")
			}
			if _, err := Sign(c.spec, priv, c.alg, MessageDigest, d[1:]); kindOf(err) != Validation {
				t.Fatalf("short digest: got %v, want Validation", err)
			}
		})
	}
}

func TestSignRejects(t *testing.T) {
	rsaPriv, _ := gen(t, RSA2048)
	edPriv, _ := gen(t, Ed25519)
	mlPriv, _ := gen(t, MLDSA44)
	big := make([]byte, MaxMessage+1)
	cases := []struct {
		name, spec string
		priv       []byte
		alg, mt    string
		msg        []byte
		want       Kind
	}{
		{"wrong alg for spec", RSA2048, rsaPriv, "ECDSA_SHA_256", MessageRaw, []byte("x"), InvalidKeyUsage},
		{"too long", RSA2048, rsaPriv, "RSASSA_PSS_SHA_256", MessageRaw, big, Validation},
		{"external mu on RSA", RSA2048, rsaPriv, "RSASSA_PSS_SHA_256", MessageExternalMu, make([]byte, 64), Validation},
		{"ed25519 digest", Ed25519, edPriv, "ED25519_SHA_512", MessageDigest, make([]byte, 64), Validation},
		{"ed25519ph raw", Ed25519, edPriv, "ED25519_PH_SHA_512", MessageRaw, []byte("x"), Validation},
		{"mldsa digest", MLDSA44, mlPriv, "ML_DSA_SHAKE_256", MessageDigest, make([]byte, 32), Validation},
		{"mldsa mu length", MLDSA44, mlPriv, "ML_DSA_SHAKE_256", MessageExternalMu, make([]byte, 32), Validation},
		{"bad type", RSA2048, rsaPriv, "RSASSA_PSS_SHA_256", "HASHED", []byte("x"), Validation},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Sign(c.spec, c.priv, c.alg, c.mt, c.msg); kindOf(err) != c.want {
				t.Fatalf("got %v (kind %d), want kind %d", err, kindOf(err), c.want)
			}
		})
	}
	if _, err := ParsePrivate(RSA3072, rsaPriv); kindOf(err) != Validation {
		t.Fatalf("RSA_2048 material as RSA_3072: %v", err)
	}
}

func TestRSAEncryptionWithOpenSSL(t *testing.T) {
	bin := openssl(t)
	dir := t.TempDir()
	priv, pub := gen(t, RSA2048)
	keyPath := writePEM(t, dir, "k.pem", "PRIVATE KEY", priv)
	pubPath := writePEM(t, dir, "p.pem", "PUBLIC KEY", pub)
	for _, c := range []struct{ alg, md string }{{"RSAES_OAEP_SHA_1", "sha1"}, {"RSAES_OAEP_SHA_256", "sha256"}} {
		t.Run(c.alg, func(t *testing.T) {
			pt := []byte("secret for " + c.alg)
			ct, err := Encrypt(RSA2048, pub, c.alg, pt)
			if err != nil {
				t.Fatal(err)
			}
			ctPath := filepath.Join(dir, c.alg+".ct")
			os.WriteFile(ctPath, ct, 0o600)
			got := run(t, bin, "pkeyutl", "-decrypt", "-inkey", keyPath, "-in", ctPath,
				"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:"+c.md, "-pkeyopt", "rsa_mgf1_md:"+c.md)
			if !bytes.Equal(got, pt) {
				t.Fatalf("openssl decrypted %q", got)
			}
			ptPath := filepath.Join(dir, c.alg+".pt")
			os.WriteFile(ptPath, pt, 0o600)
			osslCT := run(t, bin, "pkeyutl", "-encrypt", "-pubin", "-inkey", pubPath, "-in", ptPath,
				"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:"+c.md, "-pkeyopt", "rsa_mgf1_md:"+c.md)
			back, err := Decrypt(RSA2048, priv, c.alg, osslCT)
			if err != nil || !bytes.Equal(back, pt) {
				t.Fatalf("Decrypt of openssl ciphertext: %q, %v", back, err)
			}
			osslCT[3] ^= 1
			if _, err := Decrypt(RSA2048, priv, c.alg, osslCT); kindOf(err) != InvalidCiphertext {
				t.Fatalf("tampered: %v", err)
			}
		})
	}
	if _, err := Encrypt(RSA2048, pub, "RSAES_OAEP_SHA_256", make([]byte, 191)); kindOf(err) != Validation {
		t.Fatalf("191 bytes under RSA_2048/SHA-256: %v", err)
	}
	if _, err := Encrypt(RSA2048, pub, "SYMMETRIC_DEFAULT", []byte("x")); kindOf(err) != InvalidKeyUsage {
		t.Fatalf("SYMMETRIC_DEFAULT on RSA: %v", err)
	}
}

func TestSignaturesWithOpenSSL(t *testing.T) {
	bin := openssl(t)
	dir := t.TempDir()
	msg := []byte("openssl checks this")
	msgPath := filepath.Join(dir, "msg")
	os.WriteFile(msgPath, msg, 0o600)
	cases := []struct{ spec, alg, md string }{
		{RSA2048, "RSASSA_PKCS1_V1_5_SHA_256", "sha256"},
		{RSA2048, "RSASSA_PSS_SHA_512", "sha512"},
		{P384, "ECDSA_SHA_384", "sha384"},
		{Secp256k1, "ECDSA_SHA_256", "sha256"},
		{Ed25519, "ED25519_SHA_512", ""},
	}
	for _, c := range cases {
		t.Run(c.spec+"/"+c.alg, func(t *testing.T) {
			priv, pub := gen(t, c.spec)
			pubPath := writePEM(t, dir, c.spec+".pub", "PUBLIC KEY", pub)
			sig, err := Sign(c.spec, priv, c.alg, MessageRaw, msg)
			if err != nil {
				t.Fatal(err)
			}
			sigPath := filepath.Join(dir, c.spec+c.alg+".sig")
			os.WriteFile(sigPath, sig, 0o600)
			var args []string
			switch {
			case c.spec == Ed25519:
				args = []string{"pkeyutl", "-verify", "-pubin", "-inkey", pubPath, "-rawin", "-in", msgPath, "-sigfile", sigPath}
			case strings.Contains(c.alg, "PSS"):
				args = []string{"dgst", "-" + c.md, "-verify", pubPath, "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1", "-signature", sigPath, msgPath}
			default:
				args = []string{"dgst", "-" + c.md, "-verify", pubPath, "-signature", sigPath, msgPath}
			}
			out := run(t, bin, args...)
			if !strings.Contains(string(out), "Verified") {
				t.Fatalf("openssl: %s", out)
			}
			// And the other way: openssl signs with the PKCS#8 key, keyhold verifies.
			if c.spec == Ed25519 || strings.Contains(c.alg, "PSS") {
				return
			}
			keyPath := writePEM(t, dir, c.spec+".key", "PRIVATE KEY", priv)
			osslSig := run(t, bin, "dgst", "-"+c.md, "-sign", keyPath, msgPath)
			if err := Verify(c.spec, pub, c.alg, MessageRaw, msg, osslSig); err != nil {
				t.Fatalf("keyhold rejects openssl's signature: %v", err)
			}
		})
	}
}

func TestDeriveSharedSecretWithOpenSSL(t *testing.T) {
	bin := openssl(t)
	dir := t.TempDir()
	for _, spec := range []string{P256, P384, P521, Secp256k1} {
		t.Run(spec, func(t *testing.T) {
			priv, pub := gen(t, spec)
			peerPriv, peerPub, err := DataKeyPair(spec)
			if err != nil {
				t.Fatal(err)
			}
			secret, err := DeriveSharedSecret(spec, priv, "ECDH", peerPub)
			if err != nil {
				t.Fatal(err)
			}
			peerKey := writePEM(t, dir, spec+".peer", "PRIVATE KEY", peerPriv)
			ourPub := writePEM(t, dir, spec+".pub", "PUBLIC KEY", pub)
			want := run(t, bin, "pkeyutl", "-derive", "-inkey", peerKey, "-peerkey", ourPub)
			if !bytes.Equal(secret, want) {
				t.Fatalf("keyhold %x, openssl %x", secret, want)
			}
			_, other := gen(t, P256)
			if spec != P256 {
				if _, err := DeriveSharedSecret(spec, priv, "ECDH", other); kindOf(err) != Validation {
					t.Fatalf("peer key on another curve: %v", err)
				}
			}
		})
	}
}

func TestHMACWithOpenSSL(t *testing.T) {
	bin := openssl(t)
	msg := []byte("mac me")
	for _, c := range []struct{ spec, alg, md string }{
		{HMAC224, "HMAC_SHA_224", "SHA224"}, {HMAC256, "HMAC_SHA_256", "SHA256"},
		{HMAC384, "HMAC_SHA_384", "SHA384"}, {HMAC512, "HMAC_SHA_512", "SHA512"},
	} {
		t.Run(c.spec, func(t *testing.T) {
			key, _ := gen(t, c.spec)
			if info, _ := Lookup(c.spec); len(key) != info.HMACKeyBytes {
				t.Fatalf("key is %d bytes", len(key))
			}
			mac, err := MAC(c.spec, key, c.alg, msg)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "mac", "-digest", c.md, "-macopt", "hexkey:"+hex.EncodeToString(key), "HMAC")
			cmd.Stdin = bytes.NewReader(msg)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("openssl mac: %v", err)
			}
			if got := strings.TrimSpace(string(out)); !strings.EqualFold(got, hex.EncodeToString(mac)) {
				t.Fatalf("openssl %s, keyhold %x", got, mac)
			}
			if err := VerifyMAC(c.spec, key, c.alg, msg, mac); err != nil {
				t.Fatal(err)
			}
			mac[0] ^= 1
			if err := VerifyMAC(c.spec, key, c.alg, msg, mac); kindOf(err) != InvalidMac {
				t.Fatalf("tampered MAC: %v", err)
			}
			if _, err := MAC(c.spec, key, "HMAC_SHA_1", msg); kindOf(err) != InvalidKeyUsage {
				t.Fatalf("wrong alg: %v", err)
			}
		})
	}
}

func TestDataKeyPairs(t *testing.T) {
	for _, spec := range []string{RSA2048, P256, P384, P521, Secp256k1, Ed25519} {
		t.Run(spec, func(t *testing.T) {
			priv, pub, err := DataKeyPair(spec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := PublicKey(spec, priv)
			if err != nil || !bytes.Equal(got, pub) {
				t.Fatalf("public key does not match private key: %v", err)
			}
			if spec == Secp256k1 {
				return // x509 does not know the curve; openssl reads it in the other tests
			}
			k, err := x509.ParsePKCS8PrivateKey(priv)
			if err != nil {
				t.Fatalf("x509 cannot read the PKCS#8 private key: %v", err)
			}
			p, _ := x509.MarshalPKIXPublicKey(k.(crypto.Signer).Public())
			if !bytes.Equal(p, pub) {
				t.Fatal("x509 derives a different public key")
			}
		})
	}
	if _, _, err := DataKeyPair(MLDSA44); kindOf(err) != Validation {
		t.Fatalf("ML_DSA_44 as KeyPairSpec: %v", err)
	}
}

func TestImportUnwrap(t *testing.T) {
	wpriv, wpub, err := NewWrappingKey(RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(wpub)
	if err != nil {
		t.Fatal(err)
	}
	material := make([]byte, 32)
	rand.Read(material)
	for _, c := range []struct {
		alg string
		h   crypto.Hash
	}{{WrapOAEPSHA1, crypto.SHA1}, {WrapOAEPSHA256, crypto.SHA256}} {
		wrapped, err := rsa.EncryptOAEP(c.h.New(), rand.Reader, pub.(*rsa.PublicKey), material, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Unwrap(RSA2048, wpriv, c.alg, wrapped)
		if err != nil || !bytes.Equal(got, material) {
			t.Fatalf("%s: %v", c.alg, err)
		}
	}
	if _, err := Unwrap(RSA2048, wpriv, WrapOAEPSHA256, []byte("garbage")); kindOf(err) != InvalidCiphertext {
		t.Fatalf("garbage: %v", err)
	}
	if err := CheckWrapping(WrapAESKeyWrap256, RSA4096); err != nil {
		t.Fatalf("key wrap: %v", err)
	}
	if err := CheckWrapping(WrapPKCS1, RSA2048); kindOf(err) != Validation {
		t.Fatalf("pkcs1: %v", err)
	}
	if _, err := CheckImported(SymmetricKey, material[:16]); kindOf(err) != Validation {
		t.Fatalf("16-byte symmetric material: %v", err)
	}
	ecPriv, _ := gen(t, P256)
	if _, err := CheckImported(P256, ecPriv); err != nil {
		t.Fatalf("P-256 private key: %v", err)
	}
	if _, err := CheckImported(P384, ecPriv); kindOf(err) != Validation {
		t.Fatalf("P-256 key as P-384: %v", err)
	}
}

// TestImportRSAAESKeyWrapWithOpenSSL wraps key material outside keyhold the
// way AWS's developer guide tells users to (openssl pkeyutl OAEP-encrypts an
// ephemeral AES-256 key under the wrapping public key, openssl enc
// -id-aes256-wrap-pad wraps the material with it, the two are
// concatenated) and checks that Unwrap recovers it, for every kind of
// material: symmetric, HMAC, RSA, ECC, Ed25519 and ML-DSA private keys.
func TestImportRSAAESKeyWrapWithOpenSSL(t *testing.T) {
	bin := openssl(t)
	dir := t.TempDir()
	wrapping := map[string][]byte{}
	for _, ws := range []string{RSA2048, RSA3072} {
		priv, pub, err := NewWrappingKey(ws)
		if err != nil {
			t.Fatal(err)
		}
		wrapping[ws] = priv
		if err := os.WriteFile(filepath.Join(dir, ws+".der"), pub, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	specs := []string{SymmetricKey, HMAC224, HMAC512, RSA2048, RSA4096, P256, P521, Secp256k1, Ed25519, MLDSA65}
	for i, spec := range specs {
		material, _ := gen(t, spec)
		for j, alg := range []string{WrapAESKeyWrap1, WrapAESKeyWrap256} {
			ws := []string{RSA2048, RSA3072}[(i+j)%2]
			t.Run(spec+"/"+alg+"/"+ws, func(t *testing.T) {
				md := "sha256"
				if alg == WrapAESKeyWrap1 {
					md = "sha1"
				}
				aesKey := make([]byte, 32)
				rand.Read(aesKey)
				sub := t.TempDir()
				keyFile, matFile := filepath.Join(sub, "aes.bin"), filepath.Join(sub, "material.bin")
				os.WriteFile(keyFile, aesKey, 0o600)
				os.WriteFile(matFile, material, 0o600)
				run(t, bin, "pkeyutl", "-encrypt", "-in", keyFile, "-out", filepath.Join(sub, "aes.wrapped"),
					"-inkey", filepath.Join(dir, ws+".der"), "-keyform", "DER", "-pubin",
					"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:"+md, "-pkeyopt", "rsa_mgf1_md:"+md)
				run(t, bin, "enc", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(aesKey), "-iv", "A65959A6",
					"-in", matFile, "-out", filepath.Join(sub, "material.wrapped"))
				a, _ := os.ReadFile(filepath.Join(sub, "aes.wrapped"))
				b, _ := os.ReadFile(filepath.Join(sub, "material.wrapped"))
				got, err := Unwrap(ws, wrapping[ws], alg, append(a, b...))
				if err != nil {
					t.Fatalf("Unwrap: %v", err)
				}
				if !bytes.Equal(got, material) {
					t.Fatalf("unwrapped material differs")
				}
				if _, err := CheckImported(spec, got); err != nil {
					t.Fatalf("CheckImported: %v", err)
				}
				// A flipped bit in the AES-wrapped part fails the RFC 5649
				// integrity check; the OAEP part alone is not enough.
				bad := append(append([]byte{}, a...), b...)
				bad[len(bad)-1] ^= 1
				if _, err := Unwrap(ws, wrapping[ws], alg, bad); kindOf(err) != InvalidCiphertext {
					t.Fatalf("tampered: %v", err)
				}
				if _, err := Unwrap(ws, wrapping[ws], alg, a); kindOf(err) != InvalidCiphertext {
					t.Fatalf("OAEP part only: %v", err)
				}
			})
		}
	}
}

// externalMu computes ML-DSA's message representative the way a client
// does before calling Sign with MessageType EXTERNAL_MU (FIPS 204,
// Algorithm 7 line 6, empty context): SHAKE256(SHAKE256(pk, 64) || 0 || 0 || M, 64).
func externalMu(pk, msg []byte) []byte {
	tr := sha3.SumSHAKE256(pk, 64)
	h := sha3.NewSHAKE256()
	h.Write(tr)
	h.Write([]byte{0, 0})
	h.Write(msg)
	mu := make([]byte, 64)
	h.Read(mu)
	return mu
}

func TestExternalMu(t *testing.T) {
	msg := bytes.Repeat([]byte("a message longer than Sign's 4096-byte limit "), 200)
	for _, spec := range []string{MLDSA44, MLDSA65, MLDSA87} {
		t.Run(spec, func(t *testing.T) {
			priv, pubDER := gen(t, spec)
			pk, err := pki.UnmarshalPKIXPublicKey(pubDER)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := pk.MarshalBinary()
			mu := externalMu(raw, msg)
			p, err := Load(spec, priv)
			if err != nil {
				t.Fatal(err)
			}
			for _, sign := range []func() ([]byte, error){
				func() ([]byte, error) { return p.Sign("ML_DSA_SHAKE_256", MessageExternalMu, mu) },
				func() ([]byte, error) { return Sign(spec, priv, "ML_DSA_SHAKE_256", MessageExternalMu, mu) },
			} {
				sig, err := sign()
				if err != nil {
					t.Fatalf("Sign(EXTERNAL_MU): %v", err)
				}
				// The signature of mu is the signature of the message:
				// circl verifies it from the message itself.
				if !pk.Scheme().Verify(pk, msg, sig, nil) {
					t.Fatal("circl rejects the signature made from mu")
				}
				if err := p.Verify("ML_DSA_SHAKE_256", MessageExternalMu, mu, sig); kindOf(err) != Unsupported {
					t.Fatalf("Verify(EXTERNAL_MU) = %v, want Unsupported", err)
				}
				if err := Verify(spec, pubDER, "ML_DSA_SHAKE_256", MessageExternalMu, mu, sig); kindOf(err) != Unsupported {
					t.Fatalf("package Verify(EXTERNAL_MU) = %v, want Unsupported", err)
				}
			}
			// A different mu gives a signature that does not verify.
			other := slices.Clone(mu)
			other[0] ^= 1
			sig, _ := p.Sign("ML_DSA_SHAKE_256", MessageExternalMu, other)
			if pk.Scheme().Verify(pk, msg, sig, nil) {
				t.Fatal("signature of another mu verifies")
			}
		})
	}
}
