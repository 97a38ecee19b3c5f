package integration

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/keyhold/keyhold/internal/store/postgres/pgtest"
)

// TestDatabaseLost kills PostgreSQL under a running replica: requests that
// need the database fail quickly with DependencyTimeoutException (never
// hang), /healthz says not ready, and both recover by themselves once the
// database is back.
func TestDatabaseLost(t *testing.T) {
	t.Parallel()
	oncePerSuite(t, "its replica uses PostgreSQL in every pass")
	if _, err := pgtest.Bin(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	ctx := context.Background()
	// Durable: with synchronous_commit off a killed server loses the last
	// commits, and keyhold acknowledges only what PostgreSQL made durable.
	srv, err := pgtest.Start(ctx, pgtest.Options{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	url, err := srv.Database(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rootKey := filepath.Join(t.TempDir(), "root.key")
	if err := os.WriteFile(rootKey, make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	e := replica(t, url, rootKey, nil)
	if _, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{}); err != nil {
		t.Fatal(err)
	}
	healthy := func() int {
		resp, err := http.Get(e.Endpoint + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := healthy(); st != 200 {
		t.Fatalf("/healthz = %d with the database up", st)
	}

	srv.Kill()
	for i := 0; i < 3; i++ {
		// The client has no time limit and retries nothing: an answer at
		// all shows the server's own bound on the database call (a hang
		// would run into the test binary's deadline). How long it took is
		// logged, not asserted.
		start := time.Now()
		_, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
		took := time.Since(start)
		var ae smithy.APIError
		if !errors.As(err, &ae) || (ae.ErrorCode() != "DependencyTimeoutException" && ae.ErrorCode() != "KMSInternalException") {
			t.Fatalf("CreateKey with the database down: %v, want DependencyTimeoutException", err)
		}
		t.Logf("CreateKey with the database down: %s after %v", ae.ErrorCode(), took)
	}
	if st := healthy(); st == 200 {
		t.Fatal("/healthz ready with the database down")
	}

	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, "CreateKey to work again after the database returned", func() (bool, error) {
		_, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
		return err == nil, nil
	})
	t.Logf("recovered %v after the database returned", time.Since(start))
	if st := healthy(); st != 200 {
		t.Fatalf("/healthz = %d after recovery", st)
	}
}
