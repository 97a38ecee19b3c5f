package kmsapi

import (
	"context"
	"time"

	"github.com/keyhold/keyhold/internal/kms"
)

// Rotation, asymmetric and HMAC keys, imported key material, multi-Region
// keys and key usage: the operations that complete the model's table.

type enableKeyRotationIn struct {
	KeyId                string
	RotationPeriodInDays int
}

func (a *API) enableKeyRotation(ctx context.Context, c kms.Request, in *enableKeyRotationIn) (any, error) {
	return empty{}, a.svc.EnableKeyRotation(ctx, c, in.KeyId, in.RotationPeriodInDays)
}

func (a *API) disableKeyRotation(ctx context.Context, c kms.Request, in *keyIDIn) (any, error) {
	return empty{}, a.svc.DisableKeyRotation(ctx, c, in.KeyId)
}

type rotationStatusOut struct {
	KeyRotationEnabled        bool
	KeyId                     string
	RotationPeriodInDays      *int   `json:",omitempty"`
	NextRotationDate          *epoch `json:",omitempty"`
	OnDemandRotationStartDate *epoch `json:",omitempty"`
}

func (a *API) getKeyRotationStatus(ctx context.Context, c kms.Request, in *keyIDIn) (any, error) {
	st, err := a.svc.GetKeyRotationStatus(ctx, c, in.KeyId)
	if err != nil {
		return nil, err
	}
	out := rotationStatusOut{KeyRotationEnabled: st.Enabled, KeyId: st.KeyARN, NextRotationDate: toEpoch(st.Next),
		OnDemandRotationStartDate: toEpoch(st.OnDemandStart)}
	if st.PeriodDays > 0 {
		out.RotationPeriodInDays = &st.PeriodDays
	}
	return out, nil
}

func (a *API) rotateKeyOnDemand(ctx context.Context, c kms.Request, in *keyIDIn) (any, error) {
	arn, err := a.svc.RotateKeyOnDemand(ctx, c, in.KeyId)
	if err != nil {
		return nil, err
	}
	return keyIDOut{arn}, nil
}

type listKeyRotationsIn struct {
	KeyId              string
	IncludeKeyMaterial string
	Limit              int
	Marker             string
}

type rotationEntry struct {
	KeyId                  string
	KeyMaterialId          *string `json:",omitempty"`
	KeyMaterialDescription *string `json:",omitempty"`
	ImportState            *string `json:",omitempty"`
	KeyMaterialState       *string `json:",omitempty"`
	ExpirationModel        *string `json:",omitempty"`
	ValidTo                *epoch  `json:",omitempty"`
	RotationDate           *epoch  `json:",omitempty"`
	RotationType           *string `json:",omitempty"`
}

type listKeyRotationsOut struct {
	Rotations  []rotationEntry
	NextMarker *string `json:",omitempty"`
	Truncated  bool
}

