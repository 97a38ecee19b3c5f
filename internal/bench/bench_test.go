package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/sigv4"
)

const (
	testAK = "AKIABENCHTEST"
	testSK = "bench-secret-key"
)

// fakeKMS verifies SigV4 on every request and fakes just enough of KMS and
// of an XKS proxy for the bench; it counts calls per operation.
type fakeKMS struct {
	mu       sync.Mutex
	calls    map[string]int
	bodies   map[string]map[string]any // last body per operation
	failOn   string                    // operation answered with 400
	keysSeen map[string]int            // DescribeKey calls per key id
}

func (f *fakeKMS) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeKMS) last(op string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies[op]
}

func (f *fakeKMS) handler(t *testing.T, service string) http.Handler {
	v := &sigv4.Verifier{Lookup: func(_ context.Context, ak string) (string, error) {
		if ak != testAK {
			return "", sigv4.ErrUnknownAccessKey
		}
		return testSK, nil
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, err := v.Verify(r.Context(), r, body, sigv4.Scope{Region: "us-east-1", Service: service}); err != nil {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `{"__type":"InvalidSignatureException","message":%q}`, err.Error())
			return
		}
		op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
		if service == "kms-xks-proxy" {
			op = "xks:" + r.URL.Path
		}
		var in map[string]any
		if err := json.Unmarshal(body, &in); err != nil {
			http.Error(w, `{"__type":"SerializationException"}`, 400)
			return
		}
		f.mu.Lock()
		f.calls[op]++
		f.bodies[op] = in
		f.mu.Unlock()
		if op == f.failOn {
			w.WriteHeader(400)
			io.WriteString(w, `{"__type":"NotFoundException","message":"Key 'bad' does not exist"}`)
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		switch op {
		case "CreateKey":
			io.WriteString(w, `{"KeyMetadata":{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab"}}`)
		case "Encrypt":
			pt, _ := base64.StdEncoding.DecodeString(in["Plaintext"].(string))
			fmt.Fprintf(w, `{"CiphertextBlob":%q,"KeyId":"k"}`, base64.StdEncoding.EncodeToString(append([]byte("ct:"), pt...)))
		case "Decrypt":
			ct, _ := base64.StdEncoding.DecodeString(in["CiphertextBlob"].(string))
			if !bytes.HasPrefix(ct, []byte("ct:")) {
				http.Error(w, `{"__type":"InvalidCiphertextException"}`, 400)
				return
			}
			fmt.Fprintf(w, `{"Plaintext":%q,"KeyId":"k"}`, base64.StdEncoding.EncodeToString(ct[3:]))
		case "GenerateDataKey":
			io.WriteString(w, `{"Plaintext":"AAAA","CiphertextBlob":"AAAA","KeyId":"k"}`)
		case "ListKeys":
			// Two pages: k1, k2, then k3.
			if in["Marker"] == "page2" {
				io.WriteString(w, `{"Keys":[{"KeyId":"k3"}],"Truncated":false}`)
				return
			}
			io.WriteString(w, `{"Keys":[{"KeyId":"k1"},{"KeyId":"k2"}],"NextMarker":"page2","Truncated":true}`)
		case "DescribeKey":
			f.mu.Lock()
			f.keysSeen[in["KeyId"].(string)]++
			f.mu.Unlock()
			fmt.Fprintf(w, `{"KeyMetadata":{"KeyId":%q}}`, in["KeyId"])
		default:
			if strings.HasSuffix(op, "/encrypt") {
				io.WriteString(w, `{"ciphertext":"AAAA","initializationVector":"AAAAAAAAAAAAAAAA","authenticationTag":"AAAAAAAAAAAAAAAAAAAAAA=="}`)
				return
			}
			http.Error(w, `{"__type":"UnknownOperationException"}`, 400)
		}
	})
}

