// Package sqlite is the embedded Store: one SQLite database in the data
// directory, WAL journal with synchronous=FULL so that a returned write
// survives kill -9, and migrations tracked by a schema version.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/keyhold/keyhold/internal/store"
)

// migrations are applied in order; the schema version is their count.
var migrations = []string{
	`CREATE TABLE accounts (id TEXT PRIMARY KEY, created INTEGER NOT NULL);
	 CREATE TABLE access_keys (id TEXT PRIMARY KEY, account_id TEXT NOT NULL, principal_arn TEXT NOT NULL,
	   sealed_secret BLOB NOT NULL, active INTEGER NOT NULL, created INTEGER NOT NULL);
	 CREATE TABLE keys (account_id TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL,
	   deletion_date INTEGER NOT NULL DEFAULT 0, custom_key_store_id TEXT NOT NULL DEFAULT '',
	   xks_key_id TEXT NOT NULL DEFAULT '', version INTEGER NOT NULL, data BLOB NOT NULL,
	   PRIMARY KEY (account_id, id));
	 CREATE INDEX keys_deletion ON keys (state, deletion_date);
	 CREATE INDEX keys_store ON keys (account_id, custom_key_store_id, xks_key_id);
	 CREATE TABLE aliases (account_id TEXT NOT NULL, name TEXT NOT NULL, key_id TEXT NOT NULL,
	   created INTEGER NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (account_id, name));
	 CREATE INDEX aliases_key ON aliases (account_id, key_id);
	 CREATE TABLE custom_key_stores (account_id TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,
	   version INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (account_id, id));
	 CREATE UNIQUE INDEX custom_key_stores_name ON custom_key_stores (account_id, name);`,
	`ALTER TABLE access_keys ADD COLUMN session_token_hash BLOB;
	 ALTER TABLE access_keys ADD COLUMN role_arn TEXT NOT NULL DEFAULT '';
	 ALTER TABLE access_keys ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;
	 CREATE INDEX access_keys_principal ON access_keys (principal_arn);
	 CREATE TABLE principals (arn TEXT PRIMARY KEY, account_id TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL,
	   id TEXT NOT NULL, trust_policy TEXT NOT NULL DEFAULT '', tags BLOB, created INTEGER NOT NULL);
	 CREATE INDEX principals_account ON principals (account_id);
	 CREATE TABLE principal_policies (principal_arn TEXT NOT NULL, name TEXT NOT NULL, document TEXT NOT NULL,
	   PRIMARY KEY (principal_arn, name));`,
	`CREATE INDEX keys_id ON keys (id);`,
	`CREATE TABLE grants (account_id TEXT NOT NULL, key_id TEXT NOT NULL, id TEXT NOT NULL,
	   grantee TEXT NOT NULL, retiring TEXT NOT NULL DEFAULT '', data BLOB NOT NULL,
	   PRIMARY KEY (account_id, key_id, id));
	 CREATE UNIQUE INDEX grants_id ON grants (id);
	 CREATE INDEX grants_retiring ON grants (retiring, id);`,
	// Everything that lived outside the database (the HSM registry's JSON
	// files, the VPC endpoint services file) and the uniqueness rules that
	// were in-memory reservations.
	`CREATE UNIQUE INDEX keys_xks_key ON keys (account_id, custom_key_store_id, xks_key_id) WHERE xks_key_id != '';
	 ALTER TABLE custom_key_stores ADD COLUMN backup_history TEXT NOT NULL DEFAULT '';
	 CREATE UNIQUE INDEX custom_key_stores_backup_history ON custom_key_stores (backup_history) WHERE backup_history != '';
	 CREATE TABLE vpc_endpoint_services (name TEXT PRIMARY KEY, data BLOB NOT NULL);
	 CREATE TABLE hsm_clusters (id TEXT PRIMARY KEY, state TEXT NOT NULL, created INTEGER NOT NULL, record BLOB NOT NULL);
	 CREATE TABLE hsm_backups (id TEXT PRIMARY KEY, cluster_id TEXT NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL,
	   record BLOB NOT NULL);`,
}

