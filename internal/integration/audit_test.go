package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyhold/keyhold/internal/api/kmsapi"
	"github.com/keyhold/keyhold/internal/audit"
	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/rootkey"
	"github.com/keyhold/keyhold/internal/server"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// startAudited runs keyhold with the audit hook wired in. ServeConfig has
// no audit field yet, so it builds a second server.Handler over the opened
// instance's domain (and a second handle on its database for identities).
// TODO(lead): once ServeConfig carries the audit settings, replace this
// with startWith(t, dir, func(c *cli.ServeConfig){ c.AuditStdout = mirror }).
func startAudited(t *testing.T, dir string, mirror io.Writer) (e *env, closeAudit func() error) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := cli.ServeConfig{DataDir: dir, Region: "us-east-1", Logger: log}
	usePostgres(t, &cfg)
	in, err := cli.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	db, err := cli.OpenDatabase(ctx, cfg.DatabaseURL, dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	root, err := rootkey.LoadOrCreateFile(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	table, err := kmsapi.New(in.Service)
	if err != nil {
		t.Fatal(err)
	}
	hook, closeAudit, err := cli.AuditHook(dir, "us-east-1", in.AccountID, mirror, log)
	if err != nil {
		t.Fatal(err)
	}
	h := server.New(server.Config{Region: "us-east-1", Directory: identity.New(db, root),
		Services: []*awsjson.Service{table}, Logger: log, Audit: hook})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		closeAudit()
		db.Close()
		in.Close()
	})
	e = &env{Endpoint: "http://" + ln.Addr().String(), Account: in.AccountID, Instance: in}
	e.AccessKey, e.Secret = readCredentials(t, filepath.Join(dir, "credentials"))
	e.KMS = e.client(t, e.AccessKey, e.Secret)
	return e, closeAudit
}

// TestAuditTrail makes calls of every kind through the SDK, allowed and
// denied, and checks the audit file: one CloudTrail event per call, in
// order, the same lines on the mirror, and none of the plaintexts, data
// keys, passwords or XKS secrets the calls carried.
func TestAuditTrail(t *testing.T) {
	dir := t.TempDir()
	mirror := &lockedBuffer{}
	e, closeAudit := startAudited(t, dir, mirror)
	ctx := context.Background()
	const (
		plaintext   = "audit-trail plaintext: launch code 0000"
		kmsPassword = "kmsPswd-audit-s3cret"
		xksSecret   = "XKSauditRawSecretAccessKey0123456789abcdefABCD"
	)
	secrets := []string{plaintext, base64.StdEncoding.EncodeToString([]byte(plaintext)), kmsPassword, xksSecret}
	var want []string // event names, in call order

	ck, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("audited")})
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, "CreateKey")
	keyARN := aws.ToString(ck.KeyMetadata.Arn)
	encCtx := map[string]string{"purpose": "audit-test"}
	enc, err := e.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: ck.KeyMetadata.KeyId, Plaintext: []byte(plaintext), EncryptionContext: encCtx})
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, "Encrypt")
	secrets = append(secrets, base64.StdEncoding.EncodeToString(enc.CiphertextBlob))
	if _, err := e.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: encCtx}); err != nil {
		t.Fatal(err)
	}
	want = append(want, "Decrypt")
	dk, err := e.KMS.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keyARN), KeySpec: types.DataKeySpecAes256})
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, "GenerateDataKey")
	secrets = append(secrets, base64.StdEncoding.EncodeToString(dk.Plaintext), base64.StdEncoding.EncodeToString(dk.CiphertextBlob))

	// Calls that fail: the outcome does not matter here, the event does.
	e.KMS.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("audit-hsm"),
		CloudHsmClusterId: aws.String("cluster-234abcdefgh"), KeyStorePassword: aws.String(kmsPassword),
		TrustAnchorCertificate: aws.String("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----")})
	want = append(want, "CreateCustomKeyStore")
	e.KMS.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{CustomKeyStoreName: aws.String("audit-xks"),
		CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore, XksProxyConnectivity: types.XksProxyConnectivityTypePublicEndpoint,
		XksProxyUriEndpoint: aws.String("https://127.0.0.1:1"), XksProxyUriPath: aws.String("/kms/xks/v1"),
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{
			AccessKeyId: aws.String("AUDITXKSACCESSKEYIDA"), RawSecretAccessKey: aws.String(xksSecret)}})
	want = append(want, "CreateCustomKeyStore")
	_, err = e.KMS.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keyARN), NumberOfBytes: aws.Int32(4096)})
	wantCode(t, err, "ValidationException")
	want = append(want, "GenerateDataKey")
	stranger := e.client(t, "AKIAUNKNOWNAUDIT0000", "not-a-secret-we-know")
	_, err = stranger.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyARN), Plaintext: []byte(plaintext)})
	wantCode(t, err, "UnrecognizedClientException")
	want = append(want, "Encrypt")

	if err := closeAudit(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit", "cloudtrail.jsonl")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		t.Logf("%s", raw)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode %v", st.Mode().Perm())
	}
	mirror.mu.Lock()
	if !bytes.Equal(mirror.b.Bytes(), raw) {
		t.Errorf("mirror differs from the file:\n%s\n---\n%s", mirror.b.Bytes(), raw)
	}
	mirror.mu.Unlock()
	for _, s := range secrets {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("audit file contains secret %q", s)
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d events, want %d:\n%s", len(lines), len(want), raw)
	}
	evs := make([]audit.Event, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &evs[i]); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		ev := evs[i]
		if ev.EventName != want[i] || ev.EventSource != "kms.amazonaws.com" || ev.EventVersion != "1.08" || ev.RequestID == "" || ev.EventID == "" {
			t.Errorf("event %d: %s", i, l)
		}
	}
	if r := evs[1].Resources; len(r) != 1 || r[0].ARN != keyARN {
		t.Errorf("Encrypt resources = %+v, want %s", r, keyARN)
	}
	if evs[1].UserIdentity.AccessKeyID != e.AccessKey || evs[1].UserIdentity.Type == "Unknown" || evs[1].ErrorCode != "" {
		t.Errorf("Encrypt identity = %+v", evs[1].UserIdentity)
	}
	if p := evs[4].RequestParameters.(map[string]any); p["keyStorePassword"] != audit.Hidden {
		t.Errorf("CloudHSM store requestParameters = %v", p)
	}
	if c := evs[5].RequestParameters.(map[string]any)["xksProxyAuthenticationCredential"].(map[string]any); c["accessKeyId"] != "AUDITXKSACCESSKEYIDA" || c["rawSecretAccessKey"] != audit.Hidden {
		t.Errorf("XKS credential = %v", c)
	}
	if evs[6].ErrorCode != "ValidationException" {
		t.Errorf("validation event: %+v", evs[6])
	}
	if u := evs[7].UserIdentity; u.Type != "Unknown" || u.AccessKeyID != "AKIAUNKNOWNAUDIT0000" || evs[7].ErrorCode != "UnrecognizedClientException" || evs[7].RecipientAccountID != e.Account {
		t.Errorf("unknown caller event: %+v", evs[7])
	}
}
