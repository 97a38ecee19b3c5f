package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// TestOpenDatabaseRetries: an unreachable PostgreSQL at start is logged
// clearly and retried until the context ends; the URL's password never
// shows.
func TestOpenDatabaseRetries(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := OpenDatabase(ctx, "postgres://keyhold:hunter2@127.0.0.1:1/keyhold?sslmode=disable", t.TempDir(), 200*time.Millisecond, log)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("OpenDatabase = %v, want ErrUnavailable after giving up", err)
	}
	if n := strings.Count(logs.String(), "database unreachable; retrying"); n < 3 {
		t.Fatalf("%d retries logged in 1.5s at 200ms:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String()+err.Error(), "hunter2") {
		t.Fatal("the password shows in the log or error")
	}
}
