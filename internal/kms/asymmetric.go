package kms

import (
	"context"
	"errors"

	"github.com/keyhold/keyhold/internal/keyspec"
	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/store"
)

// Asymmetric and HMAC keys: their cryptography happens in the key store
// behind the optional capabilities of internal/keystore; only the soft
// store has them (custom key stores hold SYMMETRIC_DEFAULT keys only).

// KeyManager values.
const (
	KeyManagerCustomer = "CUSTOMER"
	KeyManagerAWS      = "AWS"
)

// Key usages besides ENCRYPT_DECRYPT.
const (
	UsageSignVerify     = keyspec.UsageSignVerify
	UsageGenerateVerify = keyspec.UsageGenerateVerify
	UsageKeyAgreement   = keyspec.UsageKeyAgreement
)

// specErr maps a keyspec error to the domain's exception; anything else is
// internal.
func (s *Service) specErr(op string, k store.Key, err error) error {
	var e *keyspec.Error
	if !errors.As(err, &e) {
		return s.backendErr(op, k, err)
	}
	code := map[keyspec.Kind]Code{
		keyspec.Validation: Validation, keyspec.InvalidKeyUsage: InvalidKeyUsage, keyspec.InvalidSignature: InvalidSignature,
		keyspec.InvalidMac: InvalidMac, keyspec.InvalidCiphertext: InvalidCiphertext, keyspec.Unsupported: UnsupportedOperation,
	}[e.Kind]
	if code == "" {
		return internal(op, err)
	}
	return errorf(code, "%s", e.Message)
}

// capability finds an optional key store capability for k's store.
func capability[T any](s *Service, k store.Key) (T, error) {
	var zero T
	b, ok := s.backends[kindOf(k)]
	if !ok {
		return zero, errorf(InvalidState, "%s is unavailable.", keyARN(k))
	}
	c, ok := b.(T)
	if !ok {
		return zero, errorf(UnsupportedOperation, "%s is in a custom key store, which supports only symmetric encryption keys.", keyARN(k))
	}
	return c, nil
}

// currentMaterial is the key's current entry in Materials (nil if none).
func currentMaterial(k store.Key) *store.KeyMaterial {
	for i := range k.Materials {
		if string(k.Materials[i].ID) == string(k.BackingKeyID) {
			return &k.Materials[i]
		}
	}
	return nil
}

func (s *Service) encryptAsymmetric(ctx context.Context, c Request, k store.Key, in EncryptInput) (EncryptOutput, error) {
	if err := s.usableAs(k, UsageEncryptDecrypt); err != nil {
		return EncryptOutput{}, err
	}
	if len(in.EncryptionContext) > 0 {
		return EncryptOutput{}, errorf(InvalidKeyUsage, "Encryption context is not supported with asymmetric KMS keys.")
	}
	if in.Algorithm == "" || in.Algorithm == AlgSymmetric {
		return EncryptOutput{}, errorf(InvalidKeyUsage, "The encryption algorithm %s is not valid for a %s KMS key.", AlgSymmetric, k.KeySpec)
	}
	if in.DryRun {
		return EncryptOutput{}, dryRun()
	}
	cr, err := capability[keystore.AsymmetricCrypter](s, k)
	if err != nil {
		return EncryptOutput{}, err
	}
	ct, err := cr.EncryptAsymmetric(ctx, s.keyRef(k), in.Algorithm, in.Plaintext)
	if err != nil {
		return EncryptOutput{}, s.specErr("Encrypt", k, err)
	}
	s.recordUse(ctx, c, k)
	return EncryptOutput{CiphertextBlob: ct, KeyARN: keyARN(k), Algorithm: in.Algorithm}, nil
}

func (s *Service) decryptAsymmetric(ctx context.Context, c Request, in DecryptInput) (DecryptOutput, error) {
	if in.KeyID == "" {
		return DecryptOutput{}, errorf(Validation, "KeyId is required when decrypting with an asymmetric KMS key (EncryptionAlgorithm %s).", in.Algorithm)
	}
	k, err := s.resolveKey(ctx, c, in.KeyID, resolveOpts{allowAlias: true, crossAccount: true, ctx: encryptionContext(in.EncryptionContext)})
	if err != nil {
		return DecryptOutput{}, err
	}
	if err := s.usableAs(k, UsageEncryptDecrypt); err != nil {
		return DecryptOutput{}, err
	}
	if k.KeySpec == SpecSymmetric {
		return DecryptOutput{}, errorf(InvalidKeyUsage, "The encryption algorithm %s is not valid for a symmetric encryption KMS key.", in.Algorithm)
	}
	if len(in.EncryptionContext) > 0 {
		return DecryptOutput{}, errorf(InvalidKeyUsage, "Encryption context is not supported with asymmetric KMS keys.")
	}
	if in.DryRun {
		return DecryptOutput{}, dryRun()
	}
	cr, err := capability[keystore.AsymmetricCrypter](s, k)
	if err != nil {
		return DecryptOutput{}, err
	}
	pt, err := cr.DecryptAsymmetric(ctx, s.keyRef(k), in.Algorithm, in.CiphertextBlob)
	if err != nil {
		return DecryptOutput{}, s.specErr("Decrypt", k, err)
	}
	s.recordUse(ctx, c, k)
	return DecryptOutput{Plaintext: pt, KeyARN: keyARN(k), Algorithm: in.Algorithm}, nil
}

