package kms

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/store"
)

func kindOf(k store.Key) blob.Kind {
	switch k.Origin {
	case OriginCloudHSM:
		return blob.KindCloudHSM
	case OriginXKS:
		return blob.KindXKS
	}
	return blob.KindSoft
}

func (s *Service) keyRef(k store.Key) keystore.KeyRef {
	return keystore.KeyRef{AccountID: k.AccountID, ID: k.ID, ARN: keyARN(k), BackingKeyID: k.BackingKeyID,
		SealedMaterial: k.SealedMaterial, CustomKeyStoreID: k.CustomKeyStoreID, XksKeyID: k.XksKeyID, KeySpec: k.KeySpec}
}

// materialRef is keyRef with the material a ciphertext names: the current
// one or any earlier one kept by rotation. ok is false for material the key
// never had, or imported material since deleted.
func (s *Service) materialRef(k store.Key, materialID []byte) (keystore.KeyRef, bool) {
	ref := s.keyRef(k)
	if string(materialID) == string(k.BackingKeyID) && (k.Origin != OriginExternal || len(k.SealedMaterial) > 0) {
		return ref, true
	}
	for _, m := range k.Materials {
		if string(m.ID) == string(materialID) && len(m.Sealed) > 0 {
			ref.BackingKeyID, ref.SealedMaterial = m.ID, m.Sealed
			return ref, true
		}
	}
	return ref, false
}

// usable checks that a key may do symmetric encryption now.
func (s *Service) usable(k store.Key) error {
	if err := s.usableAs(k, UsageEncryptDecrypt); err != nil {
		return err
	}
	if k.KeySpec != SpecSymmetric {
		return errorf(InvalidKeyUsage, "%s key usage is %s which is not valid for this operation.", keyARN(k), k.KeyUsage)
	}
	return nil
}

// usableAs checks that a key may do cryptography of usage now.
func (s *Service) usableAs(k store.Key, usage string) error {
	st := s.effectiveState(k)
	if st == StateEnabled && k.KeyUsage == usage {
		return nil // the common case: no ARN to format
	}
	arn := keyARN(k)
	switch st {
	case StateEnabled:
	case StateDisabled:
		return errorf(Disabled, "%s is disabled.", arn)
	case StatePendingDeletion:
		return errorf(InvalidState, "%s is pending deletion.", arn)
	case StatePendingReplicaDeletion:
		return errorf(InvalidState, "%s is pending deletion: it is a multi-Region primary key waiting for its replica keys to be deleted.", arn)
	case StateUnavailable:
		return errorf(InvalidState, "%s is unavailable.", arn)
	case StatePendingImport:
		return errorf(InvalidState, "%s is pending import.", arn)
	default:
		return errorf(InvalidState, "%s is not in a valid state for this operation.", arn)
	}
	if k.KeyUsage != usage {
		return errorf(InvalidKeyUsage, "%s key usage is %s which is not valid for this operation.", arn, k.KeyUsage)
	}
	return nil
}

func checkAlgorithm(alg string) error {
	if alg != "" && alg != AlgSymmetric {
		return errorf(InvalidKeyUsage, "The encryption algorithm %s is not valid for a symmetric encryption KMS key.", alg)
	}
	return nil
}

// EncryptInput holds Encrypt's parameters.
type EncryptInput struct {
	KeyID             string
	Plaintext         []byte
	EncryptionContext map[string]string
	Algorithm         string
	DryRun            bool
}

// EncryptOutput is Encrypt's result.
type EncryptOutput struct {
	CiphertextBlob []byte
	KeyARN         string
	Algorithm      string
}

func isRSAAlgorithm(alg string) bool { return strings.HasPrefix(alg, "RSAES_") }

func dryRun() error {
	return errorf(DryRunOperation, "The request would have succeeded, but the DryRun option is set.")
}

// Encrypt encrypts up to 4 KiB under a symmetric key.
func (s *Service) Encrypt(ctx context.Context, c Request, in EncryptInput) (EncryptOutput, error) {
	if !isRSAAlgorithm(in.Algorithm) {
		if err := checkAlgorithm(in.Algorithm); err != nil {
			return EncryptOutput{}, err
		}
	}
	k, err := s.resolveKey(ctx, c, in.KeyID, resolveOpts{allowAlias: true, crossAccount: true, ctx: encryptionContext(in.EncryptionContext)})
	if err != nil {
		return EncryptOutput{}, err
	}
	if k.KeySpec != SpecSymmetric && k.KeyUsage == UsageEncryptDecrypt {
		return s.encryptAsymmetric(ctx, c, k, in)
	}
	if err := checkAlgorithm(in.Algorithm); err != nil {
		return EncryptOutput{}, err
	}
	if err := s.usable(k); err != nil {
		return EncryptOutput{}, err
	}
	if in.DryRun {
		return EncryptOutput{}, dryRun()
	}
	ct, err := s.seal(ctx, c, k, in.Plaintext, in.EncryptionContext)
	if err != nil {
		return EncryptOutput{}, err
	}
	return EncryptOutput{CiphertextBlob: ct, KeyARN: keyARN(k), Algorithm: AlgSymmetric}, nil
}

