package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strconv"

	"github.com/keyhold/keyhold/internal/xks"
)

// ProxyError is a well-formed XKS error answer.
type ProxyError struct {
	Name    string // errorName, e.g. "KeyNotFoundException"
	Status  int    // HTTP status
	Message string // errorMessage: for logs only, KMS never returns it
}

func (e *ProxyError) Error() string {
	return "xks proxy: " + e.Name + " (HTTP " + strconv.Itoa(e.Status) + ")"
}

// InvalidResponseError is an answer KMS cannot use: not JSON, wrong shape,
// wrong sizes, a CDIV mismatch, or an error status without an XKS body.
type InvalidResponseError struct{ Reason string }

func (e *InvalidResponseError) Error() string {
	return "xks client: invalid proxy response: " + e.Reason
}

func invalid(reason string) error { return &InvalidResponseError{reason} }

// ConfigError is a client configuration KMS would reject.
type ConfigError struct{ Reason string }

func (e *ConfigError) Error() string { return "xks client: invalid configuration: " + e.Reason }

// TransportKind says how a call failed below HTTP.
type TransportKind int

const (
	Unreachable TransportKind = iota // refused, reset, DNS, no route
	Timeout                          // no answer within the per-call timeout
	TLSFailure                       // handshake or certificate verification failed
)

// TransportError is a network-level failure.
type TransportError struct {
	Kind TransportKind
	Err  error
}

func (e *TransportError) Error() string {
	what := [...]string{"proxy unreachable", "proxy timed out", "TLS failure"}[e.Kind]
	return "xks client: " + what + ": " + e.Err.Error()
}

func (e *TransportError) Unwrap() error { return e.Err }

func classifyTransport(err error, expired bool) error {
	var (
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		cve *tls.CertificateVerificationError
		rhe tls.RecordHeaderError
		ae  tls.AlertError
		ne  net.Error
	)
	switch {
	case errors.As(err, &cve), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci),
		errors.As(err, &rhe), errors.As(err, &ae):
		return &TransportError{TLSFailure, err}
	case errors.Is(err, context.DeadlineExceeded) || expired,
		errors.As(err, &ne) && ne.Timeout():
		return &TransportError{Timeout, err}
	}
	return &TransportError{Unreachable, err}
}

// ConnectionErrorCode is the KMS ConnectionErrorCode for a failed
// Health call during ConnectCustomKeyStore (or a periodic check).
func ConnectionErrorCode(err error) string {
	var (
		pe *ProxyError
		te *TransportError
		ie *InvalidResponseError
		ce *ConfigError
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrUnavailable):
		return "XKS_PROXY_NOT_REACHABLE"
	case errors.As(err, &pe):
		switch pe.Name {
		case xks.AuthenticationFailedException:
			return "INVALID_CREDENTIALS"
		case xks.AccessDeniedException:
			return "XKS_PROXY_ACCESS_DENIED"
		case xks.InvalidUriPathException:
			return "XKS_PROXY_INVALID_CONFIGURATION"
		case xks.DependencyTimeoutException:
			return "XKS_PROXY_TIMED_OUT"
		case xks.ThrottlingException:
			return "XKS_PROXY_NOT_REACHABLE"
		}
		return "XKS_PROXY_INVALID_RESPONSE"
	case errors.As(err, &te):
		switch te.Kind {
		case Timeout:
			return "XKS_PROXY_TIMED_OUT"
		case TLSFailure:
			return "XKS_PROXY_INVALID_TLS_CONFIGURATION"
		}
		return "XKS_PROXY_NOT_REACHABLE"
	case errors.As(err, &ie):
		return "XKS_PROXY_INVALID_RESPONSE"
	case errors.As(err, &ce):
		return "XKS_PROXY_INVALID_CONFIGURATION"
	}
	return "INTERNAL_ERROR"
}

// CreateStoreError is the KMS exception for a failed Health call during
// CreateCustomKeyStore or UpdateCustomKeyStore, per the spec's table.
func CreateStoreError(err error) string {
	var (
		pe *ProxyError
		te *TransportError
		ce *ConfigError
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrUnavailable):
		return "XksProxyUriUnreachableException"
	case errors.As(err, &pe):
		switch pe.Name {
		case xks.AuthenticationFailedException:
			return "XksProxyIncorrectAuthenticationCredentialException"
		case xks.InvalidUriPathException:
			return "XksProxyInvalidConfigurationException"
		case xks.DependencyTimeoutException, xks.ThrottlingException:
			return "XksProxyUriUnreachableException"
		}
		return "XksProxyInvalidResponseException"
	case errors.As(err, &te):
		return "XksProxyUriUnreachableException"
	case errors.As(err, &ce):
		return "XksProxyInvalidConfigurationException"
	}
	return "XksProxyInvalidResponseException"
}

// CreateKeyError is the KMS exception for a failed KeyMetadata call (or a
// CheckKeyMetadata refusal) during CreateKey with an XksKeyId.
func CreateKeyError(err error) string {
	var (
		pe *ProxyError
		ke *KeyConfigError
		ie *InvalidResponseError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ke):
		return "XksKeyInvalidConfigurationException"
	case errors.As(err, &pe):
		switch pe.Name {
		case xks.InvalidStateException, xks.InvalidKeyUsageException:
			return "XksKeyInvalidConfigurationException"
		case xks.KeyNotFoundException:
			return "XksKeyNotFoundException"
		case xks.UnsupportedOperationException:
			return "XksKeyInvalidResponseException"
		}
	case errors.As(err, &ie):
		return "XksKeyInvalidResponseException"
	}
	return "CustomKeyStoreInvalidStateException"
}
