package kmsapi

import (
	"context"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/kms"
	"github.com/keyhold/keyhold/internal/store"
)

// New builds the TrentService operation table over svc.
func New(svc *kms.Service) (*awsjson.Service, error) {
	m, err := LoadModel()
	if err != nil {
		return nil, err
	}
	a := &API{svc: svc, model: m}
	op := func(name string, h func(context.Context, *awsjson.Call) (any, error)) awsjson.Operation {
		// The domain authorizes the actions registered here, nothing
		// else: the handler's Request carries the first, and ReEncrypt's
		// second is the domain's own (kms.Actions).
		acts := kms.Actions(name)
		o := awsjson.Operation{Name: name, Action: acts[0], MaxBody: m.MaxInputBytes(name), Handle: h}
		if len(acts) > 1 {
			o.Actions = acts
		}
		return o
	}
	s := awsjson.NewService("TrentService", "kms", mapError,
		op("CreateKey", handler(m, "CreateKey", a.createKey)),
		op("DescribeKey", handler(m, "DescribeKey", a.describeKey)),
		op("ListKeys", handler(m, "ListKeys", a.listKeys)),
		op("EnableKey", handler(m, "EnableKey", a.enableKey)),
		op("DisableKey", handler(m, "DisableKey", a.disableKey)),
		op("ScheduleKeyDeletion", handler(m, "ScheduleKeyDeletion", a.scheduleKeyDeletion)),
		op("CancelKeyDeletion", handler(m, "CancelKeyDeletion", a.cancelKeyDeletion)),
		op("UpdateKeyDescription", handler(m, "UpdateKeyDescription", a.updateKeyDescription)),
		op("Encrypt", handler(m, "Encrypt", a.encrypt)),
		op("Decrypt", handler(m, "Decrypt", a.decrypt)),
		op("ReEncrypt", handler(m, "ReEncrypt", a.reEncrypt)),
		op("GenerateDataKey", handler(m, "GenerateDataKey", a.generateDataKey)),
		op("GenerateDataKeyWithoutPlaintext", handler(m, "GenerateDataKeyWithoutPlaintext", a.generateDataKeyWithoutPlaintext)),
		op("GenerateRandom", handler(m, "GenerateRandom", a.generateRandom)),
		op("CreateAlias", handler(m, "CreateAlias", a.createAlias)),
		op("UpdateAlias", handler(m, "UpdateAlias", a.updateAlias)),
		op("DeleteAlias", handler(m, "DeleteAlias", a.deleteAlias)),
		op("ListAliases", handler(m, "ListAliases", a.listAliases)),
		op("TagResource", handler(m, "TagResource", a.tagResource)),
		op("UntagResource", handler(m, "UntagResource", a.untagResource)),
		op("ListResourceTags", handler(m, "ListResourceTags", a.listResourceTags)),
		op("GetKeyPolicy", handler(m, "GetKeyPolicy", a.getKeyPolicy)),
		op("PutKeyPolicy", handler(m, "PutKeyPolicy", a.putKeyPolicy)),
		op("ListKeyPolicies", handler(m, "ListKeyPolicies", a.listKeyPolicies)),
		op("CreateGrant", handler(m, "CreateGrant", a.createGrant)),
		op("ListGrants", handler(m, "ListGrants", a.listGrants)),
		op("ListRetirableGrants", handler(m, "ListRetirableGrants", a.listRetirableGrants)),
		op("RetireGrant", handler(m, "RetireGrant", a.retireGrant)),
		op("RevokeGrant", handler(m, "RevokeGrant", a.revokeGrant)),
		op("CreateCustomKeyStore", handler(m, "CreateCustomKeyStore", a.createCustomKeyStore)),
		op("ConnectCustomKeyStore", handler(m, "ConnectCustomKeyStore", a.connectCustomKeyStore)),
		op("DisconnectCustomKeyStore", handler(m, "DisconnectCustomKeyStore", a.disconnectCustomKeyStore)),
		op("DescribeCustomKeyStores", handler(m, "DescribeCustomKeyStores", a.describeCustomKeyStores)),
		op("UpdateCustomKeyStore", handler(m, "UpdateCustomKeyStore", a.updateCustomKeyStore)),
		op("DeleteCustomKeyStore", handler(m, "DeleteCustomKeyStore", a.deleteCustomKeyStore)),
		op("EnableKeyRotation", handler(m, "EnableKeyRotation", a.enableKeyRotation)),
		op("DisableKeyRotation", handler(m, "DisableKeyRotation", a.disableKeyRotation)),
		op("GetKeyRotationStatus", handler(m, "GetKeyRotationStatus", a.getKeyRotationStatus)),
		op("RotateKeyOnDemand", handler(m, "RotateKeyOnDemand", a.rotateKeyOnDemand)),
		op("ListKeyRotations", handler(m, "ListKeyRotations", a.listKeyRotations)),
		op("Sign", handler(m, "Sign", a.sign)),
		op("Verify", handler(m, "Verify", a.verify)),
		op("GetPublicKey", handler(m, "GetPublicKey", a.getPublicKey)),
		op("DeriveSharedSecret", handler(m, "DeriveSharedSecret", a.deriveSharedSecret)),
		op("GenerateMac", handler(m, "GenerateMac", a.generateMac)),
		op("VerifyMac", handler(m, "VerifyMac", a.verifyMac)),
		op("GenerateDataKeyPair", handler(m, "GenerateDataKeyPair", a.generateDataKeyPair)),
		op("GenerateDataKeyPairWithoutPlaintext", handler(m, "GenerateDataKeyPairWithoutPlaintext", a.generateDataKeyPairWithoutPlaintext)),
		op("GetParametersForImport", handler(m, "GetParametersForImport", a.getParametersForImport)),
		op("ImportKeyMaterial", handler(m, "ImportKeyMaterial", a.importKeyMaterial)),
		op("DeleteImportedKeyMaterial", handler(m, "DeleteImportedKeyMaterial", a.deleteImportedKeyMaterial)),
		op("ReplicateKey", handler(m, "ReplicateKey", a.replicateKey)),
		op("UpdatePrimaryRegion", handler(m, "UpdatePrimaryRegion", a.updatePrimaryRegion)),
		op("GetKeyLastUsage", handler(m, "GetKeyLastUsage", a.getKeyLastUsage)),
	)
	s.Internal = &awsjson.Error{Type: string(kms.Internal), Status: 500, Message: "An internal error occurred. The request can be retried."}
	// One endpoint answers every Region: the Region is the request's
	// credential scope, and keys, aliases, grants and custom key stores
	// belong to the Region they were made in.
	s.EveryRegion = true
	return s, nil
}

