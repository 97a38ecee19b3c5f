//go:build cgo

package pkcs11

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	p11 "github.com/miekg/pkcs11"
)

// This file (owned by internal/hsm) adds an in-token ECDSA P-256 key pair
// usable as a crypto.Signer: the identity key of a CloudHSM-like cluster that
// signs the cluster CSR. The private key is a public (CKA_PRIVATE=false)
// token object so that the crypto officer, who cannot use private objects,
// can make and use it before any crypto user exists; it is sensitive and
// never extractable.

// oidP256 is the DER of the named curve prime256v1 for CKA_EC_PARAMS.
var oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}

// ECSigner is an in-token ECDSA P-256 private key. Sign takes a digest and
// returns an ASN.1 (r, s) signature, as crypto/ecdsa does.
type ECSigner struct {
	s     *Session
	label string
	pub   *ecdsa.PublicKey
}

// Public returns the key's public half.
func (e *ECSigner) Public() crypto.PublicKey { return e.pub }

// Sign signs digest with CKM_ECDSA inside the token.
func (e *ECSigner) Sign(_ io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	var raw []byte
	err := e.s.do("Sign", func(h p11.SessionHandle, _ uint64) error {
		oh, err := e.s.findObject(h, p11.CKO_PRIVATE_KEY, e.label)
		if err != nil {
			return err
		}
		if err := e.s.m.ctx.SignInit(h, []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDSA, nil)}, oh); err != nil {
			return err
		}
		raw, err = e.s.m.ctx.Sign(h, digest)
		return err
	})
	if err != nil {
		return nil, wrap("Sign", err)
	}
	if len(raw) != 64 {
		return nil, fmt.Errorf("pkcs11.Sign: unexpected ECDSA signature length %d", len(raw))
	}
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])})
}

// ECSigner returns the in-token P-256 key pair with this label, generating
// it first if the token has none. The private key is sensitive, never
// extractable, and may only sign.
func (s *Session) ECSigner(label string) (*ECSigner, error) {
	var pub *ecdsa.PublicKey
	err := s.do("ECSigner", func(h p11.SessionHandle, _ uint64) error {
		oh, err := s.findObject(h, p11.CKO_PUBLIC_KEY, label)
		if errors.Is(err, ErrKeyNotFound) {
			params, _ := asn1.Marshal(oidP256)
			pubTmpl := []*p11.Attribute{
				p11.NewAttribute(p11.CKA_TOKEN, true),
				p11.NewAttribute(p11.CKA_PRIVATE, false),
				p11.NewAttribute(p11.CKA_VERIFY, true),
				p11.NewAttribute(p11.CKA_EC_PARAMS, params),
				p11.NewAttribute(p11.CKA_LABEL, label),
			}
			privTmpl := []*p11.Attribute{
				p11.NewAttribute(p11.CKA_TOKEN, true),
				p11.NewAttribute(p11.CKA_PRIVATE, false),
				p11.NewAttribute(p11.CKA_SENSITIVE, true),
				p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
				p11.NewAttribute(p11.CKA_SIGN, true),
				p11.NewAttribute(p11.CKA_LABEL, label),
			}
			oh, _, err = s.m.ctx.GenerateKeyPair(h,
				[]*p11.Mechanism{p11.NewMechanism(p11.CKM_EC_KEY_PAIR_GEN, nil)}, pubTmpl, privTmpl)
		}
		if err != nil {
			return err
		}
		attrs, err := s.m.ctx.GetAttributeValue(h, oh, []*p11.Attribute{p11.NewAttribute(p11.CKA_EC_POINT, nil)})
		if err != nil {
			return err
		}
		var point []byte
		if _, err := asn1.Unmarshal(attrs[0].Value, &point); err != nil {
			point = attrs[0].Value // some libraries omit the OCTET STRING wrapper
		}
		x, y := elliptic.Unmarshal(elliptic.P256(), point) //nolint:staticcheck // only to decode a point
		if x == nil {
			return fmt.Errorf("pkcs11.ECSigner: token returned an invalid EC point")
		}
		pub = &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrKeyNotFound) {
			return nil, err
		}
		return nil, wrap("ECSigner", err)
	}
	return &ECSigner{s: s, label: label, pub: pub}, nil
}

func (s *Session) findObject(h p11.SessionHandle, class uint, label string) (p11.ObjectHandle, error) {
	ctx := s.m.ctx
	if err := ctx.FindObjectsInit(h, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, class),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}); err != nil {
		return 0, err
	}
	objs, _, err := ctx.FindObjects(h, 1)
	if ferr := ctx.FindObjectsFinal(h); err == nil {
		err = ferr
	}
	if err != nil {
		return 0, err
	}
	if len(objs) == 0 {
		return 0, fmt.Errorf("pkcs11.findObject %q: %w", label, ErrKeyNotFound)
	}
	return objs[0], nil
}
