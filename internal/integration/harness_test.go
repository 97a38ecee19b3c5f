// Package integration drives a real keyhold (in-process, on 127.0.0.1:0)
// with aws-sdk-go-v2, so that SigV4, the JSON protocol and error shapes are
// exercised by a client nobody here wrote.
package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/keyhold/keyhold/internal/cli"
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
	in, err := cli.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: in.Handler}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		in.Close()
	})
	e := &env{Endpoint: "http://" + ln.Addr().String(), Account: in.AccountID, Instance: in}
	e.AccessKey, e.Secret = readCredentials(t, filepath.Join(dir, "credentials"))
	e.KMS = e.client(t, e.AccessKey, e.Secret)
	return e
}

func readCredentials(t *testing.T, path string) (string, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file mode %v, want 0600", st.Mode().Perm())
	}
	var ak, sk string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			ak = strings.TrimSpace(v)
		case "aws_secret_access_key":
			sk = strings.TrimSpace(v)
		}
	}
	if ak == "" || sk == "" {
		t.Fatal("credentials file lacks a key pair")
	}
	return ak, sk
}

func (e *env) client(t *testing.T, ak, sk string, opts ...func(*kms.Options)) *kms.Client {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, sk, "")),
		config.WithRetryMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	return kms.NewFromConfig(cfg, append([]func(*kms.Options){func(o *kms.Options) { o.BaseEndpoint = aws.String(e.Endpoint) }}, opts...)...)
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
