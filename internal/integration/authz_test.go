package integration

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/keyhold/keyhold/internal/api/hsmapi"
	"github.com/keyhold/keyhold/internal/api/iamapi"
	"github.com/keyhold/keyhold/internal/api/kmsapi"
	"github.com/keyhold/keyhold/internal/awsquery"
	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/hsm"
	"github.com/keyhold/keyhold/internal/sigv4"
)

func (e *env) iam(t *testing.T, ak, sk string) *iam.Client {
	return iam.NewFromConfig(e.awsConfig(t, ak, sk, ""), func(o *iam.Options) { o.BaseEndpoint = aws.String(e.Endpoint) })
}

func (e *env) sts(t *testing.T, ak, sk, token string) *sts.Client {
	return sts.NewFromConfig(e.awsConfig(t, ak, sk, token), func(o *sts.Options) { o.BaseEndpoint = aws.String(e.Endpoint) })
}

// newUser creates a user with an access key and the given inline policies.
func (e *env) newUser(t *testing.T, admin *iam.Client, name string, policies ...string) (string, string) {
	t.Helper()
	ctx := context.Background()
	if _, err := admin.CreateUser(ctx, &iam.CreateUserInput{UserName: &name}); err != nil {
		t.Fatal(err)
	}
	for i, p := range policies {
		if _, err := admin.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: &name, PolicyName: aws.String("p" + string(rune('0'+i))), PolicyDocument: aws.String(p)}); err != nil {
			t.Fatal(err)
		}
	}
	k, err := admin.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &name})
	if err != nil {
		t.Fatal(err)
	}
	return *k.AccessKey.AccessKeyId, *k.AccessKey.SecretAccessKey
}

