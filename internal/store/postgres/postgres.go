// Package postgres is the Store for several keyhold replicas: one
// PostgreSQL database shared by every `keyhold serve`, reached through pgx.
// The queries are sqlstore's; this package owns the connections, the
// schema (embedded migrations, a version checked on open) and what only
// PostgreSQL offers the replicas: LISTEN/NOTIFY for cache invalidation and
// advisory locks for leader election.
//
// It never hides an unreachable database: such errors come back as
// store.ErrUnavailable, quickly, and the pool reconnects by itself.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/keyhold/keyhold/internal/store"
	"github.com/keyhold/keyhold/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations returns the embedded migrations in order; the schema version
// is their count.
func migrations() ([]string, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]string, len(names))
	for i, n := range names {
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out[i] = string(b)
	}
	return out, nil
}

// Lock ids of the advisory locks keyhold takes (pg_advisory_lock's bigint
// space is shared by every application of the database).
const (
	lockMigrate int64 = 0x6b6579686f6c6401 // "keyhold" 01
	lockTx      int64 = 0x6b6579686f6c6402
	// LockLeader is held by the replica that runs background work.
	LockLeader int64 = 0x6b6579686f6c6403
)

// dialect: READ COMMITTED transactions; rows read for a read-modify-write
// are locked, and Tx bodies serialise on a transaction-scoped advisory lock
// as they would on SQLite's write lock.
var dialect = sqlstore.Dialect{
	Name:     "postgres",
	Numbered: true,
	LockRow:  " FOR UPDATE",
	Classify: classify,
	BeginTx:  fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", lockTx),
}

// DB is the PostgreSQL Store.
type DB struct {
	*sqlstore.DB
	db   *sql.DB
	conn *pgx.ConnConfig
}

// Options tune Open; the zero value is fine.
type Options struct {
	// MaxConns bounds the pool (default 16).
	MaxConns int
	// StatementTimeout bounds every statement on the server (default 10s),
	// so that a request never waits on a stuck database for long.
	StatementTimeout time.Duration
	// ConnectTimeout bounds each connection attempt (default 3s).
	ConnectTimeout time.Duration
}

// Open connects to the database at url (postgres://...), migrates it and
// returns the Store. It refuses a database whose schema is newer than this
// binary knows. An unreachable database is an error wrapping
// store.ErrUnavailable (callers may retry).
func Open(ctx context.Context, url string, o Options) (*DB, error) {
	if o.MaxConns == 0 {
		o.MaxConns = 16
	}
	if o.StatementTimeout == 0 {
		o.StatementTimeout = 10 * time.Second
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 3 * time.Second
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, errors.New("postgres.Open: the database URL does not parse (postgres://user:password@host:port/database?options)")
	}
	cfg.ConnectTimeout = o.ConnectTimeout
	if _, ok := cfg.RuntimeParams["statement_timeout"]; !ok {
		cfg.RuntimeParams["statement_timeout"] = fmt.Sprint(o.StatementTimeout.Milliseconds())
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "keyhold"
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(o.MaxConns)
	db.SetMaxIdleConns(o.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	d := &DB{DB: sqlstore.New(db, dialect), db: db, conn: cfg}
	if err := d.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

func (d *DB) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("postgres.migrate: %w", err)
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("postgres.migrate: %w", unavailable(err))
	}
	defer tx.Rollback()
	// Replicas starting together migrate one at a time; DDL is
	// transactional, so a migration applies whole or not at all.
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", lockMigrate); err != nil {
		return fmt.Errorf("postgres.migrate: %w", unavailable(err))
	}
	if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS keyhold_schema (version INTEGER NOT NULL)"); err != nil {
		return fmt.Errorf("postgres.migrate: %w", unavailable(err))
	}
	var v int
	switch err := tx.QueryRowContext(ctx, "SELECT version FROM keyhold_schema").Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, "INSERT INTO keyhold_schema (version) VALUES (0)"); err != nil {
			return fmt.Errorf("postgres.migrate: %w", err)
		}
	case err != nil:
		return fmt.Errorf("postgres.migrate: %w", unavailable(err))
	}
	if v > len(ms) {
		return fmt.Errorf("postgres.migrate: database schema version %d is newer than this keyhold (%d)", v, len(ms))
	}
	for i := v; i < len(ms); i++ {
		if _, err := tx.ExecContext(ctx, ms[i]); err != nil {
			return fmt.Errorf("postgres.migrate to %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE keyhold_schema SET version = $1", len(ms)); err != nil {
		return fmt.Errorf("postgres.migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("postgres.migrate: %w", unavailable(err))
	}
	return nil
}

// SchemaVersion reports the applied schema version.
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := d.db.QueryRowContext(ctx, "SELECT version FROM keyhold_schema").Scan(&v)
	return v, err
}

// Ping reports whether the database answers (for /healthz).
func (d *DB) Ping(ctx context.Context) error {
	if err := d.db.PingContext(ctx); err != nil {
		return fmt.Errorf("postgres.Ping: %w", unavailable(err))
	}
	return nil
}

// ConnConfig is a copy of the parsed connection settings, for the
// dedicated connections LISTEN and the leader lock need.
func (d *DB) ConnConfig() *pgx.ConnConfig { return d.conn.Copy() }

// classify maps PostgreSQL's errors to the store's: unique violations by
// constraint name, and a database that cannot be reached.
func classify(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			switch pe.ConstraintName {
			case "keys_xks_key":
				return store.ErrExternalKeyInUse
			case "custom_key_stores_backup_history":
				return store.ErrBackupHistoryInUse
			}
			return store.ErrExists
		case "57014", // statement timeout
			"57P01", "57P02", "57P03", // admin shutdown, crash shutdown, cannot connect now
			"08000", "08003", "08006", "08001", "08004":
			return store.ErrUnavailable
		}
		return nil
	}
	if isConnError(err) {
		return store.ErrUnavailable
	}
	return nil
}

// isConnError tells a lost or refused connection from a query's error.
func isConnError(err error) bool {
	var ne net.Error
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, driver.ErrBadConn)
}

func unavailable(err error) error {
	if err != nil && classify(err) == store.ErrUnavailable {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	return err
}

// Describe names the database for logs: host, port, database and user,
// never the password.
func (d *DB) Describe() string {
	return fmt.Sprintf("%s@%s:%d/%s", d.conn.User, d.conn.Host, d.conn.Port, d.conn.Database)
}