type empty struct{}

type tag struct {
	TagKey   string
	TagValue string
}

func toStoreTags(ts []tag) []store.Tag {
	out := make([]store.Tag, len(ts))
	for i, t := range ts {
		out[i] = store.Tag{Key: t.TagKey, Value: t.TagValue}
	}
	return out
}

type xksKeyConfiguration struct {
	Id string
}

type keyMetadata struct {
	AWSAccountId                string
	KeyId                       string
	Arn                         string
	CreationDate                *epoch
	Enabled                     bool
	Description                 string
	KeyUsage                    string
	KeyState                    string
	DeletionDate                *epoch `json:",omitempty"`
	Origin                      string
	CustomKeyStoreId            *string `json:",omitempty"`
	CloudHsmClusterId           *string `json:",omitempty"`
	ValidTo                     *epoch  `json:",omitempty"`
	ExpirationModel             *string `json:",omitempty"`
	KeyManager                  string
	CustomerMasterKeySpec       string
	KeySpec                     string
	EncryptionAlgorithms        []string `json:",omitempty"`
	SigningAlgorithms           []string `json:",omitempty"`
	KeyAgreementAlgorithms      []string `json:",omitempty"`
	MacAlgorithms               []string `json:",omitempty"`
	MultiRegion                 bool
	MultiRegionConfiguration    *multiRegionConfiguration `json:",omitempty"`
	PendingDeletionWindowInDays *int                      `json:",omitempty"`
	XksKeyConfiguration         *xksKeyConfiguration      `json:",omitempty"`
	CurrentKeyMaterialId        *string                   `json:",omitempty"`
}

