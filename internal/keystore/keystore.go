// Package keystore is the seam between the KMS domain and the places a KMS
// key's cryptography happens. It owns the interfaces; each key store type
// is a driver package (soft/ for keyhold's own material, hsmstore/ for
// CloudHSM key stores, xksstore/ for external key stores) that the
// composition root (internal/cli) builds and hands to kms.New. The domain
// never imports a driver: it picks one by the custom key store's type and
// keeps the connection state machine (DISCONNECTED, CONNECTING, CONNECTED,
// FAILED, DISCONNECTING) itself.
//
// A custom key store driver does symmetric AES-GCM only, because AWS
// custom key stores only do that. Further capabilities (signing, MAC, key
// agreement, import, public keys) are optional interfaces
// (capabilities.go), found by type assertion, which the default store
// implements.
//
// Drivers never see key policies, grants or key states (the domain decides
// whether a call may run before a driver is asked), never log or return a
// plaintext or a secret, and put in an error only what a KMS caller may
// read (Error.Message) and what an operator may (Error.Cause).
package keystore

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyhold/keyhold/internal/blob"
)

// ErrInvalidCiphertext means the payload failed authentication: wrong key,
// wrong encryption context, or tampered bytes. The domain answers
// InvalidCiphertextException.
var ErrInvalidCiphertext = errors.New("keystore: invalid ciphertext")

// ErrNotConnected means the key's custom key store has no live connection
// in this driver (never connected, disconnected, or failed).
var ErrNotConnected = errors.New("keystore: custom key store is not connected")

// Custom key store types as AWS spells them; the default key store has
// type "".
const (
	TypeDefault  = ""
	TypeCloudHSM = "AWS_CLOUDHSM"
	TypeExternal = "EXTERNAL_KEY_STORE"
)

// KeyRef is what a driver needs to know about a KMS key.
type KeyRef struct {
	AccountID        string
	ID               string
	ARN              string
	BackingKeyID     []byte
	SealedMaterial   []byte
	CustomKeyStoreID string
	XksKeyID         string
	// KeySpec is the key's spec (SYMMETRIC_DEFAULT, RSA_2048, HMAC_256, ...).
	KeySpec string
}

// Call says on whose behalf, in which KMS operation, a driver is called.
// External key stores send it to their proxy as requestMetadata; the
// others may log it.
type Call struct {
	PrincipalARN string
	Operation    string // KMS operation: Encrypt, GenerateDataKey, ReEncrypt, CreateKey, ...
	RequestID    string
}

// Backend encrypts and decrypts for keys of one kind. Implementations are
// safe for concurrent use.
type Backend interface {
	// Kind is the blob kind of the ciphertexts it makes.
	Kind() blob.Kind
	// Encrypt returns the store-specific payload that follows the blob
	// header. aad already binds the header and the encryption context.
	Encrypt(ctx context.Context, k KeyRef, call Call, plaintext, aad []byte) ([]byte, error)
	// Decrypt returns the plaintext, or an error wrapping
	// ErrInvalidCiphertext when authentication fails.
	Decrypt(ctx context.Context, k KeyRef, call Call, payload, aad []byte) ([]byte, error)
}

// Material is a new key's backing material as the domain stores it:
// SealedMaterial (sealed by the root key, bound to the key id) when keyhold
// holds it, and the id written into every ciphertext.
type Material struct {
	BackingKeyID   []byte
	SealedMaterial []byte
}

// Default is the default key store's driver (Origin AWS_KMS and
// EXTERNAL): keyhold generates (or imports) the material and holds it
// sealed by the root key. The optional capabilities of other key specs
// (capabilities.go) are found on it by type assertion.
type Default interface {
	Backend
	MaterialMaker
	// NewMaterial makes fresh SYMMETRIC_DEFAULT material for key id (the
	// inner layer of external key store keys).
	NewMaterial(keyID string) (Material, error)
	// Forget drops whatever the driver caches for a deleted key.
	Forget(keyID string)
}

// Config is a custom key store's non-secret configuration, as the domain
// stores it (JSON) and DescribeCustomKeyStores reports it. Each driver
// reads and fills the fields of its type.
type Config struct {
	CloudHsmClusterID      string `json:",omitempty"`
	TrustAnchorCertificate string `json:",omitempty"`
	// ClusterCertificate is the cluster's certificate when the store was
	// created or last re-pointed: "shares a backup history" means the
	// same certificate, and a deleted cluster can still be compared.
	ClusterCertificate string `json:",omitempty"`

	XksProxyUriEndpoint             string `json:",omitempty"`
	XksProxyUriPath                 string `json:",omitempty"`
	XksProxyConnectivity            string `json:",omitempty"`
	XksProxyVpcEndpointServiceName  string `json:",omitempty"`
	XksProxyVpcEndpointServiceOwner string `json:",omitempty"`
	XksAccessKeyID                  string `json:",omitempty"`
}

// Secret is a custom key store's secrets; the domain seals them with the
// root key before they are stored. It never prints.
type Secret struct {
	// Password is kmsuser's password as KMS knows it: the one given at
	// create/update, replaced by the rotated one after each connect.
	Password string `json:",omitempty"`
	// PendingPassword is a rotation in flight: if keyhold died between
	// C_SetPIN and saving, the next connect tries it too.
	PendingPassword    string `json:",omitempty"`
	XksSecretAccessKey string `json:",omitempty"`
}

func (Secret) String() string   { return "keystore.Secret{redacted}" }
func (Secret) GoString() string { return "keystore.Secret{redacted}" }

// Store is one custom key store as a driver sees it.
type Store struct {
	AccountID string
	ID        string
	Name      string
	Type      string
	Config    Config
	Secret    Secret
}

