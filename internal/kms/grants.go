package kms

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/lru"
	"github.com/keyhold/keyhold/internal/policy"
	"github.com/keyhold/keyhold/internal/store"
)

// Grant errors.
const (
	InvalidGrantToken Code = "InvalidGrantTokenException"
	InvalidGrantID    Code = "InvalidGrantIdException"
)

// maxGrantsPerKey is AWS's quota of grants on one KMS key.
const maxGrantsPerKey = 50000

// Grant constraint limits AWS documents: up to 8 pairs per constraint, values
// of at most 384 characters.
const (
	maxConstraintPairs  = 8
	maxConstraintValue  = 384
	defaultGrantsPage   = 50
	maxGrantsPage       = 100
	grantTokenAAD       = "keyhold grant token v1"
	grantTokenPayloadSz = 12 + 16 + 32 // account, key UUID, grant id
)

// Grant operations by kind: the ones that take an encryption context (grant
// constraints apply to them) and the ones constraints may accompany but do
// not apply to.
var (
	ecGrantOps = map[string]bool{"Decrypt": true, "Encrypt": true, "GenerateDataKey": true, "GenerateDataKeyWithoutPlaintext": true,
		"ReEncryptFrom": true, "ReEncryptTo": true, "GenerateDataKeyPair": true, "GenerateDataKeyPairWithoutPlaintext": true}
	managementGrantOps = map[string]bool{"CreateGrant": true, "RetireGrant": true, "DescribeKey": true}
)

// grantOpsFor is the set of grant operations a key supports (AWS's "Grant
// operations" table): a grant for Sign on a symmetric key is refused.
func grantOpsFor(k store.Key) map[string]bool {
	ops := maps.Clone(managementGrantOps)
	add := func(names ...string) {
		for _, n := range names {
			ops[n] = true
		}
	}
	switch {
	case k.KeyUsage == UsageEncryptDecrypt && k.KeySpec == SpecSymmetric:
		for op := range ecGrantOps {
			ops[op] = true
		}
	case k.KeyUsage == UsageEncryptDecrypt:
		add("Encrypt", "Decrypt", "GetPublicKey")
	case k.KeyUsage == "SIGN_VERIFY":
		add("Sign", "Verify", "GetPublicKey")
	case k.KeyUsage == "GENERATE_VERIFY_MAC":
		add("GenerateMac", "VerifyMac")
	case k.KeyUsage == "KEY_AGREEMENT":
		add("DeriveSharedSecret", "GetPublicKey")
	}
	return ops
}

// GrantConstraints are a grant's encryption context constraints.
type GrantConstraints struct {
	EncryptionContextEquals map[string]string
	EncryptionContextSubset map[string]string
}

// CreateGrantInput holds CreateGrant's parameters.
type CreateGrantInput struct {
	KeyID             string
	GranteePrincipal  string
	RetiringPrincipal string
	Operations        []string
	Constraints       *GrantConstraints
	Name              string
	DryRun            bool
}

// CreateGrantOutput is CreateGrant's result.
type CreateGrantOutput struct {
	GrantToken string
	GrantID    string
}

// GrantEntry is one ListGrants/ListRetirableGrants row.
type GrantEntry struct {
	KeyARN            string
	GrantID           string
	Name              string
	Created           time.Time
	GranteePrincipal  string
	RetiringPrincipal string
	IssuingAccount    string // arn:aws:iam::ACCT:root
	Operations        []string
	Constraints       *GrantConstraints
}

// grantCache holds the grants of recently used keys in memory, written
// through: a cached key with no grants costs authorization one lookup.
type grantCache struct {
	byKey *lru.Cache[grantKey, []store.Grant] // slices are never changed in place
	// wmu serializes grant writes and cache fills, so a fill never installs
	// a list older than a write, and Name idempotency and the quota hold.
	wmu sync.Mutex
}

// grantKey names a key in the cache (a struct: no string to build per lookup).
type grantKey struct{ account, region, id string }

func (gc *grantCache) get(ck grantKey) ([]store.Grant, bool) { return gc.byKey.Get(ck) }

func (gc *grantCache) set(ck grantKey, gs []store.Grant) { gc.byKey.Put(ck, gs) }

// keyGrants returns the grants of k through the cache.
func (s *Service) keyGrants(ctx context.Context, account, region, keyID string) ([]store.Grant, error) {
	ck := grantKey{account, region, keyID}
	if gs, ok := s.grants.get(ck); ok {
		return gs, nil
	}
	s.grants.wmu.Lock()
	defer s.grants.wmu.Unlock()
	return s.keyGrantsLocked(ctx, account, region, keyID)
}

