// Package integration drives a real keyhold (in-process, on 127.0.0.1:0)
// with aws-sdk-go-v2, so that SigV4, the JSON protocol and error shapes are
// exercised by a client nobody here wrote.
package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/credfile"
	"github.com/keyhold/keyhold/internal/store/postgres/pgtest"
)

// KEYHOLD_TEST_DATABASE=postgres runs every test's keyhold on PostgreSQL (a
// throwaway server per test binary, a fresh schema per data directory)
// instead of SQLite.
var onPostgres = os.Getenv("KEYHOLD_TEST_DATABASE") == "postgres"

var (
	dbMu    sync.Mutex
	dbByDir = map[string]string{}
)

// usePostgres points cfg at the data directory's PostgreSQL schema (the same
// one when a test restarts keyhold on the same directory), with the shared
// root key file the replicas' setup requires.
// owner commands the test runs.
func usePostgres(t *testing.T, cfg *cli.ServeConfig) {
	t.Helper()
	if !onPostgres {
		return
	}
	dbMu.Lock()
	url, ok := dbByDir[cfg.DataDir]
	dbMu.Unlock()
	if !ok {
		url = pgtest.URL(t)
		dbMu.Lock()
		dbByDir[cfg.DataDir] = url
		dbMu.Unlock()
		key := make([]byte, 32)
		rand.Read(key)
		if err := os.WriteFile(filepath.Join(cfg.DataDir, "root.key"), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg.DatabaseURL = url
}

// xksPatient is the XKS call limit of the tests' keyholds: a busy machine
// (or the race detector) can take longer than KMS's 250 ms for a TLS
// handshake with a proxy, which is not what the tests check. The test of
// a slow proxy sets KMS's limit; its fake never answers.
const xksPatient = time.Minute

// oncePerSuite skips t in the PostgreSQL pass (KEYHOLD_TEST_DATABASE=
// postgres) when running it there again would test nothing new: why says
// what makes it the same on both (its server is on PostgreSQL, or on
// SQLite, whatever the pass; it is about cryptography, not storage).
func oncePerSuite(t *testing.T, why string) {
	t.Helper()
	if onPostgres {
		t.Skip(why + "; it runs in the SQLite pass")
	}
}

type env struct {
	Endpoint  string
	AccessKey string
	Secret    string
	Account   string
	Instance  *cli.Instance
	KMS       *kms.Client
}

// start runs keyhold on a fresh data dir and returns a client for it.
func start(t *testing.T) *env {
	t.Helper()
	return startWith(t, t.TempDir(), nil)
}

func startWith(t *testing.T, dir string, extra func(*cli.ServeConfig)) *env {
	t.Helper()
	ctx := context.Background()
	cfg := cli.ServeConfig{DataDir: dir, Region: "us-east-1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		XKSCallTimeout: xksPatient}
	usePostgres(t, &cfg)
	if extra != nil {
		extra(&cfg)
	}
	l, err := cli.StartLocal(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	e := &env{Endpoint: l.Endpoint, Account: l.AccountID, Instance: l.Instance}
	e.AccessKey, e.Secret = readCredentials(t, filepath.Join(dir, "credentials"))
	e.KMS = e.client(t, e.AccessKey, e.Secret)
	return e
}

// readCredentials reads the admin's key pair from the credentials file a
// first start writes, which must be private to its owner.
func readCredentials(t *testing.T, path string) (string, string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file mode %v, want 0600", st.Mode().Perm())
	}
	p, err := credfile.Read(path, "default")
	if err != nil {
		t.Fatal(err)
	}
	return p.AccessKeyID, p.SecretAccessKey
}

func (e *env) client(t *testing.T, ak, sk string, opts ...func(*kms.Options)) *kms.Client {
	t.Helper()
	return kms.NewFromConfig(e.awsConfig(t, ak, sk, ""), append([]func(*kms.Options){func(o *kms.Options) { o.BaseEndpoint = aws.String(e.Endpoint) }}, opts...)...)
}

// awsConfig is the SDK configuration of the tests' clients: SDK retries
// off (a failed call fails the test), requests sent by sdkHTTPClient.
func (e *env) awsConfig(t *testing.T, ak, sk, token string) aws.Config {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, sk, token)), config.WithRetryMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTPClient = sdkHTTPClient(cfg.HTTPClient)
	return cfg
}

// sdkHTTPClient sends the SDK's requests through next (the SDK's default
// client when nil) with a copy of each request body that only net/http
// reads and closes.
//
// Why: aws-sdk-go-v2 (smithy-go's ClientHandler) closes a request's body as
// soon as http.Client.Do returns, that is as soon as the answer's headers
// are in, while net/http's writer goroutine may still hold that body: the
// bytes are on the wire, but it has yet to check that nothing follows the
// Content-Length (a copy of the rest to io.Discard). smithy-go's closed
// body answers that copy with io.EOF, which net/http takes for a write
// error: it closes the connection, and a caller still reading the 200's
// body gets "read tcp ...: use of closed network connection". It takes
// the writer goroutine losing its CPU right after its last write for as
// long as keyhold takes to answer, i.e. a saturated machine (2 in 10,000
// calls of TestSDKNoFailuresUnderLoad beside the rest of the suite). The
// SDK's default retries hide it from real clients; with retries off it
// would pass for keyhold's failure. TestSDKWriterAfterAnswer forces that
// schedule.
func sdkHTTPClient(next aws.HTTPClient) aws.HTTPClient {
	if next == nil {
		next = awshttp.NewBuildableClient()
	}
	return ownBody{next}
}

type ownBody struct{ next aws.HTTPClient }

func (c ownBody) Do(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return c.next.Do(r)
	}
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(b))
	return c.next.Do(r)
}