func (s *Service) seal(ctx context.Context, c Request, k store.Key, plaintext []byte, ec map[string]string) ([]byte, error) {
	h := blob.Header{Kind: kindOf(k)}
	h.KeyID, h.MultiRegion, _ = blob.ParseKeyID(k.ID)
	copy(h.BackingKeyID[:], k.BackingKeyID)
	b, ok := s.backends[h.Kind]
	if !ok {
		return nil, errorf(InvalidState, "%s is unavailable.", keyARN(k))
	}
	hdr := h.Bytes()
	payload, err := b.Encrypt(ctx, s.keyRef(k), call(ctx, c, "Encrypt"), plaintext, blob.AAD(hdr, ec))
	if err != nil {
		return nil, s.backendErr("Encrypt", k, err)
	}
	s.recordUse(ctx, c, k)
	return append(hdr, payload...), nil
}

// backendErr maps key store failures: a domain error passes through, any
// other failure of a custom key store is KMSInvalidStateException (as AWS
// documents), and a soft-store failure is internal.
func (s *Service) backendErr(op string, k store.Key, err error) error {
	if e, ok := AsError(err); ok {
		return e
	}
	var ke *keystore.Error
	if errors.As(err, &ke) {
		return &Error{Code: Code(ke.Code), Message: ke.Message, Cause: ke.Cause}
	}
	if errors.Is(err, keystore.ErrInvalidCiphertext) {
		return errorf(InvalidCiphertext, "The ciphertext is invalid or was not encrypted under this KMS key and encryption context.")
	}
	if k.CustomKeyStoreID != "" {
		return &Error{Code: InvalidState, Message: s.cks.failureMessage(k), Cause: err}
	}
	return internal(op, err)
}

// DecryptInput holds Decrypt's parameters.
type DecryptInput struct {
	CiphertextBlob    []byte
	KeyID             string
	EncryptionContext map[string]string
	Algorithm         string
	DryRun            bool
}

// DecryptOutput is Decrypt's result.
type DecryptOutput struct {
	Plaintext    []byte
	KeyARN       string
	BackingKeyID []byte
	Algorithm    string
}

func invalidCiphertext() error {
	return errorf(InvalidCiphertext, "The ciphertext is invalid or was not encrypted under this KMS key and encryption context.")
}

// Decrypt decrypts a ciphertext this server produced. KeyId is optional; when
// given it must identify the key that encrypted the ciphertext.
func (s *Service) Decrypt(ctx context.Context, c Request, in DecryptInput) (DecryptOutput, error) {
	if len(in.CiphertextBlob) == 0 {
		return DecryptOutput{}, errorf(Validation, "1 validation error detected: Value null at 'ciphertextBlob' failed to satisfy constraint: Member must not be null")
	}
	if isRSAAlgorithm(in.Algorithm) {
		return s.decryptAsymmetric(ctx, c, in)
	}
	if err := checkAlgorithm(in.Algorithm); err != nil {
		return DecryptOutput{}, err
	}
	h, payload, err := blob.Decode(in.CiphertextBlob)
	if err != nil {
		return DecryptOutput{}, invalidCiphertext()
	}
	k, err := s.keyOfCiphertext(ctx, c, h.KeyIDString())
	if errors.Is(err, store.ErrNotFound) {
		return DecryptOutput{}, invalidCiphertext()
	}
	if err != nil {
		return DecryptOutput{}, internal("Decrypt", err)
	}
	if in.KeyID != "" {
		want, err := s.resolveKey(ctx, c, in.KeyID, resolveOpts{allowAlias: true, crossAccount: true, noAuth: true})
		if err != nil {
			return DecryptOutput{}, err
		}
		if want.ID != k.ID || want.AccountID != k.AccountID {
			return DecryptOutput{}, errorf(IncorrectKey, "The key ID in the request does not identify a CMK that can perform this operation.")
		}
	}
	if err := s.authorize(ctx, c, &k, encryptionContext(in.EncryptionContext)); err != nil {
		return DecryptOutput{}, err
	}
	if k.KeySpec != SpecSymmetric {
		return DecryptOutput{}, errorf(InvalidKeyUsage, "%s key usage is %s which is not valid for this operation.", keyARN(k), k.KeyUsage)
	}
	ref, ok := s.materialRef(k, h.BackingKeyID[:len(k.BackingKeyID)])
	if kindOf(k) != h.Kind || !ok {
		if k.State == StatePendingImport {
			return DecryptOutput{}, errorf(InvalidState, "%s is pending import.", keyARN(k))
		}
		return DecryptOutput{}, invalidCiphertext()
	}
	if err := s.usable(k); err != nil {
		return DecryptOutput{}, err
	}
	if in.DryRun {
		return DecryptOutput{}, dryRun()
	}
	b, ok := s.backends[h.Kind]
	if !ok {
		return DecryptOutput{}, errorf(InvalidState, "%s is unavailable.", keyARN(k))
	}
	pt, err := b.Decrypt(ctx, ref, call(ctx, c, "Decrypt"), payload, blob.AAD(in.CiphertextBlob[:blob.HeaderLen], in.EncryptionContext))
	if err != nil {
		return DecryptOutput{}, s.backendErr("Decrypt", k, err)
	}
	s.recordUse(ctx, c, k)
	out := DecryptOutput{Plaintext: pt, KeyARN: keyARN(k), Algorithm: AlgSymmetric}
	if k.Origin == OriginAWSKMS || k.Origin == OriginExternal {
		out.BackingKeyID = ref.BackingKeyID
	}
	return out, nil
}

