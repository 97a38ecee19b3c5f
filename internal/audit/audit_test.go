package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/api/kmsapi"
	"github.com/keyhold/keyhold/internal/awsjson"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json golden events")

const (
	account  = "111122223333"
	keyUUID  = "1234abcd-12ab-34cd-56ef-1234567890ab"
	keyARN   = "arn:aws:kms:us-east-1:111122223333:key/" + keyUUID
	userARN  = "arn:aws:iam::111122223333:user/Alice"
	roleARN  = "arn:aws:sts::111122223333:assumed-role/Deployer/ci-run-42"
	clientIP = "192.0.2.10"
	agent    = "aws-sdk-go-v2/1.30.0 os/linux lang/go#1.26"

	// Secrets every test request carries; none may reach an event.
	plaintext   = "attack at dawn: the vault code is 7261"
	dataKey     = "0123456789abcdef0123456789abcdef" // 32 bytes of "key material"
	kmsPassword = "kmsPswd-s3cr3t"
	xksSecret   = "XKS-RAW-SECRET-ACCESS-KEY-0123456789abcdef"
	preCo       = "pre-co-password-Zq9"
)

var (
	plaintextB64 = base64.StdEncoding.EncodeToString([]byte(plaintext))
	dataKeyB64   = base64.StdEncoding.EncodeToString([]byte(dataKey))
	ciphertext   = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("C"), 180))
	// secrets is what TestNoSecrets looks for in every line.
	secrets = []string{plaintext, plaintextB64, dataKey, dataKeyB64, kmsPassword, xksSecret, preCo, ciphertext[:40]}
)

func alice() awsjson.Caller {
	return awsjson.Caller{AccountID: account, ARN: userARN, UserID: "AIDAEXAMPLEALICE", AccessKeyID: "AKIAEXAMPLEALICE0001"}
}

