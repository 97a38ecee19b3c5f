package hsm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// Cluster states, HSM states and backup states, as cloudhsmv2 names them.
const (
	ClusterCreateInProgress     = "CREATE_IN_PROGRESS"
	ClusterUninitialized        = "UNINITIALIZED"
	ClusterInitializeInProgress = "INITIALIZE_IN_PROGRESS"
	ClusterInitialized          = "INITIALIZED"
	ClusterActive               = "ACTIVE"
	ClusterDegraded             = "DEGRADED"
	ClusterDeleteInProgress     = "DELETE_IN_PROGRESS"
	ClusterDeleted              = "DELETED"

	HSMCreateInProgress = "CREATE_IN_PROGRESS"
	HSMActive           = "ACTIVE"
	HSMDegraded         = "DEGRADED"
	HSMDeleteInProgress = "DELETE_IN_PROGRESS"
	HSMDeleted          = "DELETED"

	BackupCreateInProgress = "CREATE_IN_PROGRESS"
	BackupReady            = "READY"
	BackupPendingDeletion  = "PENDING_DELETION"
	BackupDeleted          = "DELETED"
)

// Tag is a resource tag.
type Tag struct{ Key, Value string }

// HSMRecord is one HSM of a cluster.
type HSMRecord struct {
	ID               string
	AvailabilityZone string
	SubnetID         string
	EniID            string
	EniIP            string
	// Port is the TCP port the HSM listens on at EniIP (mutual TLS), set
	// by the replica that runs it each time it starts.
	Port         int `json:",omitempty"`
	State        string
	StateMessage string
	Created      time.Time
}

// UserRecord is what keyhold tracks about the cluster's crypto user beyond
// what the token knows. Failed logins and lockout survive restarts.
type UserRecord struct {
	Name         string
	Exists       bool
	FailedLogins int
	LockedOut    bool
	// LoggedInBy names the session holding the login ("<manager>/<session>"),
	// empty when nobody is logged in.
	LoggedInBy string
}

// ClusterRecord is the durable state of one cluster.
type ClusterRecord struct {
	ID             string
	State          string
	StateMessage   string
	HsmType        string
	Mode           string
	NetworkType    string
	VpcID          string
	SecurityGroup  string
	SubnetMapping  map[string]string // availability zone -> subnet ID
	SourceBackupID string
	RetentionDays  int
	Created        time.Time
	Deleted        time.Time `json:",omitzero"`
	LastBackup     time.Time `json:",omitzero"`

	// PreCoPassword is the SO PIN the token was initialised with; activation
	// replaces it with the crypto officer's password and clears this field.
	PreCoPassword Password

	CSRPEM         string
	ClusterCertPEM string
	TrustAnchorPEM string
	HSMs           []HSMRecord
	Tags           []Tag
	User           UserRecord
	TokenLabel     string
	ModulePath     string // empty: the Manager's default module
	TokenDir       string // empty for an external (real) HSM
	NextEniHost    int    // last host number handed to an HSM ENI
	// NetworkCA issues the certificates of the cluster's HSM network.
	NetworkCA *NetworkCA `json:",omitempty"`
}

// BackupRecord is the durable state of one backup. Its token copy lives in
// the registry's backup directory.
type BackupRecord struct {
	ID             string
	State          string
	ClusterID      string
	HsmType        string
	Mode           string
	Created        time.Time
	DeleteTime     time.Time `json:",omitzero"`
	NeverExpires   bool
	SourceBackup   string
	SourceCluster  string
	SourceRegion   string
	Tags           []Tag
	ClusterCertPEM string
	TrustAnchorPEM string
	TokenLabel     string
	User           UserRecord
}

// Registry stores cluster and backup records. Every write is durable before
// it returns. Implementations must be safe for concurrent use by several
// processes sharing the same storage (the server and HSM-owner commands).
// StoreRegistry (records in store.Store) is the one keyhold uses.
type Registry interface {
	// CreateCluster stores a new record; it fails if the ID exists.
	CreateCluster(ctx context.Context, c *ClusterRecord) error
	// GetCluster returns ErrClusterNotFound for an unknown ID.
	GetCluster(ctx context.Context, id string) (ClusterRecord, error)
	// UpdateCluster runs fn on the current record under an exclusive lock
	// and stores the result if fn returns nil.
	UpdateCluster(ctx context.Context, id string, fn func(*ClusterRecord) error) (ClusterRecord, error)
	ListClusters(ctx context.Context) ([]ClusterRecord, error)
	// ClusterDir is where the cluster's token directory and daemons' files go.
	ClusterDir(id string) string

	CreateBackup(ctx context.Context, b *BackupRecord) error
	GetBackup(ctx context.Context, id string) (BackupRecord, error)
	UpdateBackup(ctx context.Context, id string, fn func(*BackupRecord) error) (BackupRecord, error)
	ListBackups(ctx context.Context) ([]BackupRecord, error)
	BackupDir(id string) string
}