// DB is a Store backed by one SQLite file. Inside Tx, q and tx are the
// transaction; otherwise q is the pool.
type DB struct {
	db *sql.DB
	q  querier
	tx *sql.Tx
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// txn is a transaction a method runs its statements in: its own, or (inside
// Tx) the caller's, whose commit and rollback belong to Tx.
type txn struct {
	querier
	own *sql.Tx
}

func (t *txn) Commit() error {
	if t.own == nil {
		return nil
	}
	return t.own.Commit()
}

func (t *txn) Rollback() error {
	if t.own == nil {
		return nil
	}
	return t.own.Rollback()
}

func (d *DB) begin(ctx context.Context) (*txn, error) {
	if d.tx != nil {
		return &txn{querier: d.tx}, nil
	}
	// _txlock=immediate: the write lock is taken at BEGIN, so a
	// read-modify-write in a transaction never fails to upgrade (and
	// serialises with other processes on the same file).
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &txn{querier: tx, own: tx}, nil
}

// Tx runs fn in one transaction: every change fn makes through the Store
// it is given commits together when fn returns nil, or not at all. fn must
// use only that Store (the database has one writer at a time).
func (d *DB) Tx(ctx context.Context, fn func(store.Store) error) error {
	if d.tx != nil {
		return fn(d)
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap("sqlite.Tx", err)
	}
	defer tx.Rollback()
	if err := fn(&DB{db: d.db, q: tx, tx: tx}); err != nil {
		return err
	}
	return wrap("sqlite.Tx", tx.Commit())
}

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed) the database at path and migrates it. It
// refuses a database whose schema is newer than this binary knows.
func Open(ctx context.Context, path string) (*DB, error) {
	if err := restrictFiles(path); err != nil {
		return nil, err
	}
	dsn := "file:" + path + "?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=10000&_txlock=immediate&_foreign_keys=1"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite.Open: %w", err)
	}
	db.SetMaxOpenConns(4)
	d := &DB{db: db, q: db}
	if err := d.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

// restrictFiles makes the database file exist with mode 0600 before SQLite
// opens it: SQLite gives the -wal and -shm files the database file's mode,
// so all three stay readable by the owner only. Files an older keyhold made
// 0644 are narrowed.
func restrictFiles(path string) error {
	if strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file:") {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite.Open: %w", err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("sqlite.Open: %w", err)
		}
	}
	return nil
}

func (d *DB) migrate(ctx context.Context) error {
	var v int
	if err := d.q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("sqlite.migrate: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("sqlite.migrate: database schema version %d is newer than this keyhold (%d)", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		tx, err := d.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite.migrate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite.migrate to %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite.migrate: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite.migrate: %w", err)
		}
	}
	return nil
}

