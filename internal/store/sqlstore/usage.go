package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// Key usage: one row per key with its last use, written in batches by the
// domain; the upsert keeps the later of the stored and the new use.

// usageRows is how many uses one upsert statement writes. With a million
// keys a flush holds thousands of different keys (one statement each cost
// more than the rest of an Encrypt); 64 rows are 384 parameters, within
// both dialects' limits, and two statement texts (a full chunk and one
// row) stay in the prepared-statement cache.
const usageRows = 64

func (d *DB) RecordKeyUsage(ctx context.Context, uses []store.KeyUsage) error {
	if len(uses) == 0 {
		return nil
	}
	// In key order (the upserts walk the index in order, touching each
	// page once) and once per key, the latest use kept: PostgreSQL
	// refuses a statement that updates a row twice.
	uses = slices.Clone(uses)
	slices.SortFunc(uses, func(a, b store.KeyUsage) int {
		return cmp.Or(cmp.Compare(a.AccountID, b.AccountID), cmp.Compare(a.Region, b.Region), cmp.Compare(a.KeyID, b.KeyID),
			b.Time.Compare(a.Time))
	})
	uses = slices.CompactFunc(uses, func(a, b store.KeyUsage) bool {
		return a.AccountID == b.AccountID && a.Region == b.Region && a.KeyID == b.KeyID
	})
	tx, err := d.begin(ctx)
	if err != nil {
		return d.wrap("store.RecordKeyUsage", err)
	}
	defer tx.Rollback()
	args := make([]any, 0, 6*usageRows)
	for len(uses) > 0 {
		n := usageRows
		if len(uses) < usageRows {
			n = 1
		}
		args = args[:0]
		for _, u := range uses[:n] {
			args = append(args, u.AccountID, u.Region, u.KeyID, u.Operation, u.RequestID, u.Time.UnixNano())
		}
		if _, err := tx.ExecContext(ctx, usageUpsert(n), args...); err != nil {
			return d.wrap("store.RecordKeyUsage", err)
		}
		uses = uses[n:]
	}
	return d.wrap("store.RecordKeyUsage", tx.Commit())
}

var usageUpsertRows, usageUpsertOne = usageUpsertSQL(usageRows), usageUpsertSQL(1)

func usageUpsert(n int) string {
	if n == usageRows {
		return usageUpsertRows
	}
	return usageUpsertOne
}

func usageUpsertSQL(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO key_usage (account_id, region, key_id, operation, request_id, used_at) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?)")
	}
	b.WriteString(` ON CONFLICT (account_id, region, key_id) DO UPDATE SET operation = excluded.operation,
			  request_id = excluded.request_id, used_at = excluded.used_at
			WHERE excluded.used_at > key_usage.used_at`)
	return b.String()
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