// ReEncryptInput holds ReEncrypt's parameters.
type ReEncryptInput struct {
	CiphertextBlob               []byte
	SourceKeyID                  string
	SourceEncryptionContext      map[string]string
	SourceAlgorithm              string
	DestinationKeyID             string
	DestinationEncryptionContext map[string]string
	DestinationAlgorithm         string
	DryRun                       bool
}

// ReEncryptOutput is ReEncrypt's result.
type ReEncryptOutput struct {
	CiphertextBlob []byte
	SourceKeyARN   string
	KeyARN         string
	SourceBacking  []byte
	DestBacking    []byte
	// SourceAlgorithm and DestinationAlgorithm as used (SYMMETRIC_DEFAULT
	// or an RSAES_OAEP algorithm of an RSA key).
	SourceAlgorithm, DestinationAlgorithm string
}

// ReEncrypt decrypts and re-encrypts on the server, never returning the plaintext.
func (s *Service) ReEncrypt(ctx context.Context, c Request, in ReEncryptInput) (ReEncryptOutput, error) {
	if !isRSAAlgorithm(in.DestinationAlgorithm) {
		if err := checkAlgorithm(in.DestinationAlgorithm); err != nil {
			return ReEncryptOutput{}, err
		}
	}
	// ReEncrypt is decided as two actions, as in AWS: kms:ReEncryptTo on
	// the destination key, kms:ReEncryptFrom on the source key.
	to, from := c, c
	to.Action, from.Action = ActionReEncryptTo, ActionReEncryptFrom
	dst, err := s.resolveKey(ctx, to, in.DestinationKeyID,
		resolveOpts{allowAlias: true, crossAccount: true, ctx: encryptionContext(in.DestinationEncryptionContext)})
	if err != nil {
		return ReEncryptOutput{}, err
	}
	// An RSA ENCRYPT_DECRYPT destination gets a raw OAEP ciphertext.
	rsaDst := dst.KeySpec != SpecSymmetric && dst.KeyUsage == UsageEncryptDecrypt
	if rsaDst {
		if err := s.usableAs(dst, UsageEncryptDecrypt); err != nil {
			return ReEncryptOutput{}, err
		}
		if !isRSAAlgorithm(in.DestinationAlgorithm) {
			return ReEncryptOutput{}, errorf(InvalidKeyUsage, "The encryption algorithm %s is not valid for a %s KMS key.", AlgSymmetric, dst.KeySpec)
		}
	} else {
		if err := checkAlgorithm(in.DestinationAlgorithm); err != nil {
			return ReEncryptOutput{}, err
		}
		if err := s.usable(dst); err != nil {
			return ReEncryptOutput{}, err
		}
	}
	dec, err := s.Decrypt(ctx, from, DecryptInput{CiphertextBlob: in.CiphertextBlob, KeyID: in.SourceKeyID,
		EncryptionContext: in.SourceEncryptionContext, Algorithm: in.SourceAlgorithm, DryRun: in.DryRun})
	if err != nil {
		return ReEncryptOutput{}, err
	}
	defer clear(dec.Plaintext)
	out := ReEncryptOutput{SourceKeyARN: dec.KeyARN, KeyARN: keyARN(dst), SourceBacking: dec.BackingKeyID,
		DestBacking: materialID(dst), SourceAlgorithm: dec.Algorithm, DestinationAlgorithm: AlgSymmetric}
	if rsaDst {
		enc, err := s.encryptAsymmetric(ctx, c, dst, EncryptInput{Plaintext: dec.Plaintext, Algorithm: in.DestinationAlgorithm,
			EncryptionContext: in.DestinationEncryptionContext})
		if err != nil {
			return ReEncryptOutput{}, err
		}
		out.CiphertextBlob, out.DestinationAlgorithm, out.DestBacking = enc.CiphertextBlob, enc.Algorithm, nil
		return out, nil
	}
	if out.CiphertextBlob, err = s.seal(ctx, c, dst, dec.Plaintext, in.DestinationEncryptionContext); err != nil {
		return ReEncryptOutput{}, err
	}
	return out, nil
}

