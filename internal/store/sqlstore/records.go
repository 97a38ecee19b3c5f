package sqlstore

import (
	"context"
	"encoding/json"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// vpceData is the JSON form of a VPC endpoint service's columns not used
// for lookups.
type vpceData struct {
	Owner              string   `json:"o,omitempty"`
	Endpoint           string   `json:"e"`
	PrivateDNSName     string   `json:"d"`
	PrivateDNSVerified bool     `json:"v,omitempty"`
	AllowedPrincipals  []string `json:"p,omitempty"`
	AcceptanceRequired bool     `json:"a,omitempty"`
	AvailabilityZones  []string `json:"z,omitempty"`
}

func (d *DB) PutVPCEndpointService(ctx context.Context, v store.VPCEndpointService) error {
	data, err := json.Marshal(vpceData{v.Owner, v.Endpoint, v.PrivateDNSName, v.PrivateDNSVerified, v.AllowedPrincipals, v.AcceptanceRequired, v.AvailabilityZones})
	if err != nil {
		return d.wrap("store.PutVPCEndpointService", err)
	}
	_, err = d.q.ExecContext(ctx, `INSERT INTO vpc_endpoint_services (name, data) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET data = excluded.data`, v.ServiceName, data)
	return d.wrap("store.PutVPCEndpointService", err)
}

func scanVPCE(s scanner) (store.VPCEndpointService, error) {
	var v store.VPCEndpointService
	var data []byte
	if err := s.Scan(&v.ServiceName, &data); err != nil {
		return v, err
	}
	var vd vpceData
	if err := json.Unmarshal(data, &vd); err != nil {
		return v, err
	}
	v.Owner, v.Endpoint, v.PrivateDNSName, v.PrivateDNSVerified = vd.Owner, vd.Endpoint, vd.PrivateDNSName, vd.PrivateDNSVerified
	v.AllowedPrincipals, v.AcceptanceRequired, v.AvailabilityZones = vd.AllowedPrincipals, vd.AcceptanceRequired, vd.AvailabilityZones
	return v, nil
}

func (d *DB) GetVPCEndpointService(ctx context.Context, name string) (store.VPCEndpointService, error) {
	v, err := scanVPCE(d.q.QueryRowContext(ctx, "SELECT name, data FROM vpc_endpoint_services WHERE name = ?", name))
	return v, d.wrap("store.GetVPCEndpointService", err)
}

func (d *DB) ListVPCEndpointServices(ctx context.Context) ([]store.VPCEndpointService, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT name, data FROM vpc_endpoint_services ORDER BY name")
	if err != nil {
		return nil, d.wrap("store.ListVPCEndpointServices", err)
	}
	defer rows.Close()
	var out []store.VPCEndpointService
	for rows.Next() {
		v, err := scanVPCE(rows)
		if err != nil {
			return nil, d.wrap("store.ListVPCEndpointServices", err)
		}
		out = append(out, v)
	}
	return out, d.wrap("store.ListVPCEndpointServices", rows.Err())
}

func (d *DB) DeleteVPCEndpointService(ctx context.Context, name string) error {
	res, err := d.q.ExecContext(ctx, "DELETE FROM vpc_endpoint_services WHERE name = ?", name)
	if err != nil {
		return d.wrap("store.DeleteVPCEndpointService", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return d.errorf("store.DeleteVPCEndpointService: %w", store.ErrNotFound)
	}
	return nil
}

func (d *DB) CreateHSMCluster(ctx context.Context, c store.HSMCluster) error {
	_, err := d.q.ExecContext(ctx, "INSERT INTO hsm_clusters (id, state, created, record) VALUES (?, ?, ?, ?)",
		c.ID, c.State, c.Created.UnixNano(), nonNil(c.Record))
	return d.wrap("store.CreateHSMCluster", err)
}

func scanHSMCluster(s scanner) (store.HSMCluster, error) {
	var c store.HSMCluster
	var created int64
	err := s.Scan(&c.ID, &c.State, &created, &c.Record)
	c.Created = time.Unix(0, created).UTC()
	return c, err
}

const hsmClusterCols = "id, state, created, record"

func (d *DB) GetHSMCluster(ctx context.Context, id string) (store.HSMCluster, error) {
	c, err := scanHSMCluster(d.q.QueryRowContext(ctx, "SELECT "+hsmClusterCols+" FROM hsm_clusters WHERE id = ?", id))
	return c, d.wrap("store.GetHSMCluster", err)
}

func (d *DB) UpdateHSMCluster(ctx context.Context, id string, fn func(*store.HSMCluster) error) (store.HSMCluster, error) {
	var out store.HSMCluster
	err := d.Tx(ctx, func(st store.Store) error {
		t := st.(*DB)
		c, err := scanHSMCluster(t.q.QueryRowContext(ctx, "SELECT "+hsmClusterCols+" FROM hsm_clusters WHERE id = ?", id))
		if err != nil {
			return d.wrap("store.UpdateHSMCluster", err)
		}
		if err := fn(&c); err != nil {
			return err
		}
		c.ID = id
		if _, err := t.q.ExecContext(ctx, "UPDATE hsm_clusters SET state = ?, created = ?, record = ? WHERE id = ?",
			c.State, c.Created.UnixNano(), nonNil(c.Record), id); err != nil {
			return d.wrap("store.UpdateHSMCluster", err)
		}
		out = c
		return nil
	})
	return out, err
}

func (d *DB) ListHSMClusters(ctx context.Context) ([]store.HSMCluster, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT "+hsmClusterCols+" FROM hsm_clusters ORDER BY created, id")
	if err != nil {
		return nil, d.wrap("store.ListHSMClusters", err)
	}
	defer rows.Close()
	var out []store.HSMCluster
	for rows.Next() {
		c, err := scanHSMCluster(rows)
		if err != nil {
			return nil, d.wrap("store.ListHSMClusters", err)
		}
		out = append(out, c)
	}
	return out, d.wrap("store.ListHSMClusters", rows.Err())
}

const hsmBackupCols = "id, cluster_id, state, created, record"

func scanHSMBackup(s scanner) (store.HSMBackup, error) {
	var b store.HSMBackup
	var created int64
	err := s.Scan(&b.ID, &b.ClusterID, &b.State, &created, &b.Record)
	b.Created = time.Unix(0, created).UTC()
	return b, err
}

func (d *DB) CreateHSMBackup(ctx context.Context, b store.HSMBackup) error {
	_, err := d.q.ExecContext(ctx, "INSERT INTO hsm_backups ("+hsmBackupCols+") VALUES (?, ?, ?, ?, ?)",
		b.ID, b.ClusterID, b.State, b.Created.UnixNano(), nonNil(b.Record))
	return d.wrap("store.CreateHSMBackup", err)
}

func (d *DB) GetHSMBackup(ctx context.Context, id string) (store.HSMBackup, error) {
	b, err := scanHSMBackup(d.q.QueryRowContext(ctx, "SELECT "+hsmBackupCols+" FROM hsm_backups WHERE id = ?", id))
	return b, d.wrap("store.GetHSMBackup", err)
}

func (d *DB) UpdateHSMBackup(ctx context.Context, id string, fn func(*store.HSMBackup) error) (store.HSMBackup, error) {
	var out store.HSMBackup
	err := d.Tx(ctx, func(st store.Store) error {
		t := st.(*DB)
		b, err := scanHSMBackup(t.q.QueryRowContext(ctx, "SELECT "+hsmBackupCols+" FROM hsm_backups WHERE id = ?", id))
		if err != nil {
			return d.wrap("store.UpdateHSMBackup", err)
		}
		if err := fn(&b); err != nil {
			return err
		}
		b.ID = id
		if _, err := t.q.ExecContext(ctx, "UPDATE hsm_backups SET cluster_id = ?, state = ?, created = ?, record = ? WHERE id = ?",
			b.ClusterID, b.State, b.Created.UnixNano(), nonNil(b.Record), id); err != nil {
			return d.wrap("store.UpdateHSMBackup", err)
		}
		out = b
		return nil
	})
	return out, err
}

func (d *DB) ListHSMBackups(ctx context.Context) ([]store.HSMBackup, error) {
	rows, err := d.q.QueryContext(ctx, "SELECT "+hsmBackupCols+" FROM hsm_backups ORDER BY created, id")
	if err != nil {
		return nil, d.wrap("store.ListHSMBackups", err)
	}
	defer rows.Close()
	var out []store.HSMBackup
	for rows.Next() {
		b, err := scanHSMBackup(rows)
		if err != nil {
			return nil, d.wrap("store.ListHSMBackups", err)
		}
		out = append(out, b)
	}
	return out, d.wrap("store.ListHSMBackups", rows.Err())
}

// nonNil stores an empty record as an empty blob, not NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
