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
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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

	local   *cli.Local
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
	l, err := cli.StartLocal(ctx, cli.ServeConfig{DataDir: o.DataDir, Region: o.Region, AccountID: o.AccountID, SeedFile: o.SeedFile,
		Logger: o.Logger, Extra: cli.CloudHSMExtra(hsm.Config{Dir: filepath.Join(o.DataDir, "hsm"), Region: o.Region, Logger: o.Logger})})
	if err != nil {
		s.removeTemp()
		return nil, err
	}
	s.local, s.AccountID, s.Endpoint = l, l.AccountID, l.Endpoint
	cred, err := l.AdminCredential()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("keyholdtest: %w", err)
	}
	s.AccessKeyID, s.SecretAccessKey = cred.AccessKeyID, cred.SecretAccessKey
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
	if s.local != nil {
		s.local.Close()
		s.local = nil
	}
	s.removeTemp()
}

func (s *Server) removeTemp() {
	if s.tempDir != "" {
		os.RemoveAll(s.tempDir)
		s.tempDir = ""
	}
}
