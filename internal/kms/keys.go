package kms

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/keyspec"
	"github.com/keyhold/keyhold/internal/policy"
	"github.com/keyhold/keyhold/internal/store"
)

// Key states, key usages, specs and origins as AWS spells them.
const (
	StateEnabled         = "Enabled"
	StateDisabled        = "Disabled"
	StatePendingDeletion = "PendingDeletion"
	StateUnavailable     = "Unavailable"
	StatePendingImport   = "PendingImport"
	// StatePendingReplicaDeletion is a multi-Region primary key scheduled
	// for deletion while it still has replicas: its waiting period starts
	// when the last replica is deleted.
	StatePendingReplicaDeletion = "PendingReplicaDeletion"
	// StateCreating is what ReplicateKey reports for the new replica (AWS's
	// transient state); keyhold's replica is complete when the call returns.
	StateCreating = "Creating"

	UsageEncryptDecrypt = "ENCRYPT_DECRYPT"
	SpecSymmetric       = "SYMMETRIC_DEFAULT"

	OriginAWSKMS     = "AWS_KMS"
	OriginExternal   = "EXTERNAL"
	OriginCloudHSM   = "AWS_CLOUDHSM"
	OriginXKS        = "EXTERNAL_KEY_STORE"
	AlgSymmetric     = "SYMMETRIC_DEFAULT"
	DefaultPolicyKey = "default"
)

// KeyMetadata is what DescribeKey and CreateKey report.
type KeyMetadata struct {
	AccountID                   string
	KeyID                       string
	ARN                         string
	CreationDate                time.Time
	Enabled                     bool
	Description                 string
	KeyUsage                    string
	KeyState                    string
	DeletionDate                time.Time
	Origin                      string
	CustomKeyStoreID            string
	CloudHsmClusterID           string
	KeySpec                     string
	PendingDeletionWindowInDays int
	XksKeyID                    string
	CurrentKeyMaterialID        string
	// MultiRegion is set for multi-Region keys (nil otherwise).
	MultiRegion *MultiRegionConfiguration
	KeyManager  string
	// Algorithm lists for the key's spec and usage.
	EncryptionAlgorithms, SigningAlgorithms, KeyAgreementAlgorithms, MacAlgorithms []string
	// Imported material (Origin EXTERNAL).
	ExpirationModel string
	ValidTo         time.Time
}

// CreateKeyInput holds CreateKey's parameters (already type-checked).
type CreateKeyInput struct {
	Description                    string
	KeyUsage                       string
	KeySpec                        string
	CustomerMasterKeySpec          string
	Origin                         string
	Policy                         *string
	BypassPolicyLockoutSafetyCheck bool
	Tags                           []store.Tag
	CustomKeyStoreID               string
	XksKeyID                       string
	MultiRegion                    bool
}

func newKeyID() (string, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return blob.FormatUUID(u), nil
}

// DefaultPolicy is the key policy AWS gives a key created without one: the
// account root may do everything, which delegates to IAM policies.
func DefaultPolicy(account string) string { return policy.DefaultKeyPolicy(account) }