// TestEveryOperationIsAuthorized walks the whole KMS operation table: a
// principal with no permissions is denied every operation, the admin is
// denied none. A new operation without a sample request fails the test.
func TestEveryOperationIsAuthorized(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	k, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	id := *k.KeyMetadata.KeyId
	if _, err := e.KMS.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/walk"), TargetKeyId: &id}); err != nil {
		t.Fatal(err)
	}
	enc, err := e.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: &id, Plaintext: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	ct := base64.StdEncoding.EncodeToString(enc.CiphertextBlob)
	pol := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + e.Account + `:root"},"Action":"kms:*","Resource":"*"}]}`
	polJSON := strings.ReplaceAll(strings.ReplaceAll(pol, `\`, `\\`), `"`, `\"`)
	samples := map[string]string{
		"CreateKey":                           `{}`,
		"DescribeKey":                         `{"KeyId":"` + id + `"}`,
		"ListKeys":                            `{}`,
		"EnableKey":                           `{"KeyId":"` + id + `"}`,
		"DisableKey":                          `{"KeyId":"` + id + `"}`,
		"ScheduleKeyDeletion":                 `{"KeyId":"` + id + `","PendingWindowInDays":7}`,
		"CancelKeyDeletion":                   `{"KeyId":"` + id + `"}`,
		"UpdateKeyDescription":                `{"KeyId":"` + id + `","Description":"d"}`,
		"Encrypt":                             `{"KeyId":"` + id + `","Plaintext":"eA=="}`,
		"Decrypt":                             `{"CiphertextBlob":"` + ct + `"}`,
		"ReEncrypt":                           `{"CiphertextBlob":"` + ct + `","DestinationKeyId":"` + id + `"}`,
		"GenerateDataKey":                     `{"KeyId":"` + id + `","KeySpec":"AES_256"}`,
		"GenerateDataKeyWithoutPlaintext":     `{"KeyId":"` + id + `","KeySpec":"AES_256"}`,
		"GenerateRandom":                      `{"NumberOfBytes":8}`,
		"CreateAlias":                         `{"AliasName":"alias/walk2","TargetKeyId":"` + id + `"}`,
		"UpdateAlias":                         `{"AliasName":"alias/walk","TargetKeyId":"` + id + `"}`,
		"DeleteAlias":                         `{"AliasName":"alias/walk"}`,
		"ListAliases":                         `{}`,
		"TagResource":                         `{"KeyId":"` + id + `","Tags":[{"TagKey":"a","TagValue":"b"}]}`,
		"UntagResource":                       `{"KeyId":"` + id + `","TagKeys":["a"]}`,
		"ListResourceTags":                    `{"KeyId":"` + id + `"}`,
		"GetKeyPolicy":                        `{"KeyId":"` + id + `"}`,
		"PutKeyPolicy":                        `{"KeyId":"` + id + `","Policy":"` + polJSON + `"}`,
		"ListKeyPolicies":                     `{"KeyId":"` + id + `"}`,
		"CreateGrant":                         `{"KeyId":"` + id + `","GranteePrincipal":"arn:aws:iam::` + e.Account + `:user/someone","Operations":["Encrypt"]}`,
		"ListGrants":                          `{"KeyId":"` + id + `"}`,
		"ListRetirableGrants":                 `{"RetiringPrincipal":"arn:aws:iam::` + e.Account + `:user/keyhold-admin"}`,
		"RetireGrant":                         e.retireGrantSample(t, id),
		"RevokeGrant":                         `{"KeyId":"` + id + `","GrantId":"` + strings.Repeat("0", 64) + `"}`,
		"CreateCustomKeyStore":                `{"CustomKeyStoreName":"walk","CloudHsmClusterId":"cluster-234567abcde","TrustAnchorCertificate":"x","KeyStorePassword":"kmsPswd1"}`,
		"ConnectCustomKeyStore":               `{"CustomKeyStoreId":"cks-1234567890abcdef0"}`,
		"DisconnectCustomKeyStore":            `{"CustomKeyStoreId":"cks-1234567890abcdef0"}`,
		"DescribeCustomKeyStores":             `{}`,
		"UpdateCustomKeyStore":                `{"CustomKeyStoreId":"cks-1234567890abcdef0","NewCustomKeyStoreName":"n"}`,
		"DeleteCustomKeyStore":                `{"CustomKeyStoreId":"cks-1234567890abcdef0"}`,
		"EnableKeyRotation":                   `{"KeyId":"` + id + `"}`,
		"DisableKeyRotation":                  `{"KeyId":"` + id + `"}`,
		"GetKeyRotationStatus":                `{"KeyId":"` + id + `"}`,
		"RotateKeyOnDemand":                   `{"KeyId":"` + id + `"}`,
		"ListKeyRotations":                    `{"KeyId":"` + id + `"}`,
		"Sign":                                `{"KeyId":"` + id + `","Message":"eA==","SigningAlgorithm":"ECDSA_SHA_256"}`,
		"Verify":                              `{"KeyId":"` + id + `","Message":"eA==","Signature":"eA==","SigningAlgorithm":"ECDSA_SHA_256"}`,
		"GetPublicKey":                        `{"KeyId":"` + id + `"}`,
		"DeriveSharedSecret":                  `{"KeyId":"` + id + `","KeyAgreementAlgorithm":"ECDH","PublicKey":"eA=="}`,
		"GenerateMac":                         `{"KeyId":"` + id + `","Message":"eA==","MacAlgorithm":"HMAC_SHA_256"}`,
		"VerifyMac":                           `{"KeyId":"` + id + `","Message":"eA==","Mac":"eA==","MacAlgorithm":"HMAC_SHA_256"}`,
		"GenerateDataKeyPair":                 `{"KeyId":"` + id + `","KeyPairSpec":"ECC_NIST_P256"}`,
		"GenerateDataKeyPairWithoutPlaintext": `{"KeyId":"` + id + `","KeyPairSpec":"ECC_NIST_P256"}`,
		"GetParametersForImport":              `{"KeyId":"` + id + `","WrappingAlgorithm":"RSAES_OAEP_SHA_256","WrappingKeySpec":"RSA_2048"}`,
		"ImportKeyMaterial":                   `{"KeyId":"` + id + `","ImportToken":"eA==","EncryptedKeyMaterial":"eA=="}`,
		"DeleteImportedKeyMaterial":           `{"KeyId":"` + id + `"}`,
		"ReplicateKey":                        `{"KeyId":"` + id + `","ReplicaRegion":"us-west-2"}`,
		"UpdatePrimaryRegion":                 `{"KeyId":"` + id + `","PrimaryRegion":"us-west-2"}`,
		"GetKeyLastUsage":                     `{"KeyId":"` + id + `"}`,
	}
	admin := e.iam(t, e.AccessKey, e.Secret)
	nak, nsk := e.newUser(t, admin, "nobody")
	nobody := &sigv4.Signer{AccessKeyID: nak, SecretAccessKey: nsk, Region: "us-east-1", Service: "kms"}
	adm := &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "us-east-1", Service: "kms"}
	table, err := kmsapi.New(e.Instance.Service)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range table.Operations() {
		body, ok := samples[op.Name]
		if !ok {
			t.Errorf("operation %s has no sample request in this test: add one", op.Name)
			continue
		}
		st, resp, _ := e.raw(t, nobody, "TrentService."+op.Name, body)
		if st != 400 || resp["__type"] != "AccessDeniedException" || !strings.Contains(resp["message"], "kms:"+op.Name) {
			t.Errorf("%s by a principal with no permissions: %d %v, want AccessDeniedException naming kms:%s", op.Name, st, resp, op.Name)
		}
		st, resp, _ = e.raw(t, adm, "TrentService."+op.Name, body)
		if resp["__type"] == "AccessDeniedException" {
			t.Errorf("%s by the admin: %d %v", op.Name, st, resp)
		}
	}
}