func newFake(t *testing.T, service string, tlsServer bool) (*fakeKMS, *httptest.Server) {
	t.Helper()
	f := &fakeKMS{calls: map[string]int{}, bodies: map[string]map[string]any{}, keysSeen: map[string]int{}}
	var srv *httptest.Server
	if tlsServer {
		srv = httptest.NewUnstartedServer(f.handler(t, service))
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted-CA case logs each failed handshake
		srv.StartTLS()
	} else {
		srv = httptest.NewServer(f.handler(t, service))
	}
	t.Cleanup(srv.Close)
	return f, srv
}

func writeCreds(t *testing.T, profile, ak, sk string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "credentials")
	content := fmt.Sprintf("[other]\naws_access_key_id = NOPE\naws_secret_access_key = nope\n\n# keyhold\n[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", profile, ak, sk)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runJSON(t *testing.T, args ...string) (Report, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := Command(context.Background(), append(args, "--json"), &out, &errOut); err != nil {
		t.Fatalf("Command: %v (stderr: %s)", err, errOut.String())
	}
	var rep Report
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("decoding JSON output: %v", err)
	}
	return rep, errOut.String()
}

func TestOps(t *testing.T) {
	cases := []struct {
		name, op  string
		keyID     string
		wantCalls map[string]int // exact counts; -1 = at least one
		check     func(t *testing.T, f *fakeKMS)
	}{
		{name: "encrypt creates a key", op: "encrypt", wantCalls: map[string]int{"CreateKey": 1, "Encrypt": -1},
			check: func(t *testing.T, f *fakeKMS) {
				in := f.last("Encrypt")
				pt, _ := base64.StdEncoding.DecodeString(in["Plaintext"].(string))
				if in["KeyId"] != "1234abcd-12ab-34cd-56ef-1234567890ab" || len(pt) != 48 {
					t.Errorf("Encrypt body = %v (plaintext %d bytes)", in, len(pt))
				}
			}},
		{name: "encrypt with key id", op: "encrypt", keyID: "alias/given", wantCalls: map[string]int{"CreateKey": 0, "Encrypt": -1}},
		{name: "decrypt encrypts once", op: "decrypt", keyID: "alias/given", wantCalls: map[string]int{"Encrypt": 1, "Decrypt": -1}},
		{name: "generate-data-key", op: "generate-data-key", wantCalls: map[string]int{"CreateKey": 1, "GenerateDataKey": -1},
			check: func(t *testing.T, f *fakeKMS) {
				if n := f.last("GenerateDataKey")["NumberOfBytes"]; n != float64(48) {
					t.Errorf("NumberOfBytes = %v", n)
				}
			}},
		{name: "create-key", op: "create-key", wantCalls: map[string]int{"CreateKey": -1, "Encrypt": 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFake(t, "kms", false)
			args := []string{"--endpoint", srv.URL, "--op", tc.op, "--concurrency", "4", "--duration", "200ms", "--size", "48",
				"--credentials-file", writeCreds(t, "keyhold", testAK, testSK), "--profile", "keyhold"}
			if tc.keyID != "" {
				args = append(args, "--key-id", tc.keyID)
			}
			rep, stderr := runJSON(t, args...)
			if rep.Errors != 0 || stderr != "" {
				t.Fatalf("errors = %d, stderr = %q", rep.Errors, stderr)
			}
			if rep.Requests == 0 || rep.RequestsPerSecond <= 0 {
				t.Fatalf("no load: %+v", rep)
			}
			for op, want := range tc.wantCalls {
				got := f.count(op)
				if want == -1 && got == 0 || want >= 0 && got != want {
					t.Errorf("%s calls = %d, want %d", op, got, want)
				}
			}
			// Every request the bench counted reached the server.
			loadOp := map[string]string{"encrypt": "Encrypt", "decrypt": "Decrypt", "generate-data-key": "GenerateDataKey", "create-key": "CreateKey"}[tc.op]
			// (Setup calls are never of the load operation: CreateKey only
			// precedes other operations, the decrypt setup is an Encrypt.)
			if got := f.count(loadOp); uint64(got) != rep.Requests {
				t.Errorf("server saw %d %s, report says %d", got, loadOp, rep.Requests)
			}
			if tc.check != nil {
				tc.check(t, f)
			}
			if rep.Op != tc.op || rep.Concurrency != 4 || rep.Size != 48 || rep.Endpoint != srv.URL {
				t.Errorf("report header = %+v", rep)
			}
			l := rep.LatencyMS
			if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
				t.Errorf("latencies not ordered: %+v", l)
			}
			if rep.DurationSeconds < 0.2 || rep.DurationSeconds > 5 {
				t.Errorf("duration = %v", rep.DurationSeconds)
			}
		})
	}
}