func js(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// validationMessage is what the listener really answers for body: the
// message comes from the KMS model, so the test covers what awsjson echoes.
func validationMessage(t testing.TB, op string, body []byte) string {
	t.Helper()
	m, err := kmsapi.LoadModel()
	if err != nil {
		t.Fatal(err)
	}
	err = m.DecodeInput(op, body, nil)
	ae, ok := err.(*awsjson.Error)
	if !ok || ae.Type != awsjson.ValidationException {
		t.Fatalf("DecodeInput(%s) = %v, want a ValidationException", op, err)
	}
	return ae.Message
}

type testCase struct {
	name string
	rec  Record
}

func cases(t testing.TB) []testCase {
	t0 := time.Date(2026, 3, 14, 9, 26, 53, 589_000_000, time.UTC)
	base := func(op string, req, resp []byte) Record {
		return Record{Time: t0, TargetPrefix: "TrentService", Operation: op, Caller: alice(),
			AccessKeyID: "AKIAEXAMPLEALICE0001", SourceIP: clientIP, UserAgent: agent,
			RequestID: "req-" + strings.ToLower(op), Request: req, Response: resp}
	}
	fail := func(r Record, code, msg string) Record {
		r.Response, r.ErrorCode, r.ErrorMessage = nil, code, msg
		return r
	}
	longBlob := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("C"), 6145))
	badDecrypt := js(map[string]any{"CiphertextBlob": longBlob, "EncryptionContext": map[string]string{"app": "billing"}})
	badStore := js(map[string]any{"CustomKeyStoreId": "cks-1234567890abcdef0", "KeyStorePassword": "short", "NewCustomKeyStoreName": ""})

	return []testCase{
		{"encrypt", base("Encrypt",
			js(map[string]any{"KeyId": keyUUID, "Plaintext": plaintextB64, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
				"EncryptionContext": map[string]string{"Department": "IT"}}),
			js(map[string]any{"CiphertextBlob": ciphertext, "KeyId": keyARN, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}))},
		{"decrypt", base("Decrypt",
			js(map[string]any{"CiphertextBlob": ciphertext, "EncryptionContext": map[string]string{"Department": "IT"}}),
			js(map[string]any{"KeyId": keyARN, "Plaintext": plaintextB64, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}))},
		{"generate-data-key", base("GenerateDataKey",
			js(map[string]any{"KeyId": keyARN, "KeySpec": "AES_256", "EncryptionContext": map[string]string{"bucket": "logs"}}),
			js(map[string]any{"KeyId": keyARN, "Plaintext": dataKeyB64, "CiphertextBlob": ciphertext}))},
		{"create-key", base("CreateKey",
			js(map[string]any{"Description": "orders table", "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT",
				"Policy": `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}`,
				"Tags":   []map[string]string{{"TagKey": "team", "TagValue": "payments"}}}),
			js(map[string]any{"KeyMetadata": map[string]any{"AWSAccountId": account, "KeyId": keyUUID, "Arn": keyARN,
				"CreationDate": 1.773480413589e9, "Enabled": true, "Description": "orders table", "KeyUsage": "ENCRYPT_DECRYPT",
				"KeyState": "Enabled", "Origin": "AWS_KMS", "KeyManager": "CUSTOMER", "KeySpec": "SYMMETRIC_DEFAULT",
				"CustomerMasterKeySpec": "SYMMETRIC_DEFAULT", "EncryptionAlgorithms": []string{"SYMMETRIC_DEFAULT"}, "MultiRegion": false}}))},
		{"create-custom-key-store-cloudhsm", base("CreateCustomKeyStore",
			js(map[string]any{"CustomKeyStoreName": "ExampleCloudHSMKeyStore", "CloudHsmClusterId": "cluster-1a23b4cdefg",
				"TrustAnchorCertificate": "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----", "KeyStorePassword": kmsPassword}),
			js(map[string]any{"CustomKeyStoreId": "cks-1234567890abcdef0"}))},
		{"create-custom-key-store-xks", base("CreateCustomKeyStore",
			js(map[string]any{"CustomKeyStoreName": "ExampleExternalKeyStore", "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
				"XksProxyConnectivity": "PUBLIC_ENDPOINT", "XksProxyUriEndpoint": "https://myproxy.xks.example.com", "XksProxyUriPath": "/kms/xks/v1",
				"XksProxyAuthenticationCredential": map[string]string{"AccessKeyId": "ABCDE98765432EXAMPLE", "RawSecretAccessKey": xksSecret}}),
			js(map[string]any{"CustomKeyStoreId": "cks-9876543210fedcba0"}))},
		{"update-custom-key-store-password", base("UpdateCustomKeyStore",
			js(map[string]any{"CustomKeyStoreId": "cks-1234567890abcdef0", "KeyStorePassword": kmsPassword,
				"XksProxyAuthenticationCredential": map[string]string{"AccessKeyId": "ABCDE98765432EXAMPLE", "RawSecretAccessKey": xksSecret}}),
			js(map[string]any{}))},
		{"connect-custom-key-store", base("ConnectCustomKeyStore",
			js(map[string]any{"CustomKeyStoreId": "cks-1234567890abcdef0"}), js(map[string]any{}))},
		{"describe-key-assumed-role", func() Record {
			r := base("DescribeKey", js(map[string]any{"KeyId": "alias/orders"}),
				js(map[string]any{"KeyMetadata": map[string]any{"KeyId": keyUUID, "Arn": keyARN, "Description": "orders table"}}))
			r.Caller = awsjson.Caller{AccountID: account, ARN: roleARN, UserID: "AROAEXAMPLEROLE:ci-run-42", AccessKeyID: "ASIAEXAMPLESESSION01"}
			return r
		}()},
		{"list-keys-root", func() Record {
			r := base("ListKeys", nil, js(map[string]any{"Keys": []map[string]string{{"KeyId": keyUUID, "KeyArn": keyARN}}, "Truncated": false}))
			r.Caller = awsjson.Caller{AccountID: account, ARN: "arn:aws:iam::111122223333:root", AccessKeyID: "AKIAEXAMPLEROOT00001"}
			return r
		}()},
		{"auth-failure-unknown-access-key", func() Record {
			r := base("Encrypt", js(map[string]any{"KeyId": keyARN, "Plaintext": plaintextB64}), nil)
			r.Caller, r.AccessKeyID = awsjson.Caller{}, "AKIAUNKNOWN000000000"
			return fail(r, "UnrecognizedClientException", "The security token included in the request is invalid.")
		}()},
		{"validation-exception-decrypt", fail(base("Decrypt", badDecrypt, nil),
			awsjson.ValidationException, validationMessage(t, "Decrypt", badDecrypt))},
		{"validation-exception-password", fail(base("UpdateCustomKeyStore", badStore, nil),
			awsjson.ValidationException, validationMessage(t, "UpdateCustomKeyStore", badStore))},
		{"not-found", fail(base("Encrypt", js(map[string]any{"KeyId": "alias/missing", "Plaintext": plaintextB64}), nil),
			"NotFoundException", "Alias arn:aws:kms:us-east-1:111122223333:alias/missing is not found.")},
		{"unknown-members-and-types", base("Encrypt",
			// A misspelled member may hold a secret: unknown members are dropped.
			js(map[string]any{"KeyId": 42, "Plaintxt": plaintext, "EncryptionContext": map[string]any{"a": "visible", "n": 3}}),
			nil)},
		{"unparsable-body", fail(base("Encrypt", []byte(`{"KeyId": "`+keyUUID+`", "Plaintext": "`+plaintextB64), nil),
			awsjson.SerializationException, "Malformed JSON: the document ends too early.")},
		{"unknown-target", Record{Time: t0, Operation: "Frobnicate", AccessKeyID: "AKIAEXAMPLEALICE0001", SourceIP: clientIP,
			UserAgent: agent, RequestID: "req-unknown", Request: js(map[string]any{"Plaintext": plaintextB64}),
			ErrorCode: awsjson.UnknownOperation, ErrorMessage: `The operation "Nope.Frobnicate" is not supported by this endpoint.`}},
		{"cloudhsm-create-cluster", Record{Time: t0, TargetPrefix: "BaldrApiService", Operation: "CreateCluster", Caller: alice(),
			SourceIP: clientIP, UserAgent: agent, RequestID: "req-cluster",
			Request: js(map[string]any{"HsmType": "hsm1.medium", "SubnetIds": []string{"subnet-0a1b2c3d"}}),
			Response: js(map[string]any{"Cluster": map[string]any{"ClusterId": "cluster-1a23b4cdefg", "State": "CREATE_IN_PROGRESS",
				"PreCoPassword": preCo, "CreateTimestamp": 1.773480413e9, "HsmType": "hsm1.medium"}})}},
	}
}