func TestEncryptOnlyWithContextCondition(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	k, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	admin := e.iam(t, e.AccessKey, e.Secret)
	ak, sk := e.newUser(t, admin, "enc-only", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*",
		"Condition":{"StringEquals":{"kms:EncryptionContext:tenant":"a"}}}]}`)
	c := e.client(t, ak, sk)
	if _, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x"), EncryptionContext: map[string]string{"tenant": "a"}}); err != nil {
		t.Fatalf("allowed encrypt: %v", err)
	}
	for name, call := range map[string]func() error{
		"other context": func() error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x"), EncryptionContext: map[string]string{"tenant": "b"}})
			return err
		},
		"no context": func() error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x")})
			return err
		},
		"decrypt": func() error {
			enc, _ := e.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x"), EncryptionContext: map[string]string{"tenant": "a"}})
			_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"tenant": "a"}})
			return err
		},
		"describe": func() error {
			_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyMetadata.KeyId})
			return err
		},
		"create key": func() error { _, err := c.CreateKey(ctx, &kms.CreateKeyInput{}); return err },
		"list keys":  func() error { _, err := c.ListKeys(ctx, &kms.ListKeysInput{}); return err },
	} {
		err := call()
		msg := wantDenied(t, err)
		if !strings.Contains(msg, "arn:aws:iam::"+e.Account+":user/enc-only is not authorized to perform") {
			t.Errorf("%s: message %q lacks AWS's wording", name, msg)
		}
	}
	// An explicit deny in the key policy wins over the identity policy.
	deny := `{"Version":"2012-10-17","Statement":[
		{"Sid":"root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + e.Account + `:root"},"Action":"kms:*","Resource":"*"},
		{"Sid":"no-enc-only","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::` + e.Account + `:user/enc-only"},"Action":"kms:Encrypt","Resource":"*"}]}`
	if _, err := e.KMS.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: k.KeyMetadata.KeyId, Policy: &deny}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x"), EncryptionContext: map[string]string{"tenant": "a"}})
	msg := wantDenied(t, err)
	if !strings.Contains(msg, "explicit deny in a key policy") {
		t.Errorf("deny message %q", msg)
	}
}

func TestLockoutSafetyCheck(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	k, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	lockout := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}`
	_, err := e.KMS.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: k.KeyMetadata.KeyId, Policy: &lockout})
	wantErr[*types.MalformedPolicyDocumentException](t, err)
	_, err = e.KMS.CreateKey(ctx, &kms.CreateKeyInput{Policy: &lockout})
	wantErr[*types.MalformedPolicyDocumentException](t, err)
	if _, err := e.KMS.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: k.KeyMetadata.KeyId, Policy: &lockout, BypassPolicyLockoutSafetyCheck: true}); err != nil {
		t.Fatalf("bypass: %v", err)
	}
	_, err = e.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x")})
	wantDenied(t, err)
}

type createAccountResult struct {
	AccountID string `xml:"CreateAccountResult>AccountId"`
	KeyID     string `xml:"CreateAccountResult>AccessKey>AccessKeyId"`
	Secret    string `xml:"CreateAccountResult>AccessKey>SecretAccessKey"`
}

