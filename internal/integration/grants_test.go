package integration

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// retireGrantSample creates a grant on keyID that the admin may retire and
// returns a RetireGrant body for it (TestEveryOperationIsAuthorized).
func (e *env) retireGrantSample(t *testing.T, keyID string) string {
	t.Helper()
	g, err := e.KMS.CreateGrant(context.Background(), &kms.CreateGrantInput{KeyId: &keyID,
		GranteePrincipal: aws.String(e.userARN("someone")), RetiringPrincipal: aws.String(e.userARN("keyhold-admin")),
		Operations: []types.GrantOperation{types.GrantOperationDecrypt}})
	if err != nil {
		t.Fatal(err)
	}
	return `{"KeyId":"` + keyID + `","GrantId":"` + *g.GrantId + `"}`
}

func (e *env) userARN(name string) string { return "arn:aws:iam::" + e.Account + ":user/" + name }

func enc(c *kms.Client, keyID string, ec map[string]string, tokens ...string) error {
	_, err := c.Encrypt(context.Background(), &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("x"), EncryptionContext: ec, GrantTokens: tokens})
	return err
}

var grantIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestGrantWithSubsetConstraint(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	k, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	id := *k.KeyMetadata.KeyId
	ak, sk := e.newUser(t, e.iam(t, e.AccessKey, e.Secret), "grantee") // no identity policy at all
	u := e.client(t, ak, sk)
	a := map[string]string{"tenant": "a"}
	wantDenied(t, enc(u, id, a))

	g, err := e.KMS.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &id, GranteePrincipal: aws.String(e.userARN("grantee")),
		Operations:  []types.GrantOperation{types.GrantOperationEncrypt, types.GrantOperationDecrypt},
		Constraints: &types.GrantConstraints{EncryptionContextSubset: a}})
	if err != nil {
		t.Fatal(err)
	}
	if !grantIDPattern.MatchString(*g.GrantId) || len(*g.GrantToken) < 64 {
		t.Fatalf("grant id %q, token %q", *g.GrantId, *g.GrantToken)
	}
	// The token works at once; so does the grant without it.
	more := map[string]string{"tenant": "a", "x": "y"}
	out, err := u.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("secret"), EncryptionContext: more, GrantTokens: []string{*g.GrantToken}})
	if err != nil {
		t.Fatalf("encrypt allowed by the grant: %v", err)
	}
	if err := enc(u, id, a); err != nil {
		t.Fatalf("encrypt with exactly the subset: %v", err)
	}
	if err := enc(u, id, map[string]string{"TENANT": "a"}); err != nil {
		t.Fatalf("constraint keys are not case sensitive: %v", err)
	}
	dec, err := u.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: more})
	if err != nil || string(dec.Plaintext) != "secret" {
		t.Fatalf("decrypt allowed by the grant: %v", err)
	}
	wantDenied(t, enc(u, id, map[string]string{"tenant": "b"}))
	wantDenied(t, enc(u, id, map[string]string{"tenant": "A"})) // values are case sensitive
	wantDenied(t, enc(u, id, nil))
	_, err = u.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id})
	wantDenied(t, err)
	_, err = u.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &id, KeySpec: types.DataKeySpecAes256, EncryptionContext: a})
	wantDenied(t, err)

	// Tokens are validated, whoever calls.
	for _, bad := range []string{"garbage", (*g.GrantToken)[:len(*g.GrantToken)-4] + "AAAA", strings.Repeat("A", 200)} {
		wantErr[*types.InvalidGrantTokenException](t, enc(u, id, more, bad))
		wantErr[*types.InvalidGrantTokenException](t, enc(e.KMS, id, nil, bad))
	}
	_, err = e.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id, GrantTokens: []string{"nope"}})
	wantErr[*types.InvalidGrantTokenException](t, err)

	// An explicit deny in the key policy still wins over the grant.
	deny := `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + e.Account + `:root"},"Action":"kms:*","Resource":"*"},
		{"Effect":"Deny","Principal":{"AWS":"` + e.userARN("grantee") + `"},"Action":"kms:Encrypt","Resource":"*"}]}`
	if _, err := e.KMS.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: &id, Policy: &deny}); err != nil {
		t.Fatal(err)
	}
	wantDenied(t, enc(u, id, more))
}

func TestGrantWithEqualsConstraint(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	k, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	id := *k.KeyMetadata.KeyId
	ak, sk := e.newUser(t, e.iam(t, e.AccessKey, e.Secret), "eq")
	u := e.client(t, ak, sk)
	if _, err := e.KMS.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: k.KeyMetadata.Arn, GranteePrincipal: aws.String(e.userARN("eq")),
		Operations:  []types.GrantOperation{types.GrantOperationEncrypt, types.GrantOperationDescribeKey},
		Constraints: &types.GrantConstraints{EncryptionContextEquals: map[string]string{"tenant": "a", "app": "b"}}}); err != nil {
		t.Fatal(err)
	}
	if err := enc(u, id, map[string]string{"app": "b", "tenant": "a"}); err != nil {
		t.Fatalf("the exact context: %v", err)
	}
	wantDenied(t, enc(u, id, map[string]string{"tenant": "a"}))
	wantDenied(t, enc(u, id, map[string]string{"tenant": "a", "app": "b", "x": "y"}))
	// The constraint does not apply to DescribeKey.
	if _, err := u.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &id}); err != nil {
		t.Fatalf("DescribeKey by the grant: %v", err)
	}
}

func TestCreateGrantValidation(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	k, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	id := *k.KeyMetadata.KeyId
	grantee := aws.String(e.userARN("x"))
	for name, in := range map[string]*kms.CreateGrantInput{
		"Sign on a symmetric key": {KeyId: &id, GranteePrincipal: grantee, Operations: []types.GrantOperation{types.GrantOperationSign}},
		"GenerateMac":             {KeyId: &id, GranteePrincipal: grantee, Operations: []types.GrantOperation{types.GrantOperationEncrypt, types.GrantOperationGenerateMac}},
		"constraint with Verify": {KeyId: &id, GranteePrincipal: grantee, Operations: []types.GrantOperation{types.GrantOperationVerify},
			Constraints: &types.GrantConstraints{EncryptionContextSubset: map[string]string{"a": "b"}}},
		"grantee not a principal": {KeyId: &id, GranteePrincipal: aws.String("arn:aws:s3:::bucket"), Operations: []types.GrantOperation{types.GrantOperationEncrypt}},
		"too many pairs": {KeyId: &id, GranteePrincipal: grantee, Operations: []types.GrantOperation{types.GrantOperationEncrypt},
			Constraints: &types.GrantConstraints{EncryptionContextSubset: map[string]string{"1": "", "2": "", "3": "", "4": "", "5": "", "6": "", "7": "", "8": "", "9": ""}}},
	} {
		_, err := e.KMS.CreateGrant(ctx, in)
		t.Run(name, func(t *testing.T) { wantCode(t, err, "ValidationException") })
	}
	_, err := e.KMS.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: aws.String("11111111-2222-3333-4444-555555555555"), GranteePrincipal: grantee,
		Operations: []types.GrantOperation{types.GrantOperationEncrypt}})
	wantErr[*types.NotFoundException](t, err)
	_, err = e.KMS.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &id, GranteePrincipal: grantee, DryRun: aws.Bool(true),
		Operations: []types.GrantOperation{types.GrantOperationEncrypt}})
	wantErr[*types.DryRunOperationException](t, err)
	if l, _ := e.KMS.ListGrants(ctx, &kms.ListGrantsInput{KeyId: &id}); len(l.Grants) != 0 {
		t.Fatalf("a dry run or a refused request left grants: %v", l.Grants)
	}
	// Disabled keys take grants; keys pending deletion do not.
	e.KMS.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &id})
	if _, err := e.KMS.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &id, GranteePrincipal: grantee, Operations: []types.GrantOperation{types.GrantOperationEncrypt}}); err != nil {
		t.Fatalf("grant on a disabled key: %v", err)
	}
	e.KMS.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &id, PendingWindowInDays: aws.Int32(7)})
	_, err = e.KMS.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &id, GranteePrincipal: grantee, Operations: []types.GrantOperation{types.GrantOperationEncrypt}})
	wantErr[*types.KMSInvalidStateException](t, err)
}

func TestGrantNameIdempotency(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	k, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	id := *k.KeyMetadata.KeyId
	in := func(ops ...types.GrantOperation) *kms.CreateGrantInput {
		return &kms.CreateGrantInput{KeyId: &id, GranteePrincipal: aws.String(e.userARN("n")), Name: aws.String("retry-me"), Operations: ops,
			Constraints: &types.GrantConstraints{EncryptionContextSubset: map[string]string{"a": "b"}}}
	}
	g1, err := e.KMS.CreateGrant(ctx, in(types.GrantOperationEncrypt, types.GrantOperationDecrypt))
	if err != nil {
		t.Fatal(err)
	}
	g2, err := e.KMS.CreateGrant(ctx, in(types.GrantOperationDecrypt, types.GrantOperationEncrypt))
	if err != nil || *g2.GrantId != *g1.GrantId || *g2.GrantToken == *g1.GrantToken {
		t.Fatalf("retry with the same Name and parameters: %v, id %s vs %s; tokens must differ", err, *g2.GrantId, *g1.GrantId)
	}
	g3, err := e.KMS.CreateGrant(ctx, in(types.GrantOperationEncrypt))
	if err != nil || *g3.GrantId == *g1.GrantId {
		t.Fatalf("same Name, other operations: %v, want a new grant", err)
	}
	l, _ := e.KMS.ListGrants(ctx, &kms.ListGrantsInput{KeyId: &id})
	if len(l.Grants) != 2 {
		t.Fatalf("%d grants, want 2", len(l.Grants))
	}
	// Both tokens of the first grant identify it.
	if _, err := e.KMS.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: g2.GrantToken}); err != nil {
		t.Fatalf("retire by the second token: %v", err)
	}
	_, err = e.KMS.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: g1.GrantToken})
	wantErr[*types.NotFoundException](t, err)
}

func TestListGrants(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	k, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	other, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	id := *k.KeyMetadata.KeyId
	retirer := e.userARN("retirer")
	var ids []string
	for i, grantee := range []string{"a", "b", "a", "c", "a"} {
		in := &kms.CreateGrantInput{KeyId: &id, GranteePrincipal: aws.String(e.userARN(grantee)), Operations: []types.GrantOperation{types.GrantOperationEncrypt}}
		if i%2 == 0 {
			in.RetiringPrincipal = &retirer
		}
		if i == 0 {
			in.Name = aws.String("first")
			in.Constraints = &types.GrantConstraints{EncryptionContextEquals: map[string]string{"k": "v"}}
		}
		g, err := e.KMS.CreateGrant(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, *g.GrantId)
	}
	if _, err := e.KMS.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: other.KeyMetadata.KeyId, GranteePrincipal: aws.String(e.userARN("a")),
		RetiringPrincipal: &retirer, Operations: []types.GrantOperation{types.GrantOperationDecrypt}}); err != nil {
		t.Fatal(err)
	}
	all := map[string]types.GrantListEntry{}
	var marker *string
	for pages := 0; ; pages++ {
		l, err := e.KMS.ListGrants(ctx, &kms.ListGrantsInput{KeyId: &id, Limit: aws.Int32(2), Marker: marker})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Grants) > 2 || pages > 3 {
			t.Fatalf("page %d has %d grants", pages, len(l.Grants))
		}
		for _, g := range l.Grants {
			all[*g.GrantId] = g
		}
		if !l.Truncated {
			break
		}
		marker = l.NextMarker
	}
	if len(all) != 5 {
		t.Fatalf("paged through %d grants, want 5", len(all))
	}
	first := all[ids[0]]
	if *first.KeyId != *k.KeyMetadata.Arn || aws.ToString(first.Name) != "first" || *first.GranteePrincipal != e.userARN("a") ||
		aws.ToString(first.RetiringPrincipal) != retirer || *first.IssuingAccount != "arn:aws:iam::"+e.Account+":root" ||
		first.CreationDate == nil || len(first.Operations) != 1 || first.Operations[0] != types.GrantOperationEncrypt ||
		first.Constraints == nil || first.Constraints.EncryptionContextEquals["k"] != "v" {
		t.Fatalf("entry %+v", first)
	}
	if all[ids[1]].Constraints != nil || all[ids[1]].Name != nil || all[ids[1]].RetiringPrincipal != nil {
		t.Fatalf("absent fields reported: %+v", all[ids[1]])
	}
	l, err := e.KMS.ListGrants(ctx, &kms.ListGrantsInput{KeyId: &id, GranteePrincipal: aws.String(e.userARN("a"))})
	if err != nil || len(l.Grants) != 3 {
		t.Fatalf("by grantee: %d, %v", len(l.Grants), err)
	}
	l, err = e.KMS.ListGrants(ctx, &kms.ListGrantsInput{KeyId: &id, GrantId: &ids[3]})
	if err != nil || len(l.Grants) != 1 || *l.Grants[0].GrantId != ids[3] {
		t.Fatalf("by grant id: %v, %v", l.Grants, err)
	}
	_, err = e.KMS.ListGrants(ctx, &kms.ListGrantsInput{KeyId: &id, GrantId: aws.String("not-a-grant-id")})
	wantErr[*types.InvalidGrantIdException](t, err)
	_, err = e.KMS.ListGrants(ctx, &kms.ListGrantsInput{KeyId: &id, Marker: aws.String("bogus")})
	wantErr[*types.InvalidMarkerException](t, err)

	// Retirable grants span keys; only a principal of the caller's account.
	var got []string
	marker = nil
	for {
		r, err := e.KMS.ListRetirableGrants(ctx, &kms.ListRetirableGrantsInput{RetiringPrincipal: &retirer, Limit: aws.Int32(2), Marker: marker})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range r.Grants {
			got = append(got, *g.GrantId)
		}
		if !r.Truncated {
			break
		}
		marker = r.NextMarker
	}
	if len(got) != 4 {
		t.Fatalf("retirable grants %v, want 4 (3 on one key, 1 on another)", got)
	}
	_, err = e.KMS.ListRetirableGrants(ctx, &kms.ListRetirableGrantsInput{RetiringPrincipal: aws.String("arn:aws:iam::999988887777:user/x")})
	wantDenied(t, err)
}

func TestRetireAndRevoke(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	k, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	id := *k.KeyMetadata.KeyId
	admin := e.iam(t, e.AccessKey, e.Secret)
	gak, gsk := e.newUser(t, admin, "grantee")
	rak, rsk := e.newUser(t, admin, "retirer")
	oak, osk := e.newUser(t, admin, "outsider")
	grantee, retirer, outsider := e.client(t, gak, gsk), e.client(t, rak, rsk), e.client(t, oak, osk)
	create := func(ops ...types.GrantOperation) *kms.CreateGrantOutput {
		g, err := e.KMS.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &id, GranteePrincipal: aws.String(e.userARN("grantee")),
			RetiringPrincipal: aws.String(e.userARN("retirer")), Operations: ops})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}

	// By the retiring principal, with key and grant id; nobody else.
	g := create(types.GrantOperationEncrypt)
	if err := enc(grantee, id, nil); err != nil {
		t.Fatal(err)
	}
	_, err := outsider.RetireGrant(ctx, &kms.RetireGrantInput{KeyId: &id, GrantId: g.GrantId})
	wantDenied(t, err)
	_, err = grantee.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: g.GrantToken}) // not among its operations
	wantDenied(t, err)
	_, err = retirer.RetireGrant(ctx, &kms.RetireGrantInput{KeyId: k.KeyMetadata.Arn, GrantId: g.GrantId, DryRun: aws.Bool(true)})
	wantErr[*types.DryRunOperationException](t, err)
	if _, err := retirer.RetireGrant(ctx, &kms.RetireGrantInput{KeyId: k.KeyMetadata.Arn, GrantId: g.GrantId}); err != nil {
		t.Fatalf("retire by the retiring principal: %v", err)
	}
	wantDenied(t, enc(grantee, id, nil))
	wantDenied(t, enc(grantee, id, nil, *g.GrantToken)) // a token of a retired grant gives nothing

	// By the grantee, by token, when the grant allows RetireGrant.
	g = create(types.GrantOperationEncrypt, types.GrantOperationRetireGrant)
	if _, err := grantee.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: g.GrantToken}); err != nil {
		t.Fatalf("retire by the grantee: %v", err)
	}
	wantDenied(t, enc(grantee, id, nil))
	_, err = grantee.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: aws.String("forged")})
	wantErr[*types.InvalidGrantTokenException](t, err)
	_, err = retirer.RetireGrant(ctx, &kms.RetireGrantInput{KeyId: &id, GrantId: aws.String("x")})
	wantErr[*types.InvalidGrantIdException](t, err)

	// Revoke: kms:RevokeGrant on the key decides.
	g = create(types.GrantOperationEncrypt)
	_, err = grantee.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: &id, GrantId: g.GrantId})
	wantDenied(t, err)
	_, err = retirer.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: &id, GrantId: g.GrantId})
	wantDenied(t, err)
	if _, err := e.KMS.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: &id, GrantId: g.GrantId}); err != nil {
		t.Fatalf("revoke by the admin: %v", err)
	}
	wantDenied(t, enc(grantee, id, nil))
	_, err = e.KMS.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: &id, GrantId: g.GrantId})
	wantErr[*types.NotFoundException](t, err)
	_, err = e.KMS.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: &id, GrantId: aws.String("short")})
	wantErr[*types.InvalidGrantIdException](t, err)
}

// A grantee holding CreateGrant can pass on no more than it holds.
func TestGrantThroughGrant(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	k, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	id := *k.KeyMetadata.KeyId
	ak, sk := e.newUser(t, e.iam(t, e.AccessKey, e.Secret), "delegate")
	d := e.client(t, ak, sk)
	if _, err := e.KMS.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &id, GranteePrincipal: aws.String(e.userARN("delegate")),
		Operations:  []types.GrantOperation{types.GrantOperationEncrypt, types.GrantOperationCreateGrant},
		Constraints: &types.GrantConstraints{EncryptionContextSubset: map[string]string{"tenant": "a"}}}); err != nil {
		t.Fatal(err)
	}
	sub := func(ops []types.GrantOperation, c *types.GrantConstraints) error {
		_, err := d.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &id, GranteePrincipal: aws.String(e.userARN("worker")), Operations: ops, Constraints: c})
		return err
	}
	encOnly := []types.GrantOperation{types.GrantOperationEncrypt}
	if err := sub(encOnly, &types.GrantConstraints{EncryptionContextSubset: map[string]string{"tenant": "a", "x": "y"}}); err != nil {
		t.Fatalf("a stricter grant: %v", err)
	}
	if err := sub(encOnly, &types.GrantConstraints{EncryptionContextEquals: map[string]string{"tenant": "a"}}); err != nil {
		t.Fatalf("an Equals grant within the subset: %v", err)
	}
	wantDenied(t, sub(encOnly, nil))
	wantDenied(t, sub(encOnly, &types.GrantConstraints{EncryptionContextSubset: map[string]string{"tenant": "b"}}))
	wantDenied(t, sub([]types.GrantOperation{types.GrantOperationDecrypt}, &types.GrantConstraints{EncryptionContextSubset: map[string]string{"tenant": "a"}}))
}

func TestCrossAccountGrant(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	b := e.createAccount(t)
	bUserAK, bUserSK := e.newUser(t, e.iam(t, b.KeyID, b.Secret), "b-user") // no identity policy
	bUser := e.client(t, bUserAK, bUserSK)
	bAdmin := e.client(t, b.KeyID, b.Secret)
	k, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{}) // default policy: account A only
	arn := *k.KeyMetadata.Arn
	wantDenied(t, enc(bUser, arn, nil))
	bUserARN := "arn:aws:iam::" + b.AccountID + ":user/b-user"
	g, err := e.KMS.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &arn, GranteePrincipal: &bUserARN, RetiringPrincipal: &bUserARN,
		Operations: []types.GrantOperation{types.GrantOperationEncrypt, types.GrantOperationDecrypt}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := bUser.Encrypt(ctx, &kms.EncryptInput{KeyId: &arn, Plaintext: []byte("cross"), GrantTokens: []string{*g.GrantToken}})
	if err != nil {
		t.Fatalf("cross-account encrypt by grant: %v", err)
	}
	if dec, err := bUser.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob}); err != nil || string(dec.Plaintext) != "cross" {
		t.Fatalf("cross-account decrypt by grant: %v", err)
	}
	wantErr[*types.NotFoundException](t, enc(bUser, *k.KeyMetadata.KeyId, nil)) // a bare id means B's own account
	// B's admin is neither grantee nor allowed by A's key policy.
	wantDenied(t, enc(bAdmin, arn, nil))
	_, err = bAdmin.ListGrants(ctx, &kms.ListGrantsInput{KeyId: &arn})
	wantDenied(t, err)
	// B's user finds and retires the grant from its own account.
	r, err := bUser.ListRetirableGrants(ctx, &kms.ListRetirableGrantsInput{RetiringPrincipal: &bUserARN})
	if err == nil {
		t.Fatalf("ListRetirableGrants needs an identity policy in B: %v", r)
	}
	r, err = bAdmin.ListRetirableGrants(ctx, &kms.ListRetirableGrantsInput{RetiringPrincipal: &bUserARN})
	if err != nil || len(r.Grants) != 1 || *r.Grants[0].KeyId != arn || *r.Grants[0].IssuingAccount != "arn:aws:iam::"+e.Account+":root" {
		t.Fatalf("B's admin lists B's retirable grants: %v, %v", r, err)
	}
	if _, err := bUser.RetireGrant(ctx, &kms.RetireGrantInput{KeyId: &arn, GrantId: g.GrantId}); err != nil {
		t.Fatalf("cross-account retire: %v", err)
	}
	wantDenied(t, enc(bUser, arn, nil))
}

func TestGrantToRoleAndSession(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	admin := e.iam(t, e.AccessKey, e.Secret)
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + e.userARN("alice") + `"},"Action":"sts:AssumeRole"}]}`
	role, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("worker"), AssumeRolePolicyDocument: &trust})
	if err != nil {
		t.Fatal(err)
	}
	aak, ask := e.newUser(t, admin, "alice")
	cr, err := e.sts(t, aak, ask, "").AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: role.Role.Arn, RoleSessionName: aws.String("s1")})
	if err != nil {
		t.Fatal(err)
	}
	c := cr.Credentials
	sess := e.client(t, *c.AccessKeyId, *c.SecretAccessKey, func(o *kms.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken)
	})
	k1, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	k2, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	wantDenied(t, enc(sess, *k1.KeyMetadata.KeyId, nil))
	// A grant to the role covers its sessions; one to the session ARN, that session.
	for _, g := range []struct{ key, grantee string }{{*k1.KeyMetadata.KeyId, *role.Role.Arn}, {*k2.KeyMetadata.KeyId, "arn:aws:sts::" + e.Account + ":assumed-role/worker/s1"}} {
		if _, err := e.KMS.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &g.key, GranteePrincipal: &g.grantee,
			Operations: []types.GrantOperation{types.GrantOperationEncrypt}}); err != nil {
			t.Fatal(err)
		}
		if err := enc(sess, g.key, nil); err != nil {
			t.Fatalf("session encrypt by a grant to %s: %v", g.grantee, err)
		}
	}
}
