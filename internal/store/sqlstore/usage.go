package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// Key usage: one row per key with its last use, written in batches by the
// domain; the upsert keeps the later of the stored and the new use.

func (d *DB) RecordKeyUsage(ctx context.Context, uses []store.KeyUsage) error {
	if len(uses) == 0 {
		return nil
	}
	tx, err := d.begin(ctx)
	if err != nil {
		return d.wrap("store.RecordKeyUsage", err)
	}
	defer tx.Rollback()
	for _, u := range uses {
		if _, err := tx.ExecContext(ctx, `INSERT INTO key_usage (account_id, region, key_id, operation, request_id, used_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (account_id, region, key_id) DO UPDATE SET operation = excluded.operation,
			  request_id = excluded.request_id, used_at = excluded.used_at
			WHERE excluded.used_at > key_usage.used_at`,
			u.AccountID, u.Region, u.KeyID, u.Operation, u.RequestID, u.Time.UnixNano()); err != nil {
			return d.wrap("store.RecordKeyUsage", err)
		}
	}
	return d.wrap("store.RecordKeyUsage", tx.Commit())
}

func (d *DB) GetKeyUsage(ctx context.Context, accountID, region, keyID string) (store.KeyUsage, time.Time, error) {
	var started int64
	if err := d.q.QueryRowContext(ctx, "SELECT started FROM key_usage_tracking").Scan(&started); err != nil {
		return store.KeyUsage{}, time.Time{}, d.wrap("store.GetKeyUsage", err)
	}
	since := time.Unix(0, started).UTC()
	u := store.KeyUsage{AccountID: accountID, Region: region, KeyID: keyID}
	var at int64
	err := d.q.QueryRowContext(ctx, "SELECT operation, request_id, used_at FROM key_usage WHERE account_id = ? AND region = ? AND key_id = ?",
		accountID, region, keyID).Scan(&u.Operation, &u.RequestID, &at)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return u, since, nil
		}
		return store.KeyUsage{}, time.Time{}, d.wrap("store.GetKeyUsage", err)
	}
	u.Time = time.Unix(0, at).UTC()
	return u, since, nil
}