func (e *env) createAccount(t *testing.T) createAccountResult {
	t.Helper()
	body := "Action=CreateAccount&Version=2010-05-08"
	req, _ := http.NewRequest(http.MethodPost, e.Endpoint+"/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	(&sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "us-east-1", Service: "iam"}).Sign(req, []byte(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r createAccountResult
	if resp.StatusCode != 200 || xml.Unmarshal(b, &r) != nil || r.AccountID == "" {
		t.Fatalf("CreateAccount: %d %s", resp.StatusCode, b)
	}
	return r
}

func TestCrossAccount(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	b := e.createAccount(t)
	bAdmin := e.client(t, b.KeyID, b.Secret)
	bIAM := e.iam(t, b.KeyID, b.Secret)
	bUserAK, bUserSK := e.newUser(t, bIAM, "b-user") // no identity policy
	bUser := e.client(t, bUserAK, bUserSK)

	shared := `{"Version":"2012-10-17","Statement":[
		{"Sid":"owner","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + e.Account + `:root"},"Action":"kms:*","Resource":"*"},
		{"Sid":"account-b","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + b.AccountID + `:root"},"Action":["kms:Encrypt","kms:Decrypt","kms:DescribeKey"],"Resource":"*"}]}`
	k, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{Policy: &shared})
	if err != nil {
		t.Fatal(err)
	}
	private, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	arn := k.KeyMetadata.Arn

	// Both sides allow (B's admin has AdministratorAccess): works, by ARN only.
	enc, err := bAdmin.Encrypt(ctx, &kms.EncryptInput{KeyId: arn, Plaintext: []byte("cross")})
	if err != nil {
		t.Fatalf("cross-account encrypt: %v", err)
	}
	dec, err := bAdmin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "cross" {
		t.Fatalf("cross-account decrypt without KeyId: %v", err)
	}
	_, err = bAdmin.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x")})
	wantErr[*types.NotFoundException](t, err) // a bare key id means B's own account
	// Identity policy missing: denied.
	_, err = bUser.Encrypt(ctx, &kms.EncryptInput{KeyId: arn, Plaintext: []byte("x")})
	wantDenied(t, err)
	// Key policy missing: denied.
	_, err = bAdmin.Encrypt(ctx, &kms.EncryptInput{KeyId: private.KeyMetadata.Arn, Plaintext: []byte("x")})
	wantDenied(t, err)
	// An action the key policy does not give B.
	_, err = bAdmin.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: arn, KeySpec: types.DataKeySpecAes256})
	wantDenied(t, err)
	// Management is never cross-account.
	_, err = bAdmin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: arn})
	wantErr[*types.NotFoundException](t, err)
	// Account B sees none of A's keys in its own listings.
	if l, err := bAdmin.ListKeys(ctx, &kms.ListKeysInput{}); err != nil || len(l.Keys) != 0 {
		t.Fatalf("B lists A's keys: %v %v", l, err)
	}
	// Only the first account's admin creates accounts.
	_, err = e.iam(t, b.KeyID, b.Secret).CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("fine")})
	if err != nil {
		t.Fatalf("B's admin manages B: %v", err)
	}
}

type clockFn struct {
	mu sync.Mutex
	d  time.Duration
}

func (c *clockFn) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.d) }

func TestAssumedRoleSessions(t *testing.T) {
	t.Parallel()
	clk := &clockFn{}
	e := startWith(t, t.TempDir(), func(c *cli.ServeConfig) { c.SessionNow = clk.now })
	ctx := context.Background()
	admin := e.iam(t, e.AccessKey, e.Secret)
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + e.Account + `:user/alice"},"Action":"sts:AssumeRole"}]}`
	role, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("encryptor"), AssumeRolePolicyDocument: &trust})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("encryptor"), PolicyName: aws.String("enc"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Encrypt","kms:CreateKey"],"Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}
	aak, ask := e.newUser(t, admin, "alice")
	bak, bsk := e.newUser(t, admin, "bob")
	if _, err := e.sts(t, bak, bsk, "").AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: role.Role.Arn, RoleSessionName: aws.String("s")}); err == nil {
		t.Fatal("bob, whom the trust policy does not name, assumed the role")
	}
	out, err := e.sts(t, aak, ask, "").AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: role.Role.Arn, RoleSessionName: aws.String("alice-session"), DurationSeconds: aws.Int32(900)})
	if err != nil {
		t.Fatal(err)
	}
	cr := out.Credentials
	who, err := e.sts(t, *cr.AccessKeyId, *cr.SecretAccessKey, *cr.SessionToken).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil || *who.Arn != "arn:aws:sts::"+e.Account+":assumed-role/encryptor/alice-session" {
		t.Fatalf("GetCallerIdentity = %v, %v", who, err)
	}
	sess := e.client(t, *cr.AccessKeyId, *cr.SecretAccessKey, func(o *kms.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider(*cr.AccessKeyId, *cr.SecretAccessKey, *cr.SessionToken)
	})
	k, err := sess.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatalf("session CreateKey: %v", err)
	}
	if _, err := sess.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x")}); err != nil {
		t.Fatalf("session Encrypt: %v", err)
	}
	_, err = sess.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyMetadata.KeyId})
	msg := wantDenied(t, err)
	if !strings.Contains(msg, "assumed-role/encryptor/alice-session") {
		t.Errorf("message %q does not name the session", msg)
	}
	// Without the session token, or with a wrong one: rejected.
	_, err = e.client(t, *cr.AccessKeyId, *cr.SecretAccessKey).ListKeys(ctx, &kms.ListKeysInput{})
	wantCode(t, err, "UnrecognizedClientException")
	bad := e.client(t, *cr.AccessKeyId, *cr.SecretAccessKey, func(o *kms.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider(*cr.AccessKeyId, *cr.SecretAccessKey, *cr.SessionToken+"x")
	})
	_, err = bad.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x")})
	wantCode(t, err, "UnrecognizedClientException")
	// Past its expiry the session is refused.
	clk.mu.Lock()
	clk.d = 16 * time.Minute
	clk.mu.Unlock()
	_, err = sess.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: []byte("x")})
	wantCode(t, err, "ExpiredTokenException")
}