// CreateKey creates a key. For keys in custom key stores see
// customKeyStores.createKey.
func (s *Service) CreateKey(ctx context.Context, c Request, in CreateKeyInput) (KeyMetadata, error) {
	if in.KeyUsage == "" {
		in.KeyUsage = UsageEncryptDecrypt
	}
	switch {
	case in.KeySpec != "" && in.CustomerMasterKeySpec != "" && in.KeySpec != in.CustomerMasterKeySpec:
		return KeyMetadata{}, errorf(Validation, "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec parameter is deprecated. Use KeySpec parameter instead.")
	case in.KeySpec == "":
		in.KeySpec = in.CustomerMasterKeySpec
	}
	if in.KeySpec == "" {
		in.KeySpec = SpecSymmetric
	}
	if in.Origin == "" {
		in.Origin = OriginAWSKMS
	}
	info, ok := keyspec.Lookup(in.KeySpec)
	if !ok {
		// SM2 is the one model key spec left: AWS offers it only in its
		// China Regions, and keyhold serves the commercial partition.
		return KeyMetadata{}, errorf(Validation, "KeySpec %s is not supported in this Region.", in.KeySpec)
	}
	if !info.AllowsUsage(in.KeyUsage) {
		return KeyMetadata{}, errorf(Validation, "KeyUsage %s is not compatible with KeySpec %s.", in.KeyUsage, in.KeySpec)
	}
	if in.MultiRegion && (in.Origin == OriginCloudHSM || in.Origin == OriginXKS || in.CustomKeyStoreID != "") {
		return KeyMetadata{}, errorf(UnsupportedOperation, "Multi-Region keys are not supported in a custom key store. You cannot create a multi-Region key in a CloudHSM key store or an external key store.")
	}
	if (in.Origin == OriginCloudHSM || in.Origin == OriginXKS) && in.KeySpec != SpecSymmetric {
		return KeyMetadata{}, errorf(UnsupportedOperation, "KeySpec %s is not supported for KMS keys in a custom key store. Custom key stores support only SYMMETRIC_DEFAULT keys.", in.KeySpec)
	}
	if in.XksKeyID != "" && in.Origin != OriginXKS {
		return KeyMetadata{}, errorf(Validation, "XksKeyId can be specified only when Origin is EXTERNAL_KEY_STORE.")
	}
	switch in.Origin {
	case OriginAWSKMS:
		if in.CustomKeyStoreID != "" {
			return KeyMetadata{}, errorf(UnsupportedOperation, "To create a KMS key in a custom key store, set Origin to AWS_CLOUDHSM or EXTERNAL_KEY_STORE.")
		}
	case OriginCloudHSM, OriginXKS:
		if in.CustomKeyStoreID == "" {
			return KeyMetadata{}, errorf(Validation, "A CustomKeyStoreId is required when Origin is %s.", in.Origin)
		}
	case OriginExternal:
		if in.CustomKeyStoreID != "" {
			return KeyMetadata{}, errorf(UnsupportedOperation, "To create a KMS key in a custom key store, set Origin to AWS_CLOUDHSM or EXTERNAL_KEY_STORE.")
		}
	default:
		return KeyMetadata{}, errorf(Validation, "Unknown Origin %s.", in.Origin)
	}
	if err := validateTags(in.Tags); err != nil {
		return KeyMetadata{}, err
	}
	if len(in.Tags) > maxTags {
		return KeyMetadata{}, errorf(Tag, "A key can have at most %d tags.", maxTags)
	}
	if err := s.authorize(ctx, c, nil, func(pc policy.Context) {
		pc.Set(policy.KeyKeySpec, in.KeySpec)
		pc.Set(policy.KeyCustomerMasterKeySpec, in.KeySpec)
		pc.Set(policy.KeyKeyUsage, in.KeyUsage)
		pc.Set(policy.KeyKeyOrigin, in.Origin)
		pc.SetBool(policy.KeyMultiRegion, in.MultiRegion)
		pc.SetBool(policy.KeyBypassLockoutCheck, in.BypassPolicyLockoutSafetyCheck)
		setRequestTags(pc, in.Tags)
	}); err != nil {
		return KeyMetadata{}, err
	}
	keyPolicy := DefaultPolicy(c.AccountID)
	if in.Policy != nil {
		if err := s.checkKeyPolicy(ctx, c, *in.Policy, in.BypassPolicyLockoutSafetyCheck, c.AccountID, keyARNIn(s.regionOf(c), c.AccountID, "00000000-0000-0000-0000-000000000000")); err != nil {
			return KeyMetadata{}, err
		}
		keyPolicy = *in.Policy
	}
	newID := newKeyID
	if in.MultiRegion {
		newID = newMultiRegionKeyID
	}
	id, err := newID()
	if err != nil {
		return KeyMetadata{}, internal("CreateKey", err)
	}
	k := store.Key{
		AccountID: c.AccountID, Region: s.regionOf(c), ID: id, CreationDate: s.now().UTC().Truncate(time.Millisecond),
		Description: in.Description, KeyUsage: in.KeyUsage, KeySpec: in.KeySpec, Origin: in.Origin,
		State: StateEnabled, Policy: keyPolicy, Tags: copyTags(in.Tags),
	}
	if in.MultiRegion {
		k.MultiRegion = &store.MultiRegion{PrimaryRegion: k.Region}
	}
	switch in.Origin {
	case OriginAWSKMS:
		k.SealedMaterial, k.BackingKeyID, err = s.soft.NewKeyMaterial(id, in.KeySpec)
		if err != nil {
			return KeyMetadata{}, internal("CreateKey", err)
		}
		k.Materials = []store.KeyMaterial{{ID: k.BackingKeyID, Sealed: k.SealedMaterial, Created: k.CreationDate}}
	case OriginExternal:
		k.State = StatePendingImport
	default:
		if err := s.cks.prepareKey(ctx, c, &k, in); err != nil {
			return KeyMetadata{}, err
		}
	}
	if err := s.st.CreateKey(ctx, k); err != nil {
		s.cks.abandonKey(ctx, k)
		if errors.Is(err, store.ErrExternalKeyInUse) {
			return KeyMetadata{}, errorf(XksKeyAlreadyInUse, "The external key %s is already associated with a KMS key in custom key store %s.", k.XksKeyID, k.CustomKeyStoreID)
		}
		return KeyMetadata{}, internal("CreateKey", err)
	}
	k.Version = 1
	s.cacheKeyPut(k)
	return s.metadata(k), nil
}