// GenerateDataKeyInput holds GenerateDataKey's parameters.
type GenerateDataKeyInput struct {
	KeyID             string
	KeySpec           string // AES_256 | AES_128
	NumberOfBytes     int    // 1..1024
	EncryptionContext map[string]string
	DryRun            bool
}

// GenerateDataKeyOutput is the result; Plaintext is nil for WithoutPlaintext.
type GenerateDataKeyOutput struct {
	CiphertextBlob []byte
	Plaintext      []byte
	KeyARN         string
}

// GenerateDataKey makes a random data key and returns it encrypted (and, if
// withPlaintext, in plaintext).
func (s *Service) GenerateDataKey(ctx context.Context, c Request, in GenerateDataKeyInput, withPlaintext bool) (GenerateDataKeyOutput, error) {
	n := in.NumberOfBytes
	switch {
	case in.KeySpec != "" && n != 0, in.KeySpec == "" && n == 0:
		return GenerateDataKeyOutput{}, errorf(Validation, "Please specify either number of bytes or key spec.")
	case in.KeySpec == "AES_256":
		n = 32
	case in.KeySpec == "AES_128":
		n = 16
	case in.KeySpec != "":
		return GenerateDataKeyOutput{}, errorf(Validation, "1 validation error detected: Value '%s' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]", in.KeySpec)
	}
	k, err := s.resolveKey(ctx, c, in.KeyID, resolveOpts{allowAlias: true, crossAccount: true, ctx: encryptionContext(in.EncryptionContext)})
	if err != nil {
		return GenerateDataKeyOutput{}, err
	}
	if err := s.usable(k); err != nil {
		return GenerateDataKeyOutput{}, err
	}
	if in.DryRun {
		return GenerateDataKeyOutput{}, dryRun()
	}
	dk := make([]byte, n)
	if _, err := rand.Read(dk); err != nil {
		return GenerateDataKeyOutput{}, internal("GenerateDataKey", err)
	}
	ct, err := s.seal(ctx, c, k, dk, in.EncryptionContext)
	if err != nil {
		clear(dk)
		return GenerateDataKeyOutput{}, err
	}
	out := GenerateDataKeyOutput{CiphertextBlob: ct, KeyARN: keyARN(k)}
	if withPlaintext {
		out.Plaintext = dk
	} else {
		clear(dk)
	}
	return out, nil
}

// GenerateRandom returns n random bytes, from a custom key store's cluster
// when customKeyStoreID is set.
func (s *Service) GenerateRandom(ctx context.Context, c Request, n int, customKeyStoreID string) ([]byte, error) {
	if n <= 0 {
		return nil, errorf(Validation, "1 validation error detected: Value null at 'numberOfBytes' failed to satisfy constraint: Member must not be null")
	}
	if err := s.authorize(ctx, c, nil, nil); err != nil {
		return nil, err
	}
	if customKeyStoreID != "" {
		return s.cks.generateRandom(ctx, c, customKeyStoreID, n)
	}
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, internal("GenerateRandom", err)
	}
	return b, nil
}

// materialID is the key material id AWS reports (only for keys whose
// material KMS holds).
func materialID(k store.Key) []byte {
	if k.Origin != OriginAWSKMS && k.Origin != OriginExternal {
		return nil
	}
	return k.BackingKeyID
}

// keyOfCiphertext finds the key a ciphertext names: the caller's own, or
// another account's (authorization then decides).
func (s *Service) keyOfCiphertext(ctx context.Context, c Request, id string) (store.Key, error) {
	k, err := s.getKey(ctx, c.AccountID, s.regionOf(c), id)
	if !errors.Is(err, store.ErrNotFound) {
		return k, err
	}
	k, err = s.st.FindKey(ctx, s.regionOf(c), id)
	if err != nil {
		return k, err
	}
	return s.getKey(ctx, k.AccountID, k.Region, id)
}
