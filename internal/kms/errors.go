package kms

import (
	"errors"
	"fmt"

	"github.com/keyhold/keyhold/internal/store"
)

// Code is a KMS exception name, exactly as AWS spells it on the wire.
type Code string

// The codes the domain returns. internal/api/kmsapi maps each to its HTTP status.
const (
	AlreadyExists                Code = "AlreadyExistsException"
	Conflict                     Code = "ConflictException"
	ExpiredImportToken           Code = "ExpiredImportTokenException"
	IncorrectKeyMaterial         Code = "IncorrectKeyMaterialException"
	InvalidImportToken           Code = "InvalidImportTokenException"
	InvalidMac                   Code = "KMSInvalidMacException"
	InvalidSignature             Code = "KMSInvalidSignatureException"
	CloudHsmClusterInUse         Code = "CloudHsmClusterInUseException"
	CloudHsmClusterInvalidConfig Code = "CloudHsmClusterInvalidConfigurationException"
	CloudHsmClusterNotActive     Code = "CloudHsmClusterNotActiveException"
	CloudHsmClusterNotFound      Code = "CloudHsmClusterNotFoundException"
	CloudHsmClusterNotRelated    Code = "CloudHsmClusterNotRelatedException"
	CustomKeyStoreHasCMKs        Code = "CustomKeyStoreHasCMKsException"
	CustomKeyStoreInvalidState   Code = "CustomKeyStoreInvalidStateException"
	CustomKeyStoreNameInUse      Code = "CustomKeyStoreNameInUseException"
	CustomKeyStoreNotFound       Code = "CustomKeyStoreNotFoundException"
	DependencyTimeout            Code = "DependencyTimeoutException"
	Disabled                     Code = "DisabledException"
	DryRunOperation              Code = "DryRunOperationException"
	IncorrectKey                 Code = "IncorrectKeyException"
	IncorrectTrustAnchor         Code = "IncorrectTrustAnchorException"
	InvalidAliasName             Code = "InvalidAliasNameException"
	InvalidArn                   Code = "InvalidArnException"
	InvalidCiphertext            Code = "InvalidCiphertextException"
	InvalidKeyUsage              Code = "InvalidKeyUsageException"
	InvalidMarker                Code = "InvalidMarkerException"
	Internal                     Code = "KMSInternalException"
	InvalidState                 Code = "KMSInvalidStateException"
	LimitExceeded                Code = "LimitExceededException"
	MalformedPolicyDocument      Code = "MalformedPolicyDocumentException"
	NotFound                     Code = "NotFoundException"
	Tag                          Code = "TagException"
	UnsupportedOperation         Code = "UnsupportedOperationException"
	Validation                   Code = "ValidationException"
	XksKeyAlreadyInUse           Code = "XksKeyAlreadyInUseException"
	XksKeyInvalidConfiguration   Code = "XksKeyInvalidConfigurationException"
	XksKeyNotFound               Code = "XksKeyNotFoundException"
	XksProxyIncorrectAuthCred    Code = "XksProxyIncorrectAuthenticationCredentialException"
	XksProxyInvalidConfiguration Code = "XksProxyInvalidConfigurationException"
	XksProxyInvalidResponse      Code = "XksProxyInvalidResponseException"
	XksProxyUriEndpointInUse     Code = "XksProxyUriEndpointInUseException"
	XksProxyUriInUse             Code = "XksProxyUriInUseException"
	XksProxyUriUnreachable       Code = "XksProxyUriUnreachableException"
	XksProxyVpcEndpointSvcInUse  Code = "XksProxyVpcEndpointServiceInUseException"
	XksProxyVpcEndpointSvcInvCfg Code = "XksProxyVpcEndpointServiceInvalidConfigurationException"
	XksProxyVpcEndpointSvcNotFnd Code = "XksProxyVpcEndpointServiceNotFoundException"
)

// Error is the domain's one error type: a code, a message safe for the
// client, and a cause for the logs only.
type Error struct {
	Code    Code
	Message string
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s (cause: %v)", e.Code, e.Message, e.Cause)
	}
	return string(e.Code) + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func internal(op string, cause error) *Error {
	if errors.Is(cause, store.ErrUnavailable) {
		// The database is unreachable or too slow: the caller may retry.
		return &Error{Code: DependencyTimeout, Message: "The service could not reach its database in time. The request can be retried.", Cause: fmt.Errorf("%s: %w", op, cause)}
	}
	return &Error{Code: Internal, Message: "An internal error occurred. The request can be retried.", Cause: fmt.Errorf("%s: %w", op, cause)}
}

// AsError extracts a domain error.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