// wantDenied asserts an AccessDeniedException (not in the KMS model, so not
// a typed SDK error) and returns its message.
func wantDenied(t *testing.T, err error) string {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDeniedException" {
		t.Fatalf("got %v, want AccessDeniedException", err)
	}
	return ae.ErrorMessage()
}

// TestEveryControlPlaneOperationIsAuthorized walks the CloudHSM, IAM and STS
// tables: they are identity-policy only, so a principal with no policy is
// denied every operation and the admin none (except the two STS calls
// every principal may make: GetCallerIdentity, and AssumeRole, which the
// role's trust policy decides).
func TestEveryControlPlaneOperationIsAuthorized(t *testing.T) {
	dir := t.TempDir()
	e := startWith(t, dir, func(c *cli.ServeConfig) {
		c.Extra = cli.CloudHSMExtra(hsm.Config{Dir: filepath.Join(dir, "hsm"), Region: "us-east-1"})
	})
	nak, nsk := e.newUser(t, e.iam(t, e.AccessKey, e.Secret), "nobody")
	hsmTable := hsmapi.New(nil, "us-east-1", e.Account)
	iamTable, stsTable := iamapi.New(nil, nil, nil)
	if len(hsmTable.Operations()) < 10 || len(iamTable.Operations()) < 20 || len(stsTable.Operations()) != 2 {
		t.Fatalf("tables too small: %d cloudhsm, %d iam, %d sts operations", len(hsmTable.Operations()), len(iamTable.Operations()), len(stsTable.Operations()))
	}
	for _, op := range hsmTable.Operations() {
		nobody := &sigv4.Signer{AccessKeyID: nak, SecretAccessKey: nsk, Region: "us-east-1", Service: "cloudhsm"}
		st, resp, _ := e.raw(t, nobody, "BaldrApiService."+op.Name, `{}`)
		if st != 400 || resp["__type"] != "AccessDeniedException" || !strings.Contains(resp["message"], op.Action) {
			t.Errorf("%s by nobody: %d %v", op.Name, st, resp)
		}
		adm := &sigv4.Signer{AccessKeyID: e.AccessKey, SecretAccessKey: e.Secret, Region: "us-east-1", Service: "cloudhsm"}
		if _, resp, _ := e.raw(t, adm, "BaldrApiService."+op.Name, `{}`); resp["__type"] == "AccessDeniedException" {
			t.Errorf("%s by the admin: %v", op.Name, resp)
		}
	}
	for _, svc := range []*awsquery.Service{iamTable, stsTable} {
		for _, op := range svc.Operations() {
			open := op.Action == "sts:GetCallerIdentity" || op.Action == "sts:AssumeRole"
			code := queryCode(t, e, nak, nsk, svc.SigningName, op.Name)
			if open == (code == "AccessDenied") {
				t.Errorf("%s by nobody: error %q", op.Action, code)
			}
			if code := queryCode(t, e, e.AccessKey, e.Secret, svc.SigningName, op.Name); code == "AccessDenied" && op.Name != "AssumeRole" {
				t.Errorf("%s by the admin: AccessDenied", op.Action)
			}
		}
	}
}

