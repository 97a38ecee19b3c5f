// Package xks holds what both ends of the AWS KMS External Key Store proxy
// API v1 share: the JSON wire structs, the error names with their HTTP
// statuses, the AES-GCM additional-data construction that binds
// ciphertextMetadata, and the ciphertext data integrity value (CDIV).
//
// The proxy server lives in xks/proxy, the client KMS uses in xks/client and
// a fault-injecting fake in xks/xkstest. This package does no I/O and must
// never log or format plaintext, AAD or secrets.
package xks

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// Service is the SigV4 signing name of the XKS proxy API.
const Service = "kms-xks-proxy"

// PathSuffix follows the optional URI path prefix of every key store.
const PathSuffix = "/kms/xks/v1"

// Limits the spec requires every proxy to support (decoded bytes).
const (
	MinPlaintextLimit      = 4300
	MinAADLimit            = 8192
	MaxCiphertextMetadata  = 20
	AuthTagSize            = 16
	EncryptionAlgorithm    = "AES_GCM"
	CDIVAlgorithm          = "SHA_256"
	KeySpecAES256          = "AES_256"
	KeyStatusEnabled       = "ENABLED"
	KeyStatusDisabled      = "DISABLED"
	HealthActive           = "ACTIVE"
	HealthDegraded         = "DEGRADED"
	HealthUnavailable      = "UNAVAILABLE"
	UsageEncrypt           = "ENCRYPT"
	UsageDecrypt           = "DECRYPT"
	maxAADLenInConstructed = 0xFFFF
)

// Error names of the spec's error table.
const (
	ValidationException           = "ValidationException"
	InvalidStateException         = "InvalidStateException"
	InvalidCiphertextException    = "InvalidCiphertextException"
	InvalidKeyUsageException      = "InvalidKeyUsageException"
	AuthenticationFailedException = "AuthenticationFailedException"
	AccessDeniedException         = "AccessDeniedException"
	KeyNotFoundException          = "KeyNotFoundException"
	InvalidUriPathException       = "InvalidUriPathException"
	ThrottlingException           = "ThrottlingException"
	UnsupportedOperationException = "UnsupportedOperationException"
	DependencyTimeoutException    = "DependencyTimeoutException"
	InternalException             = "InternalException"
)

// ErrorStatus maps each error name to its HTTP status.
var ErrorStatus = map[string]int{
	ValidationException:           400,
	InvalidStateException:         400,
	InvalidCiphertextException:    400,
	InvalidKeyUsageException:      400,
	AuthenticationFailedException: 401,
	AccessDeniedException:         403,
	KeyNotFoundException:          404,
	InvalidUriPathException:       404,
	ThrottlingException:           429,
	UnsupportedOperationException: 501,
	DependencyTimeoutException:    503,
	InternalException:             500,
}

// RequestMetadata is sent by KMS in every request body. Unknown fields are
// ignored by decoders, as the spec asks.
type RequestMetadata struct {
	AWSPrincipalARN string `json:"awsPrincipalArn,omitempty"`
	AWSSourceVPC    string `json:"awsSourceVpc,omitempty"`
	AWSSourceVPCE   string `json:"awsSourceVpce,omitempty"`
	KMSKeyARN       string `json:"kmsKeyArn,omitempty"`
	KMSOperation    string `json:"kmsOperation"`
	KMSRequestID    string `json:"kmsRequestId"`
	KMSViaService   string `json:"kmsViaService,omitempty"`
}

// MetadataRequest is the body of POST .../keys/{id}/metadata and of
// POST .../health.
type MetadataRequest struct {
	RequestMetadata *RequestMetadata `json:"requestMetadata"`
}

// HealthRequest is the body of POST .../health.
type HealthRequest = MetadataRequest

// MetadataResponse answers GetKeyMetadata.
type MetadataResponse struct {
	KeySpec   string   `json:"keySpec"`
	KeyUsage  []string `json:"keyUsage"`
	KeyStatus string   `json:"keyStatus"`
}