// Settings are the fields of CreateCustomKeyStore and UpdateCustomKeyStore
// that belong to a store type; nil means "not given".
type Settings struct {
	CloudHsmClusterID               *string
	TrustAnchorCertificate          *string
	KeyStorePassword                *string
	XksProxyUriEndpoint             *string
	XksProxyUriPath                 *string
	XksProxyConnectivity            *string
	XksProxyVpcEndpointServiceName  *string
	XksProxyVpcEndpointServiceOwner *string
	XksAccessKeyID                  *string
	XksSecretAccessKey              *string
}

// Change is a create (Current nil) or an update of a custom key store,
// for a driver to validate.
type Change struct {
	AccountID string
	// ID is the store's id (empty on create).
	ID string
	// Current is the stored store when updating.
	Current *Store
	// State is the store's connection state when updating.
	State string
	// Given holds the type-specific fields of the request.
	Given Settings
	// Others are the other custom key stores of the Region (every
	// account), with their configurations, for uniqueness rules.
	Others []Store
	Call   Call
}

// Validated is what a driver makes of a Change: the configuration and
// secret to store, and whether a connected store's live connection must
// pick them up (Reconfigure).
type Validated struct {
	Config Config
	Secret Secret
	// Live is true when the store is CONNECTED and the change affects its
	// connection.
	Live bool
	// BackupHistory is the store's uniqueness token for "one store per
	// cluster backup history" ("" when the type has no such rule).
	BackupHistory string
}

// SaveSecret stores a connecting store's secret at once (durably), for
// drivers that rotate a password while connecting.
type SaveSecret func(ctx context.Context, sec Secret) error

// Driver is a custom key store type's driver. The domain calls Connect from
// its asynchronous connect worker and Disconnect from
// DisconnectCustomKeyStore; a driver holds one live connection per
// connected store and is safe for concurrent use.
type Driver interface {
	Backend
	// Type is the CustomKeyStoreType the driver serves.
	Type() string
	// Validate checks a create or update against local rules (fields,
	// uniqueness, lookups) and returns what to store. Its errors are
	// *Error with the AWS exception to answer. The domain then applies its
	// own rules (name, quota) and calls Probe.
	Validate(ctx context.Context, ch Change) (Validated, error)
	// Probe finishes a validated create or update: the Region-wide rules
	// and whatever contact with the backend KMS makes at that point (an
	// XKS proxy's health).
	Probe(ctx context.Context, ch Change, v Validated) error
	// CheckConnect raises the exceptions ConnectCustomKeyStore throws at
	// once (before the store goes CONNECTING).
	CheckConnect(ctx context.Context, s Store) error
	// Connect makes the store's live connection. A failure is a
	// *ConnectError carrying the ConnectionErrorCode.
	Connect(ctx context.Context, s Store, save SaveSecret) error
	// Reconfigure gives a connected store's live connection a new
	// configuration (Validated.Live).
	Reconfigure(ctx context.Context, s Store) error
	// Disconnect drops the store's live connection (logging out); it is
	// idempotent.
	Disconnect(ctx context.Context, s Store) error
	// CreateKey makes a new KMS key's backing material in a connected
	// store; k.ID, k.ARN and (external key stores) k.XksKeyID are set.
	CreateKey(ctx context.Context, s Store, k KeyRef, call Call) (Material, error)
	// DestroyKey removes a deleted key's backing material where the driver
	// owns it (best effort; an external key is never touched).
	DestroyKey(ctx context.Context, k KeyRef) error
	// Health checks a connected store's backend now: nil when healthy,
	// else a *ConnectError with the ConnectionErrorCode it would have.
	Health(ctx context.Context, storeID string) error
	// Unavailable is the client-safe message for a key whose store cannot
	// serve it now (not connected, backend down).
	Unavailable(k KeyRef) string
}

// Repeater is implemented by drivers whose CreateCustomKeyStore is
// idempotent: creating a store again with the same name and settings
// returns the existing one (CloudHSM key stores, while DISCONNECTED).
type Repeater interface {
	Repeats(existing Store, state, name string, given Settings) bool
}

// Joiner is implemented by drivers whose Connect changes what the store
// shares with other keyhold replicas (CloudHSM rotates kmsuser's
// password). Join opens this process's own connection to a store another
// replica connected, changing nothing shared; it returns Connect's errors.
// Drivers without it are joined with Connect.
type Joiner interface {
	Join(ctx context.Context, s Store) error
}

// Randomness is implemented by drivers whose stores can generate random
// bytes (GenerateRandom with CustomKeyStoreId: CloudHSM).
type Randomness interface {
	GenerateRandom(ctx context.Context, storeID string, n int) ([]byte, error)
}

// Error is a driver's client-safe failure: Code is the AWS exception name
// (CloudHsmClusterInUseException, XksProxyUriInUseException, ...), Message
// follows AWS's wording, Cause is for the operator's log only.
type Error struct {
	Code    string
	Message string
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Message + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// Errorf builds an Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ConnectError is a failed connect or health check: Code is the
// ConnectionErrorCode (INVALID_CREDENTIALS, NETWORK_ERRORS, ...).
type ConnectError struct {
	Code  string
	Cause error
}

func (e *ConnectError) Error() string {
	if e.Cause != nil {
		return "connection error " + e.Code + ": " + e.Cause.Error()
	}
	return "connection error " + e.Code
}

func (e *ConnectError) Unwrap() error { return e.Cause }

// ConnectionCode returns err's ConnectionErrorCode: "" for nil,
// INTERNAL_ERROR for an error that is not a *ConnectError.
func ConnectionCode(err error) string {
	if err == nil {
		return ""
	}
	var ce *ConnectError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return "INTERNAL_ERROR"
}