func TestXKSEncryptOverTLS(t *testing.T) {
	f, srv := newFake(t, "kms-xks-proxy", true)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", testAK)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSK)
	prefix := srv.URL + "/example/kms/xks/v1"
	rep, stderr := runJSON(t, "--endpoint", prefix, "--op", "xks-encrypt", "--key-id", "ext-key-1",
		"--concurrency", "2", "--duration", "200ms", "--ca-file", caFile)
	if rep.Errors != 0 || rep.Requests == 0 || stderr != "" {
		t.Fatalf("report %+v, stderr %q", rep, stderr)
	}
	op := "xks:/example/kms/xks/v1/keys/ext-key-1/encrypt"
	if got := f.count(op); uint64(got) != rep.Requests {
		t.Errorf("proxy saw %d encrypts, report says %d", got, rep.Requests)
	}
	in := f.last(op)
	md, _ := in["requestMetadata"].(map[string]any)
	if md["kmsOperation"] != "Encrypt" || md["kmsRequestId"] == "" || md["kmsKeyArn"] == nil || md["awsPrincipalArn"] == nil ||
		in["encryptionAlgorithm"] != "AES_GCM" || in["plaintext"] == nil || in["ciphertextDataIntegrityValueAlgorithm"] != "SHA_256" {
		t.Errorf("XKS body = %v", in)
	}

	// Without the CA the TLS handshake fails and the setup-free load reports errors.
	var out, errOut bytes.Buffer
	err := Command(context.Background(), []string{"--endpoint", prefix, "--op", "xks-encrypt", "--key-id", "ext-key-1",
		"--concurrency", "1", "--duration", "100ms", "--json"}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	var rep2 Report
	if err := json.Unmarshal(out.Bytes(), &rep2); err != nil {
		t.Fatal(err)
	}
	if rep2.Errors == 0 || rep2.Errors != rep2.Requests || !strings.Contains(errOut.String(), "certificate") {
		t.Errorf("untrusted TLS: report %+v, stderr %q", rep2, errOut.String())
	}
}

func TestErrorsCountedAndPrintedOnce(t *testing.T) {
	f, srv := newFake(t, "kms", false)
	f.failOn = "Encrypt"
	t.Setenv("AWS_ACCESS_KEY_ID", testAK)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSK)
	rep, stderr := runJSON(t, "--endpoint", srv.URL, "--key-id", "bad", "--concurrency", "3", "--duration", "150ms")
	if rep.Requests == 0 || rep.Errors != rep.Requests {
		t.Fatalf("requests %d, errors %d", rep.Requests, rep.Errors)
	}
	if strings.Count(stderr, "first error") != 1 || !strings.Contains(stderr, "NotFoundException") {
		t.Errorf("stderr = %q", stderr)
	}
	if !strings.Contains(rep.FirstError, "HTTP 400") {
		t.Errorf("first_error = %q", rep.FirstError)
	}
}

func TestWrongCredentialsAreErrors(t *testing.T) {
	_, srv := newFake(t, "kms", false)
	var out, errOut bytes.Buffer
	t.Setenv("AWS_ACCESS_KEY_ID", testAK)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
	err := Command(context.Background(), []string{"--endpoint", srv.URL, "--duration", "100ms"}, &out, &errOut)
	// The setup CreateKey fails with the server's signature error.
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "InvalidSignatureException") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error()+errOut.String(), "wrong-secret-value") {
		t.Errorf("the secret is echoed: %v", err)
	}
}

