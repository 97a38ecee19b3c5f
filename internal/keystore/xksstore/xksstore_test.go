package xksstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/xks"
	"github.com/keyhold/keyhold/internal/xks/client"
)

// The exception names the mapping answers, as the KMS API spells them.
const (
	XksProxyInvalidResponse      = "XksProxyInvalidResponseException"
	XksProxyIncorrectAuthCred    = "XksProxyIncorrectAuthenticationCredentialException"
	XksProxyInvalidConfiguration = "XksProxyInvalidConfigurationException"
	XksProxyUriUnreachable       = "XksProxyUriUnreachableException"
	CustomKeyStoreInvalidState   = "CustomKeyStoreInvalidStateException"
	XksKeyInvalidConfiguration   = "XksKeyInvalidConfigurationException"
	XksKeyNotFound               = "XksKeyNotFoundException"
	InvalidState                 = "KMSInvalidStateException"
)

type Code = string

func TestXKSRequestMetadata(t *testing.T) {
	k := keystore.KeyRef{ARN: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}
	c := keystore.Call{PrincipalARN: "arn:aws:iam::111122223333:user/alice", RequestID: "req-1"}
	for _, tc := range []struct {
		op   string
		def  string
		want string
	}{
		{"", "Encrypt", "Encrypt"},
		{"", "Decrypt", "Decrypt"},
		{"GenerateDataKey", "Encrypt", "GenerateDataKey"},
		{"GenerateDataKeyWithoutPlaintext", "Encrypt", "GenerateDataKeyWithoutPlaintext"},
		{"ReEncrypt", "Decrypt", "ReEncrypt"},
	} {
		call := c
		call.Operation = tc.op
		md := metadata(k, call, tc.def)
		if md.KMSOperation != tc.want || md.AWSPrincipalARN != c.PrincipalARN || md.KMSRequestID != "req-1" || md.KMSKeyARN != k.ARN {
			t.Errorf("op %q default %s: %+v", tc.op, tc.def, md)
		}
	}
	md := metadata(k, keystore.Call{}, "Encrypt")
	if md.AWSPrincipalARN != "AWS Internal" || md.KMSRequestID == "" {
		t.Errorf("without a caller: %+v", md)
	}
}

func TestXKSErrorMapping(t *testing.T) {
	pe := func(name string) error {
		return &client.ProxyError{Name: name, Status: xks.ErrorStatus[name], Message: "secret detail"}
	}
	for _, tc := range []struct {
		err               error
		create, createKey Code
		msgPart           string
	}{
		{pe(xks.ValidationException), XksProxyInvalidResponse, CustomKeyStoreInvalidState, "cannot interpret"},
		{pe(xks.InvalidStateException), XksProxyInvalidResponse, XksKeyInvalidConfiguration, "not enabled"},
		{pe(xks.InvalidKeyUsageException), XksProxyInvalidResponse, XksKeyInvalidConfiguration, "does not support the requested operation"},
		{pe(xks.AuthenticationFailedException), XksProxyIncorrectAuthCred, CustomKeyStoreInvalidState, "could not authenticate"},
		{pe(xks.AccessDeniedException), XksProxyInvalidResponse, InvalidState, "denied access"},
		{pe(xks.KeyNotFoundException), XksProxyInvalidResponse, XksKeyNotFound, "was not found"},
		{pe(xks.InvalidUriPathException), XksProxyInvalidConfiguration, CustomKeyStoreInvalidState, "invalid URI path"},
		{pe(xks.UnsupportedOperationException), XksProxyInvalidResponse, CustomKeyStoreInvalidState, "does not support"},
		{pe(xks.DependencyTimeoutException), XksProxyUriUnreachable, CustomKeyStoreInvalidState, "in the time allotted"},
		{pe(xks.ThrottlingException), XksProxyUriUnreachable, CustomKeyStoreInvalidState, "very high request rate"},
		{pe(xks.InternalException), XksProxyInvalidResponse, CustomKeyStoreInvalidState, "cannot communicate with the external key manager"},
		{&client.TransportError{Kind: client.Unreachable, Err: errors.New("refused")}, XksProxyUriUnreachable, CustomKeyStoreInvalidState, "transient network issue"},
		{&client.TransportError{Kind: client.TLSFailure, Err: errors.New("x509")}, XksProxyUriUnreachable, CustomKeyStoreInvalidState, "TLS connection"},
		{&client.TransportError{Kind: client.Timeout, Err: errors.New("deadline")}, XksProxyUriUnreachable, CustomKeyStoreInvalidState, "did not respond in time"},
		{&client.InvalidResponseError{Reason: "cdiv"}, XksProxyInvalidResponse, CustomKeyStoreInvalidState, "cannot interpret"},
	} {
		if e := xksStoreError(tc.err); e.Code != tc.create || !strings.Contains(e.Message, tc.msgPart) || strings.Contains(e.Message, "secret detail") {
			t.Errorf("%v: create %s %q", tc.err, e.Code, e.Message)
		}
		if e := xksCreateKeyError("k1", tc.err); e.Code != tc.createKey {
			t.Errorf("%v: CreateKey %s, want %s", tc.err, e.Code, tc.createKey)
		}
		if e := xksCryptoError(tc.err); e.Code != InvalidState || !strings.Contains(e.Message, tc.msgPart) {
			t.Errorf("%v: crypto %s %q", tc.err, e.Code, e.Message)
		}
	}
}