// SignInput holds Sign's and Verify's parameters.
type SignInput struct {
	KeyID, Algorithm, MessageType string
	Message, Signature            []byte
	DryRun                        bool
}

// SignOutput is Sign's result.
type SignOutput struct {
	KeyARN, Algorithm string
	Signature         []byte
}

func (s *Service) liveKey(ctx context.Context, c Request, keyID, usage string) (store.Key, error) {
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{allowAlias: true, crossAccount: true})
	if err != nil {
		return k, err
	}
	return k, s.usableAs(k, usage)
}

// useCapability is the shared path of the operations that run on an
// optional key store capability (Sign, Verify, GenerateMac, VerifyMac,
// DeriveSharedSecret): resolve a live key of usage, answer DryRun, find
// capability T, run fn, map its error and record the use. It returns the
// key's ARN.
func useCapability[T any](ctx context.Context, s *Service, c Request, op, keyID, usage string, dry bool, fn func(T, keystore.KeyRef) error) (string, error) {
	k, err := s.liveKey(ctx, c, keyID, usage)
	if err != nil {
		return "", err
	}
	if dry {
		return "", dryRun()
	}
	cp, err := capability[T](s, k)
	if err != nil {
		return "", err
	}
	if err := fn(cp, s.keyRef(k)); err != nil {
		return "", s.specErr(op, k, err)
	}
	s.recordUse(ctx, c, k)
	return keyARN(k), nil
}

// Sign signs with a SIGN_VERIFY key.
func (s *Service) Sign(ctx context.Context, c Request, in SignInput) (SignOutput, error) {
	var sig []byte
	arn, err := useCapability(ctx, s, c, "Sign", in.KeyID, UsageSignVerify, in.DryRun, func(sg keystore.Signer, ref keystore.KeyRef) (err error) {
		sig, err = sg.Sign(ctx, ref, in.Algorithm, in.MessageType, in.Message)
		return err
	})
	if err != nil {
		return SignOutput{}, err
	}
	return SignOutput{KeyARN: arn, Algorithm: in.Algorithm, Signature: sig}, nil
}

// Verify checks a signature; a wrong one is KMSInvalidSignatureException.
func (s *Service) Verify(ctx context.Context, c Request, in SignInput) (SignOutput, error) {
	arn, err := useCapability(ctx, s, c, "Verify", in.KeyID, UsageSignVerify, in.DryRun, func(sg keystore.Signer, ref keystore.KeyRef) error {
		return sg.Verify(ctx, ref, in.Algorithm, in.MessageType, in.Message, in.Signature)
	})
	if err != nil {
		return SignOutput{}, err
	}
	return SignOutput{KeyARN: arn, Algorithm: in.Algorithm}, nil
}

// PublicKeyOutput is GetPublicKey's result.
type PublicKeyOutput struct {
	Metadata  KeyMetadata
	PublicKey []byte
}

// GetPublicKey returns an asymmetric key's DER SubjectPublicKeyInfo.
func (s *Service) GetPublicKey(ctx context.Context, c Request, keyID string) (PublicKeyOutput, error) {
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{allowAlias: true, crossAccount: true})
	if err != nil {
		return PublicKeyOutput{}, err
	}
	if info, ok := keyspec.Lookup(k.KeySpec); !ok || !info.IsAsymmetric() {
		return PublicKeyOutput{}, errorf(UnsupportedOperation, "%s is not an asymmetric KMS key; GetPublicKey supports only asymmetric KMS keys.", keyARN(k))
	}
	if err := s.usableAs(k, k.KeyUsage); err != nil {
		return PublicKeyOutput{}, err
	}
	pk, err := capability[keystore.PublicKeyer](s, k)
	if err != nil {
		return PublicKeyOutput{}, err
	}
	pub, err := pk.PublicKey(ctx, s.keyRef(k))
	if err != nil {
		return PublicKeyOutput{}, s.specErr("GetPublicKey", k, err)
	}
	return PublicKeyOutput{Metadata: s.metadata(k), PublicKey: pub}, nil
}