// metadata reports a key, with the state its custom key store imposes.
func (s *Service) metadata(k store.Key) KeyMetadata {
	state := s.effectiveState(k)
	m := KeyMetadata{
		AccountID: k.AccountID, KeyID: k.ID, ARN: keyARN(k), CreationDate: k.CreationDate,
		Enabled: state == StateEnabled, Description: k.Description, KeyUsage: k.KeyUsage, KeyState: state,
		Origin: k.Origin, CustomKeyStoreID: k.CustomKeyStoreID, CloudHsmClusterID: k.CloudHsmClusterID,
		KeySpec: k.KeySpec, XksKeyID: k.XksKeyID,
	}
	if pendingDeletionState(k.State) {
		m.DeletionDate = k.DeletionDate
	}
	m.MultiRegion = multiRegionConfiguration(k)
	if k.State == StatePendingReplicaDeletion {
		// The model's one case for this field: the waiting period that
		// starts when the last replica is deleted.
		m.PendingDeletionWindowInDays = k.PendingWindowInDays
	}
	if (k.Origin == OriginAWSKMS || k.Origin == OriginExternal) && len(k.BackingKeyID) > 0 {
		m.CurrentKeyMaterialID = FormatMaterialID(k.BackingKeyID)
	}
	m.KeyManager = k.KeyManager
	if m.KeyManager == "" {
		m.KeyManager = KeyManagerCustomer
	}
	if info, ok := keyspec.Lookup(k.KeySpec); ok {
		m.SigningAlgorithms, m.EncryptionAlgorithms, m.KeyAgreementAlgorithms, m.MacAlgorithms = info.Algorithms(k.KeyUsage)
	}
	if k.Origin == OriginExternal {
		if cur := currentMaterial(k); cur != nil && len(cur.Sealed) > 0 {
			m.ExpirationModel, m.ValidTo = cur.ExpirationModel, cur.ValidTo
		}
	}
	return m
}

func (s *Service) effectiveState(k store.Key) string {
	if k.CustomKeyStoreID != "" && !pendingDeletionState(k.State) && !s.cks.connected(k.AccountID, k.CustomKeyStoreID) {
		return StateUnavailable
	}
	return k.State
}

// DescribeKey reports a key in any state; aliases are accepted.
func (s *Service) DescribeKey(ctx context.Context, c Request, keyID string) (KeyMetadata, error) {
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{allowAlias: true, crossAccount: true})
	if err != nil {
		return KeyMetadata{}, err
	}
	return s.metadata(k), nil
}

// KeyListEntry is one ListKeys row.
type KeyListEntry struct{ KeyID, ARN string }

// Page is a paging result.
type Page struct {
	NextMarker string
	Truncated  bool
}

// markerPrefix makes markers recognisable: one this server never issued is
// rejected even when it happens to decode.
const markerPrefix = "keyhold-marker:"