// Records is the part of store.Store that holds cluster and backup
// records (store.Store implements it).
type Records interface {
	CreateHSMCluster(ctx context.Context, c store.HSMCluster) error
	GetHSMCluster(ctx context.Context, id string) (store.HSMCluster, error)
	UpdateHSMCluster(ctx context.Context, id string, fn func(*store.HSMCluster) error) (store.HSMCluster, error)
	ListHSMClusters(ctx context.Context) ([]store.HSMCluster, error)
	CreateHSMBackup(ctx context.Context, b store.HSMBackup) error
	GetHSMBackup(ctx context.Context, id string) (store.HSMBackup, error)
	UpdateHSMBackup(ctx context.Context, id string, fn func(*store.HSMBackup) error) (store.HSMBackup, error)
	ListHSMBackups(ctx context.Context) ([]store.HSMBackup, error)
}

// StoreRegistry keeps cluster and backup records in keyhold's store, and
// their token directories under dir (DATADIR/hsm, absolute):
// dir/clusters/<id> and dir/backups/<id>.
//
// An update runs fn under an flock on the record's directory, then writes
// the record in one store transaction. The flock, not the transaction, is
// what spans fn: owner commands do token work (an SO login in a daemon of
// their own) inside fn, and the database must not stay write-locked for
// that long. Every writer of a record (the server, owner commands) goes
// through a StoreRegistry, so the flock serialises them all; the server
// reads records on every call and caches none, so it never works on a
// stale one.
type StoreRegistry struct {
	st  Records
	dir string
}

// NewStoreRegistry returns a registry over st with token directories under
// dir, which must be absolute. Records of an older keyhold (one JSON file
// per cluster and backup under dir) are imported once and their files
// removed.
func NewStoreRegistry(ctx context.Context, st Records, dir string) (*StoreRegistry, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("hsm.NewStoreRegistry: %q is not an absolute path", dir)
	}
	for _, d := range []string{dir, filepath.Join(dir, "clusters"), filepath.Join(dir, "backups")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("hsm.NewStoreRegistry: %w", err)
		}
	}
	r := &StoreRegistry{st: st, dir: dir}
	if err := r.importFiles(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *StoreRegistry) ClusterDir(id string) string { return filepath.Join(r.dir, "clusters", id) }
func (r *StoreRegistry) BackupDir(id string) string  { return filepath.Join(r.dir, "backups", id) }

func clusterRow(c *ClusterRecord) (store.HSMCluster, error) {
	b, err := json.Marshal(c)
	return store.HSMCluster{ID: c.ID, State: c.State, Created: c.Created, Record: b}, err
}

func clusterFromRow(row store.HSMCluster) (ClusterRecord, error) {
	var c ClusterRecord
	if err := json.Unmarshal(row.Record, &c); err != nil {
		return c, fmt.Errorf("hsm: cluster record %s: %w", row.ID, err)
	}
	c.ID, c.State = row.ID, row.State
	return c, nil
}

func backupRow(b *BackupRecord) (store.HSMBackup, error) {
	rec, err := json.Marshal(b)
	return store.HSMBackup{ID: b.ID, ClusterID: b.ClusterID, State: b.State, Created: b.Created, Record: rec}, err
}

func backupFromRow(row store.HSMBackup) (BackupRecord, error) {
	var b BackupRecord
	if err := json.Unmarshal(row.Record, &b); err != nil {
		return b, fmt.Errorf("hsm: backup record %s: %w", row.ID, err)
	}
	b.ID, b.State, b.ClusterID = row.ID, row.State, row.ClusterID
	return b, nil
}

func (r *StoreRegistry) CreateCluster(ctx context.Context, c *ClusterRecord) error {
	if err := os.MkdirAll(r.ClusterDir(c.ID), 0o700); err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	row, err := clusterRow(c)
	if err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	if err := r.st.CreateHSMCluster(ctx, row); err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	return nil
}

func (r *StoreRegistry) GetCluster(ctx context.Context, id string) (ClusterRecord, error) {
	if !ValidClusterID(id) {
		return ClusterRecord{}, clusterNotFound(id)
	}
	row, err := r.st.GetHSMCluster(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return ClusterRecord{}, clusterNotFound(id)
	}
	if err != nil {
		return ClusterRecord{}, fmt.Errorf("hsm.registry: %w", err)
	}
	return clusterFromRow(row)
}

