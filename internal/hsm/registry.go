package hsm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
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
	State            string
	StateMessage     string
	Created          time.Time
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

// FileRegistry is the default Registry: DIR/clusters/<id>/cluster.json and
// DIR/backups/<id>/backup.json, each replaced atomically under an flock on a
// sibling lock file.
type FileRegistry struct{ dir string }

// NewFileRegistry creates the directories it needs (mode 0700).
func NewFileRegistry(dir string) (*FileRegistry, error) {
	for _, d := range []string{dir, filepath.Join(dir, "clusters"), filepath.Join(dir, "backups")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("hsm.NewFileRegistry: %w", err)
		}
	}
	return &FileRegistry{dir: dir}, nil
}

func (r *FileRegistry) ClusterDir(id string) string { return filepath.Join(r.dir, "clusters", id) }
func (r *FileRegistry) BackupDir(id string) string  { return filepath.Join(r.dir, "backups", id) }

func (r *FileRegistry) CreateCluster(ctx context.Context, c *ClusterRecord) error {
	return createRecord(r.ClusterDir(c.ID), "cluster.json", c)
}

func (r *FileRegistry) GetCluster(ctx context.Context, id string) (ClusterRecord, error) {
	var c ClusterRecord
	if !ValidClusterID(id) {
		return c, clusterNotFound(id)
	}
	err := readRecord(r.ClusterDir(id), "cluster.json", &c)
	if errors.Is(err, fs.ErrNotExist) {
		return c, clusterNotFound(id)
	}
	return c, err
}

func (r *FileRegistry) UpdateCluster(ctx context.Context, id string, fn func(*ClusterRecord) error) (ClusterRecord, error) {
	var c ClusterRecord
	if !ValidClusterID(id) {
		return c, clusterNotFound(id)
	}
	err := updateRecord(r.ClusterDir(id), "cluster.json", &c, func() error { return fn(&c) })
	if errors.Is(err, fs.ErrNotExist) {
		return c, clusterNotFound(id)
	}
	return c, err
}

func (r *FileRegistry) ListClusters(ctx context.Context) ([]ClusterRecord, error) {
	ids, err := listDirs(filepath.Join(r.dir, "clusters"))
	if err != nil {
		return nil, err
	}
	out := make([]ClusterRecord, 0, len(ids))
	for _, id := range ids {
		c, err := r.GetCluster(ctx, id)
		if errors.Is(err, ErrClusterNotFound) {
			continue // being created
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func (r *FileRegistry) CreateBackup(ctx context.Context, b *BackupRecord) error {
	return createRecord(r.BackupDir(b.ID), "backup.json", b)
}

func (r *FileRegistry) GetBackup(ctx context.Context, id string) (BackupRecord, error) {
	var b BackupRecord
	if !ValidBackupID(id) {
		return b, backupNotFound(id)
	}
	err := readRecord(r.BackupDir(id), "backup.json", &b)
	if errors.Is(err, fs.ErrNotExist) {
		return b, backupNotFound(id)
	}
	return b, err
}

func (r *FileRegistry) UpdateBackup(ctx context.Context, id string, fn func(*BackupRecord) error) (BackupRecord, error) {
	var b BackupRecord
	if !ValidBackupID(id) {
		return b, backupNotFound(id)
	}
	err := updateRecord(r.BackupDir(id), "backup.json", &b, func() error { return fn(&b) })
	if errors.Is(err, fs.ErrNotExist) {
		return b, backupNotFound(id)
	}
	return b, err
}

func (r *FileRegistry) ListBackups(ctx context.Context) ([]BackupRecord, error) {
	ids, err := listDirs(filepath.Join(r.dir, "backups"))
	if err != nil {
		return nil, err
	}
	out := make([]BackupRecord, 0, len(ids))
	for _, id := range ids {
		b, err := r.GetBackup(ctx, id)
		if errors.Is(err, ErrBackupNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func listDirs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("hsm.registry: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
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

func createRecord(dir, name string, v any) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	defer unlock()
	if err := writeFileAtomic(filepath.Join(dir, name), v); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

func readRecord(dir, name string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("hsm.registry: %s/%s: %w", filepath.Base(dir), name, err)
	}
	return nil
}

func updateRecord(dir, name string, v any, fn func() error) error {
	if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
		return err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	defer unlock()
	if err := readRecord(dir, name, v); err != nil {
		return err
	}
	if err := fn(); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, name), v)
}

// writeFileAtomic replaces path with v's JSON: temp file, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("hsm.registry: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("hsm.registry: %w", err)
	}
	return nil
}
