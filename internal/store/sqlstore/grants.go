package sqlstore

import (
	"context"
	"encoding/json"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// grantData is the JSON form of the grant columns not needed for queries.
type grantData struct {
	Name           string            `json:"n,omitempty"`
	IssuingAccount string            `json:"ia"`
	Operations     []string          `json:"o"`
	Equals         map[string]string `json:"eq,omitempty"`
	Subset         map[string]string `json:"sub,omitempty"`
	Created        time.Time         `json:"c"`
}

const grantCols = "account_id, region, key_id, id, grantee, retiring, data"

func scanGrant(s scanner) (store.Grant, error) {
	var g store.Grant
	var data []byte
	if err := s.Scan(&g.AccountID, &g.Region, &g.KeyID, &g.ID, &g.GranteePrincipal, &g.RetiringPrincipal, &data); err != nil {
		return g, err
	}
	var gd grantData
	if err := json.Unmarshal(data, &gd); err != nil {
		return g, err
	}
	g.Name, g.IssuingAccount, g.Operations, g.Created = gd.Name, gd.IssuingAccount, gd.Operations, gd.Created
	g.EncryptionContextEquals, g.EncryptionContextSubset = gd.Equals, gd.Subset
	return g, nil
}

func (d *DB) CreateGrant(ctx context.Context, g store.Grant, maxPerKey int) error {
	data, err := json.Marshal(grantData{g.Name, g.IssuingAccount, g.Operations, g.EncryptionContextEquals, g.EncryptionContextSubset, g.Created})
	if err != nil {
		return d.wrap("store.CreateGrant", err)
	}
	tx, err := d.begin(ctx)
	if err != nil {
		return d.wrap("store.CreateGrant", err)
	}
	defer tx.Rollback()
	var one int
	if err := tx.QueryRowContext(ctx, "SELECT 1 FROM keys WHERE account_id = ? AND region = ? AND id = ?"+d.dialect.LockRow, g.AccountID, g.Region, g.KeyID).Scan(&one); err != nil {
		return d.wrap("store.CreateGrant", err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM grants WHERE account_id = ? AND region = ? AND key_id = ?", g.AccountID, g.Region, g.KeyID).Scan(&n); err != nil {
		return d.wrap("store.CreateGrant", err)
	}
	if n >= maxPerKey {
		return d.errorf("store.CreateGrant: %w", store.ErrLimit)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO grants ("+grantCols+") VALUES (?, ?, ?, ?, ?, ?, ?)",
		g.AccountID, g.Region, g.KeyID, g.ID, g.GranteePrincipal, g.RetiringPrincipal, data); err != nil {
		return d.wrap("store.CreateGrant", err)
	}
	return d.wrap("store.CreateGrant", tx.Commit())
}

func (d *DB) GetGrant(ctx context.Context, accountID, region, keyID, grantID string) (store.Grant, error) {
	g, err := scanGrant(d.q.QueryRowContext(ctx, "SELECT "+grantCols+" FROM grants WHERE account_id = ? AND region = ? AND key_id = ? AND id = ?", accountID, region, keyID, grantID))
	return g, d.wrap("store.GetGrant", err)
}

func (d *DB) queryGrants(ctx context.Context, op, q string, args ...any) ([]store.Grant, error) {
	rows, err := d.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, d.wrap(op, err)
	}
	defer rows.Close()
	var out []store.Grant
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, d.wrap(op, err)
		}
		out = append(out, g)
	}
	return out, d.wrap(op, rows.Err())
}

func (d *DB) ListGrants(ctx context.Context, f store.GrantFilter) ([]store.Grant, error) {
	q := "SELECT " + grantCols + " FROM grants WHERE account_id = ? AND region = ? AND key_id = ? AND id > ?"
	args := []any{f.AccountID, f.Region, f.KeyID, f.After}
	if f.GrantID != "" {
		q += " AND id = ?"
		args = append(args, f.GrantID)
	}
	if f.GranteePrincipal != "" {
		q += " AND grantee = ?"
		args = append(args, f.GranteePrincipal)
	}
	q += " ORDER BY id"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	return d.queryGrants(ctx, "store.ListGrants", q, args...)
}

func (d *DB) ListRetirableGrants(ctx context.Context, region, principal, after string, limit int) ([]store.Grant, error) {
	q := "SELECT " + grantCols + " FROM grants WHERE retiring = ? AND region = ? AND id > ? ORDER BY id"
	args := []any{principal, region, after}
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	return d.queryGrants(ctx, "store.ListRetirableGrants", q, args...)
}

func (d *DB) DeleteGrant(ctx context.Context, accountID, region, keyID, grantID string) error {
	res, err := d.q.ExecContext(ctx, "DELETE FROM grants WHERE account_id = ? AND region = ? AND key_id = ? AND id = ?", accountID, region, keyID, grantID)
	if err != nil {
		return d.wrap("store.DeleteGrant", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return d.errorf("store.DeleteGrant: %w", store.ErrNotFound)
	}
	return nil
}