func newTestEncoder(t testing.TB) *Encoder {
	t.Helper()
	e, err := NewEncoder(Config{Region: "us-east-1", AccountID: account,
		NewEventID: func() string { return "00000000-0000-4000-8000-000000000000" }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestGoldenEvents(t *testing.T) {
	e := newTestEncoder(t)
	for _, tc := range cases(t) {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.MarshalIndent(e.Event(&tc.rec), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("event differs from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

// TestNoSecrets greps every produced line for the plaintexts, data keys,
// passwords and XKS secrets the requests and responses carried.
func TestNoSecrets(t *testing.T) {
	e := newTestEncoder(t)
	for _, tc := range cases(t) {
		line, err := e.Marshal(&tc.rec)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if bytes.Contains(line, []byte(s)) {
				t.Errorf("%s: event contains secret %q:\n%s", tc.name, s, line)
			}
		}
		if !json.Valid(line) || bytes.ContainsRune(line, '\n') {
			t.Errorf("%s: not one JSON line: %s", tc.name, line)
		}
	}
}

// TestEventFields pins the rules the golden files show, so a careless
// -update cannot erase them.
func TestEventFields(t *testing.T) {
	e := newTestEncoder(t)
	evs := map[string]*Event{}
	for _, tc := range cases(t) {
		evs[tc.name] = e.Event(&tc.rec)
	}
	enc := evs["encrypt"]
	if enc.ReadOnly != true || enc.ResponseElements != nil || enc.EventSource != "kms.amazonaws.com" || enc.UserIdentity.Type != "IAMUser" {
		t.Errorf("encrypt: %+v", enc)
	}
	rp := enc.RequestParameters.(map[string]any)
	if _, ok := rp["plaintext"]; ok || rp["keyId"] != keyUUID || rp["encryptionContext"].(map[string]any)["Department"] != "IT" {
		t.Errorf("encrypt requestParameters: %v", rp)
	}
	if len(enc.Resources) != 1 || enc.Resources[0].ARN != keyARN || enc.RecipientAccountID != account {
		t.Errorf("encrypt resources: %+v", enc.Resources)
	}
	cks := evs["create-custom-key-store-cloudhsm"].RequestParameters.(map[string]any)
	if cks["keyStorePassword"] != Hidden {
		t.Errorf("keyStorePassword = %v", cks["keyStorePassword"])
	}
	cred := evs["create-custom-key-store-xks"].RequestParameters.(map[string]any)["xksProxyAuthenticationCredential"].(map[string]any)
	if cred["accessKeyId"] != "ABCDE98765432EXAMPLE" || cred["rawSecretAccessKey"] != Hidden {
		t.Errorf("credential = %v", cred)
	}
	if ck := evs["create-key"]; ck.ReadOnly || ck.ResponseElements == nil ||
		ck.ResponseElements.(map[string]any)["keyMetadata"].(map[string]any)["aWSAccountId"] != account {
		t.Errorf("create-key: %+v", ck.ResponseElements)
	}
	af := evs["auth-failure-unknown-access-key"]
	if af.UserIdentity.Type != "Unknown" || af.UserIdentity.AccessKeyID != "AKIAUNKNOWN000000000" || af.ErrorCode != "UnrecognizedClientException" || af.RecipientAccountID != account {
		t.Errorf("auth failure: %+v", af)
	}
	if ar := evs["describe-key-assumed-role"].UserIdentity; ar.Type != "AssumedRole" || ar.SessionContext == nil ||
		ar.SessionContext.SessionIssuer.ARN != "arn:aws:iam::111122223333:role/Deployer" {
		t.Errorf("assumed role: %+v", ar)
	}
	if evs["list-keys-root"].UserIdentity.Type != "Root" || evs["list-keys-root"].RequestParameters != nil {
		t.Errorf("root: %+v", evs["list-keys-root"])
	}
	if u := evs["unparsable-body"]; u.RequestParameters != nil {
		t.Errorf("unparsable: %v", u.RequestParameters)
	}
	if v := evs["validation-exception-decrypt"]; !strings.Contains(v.ErrorMessage, Hidden) || v.ErrorCode != "ValidationException" {
		t.Errorf("validation message not scrubbed: %s", v.ErrorMessage)
	}
	if c := evs["cloudhsm-create-cluster"]; c.EventSource != "cloudhsm.amazonaws.com" ||
		c.ResponseElements.(map[string]any)["cluster"].(map[string]any)["preCoPassword"] != Hidden || c.Resources != nil {
		t.Errorf("cloudhsm: %+v", c)
	}
}

// TestModelsMatchAPI fails when the audit package's model copies drift from
// the models the API packages serve.
func TestModelsMatchAPI(t *testing.T) {
	for copyName, orig := range map[string]string{
		"models/kms.json":        "../api/kmsapi/kms-model.json",
		"models/cloudhsmv2.json": "../api/hsmapi/cloudhsmv2.json",
	} {
		a, err := modelFS.ReadFile(copyName)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(orig)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("internal/audit/%s differs from %s: cp %s %s", copyName, orig, filepath.Join("internal/audit", orig), filepath.Join("internal/audit", copyName))
		}
	}
}

// TestEveryOperationRenders walks every operation of both models with an
// empty body and a body of wrong types: nothing panics.
func TestEveryOperationRenders(t *testing.T) {
	e := newTestEncoder(t)
	for prefix, src := range e.sources {
		for op := range src.ops {
			for _, body := range []string{`{}`, `[]`, `null`, `{"KeyId":{"x":1},"Plaintext":1,"Tags":"x"}`} {
				r := &Record{TargetPrefix: prefix, Operation: op, Request: []byte(body), Response: []byte(body), Caller: alice()}
				if _, err := e.Marshal(r); err != nil {
					t.Errorf("%s.%s %s: %v", prefix, op, body, err)
				}
			}
		}
	}
}