// EncryptRequest is the body of POST .../keys/{id}/encrypt. Byte fields are
// standard base64 on the wire (encoding/json's []byte encoding).
type EncryptRequest struct {
	RequestMetadata                       *RequestMetadata `json:"requestMetadata"`
	Plaintext                             []byte           `json:"plaintext"`
	EncryptionAlgorithm                   string           `json:"encryptionAlgorithm"`
	AdditionalAuthenticatedData           []byte           `json:"additionalAuthenticatedData,omitempty"`
	CiphertextDataIntegrityValueAlgorithm string           `json:"ciphertextDataIntegrityValueAlgorithm,omitempty"`
}

// EncryptResponse answers Encrypt.
type EncryptResponse struct {
	AuthenticationTag            []byte `json:"authenticationTag"`
	Ciphertext                   []byte `json:"ciphertext"`
	CiphertextDataIntegrityValue string `json:"ciphertextDataIntegrityValue,omitempty"`
	CiphertextMetadata           []byte `json:"ciphertextMetadata,omitempty"`
	InitializationVector         []byte `json:"initializationVector"`
}

// DecryptRequest is the body of POST .../keys/{id}/decrypt.
type DecryptRequest struct {
	RequestMetadata             *RequestMetadata `json:"requestMetadata"`
	Ciphertext                  []byte           `json:"ciphertext"`
	CiphertextMetadata          []byte           `json:"ciphertextMetadata,omitempty"`
	EncryptionAlgorithm         string           `json:"encryptionAlgorithm"`
	AdditionalAuthenticatedData []byte           `json:"additionalAuthenticatedData,omitempty"`
	InitializationVector        []byte           `json:"initializationVector"`
	AuthenticationTag           []byte           `json:"authenticationTag"`
}

// DecryptResponse answers Decrypt.
type DecryptResponse struct {
	Plaintext []byte `json:"plaintext"`
}

// EKMFleetDetail describes one external key manager behind the proxy.
type EKMFleetDetail struct {
	ID           string `json:"id"`
	Model        string `json:"model"`
	HealthStatus string `json:"healthStatus"`
}

// HealthResponse answers GetHealthStatus.
type HealthResponse struct {
	XksProxyFleetSize int              `json:"xksProxyFleetSize"`
	XksProxyVendor    string           `json:"xksProxyVendor"`
	XksProxyModel     string           `json:"xksProxyModel"`
	EKMVendor         string           `json:"ekmVendor"`
	EKMFleetDetails   []EKMFleetDetail `json:"ekmFleetDetails"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	ErrorName    string `json:"errorName"`
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// ErrAADTooLong means the AAD cannot be length-prefixed in 16 bits.
var ErrAADTooLong = errors.New("xks: additional authenticated data longer than 65535 bytes")

// GCMAAD builds the AES-GCM additional data the spec recommends, binding
// the caller's AAD and the ciphertextMetadata so neither can be swapped or
// altered: u16be(len(aad)) || aad || u8(len(md)) || md. Absent fields have
// length 0. md must be at most 20 bytes (callers check; a longer md is
// refused here too).
func GCMAAD(aad, md []byte) ([]byte, error) {
	if len(aad) > maxAADLenInConstructed {
		return nil, ErrAADTooLong
	}
	if len(md) > MaxCiphertextMetadata {
		return nil, errors.New("xks: ciphertextMetadata longer than 20 bytes")
	}
	out := make([]byte, 0, 3+len(aad)+len(md))
	out = binary.BigEndian.AppendUint16(out, uint16(len(aad)))
	out = append(out, aad...)
	out = append(out, byte(len(md)))
	out = append(out, md...)
	return out, nil
}

// CDIV computes the ciphertext data integrity value of an encrypt answer:
// base64(SHA-256(aad || ciphertextMetadata || iv || ciphertext || tag)) over
// the decoded bytes, absent fields skipped, no length prefixes.
func CDIV(aad, md, iv, ciphertext, tag []byte) string {
	h := sha256.New()
	h.Write(aad)
	h.Write(md)
	h.Write(iv)
	h.Write(ciphertext)
	h.Write(tag)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}
