// Package store defines keyhold's durable state: accounts, access keys, KMS
// keys with their wrapped material, aliases and custom key stores. Backends
// (sqlite/, postgres/, sharing sqlstore/) implement Store; storetest/ is the conformance
// suite every backend must pass.
//
// A Store never sees plaintext key material or plaintext secrets: callers
// seal them with the root key first. Every write returns only once durable.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors returned by every Store (compare with errors.Is).
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
	ErrConflict = errors.New("store: concurrent update")
	// ErrLimit is returned when a quota (grants per key) would be exceeded.
	ErrLimit = errors.New("store: quota exceeded")
	// ErrExternalKeyInUse is CreateKey's error when another key of the
	// same custom key store already uses the key's XksKeyID (a UNIQUE
	// constraint: one KMS key per external key per store).
	ErrExternalKeyInUse = errors.New("store: external key already backs a KMS key of this custom key store")
	// ErrBackupHistoryInUse is the custom key store writes' error when
	// another store already has the BackupHistory (a UNIQUE constraint:
	// one store per cluster backup history).
	ErrBackupHistoryInUse = errors.New("store: a custom key store already uses this cluster backup history")
	// ErrUnavailable is returned when the database cannot be reached (a
	// networked store that is down or too slow): the write may or may
	// not have happened, and a later retry may succeed.
	ErrUnavailable = errors.New("store: database unavailable")
)

// Account is an AWS-style account (12-digit id).
type Account struct {
	ID      string
	Created time.Time
}

// AccessKey is a SigV4 credential of a principal. SealedSecret is the secret
// access key sealed by the root key. Temporary credentials (STS) also carry
// the SHA-256 of their session token, the role they were issued for, and an
// expiry.
type AccessKey struct {
	ID           string
	AccountID    string
	PrincipalARN string
	SealedSecret []byte
	Active       bool
	Created      time.Time
	// Temporary credentials only.
	SessionTokenHash []byte
	RoleARN          string
	Expires          time.Time
}

// Principal is an IAM user or role.
type Principal struct {
	ARN         string
	AccountID   string
	Type        string // "user" or "role"
	Name        string
	ID          string // AIDA... for users, AROA... for roles
	TrustPolicy string // roles: who may assume it
	Tags        []Tag
	Created     time.Time
}

// PrincipalPolicy is a named identity policy attached to a principal.
type PrincipalPolicy struct {
	PrincipalARN string
	Name         string
	Document     string
}

// Tag is a resource tag.
type Tag struct {
	Key   string `json:"TagKey"`
	Value string `json:"TagValue"`
}

// Key is a KMS key's metadata and (for keys whose material keyhold holds)
// its material sealed by the root key.
type Key struct {
	AccountID string
	// Region is the AWS Region the key belongs to: a key is seen only
	// through requests signed for its Region. A multi-Region key has one
	// row per Region (the same ID), its primary and its replicas.
	Region              string
	ID                  string
	CreationDate        time.Time
	Description         string
	KeyUsage            string
	KeySpec             string
	Origin              string
	State               string // Enabled, Disabled, PendingDeletion
	DeletionDate        time.Time
	PendingWindowInDays int
	Policy              string
	Tags                []Tag
	CustomKeyStoreID    string
	CloudHsmClusterID   string
	XksKeyID            string
	// BackingKeyID identifies the key material; it is written into every
	// ciphertext so that a later rotation can keep old material.
	BackingKeyID   []byte
	SealedMaterial []byte
	// Materials lists every key material the key has had, oldest first,
	// the current one (BackingKeyID) included; rotation appends, and a
	// ciphertext is decrypted with the material it names.
	Materials []KeyMaterial
	// Rotation is the automatic and on-demand rotation schedule.
	Rotation Rotation
	// Import holds the wrapping key of the last GetParametersForImport
	// (sealed) for keys with Origin EXTERNAL.
	Import *ImportParameters
	// KeyManager is CUSTOMER or AWS (alias/aws/<service> keys).
	KeyManager string
	// MultiRegion is the multi-Region configuration of a multi-Region key
	// (nil for a single-Region key). Every Region's row holds the whole
	// configuration; the domain changes all rows of the key in one Tx.
	MultiRegion *MultiRegion
	// Version increases on every update; UpdateKey fails with ErrConflict
	// when the stored version is not the one read.
	Version int64
}

// MultiRegion is a multi-Region key's configuration: which Region holds the
// primary key and which hold replicas.
type MultiRegion struct {
	PrimaryRegion  string   `json:"p"`
	ReplicaRegions []string `json:"r,omitempty"`
}

