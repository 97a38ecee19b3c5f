package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/keyhold/keyhold/internal/identity"
	"github.com/keyhold/keyhold/internal/rootkey"
	"github.com/keyhold/keyhold/internal/store"
	"github.com/keyhold/keyhold/internal/store/postgres"
	"github.com/keyhold/keyhold/internal/store/sqlite"
)

// DatabaseURLEnv selects PostgreSQL for every command that opens the store
// when --database-url is not given.
const DatabaseURLEnv = "KEYHOLD_DATABASE_URL"

// Database is an open store and what the server asks of it besides
// store.Store.
type Database struct {
	store.Store
	// PG is the PostgreSQL store (nil for SQLite): replicas share it.
	PG *postgres.DB
}

// Ping reports whether the database answers (SQLite always does).
func (d *Database) Ping(ctx context.Context) error {
	if d.PG == nil {
		return nil
	}
	return d.PG.Ping(ctx)
}

// OpenDatabase opens PostgreSQL at url, or the data directory's SQLite
// database when url is "". While PostgreSQL is unreachable it logs a clear
// error and retries every retry interval until ctx ends (retry 0: fail at
// once); any other error (a bad URL, a rejected password, a newer schema)
// is returned at once.
func OpenDatabase(ctx context.Context, url, dataDir string, retry time.Duration, log *slog.Logger) (*Database, error) {
	if url == "" {
		db, err := sqlite.Open(ctx, filepath.Join(dataDir, DatabaseFile))
		if err != nil {
			return nil, err
		}
		return &Database{Store: db}, nil
	}
	for {
		db, err := postgres.Open(ctx, url, postgres.Options{})
		if err == nil {
			return &Database{Store: db, PG: db}, nil
		}
		if !errors.Is(err, store.ErrUnavailable) || retry <= 0 {
			return nil, fmt.Errorf("database: %w", err)
		}
		if log != nil {
			log.Error("database unreachable; retrying", "retry_in", retry.String(), "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("database: %w (gave up: %v)", err, ctx.Err())
		case <-time.After(retry):
		}
	}
}

// databaseURLFromEnv is the URL owner commands (hsm, vpce) use: they have no
// --database-url of their own and follow the server's environment.
func databaseURLFromEnv() string { return os.Getenv(DatabaseURLEnv) }

// loadRootKey opens the root key. On a shared database the key must exist
// already (created once and copied to every replica, see the README): a
// replica that created its own would seal secrets no other replica opens.
func loadRootKey(path string, shared bool) (*rootkey.Key, error) {
	if shared {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("root key %s: %w (replicas on PostgreSQL share one root key: create 32 random bytes once, e.g. `(umask 077; head -c 32 /dev/urandom > %s)`, and give every replica the same file)", path, err, path)
		}
	}
	return rootkey.LoadOrCreateFile(path)
}

// checkRootKey refuses a root key that does not open the database's
// secrets: the admin's sealed access key secret is the witness.
func checkRootKey(ctx context.Context, dir *identity.Directory, account string) error {
	if err := dir.CheckRootKey(ctx, account); err != nil {
		return fmt.Errorf("root key: %w", err)
	}
	return nil
}

func (in *Instance) databaseName() string {
	if in.Database == nil || in.Database.PG == nil {
		return "sqlite " + filepath.Join(in.Config.DataDir, DatabaseFile)
	}
	return "postgres " + in.Database.PG.Describe()
}

// followReplicas (PostgreSQL only) listens for the changes other replicas
// commit and drops what this replica cached about them, so that a write
// acknowledged anywhere is what every replica serves next; it returns once
// the listener is in place.
func (in *Instance) followReplicas(dir *identity.Directory) error {
	pg := in.Database.PG
	if pg == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(done)
		pg.Listen(ctx, in.Config.Logger, func(c postgres.Change) {
			in.Service.Invalidate(c.Table, c.A, c.B)
			dir.Invalidate(c.Table, c.A, c.B)
		}, func() {
			in.Service.ForgetCaches()
			dir.ForgetAll()
		}, ready)
	}()
	in.closers = append(in.closers, func() { cancel(); <-done })
	select {
	case <-ready:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("database: LISTEN keyhold_changes did not start within 10s")
	}
}

// RunBackground runs the key lifecycle jobs (key deletion when due,
// rotation) until ctx ends, on the leader only (see startLeading).
func (in *Instance) RunBackground(ctx context.Context, deletionInterval time.Duration) {
	in.leader.add(ctx, func(ctx context.Context) { in.Service.RunDeletion(ctx, deletionInterval) })
	<-ctx.Done()
}

// startLeading runs the leader's jobs while this process leads: always on
// SQLite (one process per data directory); on PostgreSQL while this
// replica holds the leader advisory lock (when it dies, PostgreSQL ends
// its session and another replica takes over within a second). The jobs:
// custom key store connect workers and health checks (kms.RunLeader), HSM
// housekeeping (backups), and RunBackground's key lifecycle jobs.
func (in *Instance) startLeading() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	in.leader.add(ctx, in.Service.RunLeader)
	go func() {
		defer close(done)
		if in.Database == nil || in.Database.PG == nil {
			in.leader.lead(ctx)
			return
		}
		in.Database.PG.Lead(ctx, time.Second, in.Config.Logger, in.leader.lead)
	}()
	in.closers = append(in.closers, func() { cancel(); <-done })
}