// queryCode sends a Query-protocol call with only its Action and returns
// the error code ("" on success).
func queryCode(t *testing.T, e *env, ak, sk, service, action string) string {
	t.Helper()
	body := "Action=" + action + "&Version=2010-05-08"
	req, _ := http.NewRequest(http.MethodPost, e.Endpoint+"/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	(&sigv4.Signer{AccessKeyID: ak, SecretAccessKey: sk, Region: "us-east-1", Service: service}).Sign(req, []byte(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		return ""
	}
	var er struct {
		Code string `xml:"Error>Code"`
	}
	if err := xml.Unmarshal(b, &er); err != nil {
		t.Fatalf("%s: error body is not XML: %s", action, b)
	}
	return er.Code
}

// TestResourceAliasesCondition: an identity policy that allows Encrypt only
// on keys that carry a given alias (kms:ResourceAliases), whatever id the
// caller names the key by.
func TestResourceAliasesCondition(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	admin := e.iam(t, e.AccessKey, e.Secret)
	ak, sk := e.newUser(t, admin, "alias-user", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*",
		"Condition":{"ForAnyValue:StringLike":{"kms:ResourceAliases":"alias/app-*"}}}]}`)
	c := e.client(t, ak, sk)
	tagged, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	other, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	if _, err := e.KMS.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/app-payments"), TargetKeyId: tagged.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: tagged.KeyMetadata.Arn, Plaintext: []byte("x")}); err != nil {
		t.Fatalf("key with a matching alias: %v", err)
	}
	_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: other.KeyMetadata.Arn, Plaintext: []byte("x")})
	wantDenied(t, err)
}

// TestAttributeBasedAccess: aws:PrincipalTag against aws:ResourceTag, the
// ABAC pattern — a user may encrypt with keys tagged with its own team.
func TestAttributeBasedAccess(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	admin := e.iam(t, e.AccessKey, e.Secret)
	ak, sk := e.newUser(t, admin, "abac", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*",
		"Condition":{"StringEquals":{"aws:ResourceTag/team":"${aws:PrincipalTag/team}"}}}]}`)
	if _, err := admin.TagUser(ctx, &iam.TagUserInput{UserName: aws.String("abac"), Tags: []iamtypes.Tag{{Key: aws.String("team"), Value: aws.String("payments")}}}); err != nil {
		t.Fatal(err)
	}
	tags, err := admin.ListUserTags(ctx, &iam.ListUserTagsInput{UserName: aws.String("abac")})
	if err != nil || len(tags.Tags) != 1 || *tags.Tags[0].Value != "payments" {
		t.Fatalf("ListUserTags = %+v, %v", tags, err)
	}
	mine, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{Tags: []types.Tag{{TagKey: aws.String("team"), TagValue: aws.String("payments")}}})
	theirs, _ := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{Tags: []types.Tag{{TagKey: aws.String("team"), TagValue: aws.String("search")}}})
	c := e.client(t, ak, sk)
	if _, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: mine.KeyMetadata.Arn, Plaintext: []byte("x")}); err != nil {
		t.Fatalf("own team's key: %v", err)
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: theirs.KeyMetadata.Arn, Plaintext: []byte("x")})
	wantDenied(t, err)
	if _, err := admin.UntagUser(ctx, &iam.UntagUserInput{UserName: aws.String("abac"), TagKeys: []string{"team"}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: mine.KeyMetadata.Arn, Plaintext: []byte("x")})
	wantDenied(t, err)
}
