package xksstore

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/keystore/keystoretest"
	"github.com/keyhold/keyhold/internal/keystore/soft"
	"github.com/keyhold/keyhold/internal/rootkey"
	"github.com/keyhold/keyhold/internal/xks/xkstest"
)

// TestConformance runs the driver against the in-repo XKS proxy handler
// (internal/xks/proxy, what `keyhold xks-proxy` serves) over xkstest's
// in-memory AES backend, on HTTPS with SigV4.
func TestConformance(t *testing.T) {
	root, err := rootkey.LoadOrCreateFile(filepath.Join(t.TempDir(), "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	p := xkstest.New(t, xkstest.Options{})
	// No fault here is a slow proxy: calls may take as long as a busy
	// machine needs.
	d := New(Config{Region: "us-east-1", Inner: soft.New(root), RootCAs: p.RootCAs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		CallTimeout: time.Minute})
	st := keystore.Store{AccountID: "111122223333", ID: "cks-0123456789abcdef0", Name: "conformance", Type: keystore.TypeExternal,
		Config: keystore.Config{XksProxyUriEndpoint: p.Endpoint, XksProxyUriPath: p.Path, XksProxyConnectivity: PublicEndpoint,
			XksAccessKeyID: p.AccessKeyID},
		Secret: keystore.Secret{XksSecretAccessKey: p.SecretAccessKey}}
	keystoretest.RunDriver(t, keystoretest.Harness{
		Driver:   d,
		Store:    st,
		XksKeyID: p.KeyIDs[0],
		BadSecret: func(s *keystore.Store) string {
			s.Secret.XksSecretAccessKey = "not-the-secret-not-the-secret-xx"
			return "INVALID_CREDENTIALS"
		},
		Break:   func(*testing.T) { p.SetFault(xkstest.Refused) },
		Restore: func(*testing.T) { p.SetFault(xkstest.None) },
	})
}
