package integration

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/keyhold/keyhold/internal/api/kmsapi"
	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/rootkey"
	"github.com/keyhold/keyhold/internal/server"
	"github.com/keyhold/keyhold/internal/store/sqlite"
)

// TestAuditFailureFailsClosed: when the audit trail refuses an event the
// client gets KMSInternalException instead of the answer; with
// FailOpenAudit the answer goes out.
func TestAuditFailureFailsClosed(t *testing.T) {
	oncePerSuite(t, "its server uses SQLite in every pass")
	dir := t.TempDir()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	in, err := cli.Open(ctx, cli.ServeConfig{DataDir: dir, Region: "us-east-1", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	db, err := sqlite.Open(ctx, filepath.Join(dir, "keyhold.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	root, err := rootkey.LoadOrCreateFile(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	table, err := kmsapi.New(in.Service)
	if err != nil {
		t.Fatal(err)
	}
	var broken atomic.Bool
	hook := func(context.Context, server.AuditRecord) error {
		if broken.Load() {
			return errors.New("disk full")
		}
		return nil
	}
	for _, failOpen := range []bool{false, true} {
		h := hook
		if failOpen {
			h = cli.FailOpenAudit(hook, log)
		}
		srvHandler := server.New(server.Config{Region: "us-east-1", Directory: identity.New(db, root),
			Services: []*awsjson.Service{table}, Logger: log, Audit: h})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: srvHandler}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		e := &env{Endpoint: "http://" + ln.Addr().String()}
		e.AccessKey, e.Secret = readCredentials(t, filepath.Join(dir, "credentials"))
		c := e.client(t, e.AccessKey, e.Secret)
		broken.Store(false)
		if _, err := c.ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
			t.Fatal(err)
		}
		broken.Store(true)
		_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("unrecorded")})
		if failOpen {
			if err != nil {
				t.Fatalf("fail-open: %v", err)
			}
			continue
		}
		wantCode(t, err, "KMSInternalException")
	}
}
