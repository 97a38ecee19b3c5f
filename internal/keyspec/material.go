package keyspec

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/pki"
	"github.com/cloudflare/circl/sign"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
)

// Generate makes new material for spec: a PKCS#8 DER private key for
// asymmetric specs, random key bytes for HMAC and symmetric specs.
func Generate(spec string) ([]byte, error) {
	info, ok := Lookup(spec)
	if !ok {
		return nil, errorf(Validation, "KeySpec %s is not supported.", spec)
	}
	switch {
	case spec == SymmetricKey:
		return random(32)
	case info.IsHMAC():
		return random(info.HMACKeyBytes)
	}
	priv, err := generatePrivate(spec)
	if err != nil {
		return nil, fmt.Errorf("keyspec.Generate %s: %w", spec, err)
	}
	return marshalPrivate(priv)
}

func random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("keyspec: random: %w", err)
	}
	return b, nil
}

func rsaBits(spec string) int {
	switch spec {
	case RSA2048:
		return 2048
	case RSA3072:
		return 3072
	case RSA4096:
		return 4096
	}
	return 0
}

func nistCurve(spec string) elliptic.Curve {
	switch spec {
	case P256:
		return elliptic.P256()
	case P384:
		return elliptic.P384()
	case P521:
		return elliptic.P521()
	}
	return nil
}

func mldsaScheme(spec string) sign.Scheme {
	switch spec {
	case MLDSA44:
		return mldsa44.Scheme()
	case MLDSA65:
		return mldsa65.Scheme()
	case MLDSA87:
		return mldsa87.Scheme()
	}
	return nil
}