func toKeyMetadata(m kms.KeyMetadata) *keyMetadata {
	out := &keyMetadata{
		AWSAccountId: m.AccountID, KeyId: m.KeyID, Arn: m.ARN, CreationDate: toEpoch(m.CreationDate),
		Enabled: m.Enabled, Description: m.Description, KeyUsage: m.KeyUsage, KeyState: m.KeyState,
		DeletionDate: toEpoch(m.DeletionDate), Origin: m.Origin, CustomKeyStoreId: strp(m.CustomKeyStoreID),
		CloudHsmClusterId: strp(m.CloudHsmClusterID), KeyManager: m.KeyManager, CustomerMasterKeySpec: m.KeySpec,
		KeySpec: m.KeySpec, EncryptionAlgorithms: m.EncryptionAlgorithms, SigningAlgorithms: m.SigningAlgorithms,
		KeyAgreementAlgorithms: m.KeyAgreementAlgorithms, MacAlgorithms: m.MacAlgorithms,
		CurrentKeyMaterialId: strp(m.CurrentKeyMaterialID), ExpirationModel: strp(m.ExpirationModel), ValidTo: toEpoch(m.ValidTo),
	}
	if m.PendingDeletionWindowInDays > 0 {
		d := m.PendingDeletionWindowInDays
		out.PendingDeletionWindowInDays = &d
	}
	if m.XksKeyID != "" {
		out.XksKeyConfiguration = &xksKeyConfiguration{Id: m.XksKeyID}
	}
	if mr := m.MultiRegion; mr != nil {
		out.MultiRegion = true
		out.MultiRegionConfiguration = &multiRegionConfiguration{MultiRegionKeyType: mr.KeyType,
			PrimaryKey: &multiRegionKey{Arn: mr.Primary.ARN, Region: mr.Primary.Region}, ReplicaKeys: []multiRegionKey{}}
		for _, r := range mr.Replicas {
			out.MultiRegionConfiguration.ReplicaKeys = append(out.MultiRegionConfiguration.ReplicaKeys, multiRegionKey{Arn: r.ARN, Region: r.Region})
		}
	}
	return out
}

type multiRegionKey struct{ Arn, Region string }

type multiRegionConfiguration struct {
	MultiRegionKeyType string
	PrimaryKey         *multiRegionKey
	ReplicaKeys        []multiRegionKey
}

type keyMetadataOut struct{ KeyMetadata *keyMetadata }

type createKeyIn struct {
	Policy                         *string
	Description                    string
	KeyUsage                       string
	CustomerMasterKeySpec          string
	KeySpec                        string
	Origin                         string
	CustomKeyStoreId               string
	BypassPolicyLockoutSafetyCheck bool
	Tags                           []tag
	MultiRegion                    *bool
	XksKeyId                       string
}

func (a *API) createKey(ctx context.Context, c kms.Request, in *createKeyIn) (any, error) {
	m, err := a.svc.CreateKey(ctx, c, kms.CreateKeyInput{
		Description: in.Description, KeyUsage: in.KeyUsage, KeySpec: in.KeySpec, CustomerMasterKeySpec: in.CustomerMasterKeySpec,
		Origin: in.Origin, Policy: in.Policy, BypassPolicyLockoutSafetyCheck: in.BypassPolicyLockoutSafetyCheck,
		Tags: toStoreTags(in.Tags), CustomKeyStoreID: in.CustomKeyStoreId, XksKeyID: in.XksKeyId,
		MultiRegion: in.MultiRegion != nil && *in.MultiRegion,
	})
	if err != nil {
		return nil, err
	}
	return keyMetadataOut{toKeyMetadata(m)}, nil
}