// keyGrantsLocked is keyGrants with grants.wmu held.
func (s *Service) keyGrantsLocked(ctx context.Context, account, region, keyID string) ([]store.Grant, error) {
	ck := grantKey{account, region, keyID}
	if gs, ok := s.grants.get(ck); ok {
		return gs, nil
	}
	e := s.epoch.Load()
	gs, err := s.st.ListGrants(ctx, store.GrantFilter{AccountID: account, Region: region, KeyID: keyID})
	if err != nil {
		return nil, err
	}
	if gs == nil {
		gs = []store.Grant{}
	}
	if s.epoch.Load() == e {
		s.grants.set(ck, gs)
	}
	return gs, nil
}

// checkGrantTokens validates a request's GrantTokens before it is
// authorized (a malformed or forged one is InvalidGrantTokenException).
// keyhold's grants take effect at once, so a valid token adds nothing to
// what the grant itself allows.
func (s *Service) checkGrantTokens(c Request) error {
	for _, t := range c.GrantTokens {
		if _, _, _, err := s.parseGrantToken(t); err != nil {
			return err
		}
	}
	return nil
}

// grantToken makes a new token for g: the grant's key and id sealed by the
// root key (authenticated, opaque, different on every call).
func (s *Service) grantToken(g store.Grant) (string, error) {
	uuid, mrk, ok := blob.ParseKeyID(g.KeyID)
	gid, err := hex.DecodeString(g.ID)
	if !ok || err != nil || len(gid) != 32 || len(g.AccountID) != 12 {
		return "", internal("grantToken", errors.New("grant with a malformed key or grant id"))
	}
	p := make([]byte, 0, grantTokenPayloadSz+1)
	p = append(append(append(p, g.AccountID...), uuid[:]...), gid...)
	if mrk {
		// A multi-Region key's id is not a UUID: one more byte says so
		// (tokens of single-Region keys keep their length).
		p = append(p, 1)
	}
	sealed, err := s.root.Seal(p, []byte(grantTokenAAD))
	if err != nil {
		return "", internal("grantToken", err)
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// parseGrantToken returns the key (account, id) and grant id a token names.
func (s *Service) parseGrantToken(t string) (account, keyID, grantID string, err error) {
	bad := errorf(InvalidGrantToken, "Grant token is invalid.")
	b, derr := base64.RawURLEncoding.DecodeString(t)
	if derr != nil {
		return "", "", "", bad
	}
	p, oerr := s.root.Open(b, []byte(grantTokenAAD))
	mrk := oerr == nil && len(p) == grantTokenPayloadSz+1 && p[grantTokenPayloadSz] == 1
	if oerr != nil || (len(p) != grantTokenPayloadSz && !mrk) {
		return "", "", "", bad
	}
	var uuid [16]byte
	copy(uuid[:], p[12:28])
	return string(p[:12]), blob.FormatKeyID(uuid, mrk), hex.EncodeToString(p[28:grantTokenPayloadSz]), nil
}

func newGrantID() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", internal("newGrantID", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// checkGrantID rejects what cannot be a grant id (64 hex digits).
func checkGrantID(id string) error {
	if len(id) != 64 || strings.Trim(strings.ToLower(id), "0123456789abcdef") != "" {
		return errorf(InvalidGrantID, "Invalid GrantId %s", id)
	}
	return nil
}

// checkGrantPrincipal accepts what AWS accepts as a grantee or retiring
// principal: an account, user, role, assumed-role session or federated
// user ARN, or an AWS service principal.
func checkGrantPrincipal(field, p string) error {
	if strings.HasSuffix(p, ".amazonaws.com") && !strings.Contains(p, ":") {
		return nil
	}
	if _, err := policy.ParsePrincipal(p); err != nil {
		return errorf(Validation, "1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must be a valid principal ARN", p, field)
	}
	return nil
}

func checkConstraint(name string, ec map[string]string) error {
	if len(ec) > maxConstraintPairs {
		return errorf(Validation, "The %s grant constraint has %d encryption context pairs; at most %d are allowed.", name, len(ec), maxConstraintPairs)
	}
	for k, v := range ec {
		if k == "" || len(v) > maxConstraintValue {
			return errorf(Validation, "The %s grant constraint has an encryption context pair that is not valid: keys must not be empty and values must be at most %d characters.", name, maxConstraintValue)
		}
	}
	return nil
}

// grantRequest is the grant a CreateGrant call asks for; grantAllows reads
// it to keep a grant made through another grant within that grant.
type grantRequest struct {
	ops            []string
	equals, subset map[string]string
}

func normalizeConstraints(c *GrantConstraints) (equals, subset map[string]string) {
	if c == nil {
		return nil, nil
	}
	if len(c.EncryptionContextEquals) > 0 {
		equals = maps.Clone(c.EncryptionContextEquals)
	}
	if len(c.EncryptionContextSubset) > 0 {
		subset = maps.Clone(c.EncryptionContextSubset)
	}
	return equals, subset
}

// CreateGrant adds a grant to a key (key id or ARN; another account's key
// by ARN). A Name makes retries idempotent: the same Name and parameters on
// the same key return the existing grant id with a new token.
func (s *Service) CreateGrant(ctx context.Context, c Request, in CreateGrantInput) (CreateGrantOutput, error) {
	if err := checkGrantPrincipal("granteePrincipal", in.GranteePrincipal); err != nil {
		return CreateGrantOutput{}, err
	}
	if in.RetiringPrincipal != "" {
		if err := checkGrantPrincipal("retiringPrincipal", in.RetiringPrincipal); err != nil {
			return CreateGrantOutput{}, err
		}
	}
	var ops []string
	for _, op := range in.Operations {
		if !slices.Contains(ops, op) {
			ops = append(ops, op)
		}
	}
	if len(ops) == 0 {
		return CreateGrantOutput{}, errorf(Validation, "1 validation error detected: Value '[]' at 'operations' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	equals, subset := normalizeConstraints(in.Constraints)
	if err := checkConstraint("EncryptionContextEquals", equals); err != nil {
		return CreateGrantOutput{}, err
	}
	if err := checkConstraint("EncryptionContextSubset", subset); err != nil {
		return CreateGrantOutput{}, err
	}
	req := &grantRequest{ops: ops, equals: equals, subset: subset}
	gc := c
	gc.grant = req
	k, err := s.resolveKey(ctx, gc, in.KeyID, resolveOpts{crossAccount: true, ctx: func(pc policy.Context) {
		pc.Set(policy.KeyGrantOperations, ops...)
		var types []string
		if equals != nil {
			types = append(types, "EncryptionContextEquals")
		}
		if subset != nil {
			types = append(types, "EncryptionContextSubset")
		}
		pc.Set(policy.KeyGrantConstraintType, types...)
		pc.SetBool(policy.KeyGrantIsForAWSResource, false)
	}})
	if err != nil {
		return CreateGrantOutput{}, err
	}
	if pendingDeletionState(k.State) {
		return CreateGrantOutput{}, s.pendingDeletion(k)
	}
	supported := grantOpsFor(k)
	var unsupported, noContext []string
	for _, op := range ops {
		if !supported[op] {
			unsupported = append(unsupported, op)
		} else if !ecGrantOps[op] && !managementGrantOps[op] {
			noContext = append(noContext, op)
		}
	}
	if len(unsupported) > 0 {
		return CreateGrantOutput{}, errorf(Validation, "Grant operations [%s] are not supported for the KMS key %s (KeySpec %s, KeyUsage %s).",
			strings.Join(unsupported, ", "), keyARN(k), k.KeySpec, k.KeyUsage)
	}
	if (equals != nil || subset != nil) && len(noContext) > 0 {
		return CreateGrantOutput{}, errorf(Validation, "Grant constraints are not supported for the operations [%s]: they take no encryption context.", strings.Join(noContext, ", "))
	}
	if in.DryRun {
		return CreateGrantOutput{}, dryRun()
	}

	s.grants.wmu.Lock()
	defer s.grants.wmu.Unlock()
	existing, err := s.keyGrantsLocked(ctx, k.AccountID, k.Region, k.ID)
	if err != nil {
		return CreateGrantOutput{}, internal("CreateGrant", err)
	}
	g := store.Grant{AccountID: k.AccountID, Region: k.Region, KeyID: k.ID, Name: in.Name, GranteePrincipal: in.GranteePrincipal,
		RetiringPrincipal: in.RetiringPrincipal, IssuingAccount: c.AccountID, Operations: ops,
		EncryptionContextEquals: equals, EncryptionContextSubset: subset, Created: s.now().UTC().Truncate(time.Millisecond)}
	if in.Name != "" {
		for _, e := range existing {
			if sameGrant(e, g) {
				t, err := s.grantToken(e)
				return CreateGrantOutput{GrantToken: t, GrantID: e.ID}, err
			}
		}
	}
	if g.ID, err = newGrantID(); err != nil {
		return CreateGrantOutput{}, err
	}
	err = s.st.CreateGrant(ctx, g, maxGrantsPerKey)
	switch {
	case errors.Is(err, store.ErrLimit):
		return CreateGrantOutput{}, errorf(LimitExceeded, "The request was rejected because the KMS key %s already has %d grants, the maximum.", keyARN(k), maxGrantsPerKey)
	case errors.Is(err, store.ErrNotFound):
		return CreateGrantOutput{}, errorf(NotFound, "Key '%s' does not exist", keyARN(k))
	case err != nil:
		return CreateGrantOutput{}, internal("CreateGrant", err)
	}
	s.grants.set(grantKey{k.AccountID, k.Region, k.ID}, append(slices.Clip(existing), g))
	t, err := s.grantToken(g)
	return CreateGrantOutput{GrantToken: t, GrantID: g.ID}, err
}

// sameGrant reports whether two grants of a key have the same name and
// parameters (operations in any order).
func sameGrant(a, b store.Grant) bool {
	if a.Name != b.Name || a.GranteePrincipal != b.GranteePrincipal || a.RetiringPrincipal != b.RetiringPrincipal ||
		a.IssuingAccount != b.IssuingAccount || len(a.Operations) != len(b.Operations) {
		return false
	}
	for _, op := range a.Operations {
		if !slices.Contains(b.Operations, op) {
			return false
		}
	}
	return maps.Equal(a.EncryptionContextEquals, b.EncryptionContextEquals) && maps.Equal(a.EncryptionContextSubset, b.EncryptionContextSubset)
}

func (s *Service) grantEntry(g store.Grant) GrantEntry {
	e := GrantEntry{KeyARN: grantKeyARN(g), GrantID: g.ID, Name: g.Name, Created: g.Created,
		GranteePrincipal: g.GranteePrincipal, RetiringPrincipal: g.RetiringPrincipal,
		IssuingAccount: "arn:aws:iam::" + g.IssuingAccount + ":root", Operations: g.Operations}
	if g.EncryptionContextEquals != nil || g.EncryptionContextSubset != nil {
		e.Constraints = &GrantConstraints{EncryptionContextEquals: g.EncryptionContextEquals, EncryptionContextSubset: g.EncryptionContextSubset}
	}
	return e
}

func grantsPageLimit(limit int) int {
	switch {
	case limit <= 0:
		return defaultGrantsPage
	case limit > maxGrantsPage:
		return maxGrantsPage
	}
	return limit
}

func (s *Service) grantPage(gs []store.Grant, limit int) ([]GrantEntry, Page) {
	var p Page
	if len(gs) > limit {
		gs = gs[:limit]
		p = Page{Truncated: true, NextMarker: encodeMarker(gs[limit-1].ID)}
	}
	out := make([]GrantEntry, len(gs))
	for i, g := range gs {
		out[i] = s.grantEntry(g)
	}
	return out, p
}

// ListGrantsInput holds ListGrants' parameters.
type ListGrantsInput struct {
	KeyID            string
	GrantID          string
	GranteePrincipal string
	Limit            int
	Marker           string
}

// ListGrants lists a key's grants, optionally only one grant id or one
// grantee, by grant id.
func (s *Service) ListGrants(ctx context.Context, c Request, in ListGrantsInput) ([]GrantEntry, Page, error) {
	after, err := decodeMarker(in.Marker)
	if err != nil {
		return nil, Page{}, err
	}
	if in.GrantID != "" {
		if err := checkGrantID(in.GrantID); err != nil {
			return nil, Page{}, err
		}
	}
	k, err := s.resolveKey(ctx, c, in.KeyID, resolveOpts{crossAccount: true})
	if err != nil {
		return nil, Page{}, err
	}
	limit := grantsPageLimit(in.Limit)
	gs, err := s.st.ListGrants(ctx, store.GrantFilter{AccountID: k.AccountID, Region: k.Region, KeyID: k.ID, GrantID: strings.ToLower(in.GrantID),
		GranteePrincipal: in.GranteePrincipal, After: after, Limit: limit + 1})
	if err != nil {
		return nil, Page{}, internal("ListGrants", err)
	}
	out, p := s.grantPage(gs, limit)
	return out, p, nil
}

// ListRetirableGrants lists the grants, on keys of any account, whose
// retiring principal is principal, a principal of the caller's account.
// Identity policies alone decide it.
func (s *Service) ListRetirableGrants(ctx context.Context, c Request, principal string, limit int, marker string) ([]GrantEntry, Page, error) {
	after, err := decodeMarker(marker)
	if err != nil {
		return nil, Page{}, err
	}
	if err := s.authorize(ctx, c, nil, nil); err != nil {
		return nil, Page{}, err
	}
	p, err := policy.ParsePrincipal(principal)
	if err != nil {
		return nil, Page{}, errorf(InvalidArn, "Invalid arn %s", principal)
	}
	if p.AccountID != c.AccountID {
		return nil, Page{}, errorf(AccessDenied, "User: %s is not authorized to perform: kms:ListRetirableGrants because the retiring principal %s is not in account %s",
			c.ARN, principal, c.AccountID)
	}
	limit = grantsPageLimit(limit)
	gs, err := s.st.ListRetirableGrants(ctx, s.regionOf(c), principal, after, limit+1)
	if err != nil {
		return nil, Page{}, internal("ListRetirableGrants", err)
	}
	out, pg := s.grantPage(gs, limit)
	return out, pg, nil
}

// RetireGrantInput holds RetireGrant's parameters: a grant token, or a key
// (id or ARN) and grant id.
type RetireGrantInput struct {
	GrantToken string
	KeyID      string
	GrantID    string
	DryRun     bool
}

// RetireGrant deletes a grant on behalf of its retiring principal, its
// grantee when the grant includes RetireGrant, or the account that created
// it (a principal of that account whose identity policies allow
// kms:RetireGrant). Key policies play no part, as in AWS.
func (s *Service) RetireGrant(ctx context.Context, c Request, in RetireGrantInput) error {
	var account, keyID, grantID string
	region := s.regionOf(c)
	switch {
	case in.GrantToken != "":
		var err error
		if account, keyID, grantID, err = s.parseGrantToken(in.GrantToken); err != nil {
			return err
		}
	case in.KeyID != "" && in.GrantID != "":
		if err := checkGrantID(in.GrantID); err != nil {
			return err
		}
		k, err := s.resolveKey(ctx, c, in.KeyID, resolveOpts{crossAccount: true, noAuth: true})
		if err != nil {
			return err
		}
		account, keyID, grantID = k.AccountID, k.ID, strings.ToLower(in.GrantID)
	default:
		return errorf(Validation, "Either GrantToken or both KeyId and GrantId must be specified.")
	}
	g, err := s.st.GetGrant(ctx, account, region, keyID, grantID)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(NotFound, "Grant %s does not exist on key %s", grantID, keyARNIn(region, account, keyID))
	}
	if err != nil {
		return internal("RetireGrant", err)
	}
	if !s.mayRetire(ctx, c, g) {
		return errorf(AccessDenied, "User: %s is not authorized to perform: kms:RetireGrant on resource: %s because the grant does not allow it to retire the grant",
			c.ARN, keyARNIn(region, account, keyID))
	}
	if in.DryRun {
		return dryRun()
	}
	return s.deleteGrant(ctx, g)
}

func (s *Service) mayRetire(ctx context.Context, c Request, g store.Grant) bool {
	if g.RetiringPrincipal != "" && principalIs(g.RetiringPrincipal, c) {
		return true
	}
	if principalIs(g.GranteePrincipal, c) && slices.Contains(g.Operations, "RetireGrant") {
		return true
	}
	// The issuing account: its root, or a principal it delegates to with
	// kms:RetireGrant in an identity policy.
	return g.IssuingAccount == c.AccountID && s.authorizeAction(ctx, "kms:RetireGrant", c, nil, nil) == nil
}

// RevokeGrant deletes a grant; kms:RevokeGrant on the key decides.
func (s *Service) RevokeGrant(ctx context.Context, c Request, keyID, grantID string, dry bool) error {
	if err := checkGrantID(grantID); err != nil {
		return err
	}
	k, err := s.resolveKey(ctx, c, keyID, resolveOpts{crossAccount: true})
	if err != nil {
		return err
	}
	g, err := s.st.GetGrant(ctx, k.AccountID, k.Region, k.ID, strings.ToLower(grantID))
	if errors.Is(err, store.ErrNotFound) {
		return errorf(NotFound, "Grant %s does not exist on key %s", grantID, keyARN(k))
	}
	if err != nil {
		return internal("RevokeGrant", err)
	}
	if dry {
		return dryRun()
	}
	return s.deleteGrant(ctx, g)
}

func (s *Service) deleteGrant(ctx context.Context, g store.Grant) error {
	s.grants.wmu.Lock()
	defer s.grants.wmu.Unlock()
	err := s.st.DeleteGrant(ctx, g.AccountID, g.Region, g.KeyID, g.ID)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(NotFound, "Grant %s does not exist on key %s", g.ID, grantKeyARN(g))
	}
	if err != nil {
		return internal("deleteGrant", err)
	}
	ck := grantKey{g.AccountID, g.Region, g.KeyID}
	if gs, ok := s.grants.get(ck); ok {
		s.grants.set(ck, slices.DeleteFunc(slices.Clone(gs), func(x store.Grant) bool { return x.ID == g.ID }))
	}
	return nil
}

// principalIs reports whether a grant's principal names the caller: its
// ARN, or for an assumed-role session the session or its role.
func principalIs(p string, c Request) bool {
	return p == c.ARN || (c.RoleARN != "" && p == c.RoleARN)
}

// grantAllowsAction is grantAllows' decision over a key's grants: a grant
// naming the caller as grantee, listing the operation, whose constraints
// the request's encryption context meets.
func (s *Service) grantAllowsAction(ctx context.Context, gs []store.Grant, c Request, action string, pc policy.Context) bool {
	op, ok := strings.CutPrefix(action, "kms:")
	if !ok {
		return false
	}
	var ec map[string]string // lower-cased keys, built on first need
	for i := range gs {
		g := &gs[i]
		if !principalIs(g.GranteePrincipal, c) || !slices.Contains(g.Operations, op) {
			continue
		}
		if ecGrantOps[op] && (g.EncryptionContextEquals != nil || g.EncryptionContextSubset != nil) {
			if ec == nil {
				ec = requestContext(pc)
			}
			if !constraintsHold(g.EncryptionContextEquals, g.EncryptionContextSubset, ec) {
				continue
			}
		}
		if op == "CreateGrant" && !withinGrant(c, g) {
			continue
		}
		return true
	}
	return false
}

// requestContext reads the request's encryption context back from the
// condition keys, keys lower-cased (grant constraint keys are not case
// sensitive; values are).
func requestContext(pc policy.Context) map[string]string {
	ec := map[string]string{}
	keys, _ := pc.Get(policy.KeyEncryptionContextKeys)
	for _, k := range keys {
		if v, ok := pc.Get(policy.KeyEncryptionContextPrefix + k); ok {
			ec[strings.ToLower(k)] = v[0]
		}
	}
	return ec
}

func lowerKeys(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// containsPairs reports whether every pair of sub is in ec (ec lower-cased).
func containsPairs(ec, sub map[string]string) bool {
	for k, v := range sub {
		if got, ok := ec[strings.ToLower(k)]; !ok || got != v {
			return false
		}
	}
	return true
}

// constraintsHold checks EncryptionContextEquals (the request's context is
// exactly the constraint's) and EncryptionContextSubset (the request's
// context includes the constraint's pairs).
func constraintsHold(equals, subset, ec map[string]string) bool {
	if equals != nil && (len(lowerKeys(equals)) != len(ec) || !containsPairs(ec, equals)) {
		return false
	}
	return subset == nil || containsPairs(ec, subset)
}

// withinGrant reports whether the grant being created (CreateGrant's
// request, in c) stays within parent: no operation parent lacks, and an
// encryption context constraint at least as strict as parent's.
func withinGrant(c Request, parent *store.Grant) bool {
	req := c.grant
	if req == nil {
		return false
	}
	for _, op := range req.ops {
		if !slices.Contains(parent.Operations, op) {
			return false
		}
	}
	if parent.EncryptionContextEquals != nil {
		// Only the same exact context is as strict.
		if req.equals == nil || !maps.Equal(lowerKeys(req.equals), lowerKeys(parent.EncryptionContextEquals)) {
			return false
		}
	}
	if parent.EncryptionContextSubset != nil {
		ok := (req.equals != nil && containsPairs(lowerKeys(req.equals), parent.EncryptionContextSubset)) ||
			(req.subset != nil && containsPairs(lowerKeys(req.subset), parent.EncryptionContextSubset))
		if !ok {
			return false
		}
	}
	return true
}