func generatePrivate(spec string) (crypto.Signer, error) {
	if bits := rsaBits(spec); bits != 0 {
		return rsa.GenerateKey(rand.Reader, bits)
	}
	if c := nistCurve(spec); c != nil {
		return ecdsa.GenerateKey(c, rand.Reader)
	}
	switch spec {
	case Secp256k1:
		k, err := secp256k1.GeneratePrivateKey()
		if err != nil {
			return nil, err
		}
		return k256{k}, nil
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	if s := mldsaScheme(spec); s != nil {
		_, k, err := s.GenerateKey()
		if err != nil {
			return nil, err
		}
		return k.(crypto.Signer), nil
	}
	return nil, fmt.Errorf("no generator for %s", spec)
}

// k256 gives a secp256k1 key the crypto.Signer shape the other specs have:
// Sign takes a digest and returns a DER ECDSA-Sig-Value (RFC 6979 nonces).
type k256 struct{ *secp256k1.PrivateKey }

func (k k256) Public() crypto.PublicKey { return k.PubKey() }
func (k k256) Sign(_ io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	return secpecdsa.Sign(k.PrivateKey, digest).Serialize(), nil
}

// ASN.1 identifiers for secp256k1 keys, which crypto/x509 does not encode.
var (
	oidPublicKeyEC = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidSecp256k1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
)

type pkcs8 struct {
	Version    int
	Algorithm  pkix.AlgorithmIdentifier
	PrivateKey []byte
}

type ecPrivateKey struct { // RFC 5915
	Version       int
	PrivateKey    []byte
	NamedCurveOID asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	PublicKey     asn1.BitString        `asn1:"optional,explicit,tag:1"`
}

type spki struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

func marshalPrivate(k crypto.Signer) ([]byte, error) {
	switch k := k.(type) {
	case k256:
		curve, _ := asn1.Marshal(oidSecp256k1)
		pub := k.PubKey().SerializeUncompressed()
		inner, err := asn1.Marshal(ecPrivateKey{Version: 1, PrivateKey: k.Serialize(),
			PublicKey: asn1.BitString{Bytes: pub, BitLength: 8 * len(pub)}})
		if err != nil {
			return nil, err
		}
		return asn1.Marshal(pkcs8{Algorithm: pkix.AlgorithmIdentifier{Algorithm: oidPublicKeyEC, Parameters: asn1.RawValue{FullBytes: curve}}, PrivateKey: inner})
	case sign.PrivateKey:
		return pki.MarshalPKIXPrivateKey(k)
	}
	return x509.MarshalPKCS8PrivateKey(k)
}

func marshalPublic(pub crypto.PublicKey) ([]byte, error) {
	switch p := pub.(type) {
	case *secp256k1.PublicKey:
		curve, _ := asn1.Marshal(oidSecp256k1)
		b := p.SerializeUncompressed()
		return asn1.Marshal(spki{Algorithm: pkix.AlgorithmIdentifier{Algorithm: oidPublicKeyEC, Parameters: asn1.RawValue{FullBytes: curve}},
			PublicKey: asn1.BitString{Bytes: b, BitLength: 8 * len(b)}})
	case sign.PublicKey:
		return pki.MarshalPKIXPublicKey(p)
	}
	return x509.MarshalPKIXPublicKey(pub)
}

// ParsePrivate reads a PKCS#8 DER private key of spec and checks that it is
// that spec (an RSA_3072 key is not an RSA_2048 key).
func ParsePrivate(spec string, der []byte) (crypto.Signer, error) {
	k, err := parsePrivate(spec, der)
	if err != nil {
		return nil, errorf(Validation, "The key material is not a valid %s private key.", spec)
	}
	return k, nil
}

func parsePrivate(spec string, der []byte) (crypto.Signer, error) {
	switch {
	case spec == Secp256k1:
		var p pkcs8
		if rest, err := asn1.Unmarshal(der, &p); err != nil || len(rest) != 0 {
			return nil, errors.New("bad PKCS#8")
		}
		var curve asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(p.Algorithm.Parameters.FullBytes, &curve); err != nil || !p.Algorithm.Algorithm.Equal(oidPublicKeyEC) || !curve.Equal(oidSecp256k1) {
			return nil, errors.New("not secp256k1")
		}
		var ec ecPrivateKey
		if _, err := asn1.Unmarshal(p.PrivateKey, &ec); err != nil || len(ec.PrivateKey) != 32 {
			return nil, errors.New("bad ECPrivateKey")
		}
		var s secp256k1.ModNScalar
		if overflow := s.SetByteSlice(ec.PrivateKey); overflow || s.IsZero() {
			return nil, errors.New("scalar out of range")
		}
		return k256{secp256k1.NewPrivateKey(&s)}, nil
	case mldsaScheme(spec) != nil:
		k, err := pki.UnmarshalPKIXPrivateKey(der)
		if err != nil {
			return nil, err
		}
		if k.Scheme().Name() != mldsaScheme(spec).Name() {
			return nil, errors.New("wrong ML-DSA parameter set")
		}
		return k.(crypto.Signer), nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() != rsaBits(spec) {
			return nil, errors.New("wrong RSA size")
		}
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != nistCurve(spec) {
			return nil, errors.New("wrong curve")
		}
		return k, nil
	case ed25519.PrivateKey:
		if spec != Ed25519 {
			return nil, errors.New("wrong spec")
		}
		return k, nil
	}
	return nil, errors.New("unsupported key type")
}

// PublicKey returns the DER SubjectPublicKeyInfo of a PKCS#8 private key.
func PublicKey(spec string, privDER []byte) ([]byte, error) {
	k, err := ParsePrivate(spec, privDER)
	if err != nil {
		return nil, err
	}
	return marshalPublic(k.Public())
}

// ParsePublic reads a DER SubjectPublicKeyInfo of spec (used by Verify
// from outside keyhold and by DeriveSharedSecret for the peer's key).
func ParsePublic(spec string, der []byte) (crypto.PublicKey, error) {
	p, err := parsePublic(spec, der)
	if err != nil {
		return nil, errorf(Validation, "The public key is not a valid DER-encoded SubjectPublicKeyInfo of a %s key.", spec)
	}
	return p, nil
}

func parsePublic(spec string, der []byte) (crypto.PublicKey, error) {
	switch {
	case spec == Secp256k1:
		var s spki
		if rest, err := asn1.Unmarshal(der, &s); err != nil || len(rest) != 0 {
			return nil, errors.New("bad SPKI")
		}
		var curve asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(s.Algorithm.Parameters.FullBytes, &curve); err != nil || !s.Algorithm.Algorithm.Equal(oidPublicKeyEC) || !curve.Equal(oidSecp256k1) {
			return nil, errors.New("not secp256k1")
		}
		return secp256k1.ParsePubKey(s.PublicKey.RightAlign())
	case mldsaScheme(spec) != nil:
		k, err := pki.UnmarshalPKIXPublicKey(der)
		if err != nil {
			return nil, err
		}
		if k.Scheme().Name() != mldsaScheme(spec).Name() {
			return nil, errors.New("wrong ML-DSA parameter set")
		}
		return k, nil
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() != rsaBits(spec) {
			return nil, errors.New("wrong RSA size")
		}
	case *ecdsa.PublicKey:
		if k.Curve != nistCurve(spec) {
			return nil, errors.New("wrong curve")
		}
	case ed25519.PublicKey:
		if spec != Ed25519 {
			return nil, errors.New("wrong spec")
		}
	default:
		return nil, errors.New("unsupported key type")
	}
	return k, nil
}

// DataKeyPair generates a key pair of a KeyPairSpec: the PKCS#8 private key
// and the DER SubjectPublicKeyInfo, as GenerateDataKeyPair returns them.
func DataKeyPair(spec string) (privDER, pubDER []byte, err error) {
	info, ok := Lookup(spec)
	if !ok || !info.DataKeyPair {
		return nil, nil, errorf(Validation, "1 validation error detected: Value '%s' at 'keyPairSpec' failed to satisfy constraint: Member must satisfy enum value set: [RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1, ECC_NIST_EDWARDS25519]", spec)
	}
	k, err := generatePrivate(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("keyspec.DataKeyPair: %w", err)
	}
	if privDER, err = marshalPrivate(k); err != nil {
		return nil, nil, err
	}
	if pubDER, err = marshalPublic(k.Public()); err != nil {
		return nil, nil, err
	}
	return privDER, pubDER, nil
}
