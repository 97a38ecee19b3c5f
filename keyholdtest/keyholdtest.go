// Package keyholdtest starts an in-process keyhold for tests of code that
// uses AWS KMS: a real server (SigV4, the JSON protocol, AWS's error
// shapes) on 127.0.0.1:0 with a fresh data directory, and an aws-sdk-go-v2
// configuration pointing at it.
//
//	func TestEnvelope(t *testing.T) {
//		srv := keyholdtest.New(t)
//		client := kms.NewFromConfig(srv.Config)
//		key, err := client.CreateKey(ctx, &kms.CreateKeyInput{})
//		...
//	}
//
// The server and its data directory go away when the test ends. It never
// listens on anything but loopback.
package keyholdtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/hsm"
)

// Options tune Start. The zero value is a server in us-east-1 with a
// random account id.
type Options struct {
	// Region is the region the server answers for (default us-east-1).
	Region string
	// AccountID fixes the account id (12 digits).
	AccountID string
	// SeedFile is applied at start (see the README's seed file section).
	SeedFile string
	// DataDir is where state goes; "" uses a temporary directory removed
	// by Close.
	DataDir string
	// Logger receives the server's logs (default: discarded).
	Logger *slog.Logger
}

// Server is a running in-process keyhold.
type Server struct {
	// Endpoint is the base URL, http://127.0.0.1:PORT.
	Endpoint string
	// AccountID is the account of the admin credential.
	AccountID string
	// Region is the region the server answers for.
	Region string
	// AccessKeyID and SecretAccessKey are the admin's credential.
	AccessKeyID, SecretAccessKey string
	// Config is an aws-sdk-go-v2 configuration for Endpoint with the
	// admin's credential: kms.NewFromConfig(srv.Config).
	Config aws.Config
	// DataDir is the server's data directory.
	DataDir string

	srv     *http.Server
	in      *cli.Instance
	tempDir string
}

// Option changes Options for New.
type Option func(*Options)

// WithAccountID fixes the account id.
func WithAccountID(id string) Option { return func(o *Options) { o.AccountID = id } }

// WithRegion sets the region.
func WithRegion(r string) Option { return func(o *Options) { o.Region = r } }

// WithSeedFile applies a seed file at start.
func WithSeedFile(path string) Option { return func(o *Options) { o.SeedFile = path } }

// New starts a server for the test and stops it in t.Cleanup; it fails
// the test if the server cannot start.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var o Options
	for _, f := range opts {
		f(&o)
	}
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	s, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("keyholdtest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start starts a server; Close stops it.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{Region: o.Region}
	if o.DataDir == "" {
		dir, err := os.MkdirTemp("", "keyholdtest-")
		if err != nil {
			return nil, err
		}
		o.DataDir, s.tempDir = dir, dir
	}
	s.DataDir = o.DataDir
	in, err := cli.Open(ctx, cli.ServeConfig{DataDir: o.DataDir, Region: o.Region, AccountID: o.AccountID, SeedFile: o.SeedFile,
		Logger: o.Logger, Extra: cli.CloudHSMExtra(hsm.Config{Dir: filepath.Join(o.DataDir, "hsm"), Region: o.Region, Logger: o.Logger})})
	if err != nil {
		s.removeTemp()
		return nil, err
	}
	s.in = in
	s.AccountID = in.AccountID
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.Close()
		return nil, err
	}
	s.srv = &http.Server{Handler: in.Handler}
	go s.srv.Serve(ln)
	s.Endpoint = "http://" + ln.Addr().String()
	s.AccessKeyID, s.SecretAccessKey, err = readCredentials(filepath.Join(o.DataDir, "credentials"))
	if err != nil {
		s.Close()
		return nil, err
	}
	s.Config, err = awsconfig.LoadDefaultConfig(ctx,
		awsconfig.WithRegion(o.Region),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, "")),
		awsconfig.WithBaseEndpoint(s.Endpoint),
		// A developer's shared config must not redirect the test client.
		awsconfig.WithSharedConfigFiles([]string{}),
		awsconfig.WithSharedCredentialsFiles([]string{}),
	)
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the server, waits for its resources to be released and
// removes a temporary data directory.
func (s *Server) Close() {
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
	if s.in != nil {
		s.in.Close()
		s.in = nil
	}
	s.removeTemp()
}

func (s *Server) removeTemp() {
	if s.tempDir != "" {
		os.RemoveAll(s.tempDir)
		s.tempDir = ""
	}
}

func readCredentials(path string) (ak, sk string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
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
		return "", "", fmt.Errorf("keyholdtest: no credential in %s", path)
	}
	return ak, sk, sc.Err()
}