// KeyMaterial is one generation of a key's material.
type KeyMaterial struct {
	ID           []byte    `json:"i"`
	Sealed       []byte    `json:"m,omitempty"`
	Created      time.Time `json:"c"`
	RotationType string    `json:"r,omitempty"` // AUTOMATIC | ON_DEMAND; empty for the first
	// Imported material: EXPIRES or not, until when, a caller's label;
	// Sealed is empty while the material is deleted or expired.
	ExpirationModel string    `json:"e,omitempty"`
	ValidTo         time.Time `json:"v,omitempty"`
	Description     string    `json:"d,omitempty"`
	// Digest identifies imported material (SHA-256 under a per-key salt) so
	// re-import can tell the same material from different material.
	Digest []byte `json:"h,omitempty"`
	// Pending marks imported material waiting for RotateKeyOnDemand
	// (KeyMaterialState PENDING_ROTATION): not yet used, not yet bound to
	// the key for good (DeleteImportedKeyMaterial removes it).
	Pending bool `json:"p,omitempty"`
}

// Rotation is a key's rotation schedule.
type Rotation struct {
	Enabled       bool      `json:"e,omitempty"`
	PeriodDays    int       `json:"p,omitempty"`
	Next          time.Time `json:"n,omitempty"`
	OnDemandStart time.Time `json:"o,omitempty"`
	OnDemandCount int       `json:"c,omitempty"`
}

// ImportParameters is one import token's state.
type ImportParameters struct {
	TokenID      []byte    `json:"t"`
	WrappingSpec string    `json:"s"`
	Algorithm    string    `json:"a"`
	SealedKey    []byte    `json:"k"`
	ValidTo      time.Time `json:"v"`
}

// Alias maps an alias name (alias/...) to a key.
type Alias struct {
	AccountID string
	Region    string
	Name      string
	KeyID     string
	Created   time.Time
	Updated   time.Time
}

// CustomKeyStore is a custom key store's configuration. Secret is sealed by
// the root key (kmsuser password or XKS secret access key).
type CustomKeyStore struct {
	AccountID string
	// Region is the Region the store belongs to (names are unique per
	// account and Region; ids everywhere).
	Region  string
	ID      string
	Name    string
	Type    string
	Created time.Time
	// Config holds the non-secret, type-specific settings as JSON.
	Config []byte
	// SealedSecret holds the type-specific secrets, sealed.
	SealedSecret []byte
	// State is the last connection state and error code.
	ConnectionState     string
	ConnectionErrorCode string
	// BackupHistory names the backup history of a CloudHSM store's
	// cluster (a digest of its cluster certificate); "" for other types.
	// It is unique across stores.
	BackupHistory string
	Version       int64
}

// VPCEndpointService is a VPC endpoint service an external key store with
// VPC_ENDPOINT_SERVICE connectivity reaches its proxy through (keyhold has
// no VPC; `keyhold vpce` registers them). ServiceName is unique.
type VPCEndpointService struct {
	ServiceName        string
	Owner              string // "" = the account of the store that names it
	Endpoint           string // https://host[:port] keyhold dials
	PrivateDNSName     string
	PrivateDNSVerified bool
	AllowedPrincipals  []string
	AcceptanceRequired bool
	AvailabilityZones  []string
}

// HSMCluster is one CloudHSM cluster with its HSMs and crypto user. The
// hsm package owns Record (its encoding of everything but the id, state
// and creation time, which are columns for listing).
type HSMCluster struct {
	ID      string
	State   string
	Created time.Time
	Record  []byte
}

// HSMBackup is one backup of a cluster; Record as for HSMCluster.
type HSMBackup struct {
	ID        string
	ClusterID string
	State     string
	Created   time.Time
	Record    []byte
}

// Grant is a KMS grant on a key. AccountID and KeyID name the key; ID is
// unique across all keys. Operations are KMS grant operations ("Encrypt").
type Grant struct {
	AccountID         string
	Region            string
	KeyID             string
	ID                string
	Name              string
	GranteePrincipal  string
	RetiringPrincipal string
	// IssuingAccount is the account id of the principal that created it.
	IssuingAccount string
	Operations     []string
	// EncryptionContextEquals and EncryptionContextSubset are the grant
	// constraints; nil when absent.
	EncryptionContextEquals map[string]string
	EncryptionContextSubset map[string]string
	Created                 time.Time
}