// DeriveSharedSecretInput holds DeriveSharedSecret's parameters.
type DeriveSharedSecretInput struct {
	KeyID, Algorithm string
	PublicKey        []byte
	DryRun           bool
}

// DeriveSharedSecret runs ECDH with a KEY_AGREEMENT key.
func (s *Service) DeriveSharedSecret(ctx context.Context, c Request, in DeriveSharedSecretInput) ([]byte, string, error) {
	var secret []byte
	arn, err := useCapability(ctx, s, c, "DeriveSharedSecret", in.KeyID, UsageKeyAgreement, in.DryRun, func(ka keystore.KeyAgreer, ref keystore.KeyRef) (err error) {
		secret, err = ka.DeriveSharedSecret(ctx, ref, in.Algorithm, in.PublicKey)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return secret, arn, nil
}

// MacInput holds GenerateMac's and VerifyMac's parameters.
type MacInput struct {
	KeyID, Algorithm string
	Message, Mac     []byte
	DryRun           bool
}

// GenerateMac computes an HMAC with a GENERATE_VERIFY_MAC key.
func (s *Service) GenerateMac(ctx context.Context, c Request, in MacInput) ([]byte, string, error) {
	var mac []byte
	arn, err := useCapability(ctx, s, c, "GenerateMac", in.KeyID, UsageGenerateVerify, in.DryRun, func(m keystore.MACer, ref keystore.KeyRef) (err error) {
		mac, err = m.GenerateMAC(ctx, ref, in.Algorithm, in.Message)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return mac, arn, nil
}

// VerifyMac checks an HMAC; a wrong one is KMSInvalidMacException.
func (s *Service) VerifyMac(ctx context.Context, c Request, in MacInput) (string, error) {
	return useCapability(ctx, s, c, "VerifyMac", in.KeyID, UsageGenerateVerify, in.DryRun, func(m keystore.MACer, ref keystore.KeyRef) error {
		return m.VerifyMAC(ctx, ref, in.Algorithm, in.Message, in.Mac)
	})
}

// DataKeyPairInput holds GenerateDataKeyPair's parameters.
type DataKeyPairInput struct {
	KeyID             string
	KeyPairSpec       string
	EncryptionContext map[string]string
	DryRun            bool
}

// DataKeyPairOutput is GenerateDataKeyPair's result; PrivateKeyPlaintext is
// nil for GenerateDataKeyPairWithoutPlaintext.
type DataKeyPairOutput struct {
	PrivateKeyCiphertextBlob, PrivateKeyPlaintext, PublicKey []byte
	KeyARN, KeyPairSpec                                      string
	KeyMaterialID                                            []byte
}

// GenerateDataKeyPair makes a key pair and returns the private key
// encrypted under a symmetric key (and, if withPlaintext, in plaintext).
func (s *Service) GenerateDataKeyPair(ctx context.Context, c Request, in DataKeyPairInput, withPlaintext bool) (DataKeyPairOutput, error) {
	if in.KeyPairSpec == keyspec.SM2 {
		return DataKeyPairOutput{}, errorf(Validation, "KeyPairSpec SM2 is supported only in China Regions.")
	}
	k, err := s.resolveKey(ctx, c, in.KeyID, resolveOpts{allowAlias: true, crossAccount: true, ctx: encryptionContext(in.EncryptionContext)})
	if err != nil {
		return DataKeyPairOutput{}, err
	}
	if err := s.usable(k); err != nil {
		return DataKeyPairOutput{}, err
	}
	if in.DryRun {
		return DataKeyPairOutput{}, dryRun()
	}
	priv, pub, err := keyspec.DataKeyPair(in.KeyPairSpec)
	if err != nil {
		return DataKeyPairOutput{}, s.specErr("GenerateDataKeyPair", k, err)
	}
	ct, err := s.seal(ctx, c, k, priv, in.EncryptionContext)
	if err != nil {
		clear(priv)
		return DataKeyPairOutput{}, err
	}
	out := DataKeyPairOutput{PrivateKeyCiphertextBlob: ct, PublicKey: pub, KeyARN: keyARN(k),
		KeyPairSpec: in.KeyPairSpec, KeyMaterialID: materialID(k)}
	if withPlaintext {
		out.PrivateKeyPlaintext = priv
	} else {
		clear(priv)
	}
	return out, nil
}