func (r *StoreRegistry) UpdateCluster(ctx context.Context, id string, fn func(*ClusterRecord) error) (ClusterRecord, error) {
	if !ValidClusterID(id) {
		return ClusterRecord{}, clusterNotFound(id)
	}
	if _, err := os.Stat(r.ClusterDir(id)); err != nil {
		if _, gerr := r.st.GetHSMCluster(ctx, id); errors.Is(gerr, store.ErrNotFound) {
			return ClusterRecord{}, clusterNotFound(id)
		}
		if err := os.MkdirAll(r.ClusterDir(id), 0o700); err != nil {
			return ClusterRecord{}, fmt.Errorf("hsm.registry: %w", err)
		}
	}
	unlock, err := lockDir(r.ClusterDir(id))
	if err != nil {
		return ClusterRecord{}, fmt.Errorf("hsm.registry: %w", err)
	}
	defer unlock()
	// The flock serialises the writers of one host; replicas on other
	// hosts (or with other data directories) are caught by comparing the
	// stored record with the one fn saw, and fn runs again on the newer.
	for attempt := 0; ; attempt++ {
		cur, err := r.st.GetHSMCluster(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return ClusterRecord{}, clusterNotFound(id)
		}
		if err != nil {
			return ClusterRecord{}, fmt.Errorf("hsm.registry: %w", err)
		}
		c, err := clusterFromRow(cur)
		if err != nil {
			return c, err
		}
		if err := fn(&c); err != nil {
			return c, err
		}
		c.ID = id
		row, err := clusterRow(&c)
		if err != nil {
			return c, fmt.Errorf("hsm.registry: %w", err)
		}
		_, err = r.st.UpdateHSMCluster(ctx, id, func(now *store.HSMCluster) error {
			if now.State != cur.State || !bytes.Equal(now.Record, cur.Record) {
				return errRecordChanged
			}
			*now = row
			return nil
		})
		if errors.Is(err, errRecordChanged) && attempt < 20 {
			continue
		}
		if err != nil {
			return c, fmt.Errorf("hsm.registry: %w", err)
		}
		return c, nil
	}
}

var errRecordChanged = errors.New("cluster record changed by another writer")

func (r *StoreRegistry) ListClusters(ctx context.Context) ([]ClusterRecord, error) {
	rows, err := r.st.ListHSMClusters(ctx)
	if err != nil {
		return nil, fmt.Errorf("hsm.registry: %w", err)
	}
	out := make([]ClusterRecord, 0, len(rows))
	for _, row := range rows {
		c, err := clusterFromRow(row)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func (r *StoreRegistry) CreateBackup(ctx context.Context, b *BackupRecord) error {
	if err := os.MkdirAll(r.BackupDir(b.ID), 0o700); err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	row, err := backupRow(b)
	if err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	if err := r.st.CreateHSMBackup(ctx, row); err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	return nil
}

func (r *StoreRegistry) GetBackup(ctx context.Context, id string) (BackupRecord, error) {
	if !ValidBackupID(id) {
		return BackupRecord{}, backupNotFound(id)
	}
	row, err := r.st.GetHSMBackup(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return BackupRecord{}, backupNotFound(id)
	}
	if err != nil {
		return BackupRecord{}, fmt.Errorf("hsm.registry: %w", err)
	}
	return backupFromRow(row)
}

// UpdateBackup needs no lock beyond the store's transaction: no fn does
// slow work on a backup record.
func (r *StoreRegistry) UpdateBackup(ctx context.Context, id string, fn func(*BackupRecord) error) (BackupRecord, error) {
	if !ValidBackupID(id) {
		return BackupRecord{}, backupNotFound(id)
	}
	var out BackupRecord
	_, err := r.st.UpdateHSMBackup(ctx, id, func(row *store.HSMBackup) error {
		b, err := backupFromRow(*row)
		if err != nil {
			return err
		}
		if err := fn(&b); err != nil {
			return err
		}
		b.ID = id
		nrow, err := backupRow(&b)
		if err != nil {
			return err
		}
		*row, out = nrow, b
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return out, backupNotFound(id)
	}
	return out, err
}

func (r *StoreRegistry) ListBackups(ctx context.Context) ([]BackupRecord, error) {
	rows, err := r.st.ListHSMBackups(ctx)
	if err != nil {
		return nil, fmt.Errorf("hsm.registry: %w", err)
	}
	out := make([]BackupRecord, 0, len(rows))
	for _, row := range rows {
		b, err := backupFromRow(row)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// importFiles moves the records of an older keyhold (dir/clusters/<id>/
// cluster.json, dir/backups/<id>/backup.json) into the store, once: a
// record already in the store wins, and each file is removed after its
// record is stored.
func (r *StoreRegistry) importFiles(ctx context.Context) error {
	for _, kind := range []string{"clusters", "backups"} {
		ents, err := os.ReadDir(filepath.Join(r.dir, kind))
		if err != nil {
			return fmt.Errorf("hsm.registry: %w", err)
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			name := "cluster.json"
			if kind == "backups" {
				name = "backup.json"
			}
			path := filepath.Join(r.dir, kind, e.Name(), name)
			b, err := os.ReadFile(path)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("hsm.registry: import: %w", err)
			}
			if kind == "clusters" {
				var c ClusterRecord
				if err := json.Unmarshal(b, &c); err != nil {
					return fmt.Errorf("hsm.registry: import %s: %w", path, err)
				}
				if err := r.CreateCluster(ctx, &c); err != nil && !errors.Is(err, store.ErrExists) {
					return err
				}
			} else {
				var bk BackupRecord
				if err := json.Unmarshal(b, &bk); err != nil {
					return fmt.Errorf("hsm.registry: import %s: %w", path, err)
				}
				if err := r.CreateBackup(ctx, &bk); err != nil && !errors.Is(err, store.ErrExists) {
					return err
				}
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("hsm.registry: import: %w", err)
			}
		}
	}
	return nil
}

// lockDir takes an exclusive flock on dir/.lock. flock locks conflict between
// separate opens, so this serialises goroutines and processes alike.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