func TestFlagErrors(t *testing.T) {
	creds := writeCreds(t, "default", testAK, testSK)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no endpoint", nil, "--endpoint is required"},
		{"remote ip", []string{"--endpoint", "http://10.1.2.3:8080"}, "--allow-remote"},
		{"remote name", []string{"--endpoint", "https://kms.us-east-1.amazonaws.com"}, "--allow-remote"},
		{"bad scheme", []string{"--endpoint", "ftp://127.0.0.1/"}, "http:// or https://"},
		{"unknown op", []string{"--endpoint", "http://127.0.0.1:1", "--op", "rotate"}, "unknown --op"},
		{"xks needs key", []string{"--endpoint", "https://127.0.0.1:1/kms/xks/v1", "--op", "xks-encrypt"}, "--key-id"},
		{"size too big", []string{"--endpoint", "http://127.0.0.1:1", "--size", "5000"}, "--size"},
		{"zero concurrency", []string{"--endpoint", "http://127.0.0.1:1", "--concurrency", "0"}, "--concurrency"},
		{"missing profile", []string{"--endpoint", "http://127.0.0.1:1", "--profile", "nope"}, "no profile [nope]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := Command(context.Background(), append(tc.args, "--credentials-file", creds), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("stdout = %q", out.String())
			}
		})
	}
}

func TestAllowRemoteAndLocalNames(t *testing.T) {
	for _, h := range []string{"127.0.0.1", "127.9.9.9", "::1", "localhost", "LOCALHOST"} {
		if !isLocal(h) {
			t.Errorf("isLocal(%q) = false", h)
		}
	}
	for _, h := range []string{"10.0.0.1", "example.com", "localhost.example.com", "0.0.0.0", ""} {
		if isLocal(h) {
			t.Errorf("isLocal(%q) = true", h)
		}
	}
	// With --allow-remote a non-loopback endpoint passes the flag check (and
	// then fails to connect quickly: TEST-NET-1 is unroutable, so use a
	// cancelled context instead of waiting).
	cfg, err := parseFlags([]string{"--endpoint", "http://192.0.2.1:1", "--allow-remote"}, io.Discard)
	if err != nil || !cfg.allowRemote {
		t.Fatalf("cfg=%+v err=%v", cfg, err)
	}
}

func TestTextOutput(t *testing.T) {
	_, srv := newFake(t, "kms", false)
	t.Setenv("AWS_ACCESS_KEY_ID", testAK)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSK)
	var out, errOut bytes.Buffer
	if err := Command(context.Background(), []string{"--endpoint", srv.URL, "--key-id", "k", "--concurrency", "2", "--duration", "100ms"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"op:           encrypt", "endpoint:     " + srv.URL, "concurrency:  2", "requests:", "errors:       0", "requests/s:", "latency (ms): p50 "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), testSK) {
		t.Error("text output shows the secret")
	}
}