// wantErr asserts that err is the typed SDK exception T.
func wantErr[T error](t *testing.T, err error) T {
	t.Helper()
	var target T
	if !errors.As(err, &target) {
		t.Fatalf("got error %v (%T), want %T", err, err, target)
	}
	return target
}

// wantCode asserts an API error code (for exceptions the model leaves out,
// such as ValidationException).
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Fatalf("got error %v, want %s", err, code)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// softHSMInProcess is held by a test that loads SoftHSM2 into this process
// (an XKS proxy over its own token): proxy.Init and proxy.New point
// SOFTHSM2_CONF, which the library reads once per process, at their
// token. Tests that start HSM daemons or proxy processes need not hold it:
// those processes get their own SOFTHSM2_CONF.
var softHSMInProcess sync.Mutex

// useInProcessSoftHSM takes softHSMInProcess until the test ends, then
// puts SOFTHSM2_CONF back as it was (t.Setenv would forbid t.Parallel).
func useInProcessSoftHSM(t *testing.T) {
	t.Helper()
	softHSMInProcess.Lock()
	prev, had := os.LookupEnv("SOFTHSM2_CONF")
	t.Cleanup(func() {
		if had {
			os.Setenv("SOFTHSM2_CONF", prev)
		} else {
			os.Unsetenv("SOFTHSM2_CONF")
		}
		softHSMInProcess.Unlock()
	})
}

// testDeadline is the test binary's deadline (go test -timeout), when t
// knows it.
func testDeadline(t testing.TB) (time.Time, bool) {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		return d.Deadline()
	}
	return time.Time{}, false
}

// waitDeadline is when a wait for something that must happen gives up: a
// little before the test binary's deadline, so that the failure names what
// was awaited instead of the binary being killed. Waits are bounded by that
// alone: a busy machine makes HSM daemons, proxies and browsers slower,
// which is not what the tests check. Without a deadline (-timeout 0) it is
// ten minutes from now.
func waitDeadline(t testing.TB) time.Time {
	d, ok := testDeadline(t)
	if !ok {
		return time.Now().Add(10 * time.Minute)
	}
	margin := time.Until(d) / 10
	if margin > 30*time.Second {
		margin = 30 * time.Second
	}
	return d.Add(-margin)
}
