package xksstore

import (
	"errors"

	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/xks"
	"github.com/keyhold/keyhold/internal/xks/client"
)

// AWS exception names this driver answers.
const (
	codeValidation               = "ValidationException"
	codeLimitExceeded            = "LimitExceededException"
	codeStoreInvalidState        = "CustomKeyStoreInvalidStateException"
	codeInvalidState             = "KMSInvalidStateException"
	codeXksKeyInvalidConfig      = "XksKeyInvalidConfigurationException"
	codeXksKeyNotFound           = "XksKeyNotFoundException"
	codeXksProxyInvalidConfig    = "XksProxyInvalidConfigurationException"
	codeXksProxyUriEndpointInUse = "XksProxyUriEndpointInUseException"
	codeXksProxyUriInUse         = "XksProxyUriInUseException"
	codeVpcEndpointSvcInUse      = "XksProxyVpcEndpointServiceInUseException"
	codeVpcEndpointSvcInvCfg     = "XksProxyVpcEndpointServiceInvalidConfigurationException"
	codeVpcEndpointSvcNotFound   = "XksProxyVpcEndpointServiceNotFoundException"
)

// The exception messages the XKS proxy API specification gives for each
// failure ("KMS Considerations" under "Error codes"). KMS never returns the
// proxy's errorMessage; it logs it.
const (
	xksMsgCannotInterpret = "AWS KMS cannot interpret the response from the external key store proxy. If you see this error repeatedly, report it to your external key store proxy administrator."
	xksMsgKeyDisabled     = "The external key associated with this KMS key in an external key store is not enabled in the external key manager. Enable the external key in the external key manager and retry the request."
	xksMsgBadCiphertext   = "The external key store proxy rejected the request because the specified ciphertext or encryption context is corrupted, missing, or otherwise invalid."
	xksMsgKeyUsage        = "The external key associated with this KMS key in an external key store does not support the requested operation. Enable the operation on the key in your external key manager, and try the request again."
	xksMsgAuthFailed      = "The external key store proxy rejected the request because it could not authenticate AWS KMS. Verify the XKS proxy authentication credentials for your external key store and update if necessary."
	xksMsgAccessDenied    = "The external key store proxy denied access to the operation. Verify that the user and the external key are both authorized for this operation, and try the request again."
	xksMsgKeyNotFound     = "The external key associated with this KMS key in an external key store was not found in its external key manager. If the external key ID associated with this KMS key is incorrect, create a new KMS key with the correct external key ID."
	xksMsgInvalidURIPath  = "The external key store proxy rejected the request because of an invalid URI path. Verify the URI path for your external key store and update if necessary."
	xksMsgUnsupported     = "The external key store proxy rejected the request because it does not support the requested operation. If you see this error repeatedly, report it to your external key store proxy administrator."
	xksMsgDependency      = "The external key store proxy did not respond to the request in the time allotted. Retry the request. If you see this error repeatedly, report it to your external key store proxy administrator."
	xksMsgThrottled       = "The external key store proxy rejected the request due to a very high request rate. Reduce the frequency of your calls using KMS keys in this external key store."
	xksMsgInternal        = "The external key store proxy rejected the request because it cannot communicate with the external key manager. Verify that the external key store proxy configuration is correct and that the external key manager is available."
	xksMsgNoTCP           = "AWS KMS cannot communicate with the external key store proxy. This might be a transient network issue. If you see this error repeatedly, verify that your external key store proxy is active and is connected to the network, and that its endpoint URI is correct in your external keystore."
	xksMsgNoTLS           = "AWS KMS cannot establish a TLS connection to the external key store proxy. Verify the TLS configuration, including its certificate."
	xksMsgTimeout         = "AWS KMS rejected the request because the external key store proxy did not respond in time. Retry the request. If you see this error repeatedly, report it to your external key store proxy administrator."
	xksMsgNotConnected    = "This KMS key is in a custom key store that is not connected to its external key store proxy. Connect the external key store and try the request again."
	xksMsgConfig          = "The external key store proxy configuration (XksProxyUriEndpoint or XksProxyUriPath) is not valid."
)