func TestInterrupted(t *testing.T) {
	f, srv := newFake(t, "kms", false)
	t.Setenv("AWS_ACCESS_KEY_ID", testAK)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSK)
	// Interrupt once the server has seen 40 requests: with 16 workers each
	// sending its next request only after its last one was answered, at
	// least 24 were complete by then, however slow the machine is.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var canceledAt atomic.Int64
	go func() {
		for ctx.Err() == nil {
			f.mu.Lock()
			n := f.calls["Encrypt"]
			f.mu.Unlock()
			if n >= 40 {
				canceledAt.Store(time.Now().UnixNano())
				cancel(context.DeadlineExceeded)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var out bytes.Buffer
	err := Command(ctx, []string{"--endpoint", srv.URL, "--key-id", "k", "--concurrency", "16", "--duration", "1m", "--json"}, &out, io.Discard)
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("no partial report: %v (%q)", err, out.String())
	}
	if !rep.Interrupted || rep.Requests == 0 || rep.Errors != 0 {
		t.Errorf("partial report = %+v", rep)
	}
	if time.Since(time.Unix(0, canceledAt.Load())) > 10*time.Second {
		t.Fatal("did not stop when the context ended")
	}
}

func TestCredentialsResolution(t *testing.T) {
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared")
	os.WriteFile(shared, []byte("[default]\naws_access_key_id=FROMSHARED\naws_secret_access_key=shared-secret-1\n[profile p2]\naws_access_key_id = P2\naws_secret_access_key = shared-secret-2\naws_session_token = tok\n"), 0o600)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		name, file, profile string
		env                 map[string]string
		wantAK, wantTok     string
		wantErr             string
	}{
		{name: "file wins over env", file: shared, profile: "default", env: map[string]string{"AWS_ACCESS_KEY_ID": "ENV", "AWS_SECRET_ACCESS_KEY": "env-secret-value"}, wantAK: "FROMSHARED"},
		{name: "env", profile: "default", env: map[string]string{"AWS_ACCESS_KEY_ID": "ENV", "AWS_SECRET_ACCESS_KEY": "env-secret-value", "AWS_SHARED_CREDENTIALS_FILE": shared}, wantAK: "ENV"},
		{name: "shared file fallback", profile: "p2", env: map[string]string{"AWS_SHARED_CREDENTIALS_FILE": shared}, wantAK: "P2", wantTok: "tok"},
		{name: "nothing", profile: "default", env: map[string]string{"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "absent")}, wantErr: "no credentials"},
		{name: "incomplete profile", file: writeCreds(t, "half", "AK", ""), profile: "half", wantErr: "required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadCredentials(tc.file, tc.profile, env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || c.accessKeyID != tc.wantAK || c.sessionToken != tc.wantTok {
				t.Fatalf("creds = %v (token %q), err = %v", c, c.sessionToken, err)
			}
			if s := fmt.Sprintf("%v %+v", c, c); strings.Contains(s, c.secretAccessKey) {
				t.Errorf("credentials print their secret: %s", s)
			}
		})
	}
}

func TestRandomKeys(t *testing.T) {
	f, srv := newFake(t, "kms", false)
	t.Setenv("AWS_ACCESS_KEY_ID", testAK)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSK)
	rep, _ := runJSON(t, "--endpoint", srv.URL, "--op", "describe-key", "--random-keys", "--concurrency", "2", "--duration", "300ms")
	if rep.Errors != 0 || rep.Requests == 0 || rep.KeyID != "random of 3" {
		t.Fatalf("report = %+v", rep)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls["ListKeys"] != 2 || f.calls["CreateKey"] != 0 {
		t.Errorf("calls = %v, want two ListKeys pages and no CreateKey", f.calls)
	}
	total := 0
	for k, n := range f.keysSeen {
		if k != "k1" && k != "k2" && k != "k3" {
			t.Errorf("DescribeKey of %q, not a listed key", k)
		}
		total += n
	}
	if len(f.keysSeen) < 2 && total > 20 {
		t.Errorf("requests went to %v: not spread over the keys", f.keysSeen)
	}
	if _, err := parseFlags([]string{"--endpoint", srv.URL, "--op", "decrypt", "--random-keys"}, io.Discard); err == nil {
		t.Error("--random-keys accepted with decrypt")
	}
}

// --every-key with --requests equal to the number of keys sends exactly one
// request to each listed key.
func TestEveryKeyRequests(t *testing.T) {
	f, srv := newFake(t, "kms", false)
	t.Setenv("AWS_ACCESS_KEY_ID", testAK)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSK)
	rep, _ := runJSON(t, "--endpoint", srv.URL, "--op", "describe-key", "--every-key", "--requests", "3", "--concurrency", "2", "--duration", "1m")
	if rep.Errors != 0 || rep.Requests != 3 || rep.KeysListed != 3 || rep.KeyID != "each of 3 in turn" {
		t.Fatalf("report = %+v", rep)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.keysSeen) != 3 || f.keysSeen["k1"] != 1 || f.keysSeen["k2"] != 1 || f.keysSeen["k3"] != 1 {
		t.Errorf("DescribeKey calls per key = %v, want one each of k1, k2, k3", f.keysSeen)
	}
	if _, err := parseFlags([]string{"--endpoint", srv.URL, "--op", "describe-key", "--every-key", "--random-keys"}, io.Discard); err == nil {
		t.Error("--every-key accepted with --random-keys")
	}
}