func encodeMarker(s string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(markerPrefix + s))
}

func decodeMarker(m string) (string, error) {
	if m == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(m)
	if err != nil || !strings.HasPrefix(string(b), markerPrefix) || len(b) == len(markerPrefix) {
		return "", errorf(InvalidMarker, "The marker '%s' is not valid.", m)
	}
	return strings.TrimPrefix(string(b), markerPrefix), nil
}

func pageLimit(limit int) int {
	if limit <= 0 {
		return 100
	}
	return limit
}

// ListKeys lists the caller's keys by id.
func (s *Service) ListKeys(ctx context.Context, c Request, limit int, marker string) ([]KeyListEntry, Page, error) {
	after, err := decodeMarker(marker)
	if err != nil {
		return nil, Page{}, err
	}
	if err := s.authorize(ctx, c, nil, nil); err != nil {
		return nil, Page{}, err
	}
	limit = pageLimit(limit)
	region := s.regionOf(c)
	ids, err := s.st.ListKeyIDs(ctx, c.AccountID, region, after, limit+1)
	if err != nil {
		return nil, Page{}, internal("ListKeys", err)
	}
	var p Page
	if len(ids) > limit {
		ids = ids[:limit]
		p = Page{Truncated: true, NextMarker: encodeMarker(ids[limit-1])}
	}
	out := make([]KeyListEntry, len(ids))
	for i, id := range ids {
		out[i] = KeyListEntry{KeyID: id, ARN: keyARNIn(region, c.AccountID, id)}
	}
	return out, p, nil
}

// pendingDeletionState: the key is scheduled for deletion (directly, or
// as a multi-Region primary waiting for its replicas' deletion); AWS
// refuses the same operations in both states.
func pendingDeletionState(state string) bool {
	return state == StatePendingDeletion || state == StatePendingReplicaDeletion
}

func (s *Service) pendingDeletion(k store.Key) error {
	if k.State == StatePendingReplicaDeletion {
		return errorf(InvalidState, "%s is pending deletion: it is a multi-Region primary key waiting for its replica keys to be deleted.", keyARN(k))
	}
	return errorf(InvalidState, "%s is pending deletion.", keyARN(k))
}

// EnableKey sets a key's state to Enabled.
func (s *Service) EnableKey(ctx context.Context, c Request, keyID string) error {
	return s.setEnabled(ctx, c, keyID, StateEnabled)
}

// DisableKey sets a key's state to Disabled.
func (s *Service) DisableKey(ctx context.Context, c Request, keyID string) error {
	return s.setEnabled(ctx, c, keyID, StateDisabled)
}

func (s *Service) setEnabled(ctx context.Context, c Request, keyID, state string) error {
	return s.changeLiveKey(ctx, c, keyID, resolveOpts{}, func(k *store.Key) error {
		if k.State == StatePendingImport {
			return errorf(InvalidState, "%s is pending import.", keyARN(*k))
		}
		k.State = state
		return nil
	})
}

// changeLiveKey resolves and authorizes a key, then applies fn to it unless
// the key is pending deletion (KMSInvalidStateException, as AWS answers
// every management call on such a key but cancellation).
func (s *Service) changeLiveKey(ctx context.Context, c Request, keyID string, o resolveOpts, fn func(k *store.Key) error) error {
	k, err := s.resolveKey(ctx, c, keyID, o)
	if err != nil {
		return err
	}
	_, err = s.mutateKey(ctx, k.AccountID, k.Region, k.ID, func(k *store.Key) error {
		if pendingDeletionState(k.State) {
			return s.pendingDeletion(*k)
		}
		return fn(k)
	})
	return err
}