func (a *API) listKeyRotations(ctx context.Context, c kms.Request, in *listKeyRotationsIn) (any, error) {
	rs, p, err := a.svc.ListKeyRotations(ctx, c, in.KeyId, in.IncludeKeyMaterial == "ALL_KEY_MATERIAL", in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	out := listKeyRotationsOut{Rotations: make([]rotationEntry, len(rs)), NextMarker: strp(p.NextMarker), Truncated: p.Truncated}
	for i, r := range rs {
		out.Rotations[i] = rotationEntry{KeyId: r.KeyARN, KeyMaterialId: hexp(r.MaterialID), KeyMaterialDescription: strp(r.Description),
			ImportState: strp(r.ImportState), KeyMaterialState: strp(r.State), ExpirationModel: strp(r.ExpirationModel),
			ValidTo: toEpoch(r.ValidTo), RotationDate: toEpoch(r.Date), RotationType: strp(r.Type)}
	}
	return out, nil
}

type signIn struct {
	KeyId            string
	Message          []byte
	MessageType      string
	Signature        []byte
	SigningAlgorithm string
	GrantTokens      []string
	DryRun           *bool
}

type signOut struct {
	KeyId            string
	Signature        []byte
	SigningAlgorithm string
}

func (a *API) sign(ctx context.Context, c kms.Request, in *signIn) (any, error) {
	out, err := a.svc.Sign(ctx, c, kms.SignInput{KeyID: in.KeyId, Algorithm: in.SigningAlgorithm, MessageType: in.MessageType,
		Message: in.Message, DryRun: isTrue(in.DryRun)})
	if err != nil {
		return nil, err
	}
	return signOut{KeyId: out.KeyARN, Signature: out.Signature, SigningAlgorithm: out.Algorithm}, nil
}

type verifyOut struct {
	KeyId            string
	SignatureValid   bool
	SigningAlgorithm string
}

func (a *API) verify(ctx context.Context, c kms.Request, in *signIn) (any, error) {
	out, err := a.svc.Verify(ctx, c, kms.SignInput{KeyID: in.KeyId, Algorithm: in.SigningAlgorithm, MessageType: in.MessageType,
		Message: in.Message, Signature: in.Signature, DryRun: isTrue(in.DryRun)})
	if err != nil {
		return nil, err
	}
	return verifyOut{KeyId: out.KeyARN, SignatureValid: true, SigningAlgorithm: out.Algorithm}, nil
}

type getPublicKeyOut struct {
	KeyId                  string
	PublicKey              []byte
	CustomerMasterKeySpec  string
	KeySpec                string
	KeyUsage               string
	EncryptionAlgorithms   []string `json:",omitempty"`
	SigningAlgorithms      []string `json:",omitempty"`
	KeyAgreementAlgorithms []string `json:",omitempty"`
}

func (a *API) getPublicKey(ctx context.Context, c kms.Request, in *keyIDIn) (any, error) {
	out, err := a.svc.GetPublicKey(ctx, c, in.KeyId)
	if err != nil {
		return nil, err
	}
	m := out.Metadata
	return getPublicKeyOut{KeyId: m.ARN, PublicKey: out.PublicKey, CustomerMasterKeySpec: m.KeySpec, KeySpec: m.KeySpec, KeyUsage: m.KeyUsage,
		EncryptionAlgorithms: m.EncryptionAlgorithms, SigningAlgorithms: m.SigningAlgorithms, KeyAgreementAlgorithms: m.KeyAgreementAlgorithms}, nil
}

type deriveSharedSecretIn struct {
	KeyId                 string
	KeyAgreementAlgorithm string
	PublicKey             []byte
	GrantTokens           []string
	DryRun                *bool
	Recipient             *struct {
		KeyEncryptionAlgorithm string
		AttestationDocument    []byte
	}
}

type deriveSharedSecretOut struct {
	KeyId                 string
	SharedSecret          []byte
	KeyAgreementAlgorithm string
	KeyOrigin             string
}

func (a *API) deriveSharedSecret(ctx context.Context, c kms.Request, in *deriveSharedSecretIn) (any, error) {
	if in.Recipient != nil {
		return nil, &kms.Error{Code: kms.UnsupportedOperation, Message: "Recipient (Nitro Enclaves attestation) is not supported by keyhold."}
	}
	secret, arn, err := a.svc.DeriveSharedSecret(ctx, c, kms.DeriveSharedSecretInput{KeyID: in.KeyId, Algorithm: in.KeyAgreementAlgorithm,
		PublicKey: in.PublicKey, DryRun: isTrue(in.DryRun)})
	if err != nil {
		return nil, err
	}
	m, err := a.svc.DescribeKey(ctx, c, arn)
	if err != nil {
		return nil, err
	}
	return deriveSharedSecretOut{KeyId: arn, SharedSecret: secret, KeyAgreementAlgorithm: in.KeyAgreementAlgorithm, KeyOrigin: m.Origin}, nil
}

type macIn struct {
	KeyId        string
	Message      []byte
	MacAlgorithm string
	Mac          []byte
	GrantTokens  []string
	DryRun       *bool
}

type generateMacOut struct {
	Mac          []byte
	MacAlgorithm string
	KeyId        string
}

func (a *API) generateMac(ctx context.Context, c kms.Request, in *macIn) (any, error) {
	mac, arn, err := a.svc.GenerateMac(ctx, c, kms.MacInput{KeyID: in.KeyId, Algorithm: in.MacAlgorithm, Message: in.Message, DryRun: isTrue(in.DryRun)})
	if err != nil {
		return nil, err
	}
	return generateMacOut{Mac: mac, MacAlgorithm: in.MacAlgorithm, KeyId: arn}, nil
}

type verifyMacOut struct {
	KeyId        string
	MacValid     bool
	MacAlgorithm string
}

func (a *API) verifyMac(ctx context.Context, c kms.Request, in *macIn) (any, error) {
	arn, err := a.svc.VerifyMac(ctx, c, kms.MacInput{KeyID: in.KeyId, Algorithm: in.MacAlgorithm, Message: in.Message, Mac: in.Mac, DryRun: isTrue(in.DryRun)})
	if err != nil {
		return nil, err
	}
	return verifyMacOut{KeyId: arn, MacValid: true, MacAlgorithm: in.MacAlgorithm}, nil
}

type dataKeyPairIn struct {
	KeyId             string
	KeyPairSpec       string
	EncryptionContext map[string]string
	GrantTokens       []string
	DryRun            *bool
	Recipient         *struct {
		KeyEncryptionAlgorithm string
		AttestationDocument    []byte
	}
}

type dataKeyPairOut struct {
	PrivateKeyCiphertextBlob []byte
	PrivateKeyPlaintext      []byte `json:",omitempty"`
	PublicKey                []byte
	KeyId                    string
	KeyPairSpec              string
	KeyMaterialId            *string `json:",omitempty"`
}

func (a *API) dataKeyPair(ctx context.Context, c kms.Request, in *dataKeyPairIn, withPlaintext bool) (any, error) {
	if in.Recipient != nil {
		return nil, &kms.Error{Code: kms.UnsupportedOperation, Message: "Recipient (Nitro Enclaves attestation) is not supported by keyhold."}
	}
	out, err := a.svc.GenerateDataKeyPair(ctx, c, kms.DataKeyPairInput{KeyID: in.KeyId, KeyPairSpec: in.KeyPairSpec,
		EncryptionContext: in.EncryptionContext, DryRun: isTrue(in.DryRun)}, withPlaintext)
	if err != nil {
		return nil, err
	}
	return dataKeyPairOut{PrivateKeyCiphertextBlob: out.PrivateKeyCiphertextBlob, PrivateKeyPlaintext: out.PrivateKeyPlaintext,
		PublicKey: out.PublicKey, KeyId: out.KeyARN, KeyPairSpec: out.KeyPairSpec, KeyMaterialId: hexp(out.KeyMaterialID)}, nil
}

func (a *API) generateDataKeyPair(ctx context.Context, c kms.Request, in *dataKeyPairIn) (any, error) {
	return a.dataKeyPair(ctx, c, in, true)
}

func (a *API) generateDataKeyPairWithoutPlaintext(ctx context.Context, c kms.Request, in *dataKeyPairIn) (any, error) {
	return a.dataKeyPair(ctx, c, in, false)
}

type getParametersForImportIn struct {
	KeyId             string
	WrappingAlgorithm string
	WrappingKeySpec   string
}

type getParametersForImportOut struct {
	KeyId             string
	ImportToken       []byte
	PublicKey         []byte
	ParametersValidTo *epoch
}

func (a *API) getParametersForImport(ctx context.Context, c kms.Request, in *getParametersForImportIn) (any, error) {
	p, err := a.svc.GetParametersForImport(ctx, c, in.KeyId, in.WrappingAlgorithm, in.WrappingKeySpec)
	if err != nil {
		return nil, err
	}
	return getParametersForImportOut{KeyId: p.KeyARN, ImportToken: p.ImportToken, PublicKey: p.PublicKey, ParametersValidTo: toEpoch(p.ValidTo)}, nil
}

type importKeyMaterialIn struct {
	KeyId                  string
	ImportToken            []byte
	EncryptedKeyMaterial   []byte
	ValidTo                *float64
	ExpirationModel        string
	ImportType             string
	KeyMaterialDescription string
	KeyMaterialId          string
}

type importKeyMaterialOut struct {
	KeyId         string
	KeyMaterialId *string `json:",omitempty"`
}

func (a *API) importKeyMaterial(ctx context.Context, c kms.Request, in *importKeyMaterialIn) (any, error) {
	var validTo time.Time
	if in.ValidTo != nil {
		validTo = time.UnixMilli(int64(*in.ValidTo * 1000)).UTC()
	}
	arn, id, err := a.svc.ImportKeyMaterial(ctx, c, kms.ImportInput{KeyID: in.KeyId, ImportToken: in.ImportToken,
		EncryptedKeyMaterial: in.EncryptedKeyMaterial, ValidTo: validTo, ExpirationModel: in.ExpirationModel,
		ImportType: in.ImportType, Description: in.KeyMaterialDescription, KeyMaterialID: in.KeyMaterialId})
	if err != nil {
		return nil, err
	}
	return importKeyMaterialOut{KeyId: arn, KeyMaterialId: hexp(id)}, nil
}

type deleteImportedIn struct {
	KeyId         string
	KeyMaterialId string
}

func (a *API) deleteImportedKeyMaterial(ctx context.Context, c kms.Request, in *deleteImportedIn) (any, error) {
	arn, id, err := a.svc.DeleteImportedKeyMaterial(ctx, c, in.KeyId, in.KeyMaterialId)
	if err != nil {
		return nil, err
	}
	return importKeyMaterialOut{KeyId: arn, KeyMaterialId: hexp(id)}, nil
}

type replicateKeyIn struct {
	KeyId                          string
	ReplicaRegion                  string
	Policy                         *string
	BypassPolicyLockoutSafetyCheck bool
	Description                    string
	Tags                           []tag
}

type replicateKeyOut struct {
	ReplicaKeyMetadata *keyMetadata
	ReplicaPolicy      string
	ReplicaTags        []tag
}

func (a *API) replicateKey(ctx context.Context, c kms.Request, in *replicateKeyIn) (any, error) {
	out, err := a.svc.ReplicateKey(ctx, c, kms.ReplicateKeyInput{KeyID: in.KeyId, ReplicaRegion: in.ReplicaRegion, Policy: in.Policy,
		BypassPolicyLockoutSafetyCheck: in.BypassPolicyLockoutSafetyCheck, Description: in.Description, Tags: toStoreTags(in.Tags)})
	if err != nil {
		return nil, err
	}
	tags := make([]tag, len(out.Tags))
	for i, t := range out.Tags {
		tags[i] = tag{TagKey: t.Key, TagValue: t.Value}
	}
	return replicateKeyOut{ReplicaKeyMetadata: toKeyMetadata(out.Metadata), ReplicaPolicy: out.Policy, ReplicaTags: tags}, nil
}

type updatePrimaryRegionIn struct {
	KeyId         string
	PrimaryRegion string
}

func (a *API) updatePrimaryRegion(ctx context.Context, c kms.Request, in *updatePrimaryRegionIn) (any, error) {
	return empty{}, a.svc.UpdatePrimaryRegion(ctx, c, in.KeyId, in.PrimaryRegion)
}

type keyLastUsage struct {
	Operation    string
	Timestamp    *epoch
	KmsRequestId *string `json:",omitempty"`
}

type getKeyLastUsageOut struct {
	KeyId             string
	KeyLastUsage      *keyLastUsage `json:",omitempty"`
	TrackingStartDate *epoch
	KeyCreationDate   *epoch
}

func (a *API) getKeyLastUsage(ctx context.Context, c kms.Request, in *keyIDIn) (any, error) {
	u, err := a.svc.GetKeyLastUsage(ctx, c, in.KeyId)
	if err != nil {
		return nil, err
	}
	out := getKeyLastUsageOut{KeyId: u.KeyARN, TrackingStartDate: toEpoch(u.TrackingStartDate), KeyCreationDate: toEpoch(u.KeyCreationDate)}
	if u.Last != nil {
		out.KeyLastUsage = &keyLastUsage{Operation: u.Last.Operation, Timestamp: toEpoch(u.Last.Time), KmsRequestId: strp(u.Last.RequestID)}
	}
	return out, nil
}