// GrantFilter selects grants of one key for ListGrants. Empty fields match
// everything; Limit <= 0 means no limit.
type GrantFilter struct {
	AccountID        string
	Region           string
	KeyID            string
	GrantID          string
	GranteePrincipal string
	// After returns only grants with ID > After, by ID.
	After string
	Limit int
}

// KeyUsage is a key's last successful cryptographic use (GetKeyLastUsage).
type KeyUsage struct {
	AccountID string
	// Region is the Region of the key's row ("" where keys have none).
	Region    string
	KeyID     string
	Operation string
	RequestID string
	Time      time.Time
}

// Store is keyhold's durable state. Implementations are safe for concurrent
// use; each method is atomic; a method that writes returns only after the
// write is durable (it survives kill -9 of the process).
type Store interface {
	CreateAccount(ctx context.Context, a Account) error
	ListAccounts(ctx context.Context) ([]Account, error)
	PutAccessKey(ctx context.Context, k AccessKey) error
	// GetAccessKey returns ErrNotFound for an unknown id.
	GetAccessKey(ctx context.Context, id string) (AccessKey, error)
	ListAccessKeys(ctx context.Context, principalARN string) ([]AccessKey, error)
	DeleteAccessKey(ctx context.Context, id string) error

	// CreatePrincipal fails with ErrExists when the ARN is taken.
	CreatePrincipal(ctx context.Context, p Principal) error
	GetPrincipal(ctx context.Context, arn string) (Principal, error)
	ListPrincipals(ctx context.Context, accountID string) ([]Principal, error)
	UpdatePrincipal(ctx context.Context, p Principal) error
	// DeletePrincipal removes the principal, its policies and access keys.
	DeletePrincipal(ctx context.Context, arn string) error
	// PutPrincipalPolicy creates or replaces a named policy.
	PutPrincipalPolicy(ctx context.Context, p PrincipalPolicy) error
	DeletePrincipalPolicy(ctx context.Context, principalARN, name string) error
	ListPrincipalPolicies(ctx context.Context, principalARN string) ([]PrincipalPolicy, error)

	// AssignRegion gives every key, alias, grant and custom key store
	// stored before keyhold knew Regions (Region "") to region. It runs
	// once per database: the first call assigns, every later one (of any
	// replica) returns at once without reading the tables.
	AssignRegion(ctx context.Context, region string) error

	// CreateKey fails with ErrExists when the id is taken in k's account
	// and Region.
	CreateKey(ctx context.Context, k Key) error
	GetKey(ctx context.Context, accountID, region, id string) (Key, error)
	// FindKey finds a key of a Region by id in any account (key ids are
	// unique UUIDs, or mrk- ids shared only by one multi-Region key's
	// Regions): a ciphertext names its key by id only.
	FindKey(ctx context.Context, region, id string) (Key, error)
	// ListKeyRegions returns the rows of one key id of an account in every
	// Region (a multi-Region key's primary and replicas), by Region.
	ListKeyRegions(ctx context.Context, accountID, id string) ([]Key, error)
	// UpdateKey replaces k if its stored Version equals k.Version and
	// returns the new version.
	UpdateKey(ctx context.Context, k Key) (int64, error)
	// DeleteKey removes the key, every alias that points at it and its
	// grants (in its Region).
	DeleteKey(ctx context.Context, accountID, region, id string) error
	// ListKeyIDs returns up to limit key ids of the account and Region
	// greater than after, in order. It reads no key record (ListKeys pages
	// through a million keys from the primary key's index alone).
	ListKeyIDs(ctx context.Context, accountID, region, after string, limit int) ([]string, error)
	// KeysDueForDeletion returns keys in PendingDeletion whose DeletionDate
	// is at or before t, in every account and Region.
	KeysDueForDeletion(ctx context.Context, t time.Time) ([]Key, error)
	// KeysDueForRotation returns keys whose automatic rotation is enabled
	// and due at t, and EXTERNAL keys whose imported material expires by t.
	KeysDueForRotation(ctx context.Context, t time.Time) ([]Key, error)
	// RecordKeyUsage stores each use as its key's last use, unless a later
	// use of that key is stored already (replicas record concurrently and
	// in batches, so the latest wins whatever the order of the writes).
	RecordKeyUsage(ctx context.Context, uses []KeyUsage) error
	// GetKeyUsage returns the key's last recorded use (zero Time if none)
	// and when this store began recording uses (the same for every key).
	GetKeyUsage(ctx context.Context, accountID, region, keyID string) (KeyUsage, time.Time, error)
	// CountKeysInStore counts keys in a custom key store.
	CountKeysInStore(ctx context.Context, accountID, customKeyStoreID string) (int, error)
	// KeyByXksKeyID finds the key of a store that uses an external key id.
	KeyByXksKeyID(ctx context.Context, accountID, customKeyStoreID, xksKeyID string) (Key, error)

	// CreateAlias fails with ErrExists when the name is taken (in the
	// account and Region) and ErrNotFound when the target key does not
	// exist in that Region.
	CreateAlias(ctx context.Context, a Alias) error
	GetAlias(ctx context.Context, accountID, region, name string) (Alias, error)
	UpdateAlias(ctx context.Context, a Alias) error
	DeleteAlias(ctx context.Context, accountID, region, name string) error
	// ListAliases returns aliases of the account and Region with name >
	// after, by name; keyID "" means all.
	ListAliases(ctx context.Context, accountID, region, keyID, after string, limit int) ([]Alias, error)

	// CreateGrant stores g. It fails with ErrNotFound when the key does not
	// exist, ErrLimit when the key already has maxPerKey grants and
	// ErrExists when the grant id is taken.
	CreateGrant(ctx context.Context, g Grant, maxPerKey int) error
	// GetGrant returns ErrNotFound unless the key has that grant.
	GetGrant(ctx context.Context, accountID, region, keyID, grantID string) (Grant, error)
	// ListGrants returns a key's grants matching f, by grant id.
	ListGrants(ctx context.Context, f GrantFilter) ([]Grant, error)
	// ListRetirableGrants returns grants of keys of a Region in any
	// account whose retiring principal is principal, with ID > after, by
	// ID; limit <= 0 means no limit.
	ListRetirableGrants(ctx context.Context, region, principal, after string, limit int) ([]Grant, error)
	// DeleteGrant removes a grant; ErrNotFound when the key has no such grant.
	DeleteGrant(ctx context.Context, accountID, region, keyID, grantID string) error

	// CreateCustomKeyStore fails with ErrExists when the name is taken in
	// the account and Region (or the id anywhere).
	CreateCustomKeyStore(ctx context.Context, c CustomKeyStore) error
	// GetCustomKeyStore finds a store by id, in any Region (ids are
	// unique); callers check Region.
	GetCustomKeyStore(ctx context.Context, accountID, id string) (CustomKeyStore, error)
	UpdateCustomKeyStore(ctx context.Context, c CustomKeyStore) (int64, error)
	DeleteCustomKeyStore(ctx context.Context, accountID, id string) error
	// ListCustomKeyStores returns the account's stores in every Region, by id.
	ListCustomKeyStores(ctx context.Context, accountID string) ([]CustomKeyStore, error)

	// PutVPCEndpointService creates or replaces the service of that name.
	PutVPCEndpointService(ctx context.Context, v VPCEndpointService) error
	GetVPCEndpointService(ctx context.Context, name string) (VPCEndpointService, error)
	// ListVPCEndpointServices returns every service, by name.
	ListVPCEndpointServices(ctx context.Context) ([]VPCEndpointService, error)
	DeleteVPCEndpointService(ctx context.Context, name string) error

	// CreateHSMCluster fails with ErrExists when the id is taken.
	CreateHSMCluster(ctx context.Context, c HSMCluster) error
	GetHSMCluster(ctx context.Context, id string) (HSMCluster, error)
	// UpdateHSMCluster runs fn on the stored cluster in a transaction that
	// holds the write lock (so owner commands in other processes and the
	// server serialise) and stores the result when fn returns nil. It
	// returns what was stored, or fn's error.
	UpdateHSMCluster(ctx context.Context, id string, fn func(*HSMCluster) error) (HSMCluster, error)
	// ListHSMClusters returns every cluster by creation time, then id.
	ListHSMClusters(ctx context.Context) ([]HSMCluster, error)
	CreateHSMBackup(ctx context.Context, b HSMBackup) error
	GetHSMBackup(ctx context.Context, id string) (HSMBackup, error)
	UpdateHSMBackup(ctx context.Context, id string, fn func(*HSMBackup) error) (HSMBackup, error)
	ListHSMBackups(ctx context.Context) ([]HSMBackup, error)

	// Tx runs fn in one transaction: the changes fn makes through the
	// Store it is given commit together when fn returns nil (durably,
	// before Tx returns) or not at all. fn must use only that Store.
	Tx(ctx context.Context, fn func(Store) error) error

	Close() error
}