// xksMessage is the client-safe message for a failed proxy call.
func xksMessage(err error) string {
	var (
		pe *client.ProxyError
		te *client.TransportError
		ie *client.InvalidResponseError
		ce *client.ConfigError
	)
	switch {
	case errors.Is(err, keystore.ErrNotConnected):
		return xksMsgNotConnected
	case errors.Is(err, client.ErrUnavailable):
		return xksMsgInternal
	case errors.As(err, &pe):
		switch pe.Name {
		case xks.ValidationException:
			return xksMsgCannotInterpret
		case xks.InvalidStateException:
			return xksMsgKeyDisabled
		case xks.InvalidCiphertextException:
			return xksMsgBadCiphertext
		case xks.InvalidKeyUsageException:
			return xksMsgKeyUsage
		case xks.AuthenticationFailedException:
			return xksMsgAuthFailed
		case xks.AccessDeniedException:
			return xksMsgAccessDenied
		case xks.KeyNotFoundException:
			return xksMsgKeyNotFound
		case xks.InvalidUriPathException:
			return xksMsgInvalidURIPath
		case xks.UnsupportedOperationException:
			return xksMsgUnsupported
		case xks.DependencyTimeoutException:
			return xksMsgDependency
		case xks.ThrottlingException:
			return xksMsgThrottled
		case xks.InternalException:
			return xksMsgInternal
		}
		return xksMsgCannotInterpret
	case errors.As(err, &te):
		switch te.Kind {
		case client.Timeout:
			return xksMsgTimeout
		case client.TLSFailure:
			return xksMsgNoTLS
		}
		return xksMsgNoTCP
	case errors.As(err, &ie):
		return xksMsgCannotInterpret
	case errors.As(err, &ce):
		return xksMsgConfig
	}
	return xksMsgCannotInterpret
}

// xksStoreError is the exception for a failed GetHealthStatus during
// CreateCustomKeyStore or UpdateCustomKeyStore.
func xksStoreError(err error) *keystore.Error {
	code := client.CreateStoreError(err)
	var ce *client.ConfigError
	if errors.As(err, &ce) {
		return &keystore.Error{Code: codeXksProxyInvalidConfig, Message: xksMsgConfig + " " + ce.Reason + ".", Cause: err}
	}
	return &keystore.Error{Code: code, Message: xksMessage(err), Cause: err}
}

// xksCreateKeyError is the exception for a failed GetKeyMetadata (or an
// unusable external key) during CreateKey. The spec's
// XksKeyInvalidResponseException is not in the KMS API model, so SDKs
// cannot decode it; keyhold answers CustomKeyStoreInvalidStateException,
// the spec's exception for every other proxy failure during CreateKey.
// AccessDeniedException is KMSInvalidStateException, as the spec says.
func xksCreateKeyError(xksKeyID string, err error) *keystore.Error {
	var ke *client.KeyConfigError
	if errors.As(err, &ke) {
		return &keystore.Error{Code: codeXksKeyInvalidConfig, Cause: err,
			Message: "The external key " + xksKeyID + " cannot back a KMS key: " + ke.Reason + ". It must be an enabled AES_256 key that allows ENCRYPT and DECRYPT."}
	}
	var pe *client.ProxyError
	if errors.As(err, &pe) && pe.Name == xks.AccessDeniedException {
		return &keystore.Error{Code: codeInvalidState, Message: xksMsgAccessDenied, Cause: err}
	}
	switch c := client.CreateKeyError(err); c {
	case codeXksKeyInvalidConfig, codeXksKeyNotFound:
		return &keystore.Error{Code: c, Message: xksMessage(err), Cause: err}
	}
	return &keystore.Error{Code: codeStoreInvalidState, Message: xksMessage(err), Cause: err}
}

// xksCryptoError is the exception for a failed proxy call during a
// cryptographic operation: always KMSInvalidStateException, with the
// spec's message for the cause.
func xksCryptoError(err error) *keystore.Error {
	return &keystore.Error{Code: codeInvalidState, Message: xksMessage(err), Cause: err}
}
