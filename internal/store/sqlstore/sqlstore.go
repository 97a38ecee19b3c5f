// Package sqlstore is the SQL both Store backends share: every Store
// method written once, in SQL that SQLite and PostgreSQL both accept, with
// ? placeholders. A Dialect supplies what differs (placeholders, row locks,
// how a constraint violation reads, how a transaction serialises);
// sqlite/ and postgres/ own their connections and their migrations.
//
// Tables hold the columns queries need; the rest of a record is JSON in a
// data column, so adding a field seldom needs a migration.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// Dialect is what one database needs done differently.
type Dialect struct {
	// Name prefixes errors ("postgres.CreateKey: ...").
	Name string
	// Numbered rewrites ? placeholders to $1, $2, ... (PostgreSQL).
	Numbered bool
	// LockRow is appended to the SELECT of a read-modify-write to lock the
	// row it reads ("" where a transaction already holds the database's
	// write lock, as in SQLite with BEGIN IMMEDIATE).
	LockRow string
	// Classify maps a driver error to store.ErrExists,
	// store.ErrExternalKeyInUse, store.ErrBackupHistoryInUse or
	// store.ErrUnavailable when it is one (wrapped or not), nil otherwise.
	Classify func(error) error
	// BeginTx, when set, runs first in every Tx: PostgreSQL takes a
	// transaction-scoped advisory lock so that Tx bodies serialise as they
	// do in SQLite.
	BeginTx string
	// GroupCommit runs every write transaction as a savepoint of one
	// shared transaction that commits once for all writes waiting at the
	// time (group.go): for a database that has one writer at a time
	// (SQLite), where each commit is an fsync.
	GroupCommit bool
	// AfterCommit, when set, makes a group's commit durable before its
	// writes are acknowledged: for a database whose commits do not sync
	// themselves (SQLite with synchronous=NORMAL, whose WAL keyhold fsyncs
	// off Go's scheduler). An error fails every write of the group. Only
	// used with GroupCommit, the only way such a database is written.
	AfterCommit func() error
}

// DB is a Store over a *sql.DB. Inside Tx, q and tx are the transaction;
// otherwise q is the pool.
type DB struct {
	db      *sql.DB
	dialect *Dialect
	q       querier
	tx      *sql.Tx
	group   *groupCommit // Dialect.GroupCommit, outside Tx
}

// New returns the Store over db (already migrated). With
// Dialect.GroupCommit it starts the writer goroutine that Close stops.
func New(db *sql.DB, d Dialect) *DB {
	dd := d
	st := &DB{db: db, dialect: &dd, q: rebinder{db, &dd}}
	if dd.GroupCommit {
		st.group = newGroupCommit(db, dd.AfterCommit)
		st.q = groupQuerier{pool: st.q, g: st.group, d: &dd}
	}
	return st
}

// SQL is the underlying pool (for backend-specific statements).
func (d *DB) SQL() *sql.DB { return d.db }

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// rebinder rewrites the placeholders of each statement for its dialect.
type rebinder struct {
	q querier
	d *Dialect
}

var numbered sync.Map // query with ? -> query with $n

func (r rebinder) sql(q string) string {
	if !r.d.Numbered {
		return q
	}
	if v, ok := numbered.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	out := b.String()
	numbered.Store(q, out)
	return out
}

func (r rebinder) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return r.q.ExecContext(ctx, r.sql(q), args...)
}

func (r rebinder) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return r.q.QueryContext(ctx, r.sql(q), args...)
}

func (r rebinder) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return r.q.QueryRowContext(ctx, r.sql(q), args...)
}

// txn is a transaction a method runs its statements in: its own, or (inside
// Tx) the caller's, whose commit and rollback belong to Tx.
type txn struct {
	querier
	own   *sql.Tx
	group *groupTx
}

func (t *txn) Commit() error {
	if t.group != nil {
		return t.group.commit()
	}
	if t.own == nil {
		return nil
	}
	return t.own.Commit()
}

func (t *txn) Rollback() error {
	if t.group != nil {
		return t.group.rollback()
	}
	if t.own == nil {
		return nil
	}
	return t.own.Rollback()
}