// ScheduleKeyDeletion puts a key in PendingDeletion for 7-30 days (30 by
// default). The deletion job removes it when due.
func (s *Service) ScheduleKeyDeletion(ctx context.Context, c Request, keyID string, days int) (store.Key, error) {
	if days == 0 {
		days = 30
	}
	if days < 7 || days > 30 {
		return store.Key{}, errorf(Validation, "1 validation error detected: Value '%d' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value %s", days,
			map[bool]string{true: "greater than or equal to 7", false: "less than or equal to 30"}[days < 7])
	}
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{})
	if err != nil {
		return store.Key{}, err
	}
	k, err = s.mutateKey(ctx, k.AccountID, k.Region, k.ID, func(k *store.Key) error {
		if pendingDeletionState(k.State) {
			return s.pendingDeletion(*k)
		}
		k.PendingWindowInDays = days
		if isPrimaryWithReplicas(*k) {
			// AWS deletes a primary only after its replicas: it waits in
			// PendingReplicaDeletion, and its waiting period starts when
			// the last replica is deleted.
			k.State, k.DeletionDate = StatePendingReplicaDeletion, time.Time{}
			return nil
		}
		k.State = StatePendingDeletion
		k.DeletionDate = s.now().UTC().Add(time.Duration(days) * 24 * time.Hour).Truncate(time.Second)
		return nil
	})
	return k, err
}

// KeyARN is a key's ARN (its Region, account and id).
func (s *Service) KeyARN(k store.Key) string { return keyARN(k) }

// CancelKeyDeletion returns a PendingDeletion key to Disabled, as AWS does.
func (s *Service) CancelKeyDeletion(ctx context.Context, c Request, keyID string) (string, error) {
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{})
	if err != nil {
		return "", err
	}
	k, err = s.mutateKey(ctx, k.AccountID, k.Region, k.ID, func(k *store.Key) error {
		if !pendingDeletionState(k.State) {
			return errorf(InvalidState, "%s is not pending deletion.", keyARN(*k))
		}
		k.State = StateDisabled
		if k.Origin == OriginExternal && len(k.SealedMaterial) == 0 {
			k.State = StatePendingImport
		}
		k.DeletionDate = time.Time{}
		k.PendingWindowInDays = 0
		return nil
	})
	if err != nil {
		return "", err
	}
	return keyARN(k), nil
}

// UpdateKeyDescription replaces a key's description.
func (s *Service) UpdateKeyDescription(ctx context.Context, c Request, keyID, desc string) error {
	return s.changeLiveKey(ctx, c, keyID, resolveOpts{}, func(k *store.Key) error {
		k.Description = desc
		return nil
	})
}

// checkKeyPolicy validates a key policy and, unless bypassed, makes sure
// it still lets the caller change it later (the lockout safety check): the
// new policy must allow this caller, with its identity policies and this
// request's context, to call PutKeyPolicy on the key.
func (s *Service) checkKeyPolicy(ctx context.Context, c Request, text string, bypass bool, keyAccount, keyARN string) error {
	doc, err := policy.Parse(text, policy.KeyPolicy)
	if err != nil {
		return errorf(MalformedPolicyDocument, "%v", err)
	}
	if bypass || s.authz.skip {
		return nil
	}
	p := s.principal(c)
	in := policy.Input{KeyPolicy: doc, KeyAccount: keyAccount,
		Request: policy.Request{Principal: p, Action: "kms:PutKeyPolicy", Resource: keyARN, Context: s.requestContext(c, p)}}
	if in.IdentityPolicies, _, err = s.identityDocs(ctx, c); err != nil {
		return err
	}
	if !policy.Decide(in).Allowed {
		return errorf(MalformedPolicyDocument, "The new key policy will not allow you to update the key policy in the future.")
	}
	return nil
}

func setRequestTags(pc policy.Context, tags []store.Tag) {
	if len(tags) == 0 {
		return
	}
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[t.Key] = t.Value
	}
	pc.SetRequestTags(m)
}

// GetKeyPolicy returns the key's policy; the only policy name is "default".
func (s *Service) GetKeyPolicy(ctx context.Context, c Request, keyID, name string) (string, error) {
	if name != "" && name != DefaultPolicyKey {
		return "", errorf(NotFound, "No such policy exists: %s", name)
	}
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{})
	if err != nil {
		return "", err
	}
	return k.Policy, nil
}