type keyIDIn struct {
	KeyId       string
	GrantTokens []string
}

func (a *API) describeKey(ctx context.Context, c kms.Request, in *keyIDIn) (any, error) {
	m, err := a.svc.DescribeKey(ctx, c, in.KeyId)
	if err != nil {
		return nil, err
	}
	return keyMetadataOut{toKeyMetadata(m)}, nil
}

type pageIn struct {
	Limit  int
	Marker string
}

type keyListEntry struct{ KeyId, KeyArn string }

type listKeysOut struct {
	Keys       []keyListEntry
	NextMarker *string `json:",omitempty"`
	Truncated  bool
}

func (a *API) listKeys(ctx context.Context, c kms.Request, in *pageIn) (any, error) {
	ks, p, err := a.svc.ListKeys(ctx, c, in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	out := listKeysOut{Keys: make([]keyListEntry, len(ks)), NextMarker: strp(p.NextMarker), Truncated: p.Truncated}
	for i, k := range ks {
		out.Keys[i] = keyListEntry{KeyId: k.KeyID, KeyArn: k.ARN}
	}
	return out, nil
}

func (a *API) enableKey(ctx context.Context, c kms.Request, in *keyIDIn) (any, error) {
	return empty{}, a.svc.EnableKey(ctx, c, in.KeyId)
}

func (a *API) disableKey(ctx context.Context, c kms.Request, in *keyIDIn) (any, error) {
	return empty{}, a.svc.DisableKey(ctx, c, in.KeyId)
}

type scheduleIn struct {
	KeyId               string
	PendingWindowInDays int
}

type scheduleOut struct {
	KeyId               string
	DeletionDate        *epoch `json:",omitempty"`
	KeyState            string
	PendingWindowInDays int
}

func (a *API) scheduleKeyDeletion(ctx context.Context, c kms.Request, in *scheduleIn) (any, error) {
	k, err := a.svc.ScheduleKeyDeletion(ctx, c, in.KeyId, in.PendingWindowInDays)
	if err != nil {
		return nil, err
	}
	return scheduleOut{KeyId: a.svc.KeyARN(k), DeletionDate: toEpoch(k.DeletionDate), KeyState: k.State, PendingWindowInDays: k.PendingWindowInDays}, nil
}

type keyIDOut struct{ KeyId string }

func (a *API) cancelKeyDeletion(ctx context.Context, c kms.Request, in *keyIDIn) (any, error) {
	arn, err := a.svc.CancelKeyDeletion(ctx, c, in.KeyId)
	if err != nil {
		return nil, err
	}
	return keyIDOut{arn}, nil
}

type updateDescIn struct {
	KeyId       string
	Description string
}

func (a *API) updateKeyDescription(ctx context.Context, c kms.Request, in *updateDescIn) (any, error) {
	return empty{}, a.svc.UpdateKeyDescription(ctx, c, in.KeyId, in.Description)
}

type encryptIn struct {
	KeyId               string
	Plaintext           []byte
	EncryptionContext   map[string]string
	GrantTokens         []string
	EncryptionAlgorithm string
	DryRun              *bool
}

type encryptOut struct {
	CiphertextBlob      []byte
	KeyId               string
	EncryptionAlgorithm string
}

func isTrue(b *bool) bool { return b != nil && *b }

func (a *API) encrypt(ctx context.Context, c kms.Request, in *encryptIn) (any, error) {
	out, err := a.svc.Encrypt(ctx, c, kms.EncryptInput{KeyID: in.KeyId, Plaintext: in.Plaintext,
		EncryptionContext: in.EncryptionContext, Algorithm: in.EncryptionAlgorithm, DryRun: isTrue(in.DryRun)})
	if err != nil {
		return nil, err
	}
	return encryptOut{CiphertextBlob: out.CiphertextBlob, KeyId: out.KeyARN, EncryptionAlgorithm: out.Algorithm}, nil
}

type decryptIn struct {
	CiphertextBlob      []byte
	EncryptionContext   map[string]string
	GrantTokens         []string
	KeyId               string
	EncryptionAlgorithm string
	DryRun              *bool
	DryRunModifiers     []string
	Recipient           *struct {
		KeyEncryptionAlgorithm string
		AttestationDocument    []byte
	}
}

type decryptOut struct {
	KeyId               string
	Plaintext           []byte
	EncryptionAlgorithm string
	KeyMaterialId       *string `json:",omitempty"`
}

// hexp renders a key material id as the model's 64 hex digits (nil if
// there is none).
func hexp(b []byte) *string {
	if len(b) == 0 {
		return nil
	}
	s := kms.FormatMaterialID(b)
	return &s
}

func (a *API) decrypt(ctx context.Context, c kms.Request, in *decryptIn) (any, error) {
	if in.Recipient != nil {
		return nil, &kms.Error{Code: kms.UnsupportedOperation, Message: "Recipient (Nitro Enclaves attestation) is not supported by keyhold."}
	}
	out, err := a.svc.Decrypt(ctx, c, kms.DecryptInput{CiphertextBlob: in.CiphertextBlob, KeyID: in.KeyId,
		EncryptionContext: in.EncryptionContext, Algorithm: in.EncryptionAlgorithm, DryRun: isTrue(in.DryRun)})
	if err != nil {
		return nil, err
	}
	return decryptOut{KeyId: out.KeyARN, Plaintext: out.Plaintext, EncryptionAlgorithm: out.Algorithm, KeyMaterialId: hexp(out.BackingKeyID)}, nil
}

type reEncryptIn struct {
	CiphertextBlob                 []byte
	SourceEncryptionContext        map[string]string
	SourceKeyId                    string
	DestinationKeyId               string
	DestinationEncryptionContext   map[string]string
	SourceEncryptionAlgorithm      string
	DestinationEncryptionAlgorithm string
	GrantTokens                    []string
	DryRun                         *bool
	DryRunModifiers                []string
}

type reEncryptOut struct {
	CiphertextBlob                 []byte
	SourceKeyId                    string
	KeyId                          string
	SourceEncryptionAlgorithm      string
	DestinationEncryptionAlgorithm string
	SourceKeyMaterialId            *string `json:",omitempty"`
	DestinationKeyMaterialId       *string `json:",omitempty"`
}

func (a *API) reEncrypt(ctx context.Context, c kms.Request, in *reEncryptIn) (any, error) {
	out, err := a.svc.ReEncrypt(ctx, c, kms.ReEncryptInput{CiphertextBlob: in.CiphertextBlob, SourceKeyID: in.SourceKeyId,
		SourceEncryptionContext: in.SourceEncryptionContext, SourceAlgorithm: in.SourceEncryptionAlgorithm,
		DestinationKeyID: in.DestinationKeyId, DestinationEncryptionContext: in.DestinationEncryptionContext,
		DestinationAlgorithm: in.DestinationEncryptionAlgorithm, DryRun: isTrue(in.DryRun)})
	if err != nil {
		return nil, err
	}
	return reEncryptOut{CiphertextBlob: out.CiphertextBlob, SourceKeyId: out.SourceKeyARN, KeyId: out.KeyARN,
		SourceEncryptionAlgorithm: out.SourceAlgorithm, DestinationEncryptionAlgorithm: out.DestinationAlgorithm,
		SourceKeyMaterialId: hexp(out.SourceBacking), DestinationKeyMaterialId: hexp(out.DestBacking)}, nil
}

type generateDataKeyIn struct {
	KeyId             string
	EncryptionContext map[string]string
	NumberOfBytes     int
	KeySpec           string
	GrantTokens       []string
	DryRun            *bool
	Recipient         *struct {
		KeyEncryptionAlgorithm string
		AttestationDocument    []byte
	}
}

type generateDataKeyOut struct {
	CiphertextBlob []byte
	Plaintext      []byte `json:",omitempty"`
	KeyId          string
	KeyMaterialId  *string `json:",omitempty"`
}

func (a *API) gdk(ctx context.Context, c kms.Request, in *generateDataKeyIn, withPlaintext bool) (any, error) {
	if in.Recipient != nil {
		return nil, &kms.Error{Code: kms.UnsupportedOperation, Message: "Recipient (Nitro Enclaves attestation) is not supported by keyhold."}
	}
	out, err := a.svc.GenerateDataKey(ctx, c, kms.GenerateDataKeyInput{KeyID: in.KeyId, KeySpec: in.KeySpec,
		NumberOfBytes: in.NumberOfBytes, EncryptionContext: in.EncryptionContext, DryRun: isTrue(in.DryRun)}, withPlaintext)
	if err != nil {
		return nil, err
	}
	return generateDataKeyOut{CiphertextBlob: out.CiphertextBlob, Plaintext: out.Plaintext, KeyId: out.KeyARN}, nil
}

func (a *API) generateDataKey(ctx context.Context, c kms.Request, in *generateDataKeyIn) (any, error) {
	return a.gdk(ctx, c, in, true)
}

type generateDataKeyWithoutPlaintextIn struct {
	KeyId             string
	EncryptionContext map[string]string
	KeySpec           string
	NumberOfBytes     int
	GrantTokens       []string
	DryRun            *bool
}

func (a *API) generateDataKeyWithoutPlaintext(ctx context.Context, c kms.Request, in *generateDataKeyWithoutPlaintextIn) (any, error) {
	return a.gdk(ctx, c, &generateDataKeyIn{KeyId: in.KeyId, EncryptionContext: in.EncryptionContext, KeySpec: in.KeySpec,
		NumberOfBytes: in.NumberOfBytes, DryRun: in.DryRun}, false)
}

type generateRandomIn struct {
	NumberOfBytes    int
	CustomKeyStoreId string
	Recipient        *struct {
		KeyEncryptionAlgorithm string
		AttestationDocument    []byte
	}
}

type generateRandomOut struct{ Plaintext []byte }

func (a *API) generateRandom(ctx context.Context, c kms.Request, in *generateRandomIn) (any, error) {
	if in.Recipient != nil {
		return nil, &kms.Error{Code: kms.UnsupportedOperation, Message: "Recipient (Nitro Enclaves attestation) is not supported by keyhold."}
	}
	b, err := a.svc.GenerateRandom(ctx, c, in.NumberOfBytes, in.CustomKeyStoreId)
	if err != nil {
		return nil, err
	}
	return generateRandomOut{b}, nil
}

type aliasIn struct {
	AliasName   string
	TargetKeyId string
}

func (a *API) createAlias(ctx context.Context, c kms.Request, in *aliasIn) (any, error) {
	return empty{}, a.svc.CreateAlias(ctx, c, in.AliasName, in.TargetKeyId)
}

func (a *API) updateAlias(ctx context.Context, c kms.Request, in *aliasIn) (any, error) {
	return empty{}, a.svc.UpdateAlias(ctx, c, in.AliasName, in.TargetKeyId)
}

type deleteAliasIn struct{ AliasName string }

func (a *API) deleteAlias(ctx context.Context, c kms.Request, in *deleteAliasIn) (any, error) {
	return empty{}, a.svc.DeleteAlias(ctx, c, in.AliasName)
}

type listAliasesIn struct {
	KeyId  string
	Limit  int
	Marker string
}

type aliasListEntry struct {
	AliasName       string
	AliasArn        string
	TargetKeyId     string
	CreationDate    *epoch
	LastUpdatedDate *epoch
}

type listAliasesOut struct {
	Aliases    []aliasListEntry
	NextMarker *string `json:",omitempty"`
	Truncated  bool
}

func (a *API) listAliases(ctx context.Context, c kms.Request, in *listAliasesIn) (any, error) {
	as, p, err := a.svc.ListAliases(ctx, c, in.KeyId, in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	out := listAliasesOut{Aliases: make([]aliasListEntry, len(as)), NextMarker: strp(p.NextMarker), Truncated: p.Truncated}
	for i, e := range as {
		out.Aliases[i] = aliasListEntry{AliasName: e.Name, AliasArn: e.ARN, TargetKeyId: e.TargetKeyID,
			CreationDate: toEpoch(e.Created), LastUpdatedDate: toEpoch(e.Updated)}
	}
	return out, nil
}

type tagResourceIn struct {
	KeyId string
	Tags  []tag
}

func (a *API) tagResource(ctx context.Context, c kms.Request, in *tagResourceIn) (any, error) {
	return empty{}, a.svc.TagResource(ctx, c, in.KeyId, toStoreTags(in.Tags))
}

type untagResourceIn struct {
	KeyId   string
	TagKeys []string
}

func (a *API) untagResource(ctx context.Context, c kms.Request, in *untagResourceIn) (any, error) {
	return empty{}, a.svc.UntagResource(ctx, c, in.KeyId, in.TagKeys)
}

type listTagsIn struct {
	KeyId  string
	Limit  int
	Marker string
}

type listTagsOut struct {
	Tags       []tag
	NextMarker *string `json:",omitempty"`
	Truncated  bool
}

func (a *API) listResourceTags(ctx context.Context, c kms.Request, in *listTagsIn) (any, error) {
	ts, p, err := a.svc.ListResourceTags(ctx, c, in.KeyId, in.Limit, in.Marker)
	if err != nil {
		return nil, err
	}
	out := listTagsOut{Tags: make([]tag, len(ts)), NextMarker: strp(p.NextMarker), Truncated: p.Truncated}
	for i, t := range ts {
		out.Tags[i] = tag{TagKey: t.Key, TagValue: t.Value}
	}
	return out, nil
}

type getKeyPolicyIn struct {
	KeyId      string
	PolicyName string
}

type getKeyPolicyOut struct {
	Policy     string
	PolicyName string
}

func (a *API) getKeyPolicy(ctx context.Context, c kms.Request, in *getKeyPolicyIn) (any, error) {
	p, err := a.svc.GetKeyPolicy(ctx, c, in.KeyId, in.PolicyName)
	if err != nil {
		return nil, err
	}
	return getKeyPolicyOut{Policy: p, PolicyName: kms.DefaultPolicyKey}, nil
}

type putKeyPolicyIn struct {
	KeyId                          string
	PolicyName                     string
	Policy                         string
	BypassPolicyLockoutSafetyCheck bool
}

func (a *API) putKeyPolicy(ctx context.Context, c kms.Request, in *putKeyPolicyIn) (any, error) {
	return empty{}, a.svc.PutKeyPolicy(ctx, c, in.KeyId, in.PolicyName, in.Policy, in.BypassPolicyLockoutSafetyCheck)
}

type listKeyPoliciesIn struct {
	KeyId  string
	Limit  int
	Marker string
}

type listKeyPoliciesOut struct {
	PolicyNames []string
	Truncated   bool
}

func (a *API) listKeyPolicies(ctx context.Context, c kms.Request, in *listKeyPoliciesIn) (any, error) {
	ns, err := a.svc.ListKeyPolicies(ctx, c, in.KeyId)
	if err != nil {
		return nil, err
	}
	return listKeyPoliciesOut{PolicyNames: ns}, nil
}