func (d *DB) begin(ctx context.Context) (*txn, error) {
	if d.tx != nil {
		return &txn{querier: d.q}, nil
	}
	if d.group != nil {
		s, tx, err := d.group.acquire(ctx)
		if err != nil {
			return nil, err
		}
		return &txn{querier: rebinder{detached{tx}, d.dialect}, group: &groupTx{s: s}}, nil
	}
	// SQLite (_txlock=immediate) takes the write lock at BEGIN, so a
	// read-modify-write never fails to upgrade; PostgreSQL locks the rows
	// read with Dialect.LockRow.
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &txn{querier: rebinder{tx, d.dialect}, own: tx}, nil
}

// Tx runs fn in one transaction: every change fn makes through the Store
// it is given commits together when fn returns nil, or not at all. fn must
// use only that Store. Tx bodies serialise (SQLite's write lock,
// PostgreSQL's advisory lock), as UpdateHSMCluster promises.
func (d *DB) Tx(ctx context.Context, fn func(store.Store) error) error {
	if d.tx != nil {
		return fn(d)
	}
	op := d.dialect.Name + ".Tx"
	if d.group != nil {
		s, tx, err := d.group.acquire(ctx)
		if err != nil {
			return d.wrap(op, err)
		}
		gt := &groupTx{s: s}
		defer gt.rollback()
		if err := fn(&DB{db: d.db, dialect: d.dialect, q: rebinder{detached{tx}, d.dialect}, tx: tx}); err != nil {
			return err
		}
		return d.wrap(op, gt.commit())
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return d.wrap(op, err)
	}
	defer tx.Rollback()
	in := &DB{db: d.db, dialect: d.dialect, q: rebinder{tx, d.dialect}, tx: tx}
	if d.dialect.BeginTx != "" {
		if _, err := in.q.ExecContext(ctx, d.dialect.BeginTx); err != nil {
			return d.wrap(op, err)
		}
	}
	if err := fn(in); err != nil {
		return err
	}
	return d.wrap(op, tx.Commit())
}

var _ store.Store = (*DB)(nil)

// Close closes the pool (inside Tx it does nothing: Tx ends the
// transaction).
func (d *DB) Close() error {
	if d.tx != nil {
		return nil
	}
	if d.group != nil {
		d.group.stop()
	}
	return d.db.Close()
}