// PutKeyPolicy replaces the key's policy.
func (s *Service) PutKeyPolicy(ctx context.Context, c Request, keyID, name, text string, bypass bool) error {
	if name != "" && name != DefaultPolicyKey {
		return errorf(NotFound, "No such policy exists: %s", name)
	}
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{ctx: func(pc policy.Context) { pc.SetBool(policy.KeyBypassLockoutCheck, bypass) }})
	if err != nil {
		return err
	}
	if err := s.checkKeyPolicy(ctx, c, text, bypass, k.AccountID, keyARN(k)); err != nil {
		return err
	}
	_, err = s.mutateKey(ctx, k.AccountID, k.Region, k.ID, func(k *store.Key) error {
		if pendingDeletionState(k.State) {
			return s.pendingDeletion(*k)
		}
		k.Policy = text
		return nil
	})
	return err
}

// ListKeyPolicies lists policy names: always ["default"].
func (s *Service) ListKeyPolicies(ctx context.Context, c Request, keyID string) ([]string, error) {
	if _, err := s.resolveKey(ctx, c, keyID, resolveOpts{}); err != nil {
		return nil, err
	}
	return []string{DefaultPolicyKey}, nil
}

func validateTags(tags []store.Tag) error {
	seen := map[string]bool{}
	for _, t := range tags {
		if strings.HasPrefix(strings.ToLower(t.Key), "aws:") {
			return errorf(Tag, "Tag keys beginning with 'aws:' are reserved for AWS use: %s", t.Key)
		}
		if seen[t.Key] {
			return errorf(Tag, "Duplicate tag key in the request: %s", t.Key)
		}
		seen[t.Key] = true
	}
	return nil
}

func copyTags(tags []store.Tag) []store.Tag {
	if len(tags) == 0 {
		return nil
	}
	return append([]store.Tag(nil), tags...)
}

// maxTags is AWS's tags-per-key quota.
const maxTags = 50

// TagResource adds or replaces tags.
func (s *Service) TagResource(ctx context.Context, c Request, keyID string, tags []store.Tag) error {
	if err := validateTags(tags); err != nil {
		return err
	}
	return s.changeLiveKey(ctx, c, keyID, resolveOpts{ctx: func(pc policy.Context) { setRequestTags(pc, tags) }}, func(k *store.Key) error {
		next := append([]store.Tag(nil), k.Tags...)
		for _, t := range tags {
			replaced := false
			for i := range next {
				if next[i].Key == t.Key {
					next[i].Value, replaced = t.Value, true
				}
			}
			if !replaced {
				next = append(next, t)
			}
		}
		if len(next) > maxTags {
			return errorf(LimitExceeded, "A key can have at most %d tags.", maxTags)
		}
		k.Tags = next
		return nil
	})
}

// UntagResource removes tags by key.
func (s *Service) UntagResource(ctx context.Context, c Request, keyID string, tagKeys []string) error {
	return s.changeLiveKey(ctx, c, keyID, resolveOpts{ctx: func(pc policy.Context) { pc.Set(policy.KeyTagKeys, tagKeys...) }}, func(k *store.Key) error {
		drop := map[string]bool{}
		for _, t := range tagKeys {
			drop[t] = true
		}
		var next []store.Tag
		for _, t := range k.Tags {
			if !drop[t.Key] {
				next = append(next, t)
			}
		}
		k.Tags = next
		return nil
	})
}

// ListResourceTags lists a key's tags, sorted as stored, with paging.
func (s *Service) ListResourceTags(ctx context.Context, c Request, keyID string, limit int, marker string) ([]store.Tag, Page, error) {
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{})
	if err != nil {
		return nil, Page{}, err
	}
	start := 0
	if marker != "" {
		m, err := decodeMarker(marker)
		if err != nil {
			return nil, Page{}, err
		}
		if _, err := fmt.Sscanf(m, "%d", &start); err != nil || start < 0 || start > len(k.Tags) {
			return nil, Page{}, errorf(InvalidMarker, "The marker '%s' is not valid.", marker)
		}
	}
	limit = pageLimit(limit)
	tags := k.Tags[start:]
	var p Page
	if len(tags) > limit {
		tags = tags[:limit]
		p = Page{Truncated: true, NextMarker: encodeMarker(fmt.Sprint(start + limit))}
	}
	return append([]store.Tag{}, tags...), p, nil
}