// SchemaVersion reports the applied schema version.
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := d.q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// Close closes the database (inside Tx it does nothing: Tx ends the
// transaction).
func (d *DB) Close() error {
	if d.tx != nil {
		return nil
	}
	return d.db.Close()
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	if isUnique(err) {
		switch msg := err.Error(); {
		case strings.Contains(msg, "xks_key_id"):
			return fmt.Errorf("%s: %w", op, store.ErrExternalKeyInUse)
		case strings.Contains(msg, "backup_history"):
			return fmt.Errorf("%s: %w", op, store.ErrBackupHistoryInUse)
		}
		return fmt.Errorf("%s: %w", op, store.ErrExists)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (d *DB) CreateAccount(ctx context.Context, a store.Account) error {
	_, err := d.q.ExecContext(ctx, "INSERT INTO accounts (id, created) VALUES (?, ?)", a.ID, a.Created.UnixNano())
	return wrap("sqlite.CreateAccount", err)
}

func (d *DB) ListAccounts(ctx context.Context) ([]store.Account, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT id, created FROM accounts ORDER BY created, id")
	if err != nil {
		return nil, wrap("sqlite.ListAccounts", err)
	}
	defer rows.Close()
	var out []store.Account
	for rows.Next() {
		var a store.Account
		var c int64
		if err := rows.Scan(&a.ID, &c); err != nil {
			return nil, wrap("sqlite.ListAccounts", err)
		}
		a.Created = time.Unix(0, c).UTC()
		out = append(out, a)
	}
	return out, wrap("sqlite.ListAccounts", rows.Err())
}

func (d *DB) PutAccessKey(ctx context.Context, k store.AccessKey) error {
	var exp int64
	if !k.Expires.IsZero() {
		exp = k.Expires.UnixNano()
	}
	_, err := d.q.ExecContext(ctx, `INSERT INTO access_keys (id, account_id, principal_arn, sealed_secret, active, created, session_token_hash, role_arn, expires)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET active = excluded.active`,
		k.ID, k.AccountID, k.PrincipalARN, k.SealedSecret, k.Active, k.Created.UnixNano(), k.SessionTokenHash, k.RoleARN, exp)
	return wrap("sqlite.PutAccessKey", err)
}

const accessKeyCols = "id, account_id, principal_arn, sealed_secret, active, created, session_token_hash, role_arn, expires"

func scanAccessKey(s scanner) (store.AccessKey, error) {
	var k store.AccessKey
	var c, exp int64
	err := s.Scan(&k.ID, &k.AccountID, &k.PrincipalARN, &k.SealedSecret, &k.Active, &c, &k.SessionTokenHash, &k.RoleARN, &exp)
	k.Created = time.Unix(0, c).UTC()
	if exp != 0 {
		k.Expires = time.Unix(0, exp).UTC()
	}
	return k, err
}

func (d *DB) GetAccessKey(ctx context.Context, id string) (store.AccessKey, error) {
	k, err := scanAccessKey(d.q.QueryRowContext(ctx, "SELECT "+accessKeyCols+" FROM access_keys WHERE id = ?", id))
	return k, wrap("sqlite.GetAccessKey", err)
}

func (d *DB) ListAccessKeys(ctx context.Context, principalARN string) ([]store.AccessKey, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT "+accessKeyCols+" FROM access_keys WHERE principal_arn = ? ORDER BY created", principalARN)
	if err != nil {
		return nil, wrap("sqlite.ListAccessKeys", err)
	}
	defer rows.Close()
	var out []store.AccessKey
	for rows.Next() {
		k, err := scanAccessKey(rows)
		if err != nil {
			return nil, wrap("sqlite.ListAccessKeys", err)
		}
		out = append(out, k)
	}
	return out, wrap("sqlite.ListAccessKeys", rows.Err())
}

func (d *DB) DeleteAccessKey(ctx context.Context, id string) error {
	res, err := d.q.ExecContext(ctx, "DELETE FROM access_keys WHERE id = ?", id)
	if err != nil {
		return wrap("sqlite.DeleteAccessKey", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite.DeleteAccessKey: %w", store.ErrNotFound)
	}
	return nil
}

const principalCols = "arn, account_id, type, name, id, trust_policy, tags, created"

func scanPrincipal(s scanner) (store.Principal, error) {
	var p store.Principal
	var tags []byte
	var c int64
	if err := s.Scan(&p.ARN, &p.AccountID, &p.Type, &p.Name, &p.ID, &p.TrustPolicy, &tags, &c); err != nil {
		return p, err
	}
	p.Created = time.Unix(0, c).UTC()
	if len(tags) > 0 {
		if err := json.Unmarshal(tags, &p.Tags); err != nil {
			return p, err
		}
	}
	return p, nil
}

func (d *DB) CreatePrincipal(ctx context.Context, p store.Principal) error {
	tags, err := json.Marshal(p.Tags)
	if err != nil {
		return wrap("sqlite.CreatePrincipal", err)
	}
	_, err = d.q.ExecContext(ctx, "INSERT INTO principals ("+principalCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		p.ARN, p.AccountID, p.Type, p.Name, p.ID, p.TrustPolicy, tags, p.Created.UnixNano())
	return wrap("sqlite.CreatePrincipal", err)
}

func (d *DB) GetPrincipal(ctx context.Context, arn string) (store.Principal, error) {
	p, err := scanPrincipal(d.q.QueryRowContext(ctx, "SELECT "+principalCols+" FROM principals WHERE arn = ?", arn))
	return p, wrap("sqlite.GetPrincipal", err)
}

func (d *DB) ListPrincipals(ctx context.Context, accountID string) ([]store.Principal, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT "+principalCols+" FROM principals WHERE account_id = ? ORDER BY arn", accountID)
	if err != nil {
		return nil, wrap("sqlite.ListPrincipals", err)
	}
	defer rows.Close()
	var out []store.Principal
	for rows.Next() {
		p, err := scanPrincipal(rows)
		if err != nil {
			return nil, wrap("sqlite.ListPrincipals", err)
		}
		out = append(out, p)
	}
	return out, wrap("sqlite.ListPrincipals", rows.Err())
}

func (d *DB) UpdatePrincipal(ctx context.Context, p store.Principal) error {
	tags, err := json.Marshal(p.Tags)
	if err != nil {
		return wrap("sqlite.UpdatePrincipal", err)
	}
	res, err := d.q.ExecContext(ctx, "UPDATE principals SET trust_policy = ?, tags = ? WHERE arn = ?", p.TrustPolicy, tags, p.ARN)
	if err != nil {
		return wrap("sqlite.UpdatePrincipal", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite.UpdatePrincipal: %w", store.ErrNotFound)
	}
	return nil
}

func (d *DB) DeletePrincipal(ctx context.Context, arn string) error {
	tx, err := d.begin(ctx)
	if err != nil {
		return wrap("sqlite.DeletePrincipal", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "DELETE FROM principals WHERE arn = ?", arn)
	if err != nil {
		return wrap("sqlite.DeletePrincipal", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite.DeletePrincipal: %w", store.ErrNotFound)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM principal_policies WHERE principal_arn = ?", arn); err != nil {
		return wrap("sqlite.DeletePrincipal", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM access_keys WHERE principal_arn = ? OR role_arn = ?", arn, arn); err != nil {
		return wrap("sqlite.DeletePrincipal", err)
	}
	return wrap("sqlite.DeletePrincipal", tx.Commit())
}

func (d *DB) PutPrincipalPolicy(ctx context.Context, p store.PrincipalPolicy) error {
	_, err := d.q.ExecContext(ctx, `INSERT INTO principal_policies (principal_arn, name, document) VALUES (?, ?, ?)
		ON CONFLICT (principal_arn, name) DO UPDATE SET document = excluded.document`, p.PrincipalARN, p.Name, p.Document)
	return wrap("sqlite.PutPrincipalPolicy", err)
}

func (d *DB) DeletePrincipalPolicy(ctx context.Context, principalARN, name string) error {
	res, err := d.q.ExecContext(ctx, "DELETE FROM principal_policies WHERE principal_arn = ? AND name = ?", principalARN, name)
	if err != nil {
		return wrap("sqlite.DeletePrincipalPolicy", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite.DeletePrincipalPolicy: %w", store.ErrNotFound)
	}
	return nil
}

func (d *DB) ListPrincipalPolicies(ctx context.Context, principalARN string) ([]store.PrincipalPolicy, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT principal_arn, name, document FROM principal_policies WHERE principal_arn = ? ORDER BY name", principalARN)
	if err != nil {
		return nil, wrap("sqlite.ListPrincipalPolicies", err)
	}
	defer rows.Close()
	var out []store.PrincipalPolicy
	for rows.Next() {
		var p store.PrincipalPolicy
		if err := rows.Scan(&p.PrincipalARN, &p.Name, &p.Document); err != nil {
			return nil, wrap("sqlite.ListPrincipalPolicies", err)
		}
		out = append(out, p)
	}
	return out, wrap("sqlite.ListPrincipalPolicies", rows.Err())
}

// keyData is the JSON form of the columns not needed for queries.
type keyData struct {
	CreationDate        time.Time   `json:"c"`
	Description         string      `json:"d,omitempty"`
	KeyUsage            string      `json:"u"`
	KeySpec             string      `json:"s"`
	Origin              string      `json:"o"`
	DeletionDate        time.Time   `json:"dd,omitempty"`
	PendingWindowInDays int         `json:"pw,omitempty"`
	Policy              string      `json:"p"`
	Tags                []store.Tag `json:"t,omitempty"`
	CloudHsmClusterID   string      `json:"ch,omitempty"`
	BackingKeyID        []byte      `json:"b,omitempty"`
	SealedMaterial      []byte      `json:"m,omitempty"`
}

func keyArgs(k store.Key) (data []byte, del int64, err error) {
	data, err = json.Marshal(keyData{k.CreationDate, k.Description, k.KeyUsage, k.KeySpec, k.Origin, k.DeletionDate,
		k.PendingWindowInDays, k.Policy, k.Tags, k.CloudHsmClusterID, k.BackingKeyID, k.SealedMaterial})
	if !k.DeletionDate.IsZero() {
		del = k.DeletionDate.UnixNano()
	}
	return data, del, err
}

const keyCols = "account_id, id, state, custom_key_store_id, xks_key_id, version, data"

type scanner interface{ Scan(...any) error }

func scanKey(s scanner) (store.Key, error) {
	var k store.Key
	var data []byte
	if err := s.Scan(&k.AccountID, &k.ID, &k.State, &k.CustomKeyStoreID, &k.XksKeyID, &k.Version, &data); err != nil {
		return k, err
	}
	var kd keyData
	if err := json.Unmarshal(data, &kd); err != nil {
		return k, err
	}
	k.CreationDate, k.Description, k.KeyUsage, k.KeySpec, k.Origin = kd.CreationDate, kd.Description, kd.KeyUsage, kd.KeySpec, kd.Origin
	k.DeletionDate, k.PendingWindowInDays, k.Policy, k.Tags = kd.DeletionDate, kd.PendingWindowInDays, kd.Policy, kd.Tags
	k.CloudHsmClusterID, k.BackingKeyID, k.SealedMaterial = kd.CloudHsmClusterID, kd.BackingKeyID, kd.SealedMaterial
	return k, nil
}

func (d *DB) CreateKey(ctx context.Context, k store.Key) error {
	data, del, err := keyArgs(k)
	if err != nil {
		return wrap("sqlite.CreateKey", err)
	}
	_, err = d.q.ExecContext(ctx, `INSERT INTO keys (account_id, id, state, deletion_date, custom_key_store_id, xks_key_id, version, data)
		VALUES (?, ?, ?, ?, ?, ?, 1, ?)`, k.AccountID, k.ID, k.State, del, k.CustomKeyStoreID, k.XksKeyID, data)
	return wrap("sqlite.CreateKey", err)
}

func (d *DB) GetKey(ctx context.Context, accountID, id string) (store.Key, error) {
	k, err := scanKey(d.q.QueryRowContext(ctx, "SELECT "+keyCols+" FROM keys WHERE account_id = ? AND id = ?", accountID, id))
	return k, wrap("sqlite.GetKey", err)
}

func (d *DB) FindKey(ctx context.Context, id string) (store.Key, error) {
	k, err := scanKey(d.q.QueryRowContext(ctx, "SELECT "+keyCols+" FROM keys WHERE id = ? LIMIT 1", id))
	return k, wrap("sqlite.FindKey", err)
}

func (d *DB) UpdateKey(ctx context.Context, k store.Key) (int64, error) {
	data, del, err := keyArgs(k)
	if err != nil {
		return 0, wrap("sqlite.UpdateKey", err)
	}
	res, err := d.q.ExecContext(ctx, `UPDATE keys SET state = ?, deletion_date = ?, custom_key_store_id = ?, xks_key_id = ?,
		version = version + 1, data = ? WHERE account_id = ? AND id = ? AND version = ?`,
		k.State, del, k.CustomKeyStoreID, k.XksKeyID, data, k.AccountID, k.ID, k.Version)
	if err != nil {
		return 0, wrap("sqlite.UpdateKey", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := d.GetKey(ctx, k.AccountID, k.ID); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("sqlite.UpdateKey: %w", store.ErrConflict)
	}
	return k.Version + 1, nil
}

func (d *DB) DeleteKey(ctx context.Context, accountID, id string) error {
	tx, err := d.begin(ctx)
	if err != nil {
		return wrap("sqlite.DeleteKey", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM aliases WHERE account_id = ? AND key_id = ?", accountID, id); err != nil {
		return wrap("sqlite.DeleteKey", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM grants WHERE account_id = ? AND key_id = ?", accountID, id); err != nil {
		return wrap("sqlite.DeleteKey", err)
	}
	res, err := tx.ExecContext(ctx, "DELETE FROM keys WHERE account_id = ? AND id = ?", accountID, id)
	if err != nil {
		return wrap("sqlite.DeleteKey", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite.DeleteKey: %w", store.ErrNotFound)
	}
	return wrap("sqlite.DeleteKey", tx.Commit())
}

func (d *DB) queryKeys(ctx context.Context, op, q string, args ...any) ([]store.Key, error) {
	rows, err := d.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []store.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, wrap(op, err)
		}
		out = append(out, k)
	}
	return out, wrap(op, rows.Err())
}

func (d *DB) ListKeys(ctx context.Context, accountID, after string, limit int) ([]store.Key, error) {
	return d.queryKeys(ctx, "sqlite.ListKeys", "SELECT "+keyCols+" FROM keys WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?", accountID, after, limit)
}

func (d *DB) KeysDueForDeletion(ctx context.Context, t time.Time) ([]store.Key, error) {
	return d.queryKeys(ctx, "sqlite.KeysDueForDeletion", "SELECT "+keyCols+" FROM keys WHERE state = 'PendingDeletion' AND deletion_date <= ?", t.UnixNano())
}

func (d *DB) CountKeysInStore(ctx context.Context, accountID, cks string) (int, error) {
	var n int
	err := d.q.QueryRowContext(ctx, "SELECT count(*) FROM keys WHERE account_id = ? AND custom_key_store_id = ?", accountID, cks).Scan(&n)
	return n, wrap("sqlite.CountKeysInStore", err)
}

func (d *DB) KeyByXksKeyID(ctx context.Context, accountID, cks, xksKeyID string) (store.Key, error) {
	k, err := scanKey(d.q.QueryRowContext(ctx, "SELECT "+keyCols+" FROM keys WHERE account_id = ? AND custom_key_store_id = ? AND xks_key_id = ?", accountID, cks, xksKeyID))
	return k, wrap("sqlite.KeyByXksKeyID", err)
}

func (d *DB) CreateAlias(ctx context.Context, a store.Alias) error {
	tx, err := d.begin(ctx)
	if err != nil {
		return wrap("sqlite.CreateAlias", err)
	}
	defer tx.Rollback()
	var one int
	if err := tx.QueryRowContext(ctx, "SELECT 1 FROM keys WHERE account_id = ? AND id = ?", a.AccountID, a.KeyID).Scan(&one); err != nil {
		return wrap("sqlite.CreateAlias", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO aliases (account_id, name, key_id, created, updated) VALUES (?, ?, ?, ?, ?)",
		a.AccountID, a.Name, a.KeyID, a.Created.UnixNano(), a.Updated.UnixNano()); err != nil {
		return wrap("sqlite.CreateAlias", err)
	}
	return wrap("sqlite.CreateAlias", tx.Commit())
}

func scanAlias(s scanner) (store.Alias, error) {
	var a store.Alias
	var c, u int64
	err := s.Scan(&a.AccountID, &a.Name, &a.KeyID, &c, &u)
	a.Created, a.Updated = time.Unix(0, c).UTC(), time.Unix(0, u).UTC()
	return a, err
}

func (d *DB) GetAlias(ctx context.Context, accountID, name string) (store.Alias, error) {
	a, err := scanAlias(d.q.QueryRowContext(ctx, "SELECT account_id, name, key_id, created, updated FROM aliases WHERE account_id = ? AND name = ?", accountID, name))
	return a, wrap("sqlite.GetAlias", err)
}

func (d *DB) UpdateAlias(ctx context.Context, a store.Alias) error {
	res, err := d.q.ExecContext(ctx, "UPDATE aliases SET key_id = ?, updated = ? WHERE account_id = ? AND name = ?", a.KeyID, a.Updated.UnixNano(), a.AccountID, a.Name)
	if err != nil {
		return wrap("sqlite.UpdateAlias", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite.UpdateAlias: %w", store.ErrNotFound)
	}
	return nil
}

func (d *DB) DeleteAlias(ctx context.Context, accountID, name string) error {
	res, err := d.q.ExecContext(ctx, "DELETE FROM aliases WHERE account_id = ? AND name = ?", accountID, name)
	if err != nil {
		return wrap("sqlite.DeleteAlias", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite.DeleteAlias: %w", store.ErrNotFound)
	}
	return nil
}

func (d *DB) ListAliases(ctx context.Context, accountID, keyID, after string, limit int) ([]store.Alias, error) {
	q := "SELECT account_id, name, key_id, created, updated FROM aliases WHERE account_id = ? AND name > ?"
	args := []any{accountID, after}
	if keyID != "" {
		q += " AND key_id = ?"
		args = append(args, keyID)
	}
	q += " ORDER BY name LIMIT ?"
	args = append(args, limit)
	rows, err := d.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap("sqlite.ListAliases", err)
	}
	defer rows.Close()
	var out []store.Alias
	for rows.Next() {
		a, err := scanAlias(rows)
		if err != nil {
			return nil, wrap("sqlite.ListAliases", err)
		}
		out = append(out, a)
	}
	return out, wrap("sqlite.ListAliases", rows.Err())
}

type cksData struct {
	Type                string    `json:"t"`
	Created             time.Time `json:"c"`
	Config              []byte    `json:"cfg,omitempty"`
	SealedSecret        []byte    `json:"s,omitempty"`
	ConnectionState     string    `json:"cs"`
	ConnectionErrorCode string    `json:"ce,omitempty"`
}

func scanCKS(s scanner) (store.CustomKeyStore, error) {
	var c store.CustomKeyStore
	var data []byte
	if err := s.Scan(&c.AccountID, &c.ID, &c.Name, &c.Version, &data, &c.BackupHistory); err != nil {
		return c, err
	}
	var cd cksData
	if err := json.Unmarshal(data, &cd); err != nil {
		return c, err
	}
	c.Type, c.Created, c.Config, c.SealedSecret, c.ConnectionState, c.ConnectionErrorCode = cd.Type, cd.Created, cd.Config, cd.SealedSecret, cd.ConnectionState, cd.ConnectionErrorCode
	return c, nil
}

func cksArgs(c store.CustomKeyStore) ([]byte, error) {
	return json.Marshal(cksData{c.Type, c.Created, c.Config, c.SealedSecret, c.ConnectionState, c.ConnectionErrorCode})
}

func (d *DB) CreateCustomKeyStore(ctx context.Context, c store.CustomKeyStore) error {
	data, err := cksArgs(c)
	if err != nil {
		return wrap("sqlite.CreateCustomKeyStore", err)
	}
	_, err = d.q.ExecContext(ctx, "INSERT INTO custom_key_stores (account_id, id, name, version, data, backup_history) VALUES (?, ?, ?, 1, ?, ?)",
		c.AccountID, c.ID, c.Name, data, c.BackupHistory)
	return wrap("sqlite.CreateCustomKeyStore", err)
}

const cksCols = "account_id, id, name, version, data, backup_history"

func (d *DB) GetCustomKeyStore(ctx context.Context, accountID, id string) (store.CustomKeyStore, error) {
	c, err := scanCKS(d.q.QueryRowContext(ctx, "SELECT "+cksCols+" FROM custom_key_stores WHERE account_id = ? AND id = ?", accountID, id))
	return c, wrap("sqlite.GetCustomKeyStore", err)
}

func (d *DB) UpdateCustomKeyStore(ctx context.Context, c store.CustomKeyStore) (int64, error) {
	data, err := cksArgs(c)
	if err != nil {
		return 0, wrap("sqlite.UpdateCustomKeyStore", err)
	}
	res, err := d.q.ExecContext(ctx, "UPDATE custom_key_stores SET name = ?, data = ?, backup_history = ?, version = version + 1 WHERE account_id = ? AND id = ? AND version = ?",
		c.Name, data, c.BackupHistory, c.AccountID, c.ID, c.Version)
	if err != nil {
		return 0, wrap("sqlite.UpdateCustomKeyStore", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := d.GetCustomKeyStore(ctx, c.AccountID, c.ID); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("sqlite.UpdateCustomKeyStore: %w", store.ErrConflict)
	}
	return c.Version + 1, nil
}

func (d *DB) DeleteCustomKeyStore(ctx context.Context, accountID, id string) error {
	res, err := d.q.ExecContext(ctx, "DELETE FROM custom_key_stores WHERE account_id = ? AND id = ?", accountID, id)
	if err != nil {
		return wrap("sqlite.DeleteCustomKeyStore", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite.DeleteCustomKeyStore: %w", store.ErrNotFound)
	}
	return nil
}

func (d *DB) ListCustomKeyStores(ctx context.Context, accountID string) ([]store.CustomKeyStore, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT "+cksCols+" FROM custom_key_stores WHERE account_id = ? ORDER BY id", accountID)
	if err != nil {
		return nil, wrap("sqlite.ListCustomKeyStores", err)
	}
	defer rows.Close()
	var out []store.CustomKeyStore
	for rows.Next() {
		c, err := scanCKS(rows)
		if err != nil {
			return nil, wrap("sqlite.ListCustomKeyStores", err)
		}
		out = append(out, c)
	}
	return out, wrap("sqlite.ListCustomKeyStores", rows.Err())
}