// wrap names the operation and maps driver errors to the store's errors.
// op is "store.Method"; the dialect's name replaces "store".
func (d *DB) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	op = d.dialect.Name + strings.TrimPrefix(op, "store")
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	if d.dialect.Classify != nil {
		if se := d.dialect.Classify(err); se != nil {
			if errors.Is(err, se) {
				return fmt.Errorf("%s: %w", op, err)
			}
			return fmt.Errorf("%s: %w (%v)", op, se, err)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// errorf is fmt.Errorf for "store.Method: %w" with the dialect's name.
func (d *DB) errorf(format string, args ...any) error {
	return fmt.Errorf(d.dialect.Name+strings.TrimPrefix(format, "store"), args...)
}

func (d *DB) CreateAccount(ctx context.Context, a store.Account) error {
	_, err := d.q.ExecContext(ctx, "INSERT INTO accounts (id, created) VALUES (?, ?)", a.ID, a.Created.UnixNano())
	return d.wrap("store.CreateAccount", err)
}

func (d *DB) ListAccounts(ctx context.Context) ([]store.Account, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT id, created FROM accounts ORDER BY created, id")
	if err != nil {
		return nil, d.wrap("store.ListAccounts", err)
	}
	defer rows.Close()
	var out []store.Account
	for rows.Next() {
		var a store.Account
		var c int64
		if err := rows.Scan(&a.ID, &c); err != nil {
			return nil, d.wrap("store.ListAccounts", err)
		}
		a.Created = time.Unix(0, c).UTC()
		out = append(out, a)
	}
	return out, d.wrap("store.ListAccounts", rows.Err())
}

func (d *DB) PutAccessKey(ctx context.Context, k store.AccessKey) error {
	var exp int64
	if !k.Expires.IsZero() {
		exp = k.Expires.UnixNano()
	}
	_, err := d.q.ExecContext(ctx, `INSERT INTO access_keys (id, account_id, principal_arn, sealed_secret, active, created, session_token_hash, role_arn, expires)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET active = excluded.active`,
		k.ID, k.AccountID, k.PrincipalARN, k.SealedSecret, k.Active, k.Created.UnixNano(), k.SessionTokenHash, k.RoleARN, exp)
	return d.wrap("store.PutAccessKey", err)
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
	return k, d.wrap("store.GetAccessKey", err)
}

func (d *DB) ListAccessKeys(ctx context.Context, principalARN string) ([]store.AccessKey, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT "+accessKeyCols+" FROM access_keys WHERE principal_arn = ? ORDER BY created", principalARN)
	if err != nil {
		return nil, d.wrap("store.ListAccessKeys", err)
	}
	defer rows.Close()
	var out []store.AccessKey
	for rows.Next() {
		k, err := scanAccessKey(rows)
		if err != nil {
			return nil, d.wrap("store.ListAccessKeys", err)
		}
		out = append(out, k)
	}
	return out, d.wrap("store.ListAccessKeys", rows.Err())
}

func (d *DB) DeleteAccessKey(ctx context.Context, id string) error {
	res, err := d.q.ExecContext(ctx, "DELETE FROM access_keys WHERE id = ?", id)
	if err != nil {
		return d.wrap("store.DeleteAccessKey", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return d.errorf("store.DeleteAccessKey: %w", store.ErrNotFound)
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
		return d.wrap("store.CreatePrincipal", err)
	}
	_, err = d.q.ExecContext(ctx, "INSERT INTO principals ("+principalCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		p.ARN, p.AccountID, p.Type, p.Name, p.ID, p.TrustPolicy, tags, p.Created.UnixNano())
	return d.wrap("store.CreatePrincipal", err)
}

func (d *DB) GetPrincipal(ctx context.Context, arn string) (store.Principal, error) {
	p, err := scanPrincipal(d.q.QueryRowContext(ctx, "SELECT "+principalCols+" FROM principals WHERE arn = ?", arn))
	return p, d.wrap("store.GetPrincipal", err)
}

func (d *DB) ListPrincipals(ctx context.Context, accountID string) ([]store.Principal, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT "+principalCols+" FROM principals WHERE account_id = ? ORDER BY arn", accountID)
	if err != nil {
		return nil, d.wrap("store.ListPrincipals", err)
	}
	defer rows.Close()
	var out []store.Principal
	for rows.Next() {
		p, err := scanPrincipal(rows)
		if err != nil {
			return nil, d.wrap("store.ListPrincipals", err)
		}
		out = append(out, p)
	}
	return out, d.wrap("store.ListPrincipals", rows.Err())
}

func (d *DB) UpdatePrincipal(ctx context.Context, p store.Principal) error {
	tags, err := json.Marshal(p.Tags)
	if err != nil {
		return d.wrap("store.UpdatePrincipal", err)
	}
	res, err := d.q.ExecContext(ctx, "UPDATE principals SET trust_policy = ?, tags = ? WHERE arn = ?", p.TrustPolicy, tags, p.ARN)
	if err != nil {
		return d.wrap("store.UpdatePrincipal", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return d.errorf("store.UpdatePrincipal: %w", store.ErrNotFound)
	}
	return nil
}

func (d *DB) DeletePrincipal(ctx context.Context, arn string) error {
	tx, err := d.begin(ctx)
	if err != nil {
		return d.wrap("store.DeletePrincipal", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "DELETE FROM principals WHERE arn = ?", arn)
	if err != nil {
		return d.wrap("store.DeletePrincipal", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return d.errorf("store.DeletePrincipal: %w", store.ErrNotFound)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM principal_policies WHERE principal_arn = ?", arn); err != nil {
		return d.wrap("store.DeletePrincipal", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM access_keys WHERE principal_arn = ? OR role_arn = ?", arn, arn); err != nil {
		return d.wrap("store.DeletePrincipal", err)
	}
	return d.wrap("store.DeletePrincipal", tx.Commit())
}

func (d *DB) PutPrincipalPolicy(ctx context.Context, p store.PrincipalPolicy) error {
	_, err := d.q.ExecContext(ctx, `INSERT INTO principal_policies (principal_arn, name, document) VALUES (?, ?, ?)
		ON CONFLICT (principal_arn, name) DO UPDATE SET document = excluded.document`, p.PrincipalARN, p.Name, p.Document)
	return d.wrap("store.PutPrincipalPolicy", err)
}

func (d *DB) DeletePrincipalPolicy(ctx context.Context, principalARN, name string) error {
	res, err := d.q.ExecContext(ctx, "DELETE FROM principal_policies WHERE principal_arn = ? AND name = ?", principalARN, name)
	if err != nil {
		return d.wrap("store.DeletePrincipalPolicy", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return d.errorf("store.DeletePrincipalPolicy: %w", store.ErrNotFound)
	}
	return nil
}

func (d *DB) ListPrincipalPolicies(ctx context.Context, principalARN string) ([]store.PrincipalPolicy, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT principal_arn, name, document FROM principal_policies WHERE principal_arn = ? ORDER BY name", principalARN)
	if err != nil {
		return nil, d.wrap("store.ListPrincipalPolicies", err)
	}
	defer rows.Close()
	var out []store.PrincipalPolicy
	for rows.Next() {
		var p store.PrincipalPolicy
		if err := rows.Scan(&p.PrincipalARN, &p.Name, &p.Document); err != nil {
			return nil, d.wrap("store.ListPrincipalPolicies", err)
		}
		out = append(out, p)
	}
	return out, d.wrap("store.ListPrincipalPolicies", rows.Err())
}

// keyData is the JSON form of the columns not needed for queries, as
// keyhold wrote it before keycodec.go's binary form (still read).
type keyData struct {
	CreationDate        time.Time               `json:"c"`
	Description         string                  `json:"d,omitempty"`
	KeyUsage            string                  `json:"u"`
	KeySpec             string                  `json:"s"`
	Origin              string                  `json:"o"`
	DeletionDate        time.Time               `json:"dd,omitempty"`
	PendingWindowInDays int                     `json:"pw,omitempty"`
	Policy              string                  `json:"p"`
	Tags                []store.Tag             `json:"t,omitempty"`
	CloudHsmClusterID   string                  `json:"ch,omitempty"`
	BackingKeyID        []byte                  `json:"b,omitempty"`
	SealedMaterial      []byte                  `json:"m,omitempty"`
	Materials           []store.KeyMaterial     `json:"ms,omitempty"`
	Rotation            store.Rotation          `json:"r"`
	Import              *store.ImportParameters `json:"im,omitempty"`
	KeyManager          string                  `json:"km,omitempty"`
	MultiRegion         *store.MultiRegion      `json:"mr,omitempty"`
}

func keyArgs(k store.Key) (data []byte, del int64, err error) {
	data = encodeKeyData(&k)
	if !k.DeletionDate.IsZero() {
		del = k.DeletionDate.UnixNano()
	}
	return data, del, err
}

// rotationDue is the earliest time the key lifecycle job has work on k:
// automatic rotation, or imported material expiring (unix ns, 0 = never).
// A multi-Region replica has none: its primary rotates, and the rotation
// reaches the replicas with the primary's (domain's) transaction.
func rotationDue(k store.Key) int64 {
	if k.MultiRegion != nil && k.MultiRegion.PrimaryRegion != k.Region && k.Origin != "EXTERNAL" {
		return 0
	}
	var due time.Time
	if k.Rotation.Enabled && !k.Rotation.Next.IsZero() {
		due = k.Rotation.Next
	}
	for _, m := range k.Materials {
		if !m.ValidTo.IsZero() && len(m.Sealed) > 0 && (due.IsZero() || m.ValidTo.Before(due)) {
			due = m.ValidTo
		}
	}
	if due.IsZero() {
		return 0
	}
	return due.UnixNano()
}

const keyCols = "account_id, region, id, state, custom_key_store_id, xks_key_id, version, data"

type scanner interface{ Scan(...any) error }

func scanKey(s scanner) (store.Key, error) {
	var k store.Key
	var data []byte
	if err := s.Scan(&k.AccountID, &k.Region, &k.ID, &k.State, &k.CustomKeyStoreID, &k.XksKeyID, &k.Version, &data); err != nil {
		return k, err
	}
	return k, decodeKeyData(data, &k)
}

func (d *DB) CreateKey(ctx context.Context, k store.Key) error {
	data, del, err := keyArgs(k)
	if err != nil {
		return d.wrap("store.CreateKey", err)
	}
	_, err = d.q.ExecContext(ctx, `INSERT INTO keys (account_id, region, id, state, deletion_date, custom_key_store_id, xks_key_id, version, data, rotation_due)
		VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)`, k.AccountID, k.Region, k.ID, k.State, del, k.CustomKeyStoreID, k.XksKeyID, data, rotationDue(k))
	return d.wrap("store.CreateKey", err)
}

func (d *DB) GetKey(ctx context.Context, accountID, region, id string) (store.Key, error) {
	k, err := scanKey(d.q.QueryRowContext(ctx, "SELECT "+keyCols+" FROM keys WHERE account_id = ? AND region = ? AND id = ?", accountID, region, id))
	return k, d.wrap("store.GetKey", err)
}

func (d *DB) FindKey(ctx context.Context, region, id string) (store.Key, error) {
	k, err := scanKey(d.q.QueryRowContext(ctx, "SELECT "+keyCols+" FROM keys WHERE id = ? AND region = ? LIMIT 1", id, region))
	return k, d.wrap("store.FindKey", err)
}

func (d *DB) ListKeyRegions(ctx context.Context, accountID, id string) ([]store.Key, error) {
	return d.queryKeys(ctx, "store.ListKeyRegions", "SELECT "+keyCols+" FROM keys WHERE id = ? AND account_id = ? ORDER BY region", id, accountID)
}

// AssignRegion gives rows stored before Regions existed to region, once:
// the schema migration that brought the region_assignment table left one
// row in it, and the transaction that assigns deletes it. Each UPDATE is
// a scan of a whole table (region leads no index), minutes with a million
// keys, so later starts must not repeat them. Replicas starting together
// serialise on the row: the second finds it gone.
func (d *DB) AssignRegion(ctx context.Context, region string) error {
	if region == "" {
		return d.errorf("store.AssignRegion: empty region")
	}
	var pending int
	switch err := d.q.QueryRowContext(ctx, "SELECT COUNT(*) FROM region_assignment").Scan(&pending); {
	case err != nil:
		return d.wrap("store.AssignRegion", err)
	case pending == 0:
		return nil
	}
	tx, err := d.begin(ctx)
	if err != nil {
		return d.wrap("store.AssignRegion", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "DELETE FROM region_assignment")
	if err != nil {
		return d.wrap("store.AssignRegion", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return d.wrap("store.AssignRegion", err) // another replica assigned
	}
	for _, t := range []string{"keys", "aliases", "grants", "custom_key_stores", "key_usage"} {
		if _, err := tx.ExecContext(ctx, "UPDATE "+t+" SET region = ? WHERE region = ''", region); err != nil {
			return d.wrap("store.AssignRegion", err)
		}
	}
	return d.wrap("store.AssignRegion", tx.Commit())
}

func (d *DB) UpdateKey(ctx context.Context, k store.Key) (int64, error) {
	data, del, err := keyArgs(k)
	if err != nil {
		return 0, d.wrap("store.UpdateKey", err)
	}
	res, err := d.q.ExecContext(ctx, `UPDATE keys SET state = ?, deletion_date = ?, custom_key_store_id = ?, xks_key_id = ?,
		version = version + 1, data = ?, rotation_due = ? WHERE account_id = ? AND region = ? AND id = ? AND version = ?`,
		k.State, del, k.CustomKeyStoreID, k.XksKeyID, data, rotationDue(k), k.AccountID, k.Region, k.ID, k.Version)
	if err != nil {
		return 0, d.wrap("store.UpdateKey", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := d.GetKey(ctx, k.AccountID, k.Region, k.ID); err != nil {
			return 0, err
		}
		return 0, d.errorf("store.UpdateKey: %w", store.ErrConflict)
	}
	return k.Version + 1, nil
}

func (d *DB) DeleteKey(ctx context.Context, accountID, region, id string) error {
	tx, err := d.begin(ctx)
	if err != nil {
		return d.wrap("store.DeleteKey", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM aliases WHERE account_id = ? AND region = ? AND key_id = ?", accountID, region, id); err != nil {
		return d.wrap("store.DeleteKey", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM grants WHERE account_id = ? AND region = ? AND key_id = ?", accountID, region, id); err != nil {
		return d.wrap("store.DeleteKey", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM key_usage WHERE account_id = ? AND region = ? AND key_id = ?", accountID, region, id); err != nil {
		return d.wrap("store.DeleteKey", err)
	}
	res, err := tx.ExecContext(ctx, "DELETE FROM keys WHERE account_id = ? AND region = ? AND id = ?", accountID, region, id)
	if err != nil {
		return d.wrap("store.DeleteKey", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return d.errorf("store.DeleteKey: %w", store.ErrNotFound)
	}
	return d.wrap("store.DeleteKey", tx.Commit())
}

func (d *DB) queryKeys(ctx context.Context, op, q string, args ...any) ([]store.Key, error) {
	rows, err := d.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, d.wrap(op, err)
	}
	defer rows.Close()
	var out []store.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, d.wrap(op, err)
		}
		out = append(out, k)
	}
	return out, d.wrap(op, rows.Err())
}

func (d *DB) ListKeyIDs(ctx context.Context, accountID, region, after string, limit int) ([]string, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT id FROM keys WHERE account_id = ? AND region = ? AND id > ? ORDER BY id LIMIT ?", accountID, region, after, limit)
	if err != nil {
		return nil, d.wrap("store.ListKeyIDs", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, d.wrap("store.ListKeyIDs", err)
		}
		ids = append(ids, id)
	}
	return ids, d.wrap("store.ListKeyIDs", rows.Err())
}

func (d *DB) KeysDueForDeletion(ctx context.Context, t time.Time) ([]store.Key, error) {
	return d.queryKeys(ctx, "store.KeysDueForDeletion", "SELECT "+keyCols+" FROM keys WHERE state = 'PendingDeletion' AND deletion_date <= ?", t.UnixNano())
}

func (d *DB) KeysDueForRotation(ctx context.Context, t time.Time) ([]store.Key, error) {
	return d.queryKeys(ctx, "store.KeysDueForRotation", "SELECT "+keyCols+" FROM keys WHERE state != 'PendingDeletion' AND rotation_due > 0 AND rotation_due <= ?", t.UnixNano())
}

func (d *DB) CountKeysInStore(ctx context.Context, accountID, cks string) (int, error) {
	var n int
	err := d.q.QueryRowContext(ctx, "SELECT count(*) FROM keys WHERE account_id = ? AND custom_key_store_id = ?", accountID, cks).Scan(&n)
	return n, d.wrap("store.CountKeysInStore", err)
}

func (d *DB) KeyByXksKeyID(ctx context.Context, accountID, cks, xksKeyID string) (store.Key, error) {
	k, err := scanKey(d.q.QueryRowContext(ctx, "SELECT "+keyCols+" FROM keys WHERE account_id = ? AND custom_key_store_id = ? AND xks_key_id = ?", accountID, cks, xksKeyID))
	return k, d.wrap("store.KeyByXksKeyID", err)
}

func (d *DB) CreateAlias(ctx context.Context, a store.Alias) error {
	tx, err := d.begin(ctx)
	if err != nil {
		return d.wrap("store.CreateAlias", err)
	}
	defer tx.Rollback()
	var one int
	if err := tx.QueryRowContext(ctx, "SELECT 1 FROM keys WHERE account_id = ? AND region = ? AND id = ?"+d.dialect.LockRow, a.AccountID, a.Region, a.KeyID).Scan(&one); err != nil {
		return d.wrap("store.CreateAlias", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO aliases (account_id, region, name, key_id, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
		a.AccountID, a.Region, a.Name, a.KeyID, a.Created.UnixNano(), a.Updated.UnixNano()); err != nil {
		return d.wrap("store.CreateAlias", err)
	}
	return d.wrap("store.CreateAlias", tx.Commit())
}

func scanAlias(s scanner) (store.Alias, error) {
	var a store.Alias
	var c, u int64
	err := s.Scan(&a.AccountID, &a.Region, &a.Name, &a.KeyID, &c, &u)
	a.Created, a.Updated = time.Unix(0, c).UTC(), time.Unix(0, u).UTC()
	return a, err
}

const aliasCols = "account_id, region, name, key_id, created, updated"

func (d *DB) GetAlias(ctx context.Context, accountID, region, name string) (store.Alias, error) {
	a, err := scanAlias(d.q.QueryRowContext(ctx, "SELECT "+aliasCols+" FROM aliases WHERE account_id = ? AND region = ? AND name = ?", accountID, region, name))
	return a, d.wrap("store.GetAlias", err)
}

func (d *DB) UpdateAlias(ctx context.Context, a store.Alias) error {
	res, err := d.q.ExecContext(ctx, "UPDATE aliases SET key_id = ?, updated = ? WHERE account_id = ? AND region = ? AND name = ?", a.KeyID, a.Updated.UnixNano(), a.AccountID, a.Region, a.Name)
	if err != nil {
		return d.wrap("store.UpdateAlias", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return d.errorf("store.UpdateAlias: %w", store.ErrNotFound)
	}
	return nil
}

func (d *DB) DeleteAlias(ctx context.Context, accountID, region, name string) error {
	res, err := d.q.ExecContext(ctx, "DELETE FROM aliases WHERE account_id = ? AND region = ? AND name = ?", accountID, region, name)
	if err != nil {
		return d.wrap("store.DeleteAlias", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return d.errorf("store.DeleteAlias: %w", store.ErrNotFound)
	}
	return nil
}

func (d *DB) ListAliases(ctx context.Context, accountID, region, keyID, after string, limit int) ([]store.Alias, error) {
	q := "SELECT " + aliasCols + " FROM aliases WHERE account_id = ? AND region = ? AND name > ?"
	args := []any{accountID, region, after}
	if keyID != "" {
		q += " AND key_id = ?"
		args = append(args, keyID)
	}
	q += " ORDER BY name LIMIT ?"
	args = append(args, limit)
	rows, err := d.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, d.wrap("store.ListAliases", err)
	}
	defer rows.Close()
	var out []store.Alias
	for rows.Next() {
		a, err := scanAlias(rows)
		if err != nil {
			return nil, d.wrap("store.ListAliases", err)
		}
		out = append(out, a)
	}
	return out, d.wrap("store.ListAliases", rows.Err())
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
	if err := s.Scan(&c.AccountID, &c.Region, &c.ID, &c.Name, &c.Version, &data, &c.BackupHistory); err != nil {
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
		return d.wrap("store.CreateCustomKeyStore", err)
	}
	_, err = d.q.ExecContext(ctx, "INSERT INTO custom_key_stores (account_id, region, id, name, version, data, backup_history) VALUES (?, ?, ?, ?, 1, ?, ?)",
		c.AccountID, c.Region, c.ID, c.Name, data, c.BackupHistory)
	return d.wrap("store.CreateCustomKeyStore", err)
}

const cksCols = "account_id, region, id, name, version, data, backup_history"

func (d *DB) GetCustomKeyStore(ctx context.Context, accountID, id string) (store.CustomKeyStore, error) {
	c, err := scanCKS(d.q.QueryRowContext(ctx, "SELECT "+cksCols+" FROM custom_key_stores WHERE account_id = ? AND id = ?", accountID, id))
	return c, d.wrap("store.GetCustomKeyStore", err)
}

func (d *DB) UpdateCustomKeyStore(ctx context.Context, c store.CustomKeyStore) (int64, error) {
	data, err := cksArgs(c)
	if err != nil {
		return 0, d.wrap("store.UpdateCustomKeyStore", err)
	}
	res, err := d.q.ExecContext(ctx, "UPDATE custom_key_stores SET name = ?, data = ?, backup_history = ?, version = version + 1 WHERE account_id = ? AND id = ? AND version = ?",
		c.Name, data, c.BackupHistory, c.AccountID, c.ID, c.Version)
	if err != nil {
		return 0, d.wrap("store.UpdateCustomKeyStore", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := d.GetCustomKeyStore(ctx, c.AccountID, c.ID); err != nil {
			return 0, err
		}
		return 0, d.errorf("store.UpdateCustomKeyStore: %w", store.ErrConflict)
	}
	return c.Version + 1, nil
}

func (d *DB) DeleteCustomKeyStore(ctx context.Context, accountID, id string) error {
	res, err := d.q.ExecContext(ctx, "DELETE FROM custom_key_stores WHERE account_id = ? AND id = ?", accountID, id)
	if err != nil {
		return d.wrap("store.DeleteCustomKeyStore", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return d.errorf("store.DeleteCustomKeyStore: %w", store.ErrNotFound)
	}
	return nil
}

func (d *DB) ListCustomKeyStores(ctx context.Context, accountID string) ([]store.CustomKeyStore, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT "+cksCols+" FROM custom_key_stores WHERE account_id = ? ORDER BY id", accountID)
	if err != nil {
		return nil, d.wrap("store.ListCustomKeyStores", err)
	}
	defer rows.Close()
	var out []store.CustomKeyStore
	for rows.Next() {
		c, err := scanCKS(rows)
		if err != nil {
			return nil, d.wrap("store.ListCustomKeyStores", err)
		}
		out = append(out, c)
	}
	return out, d.wrap("store.ListCustomKeyStores", rows.Err())
}
