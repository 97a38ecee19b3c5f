package integration

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmw "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/keystore/xksstore"
	"github.com/keyhold/keyhold/internal/xks"
	"github.com/keyhold/keyhold/internal/xks/xkstest"
)

// xksSlowCaseLimit is the XKS call limit of TestXKSFaults' slow case:
// short enough that its timed-out calls (each tried twice) take seconds,
// and eight times KMS's 250 ms (with a retry) for the calls it makes with
// the fault off. KMS's own limit is tested in internal/xks/client.
const xksSlowCaseLimit = 2 * time.Second

// TestXKSFaults drives every transport and protocol failure of the fake
// proxy through CreateCustomKeyStore (exception), ConnectCustomKeyStore
// (FAILED + ConnectionErrorCode) and Encrypt/Decrypt
// (KMSInvalidStateException), and shows recovery once the fault clears.
func TestXKSFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		fault    xkstest.Fault
		create   func(*testing.T, error)
		connCode types.ConnectionErrorCodeType
		msg      string // part of the crypto error message
	}{
		{"slow", xkstest.Slow, func(t *testing.T, err error) { wantErr[*types.XksProxyUriUnreachableException](t, err) },
			types.ConnectionErrorCodeTypeXksProxyTimedOut, "did not respond in time"},
		{"server-error", xkstest.ServerError, func(t *testing.T, err error) { wantErr[*types.XksProxyInvalidResponseException](t, err) },
			types.ConnectionErrorCodeTypeXksProxyInvalidResponse, "cannot interpret the response"},
		{"garbage", xkstest.Garbage, func(t *testing.T, err error) { wantErr[*types.XksProxyInvalidResponseException](t, err) },
			types.ConnectionErrorCodeTypeXksProxyInvalidResponse, "cannot interpret the response"},
		{"wrong-secret", xkstest.WrongSecret, func(t *testing.T, err error) {
			wantErr[*types.XksProxyIncorrectAuthenticationCredentialException](t, err)
		}, types.ConnectionErrorCodeTypeInvalidCredentials, "could not authenticate AWS KMS"},
		{"refused", xkstest.Refused, func(t *testing.T, err error) { wantErr[*types.XksProxyUriUnreachableException](t, err) },
			types.ConnectionErrorCodeTypeXksProxyNotReachable, "cannot communicate with the external key store proxy"},
		{"untrusted-cert", xkstest.UntrustedCert, func(t *testing.T, err error) { wantErr[*types.XksProxyUriUnreachableException](t, err) },
			types.ConnectionErrorCodeTypeXksProxyInvalidTlsConfiguration, "cannot establish a TLS connection"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := xkstest.New(t, xkstest.Options{})
			limit := xksPatient
			if tc.fault == xkstest.Slow {
				// The fake never answers under Slow: the call limit alone
				// ends those calls. The calls made with the fault off
				// need only answer within it.
				limit = xksSlowCaseLimit
			}
			e := startXKSKeyhold(t, trustFile(t, leafOf(t, f.Endpoint)), func(c *cli.ServeConfig) { c.XKSCallTimeout = limit })
			target := xksTarget{f.Endpoint, f.Path, f.AccessKeyID, f.SecretAccessKey}

			f.SetFault(tc.fault)
			_, err := e.createXKS(ctx, "xks-"+tc.name, target)
			tc.create(t, err)

			f.SetFault(xkstest.None)
			id, err := e.createXKS(ctx, "xks-"+tc.name, target)
			if err != nil {
				t.Fatalf("create after the fault cleared: %v", err)
			}
			if s := e.describeStore(t, id); s.ConnectionState != types.ConnectionStateTypeDisconnected || s.XksProxyConfiguration == nil ||
				aws.ToString(s.XksProxyConfiguration.AccessKeyId) != f.AccessKeyID || s.ConnectionErrorCode != "" {
				t.Fatalf("new store: %+v", s)
			}

			f.SetFault(tc.fault)
			if st, code := e.connectAndWait(t, id); st != types.ConnectionStateTypeFailed || code != tc.connCode {
				t.Fatalf("connect under %s: %s %s, want FAILED %s", tc.name, st, code, tc.connCode)
			}
			// FAILED must be disconnected before it can connect again.
			_, err = e.KMS.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)})
			wantErr[*types.CustomKeyStoreInvalidStateException](t, err)
			e.disconnect(t, id)

			f.SetFault(xkstest.None)
			e.mustConnect(t, id)
			k, err := e.createXKSKey(ctx, id, f.KeyIDs[0])
			if err != nil {
				t.Fatal(err)
			}
			ec := map[string]string{"case": tc.name}
			enc, err := e.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: k.Arn, Plaintext: []byte("hold your own key"), EncryptionContext: ec})
			if err != nil {
				t.Fatal(err)
			}

			f.SetFault(tc.fault)
			_, err = e.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: k.Arn, Plaintext: []byte("x")})
			if ise := wantErr[*types.KMSInvalidStateException](t, err); !strings.Contains(ise.ErrorMessage(), tc.msg) {
				t.Fatalf("encrypt message %q, want %q", ise.ErrorMessage(), tc.msg)
			}
			_, err = e.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
			wantErr[*types.KMSInvalidStateException](t, err)
			_, err = e.KMS.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: k.Arn, KeySpec: types.DataKeySpecAes256})
			wantErr[*types.KMSInvalidStateException](t, err)
			// The store stays CONNECTED: AWS does not disconnect on a proxy outage.
			if s := e.describeStore(t, id); s.ConnectionState != types.ConnectionStateTypeConnected {
				t.Fatalf("state during the outage: %s", s.ConnectionState)
			}

			f.SetFault(xkstest.None)
			dec, err := e.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
			if err != nil || string(dec.Plaintext) != "hold your own key" || aws.ToString(dec.KeyId) != aws.ToString(k.Arn) {
				t.Fatalf("decrypt after recovery: %v", err)
			}
		})
	}
}

// TestXKSCreateKeyErrors covers what GetKeyMetadata decides at CreateKey.
func TestXKSCreateKeyErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := xkstest.New(t, xkstest.Options{Keys: []xkstest.Key{
		{ID: "good", Encrypt: true, Decrypt: true}, {ID: "enc-only", Encrypt: true},
		{ID: "disabled", Encrypt: true, Decrypt: true, Disabled: true}}})
	e := startXKSKeyhold(t, trustFile(t, leafOf(t, f.Endpoint)))
	id, err := e.createXKS(ctx, "xks", xksTarget{f.Endpoint, f.Path, f.AccessKeyID, f.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	// Not connected: CustomKeyStoreInvalidStateException.
	_, err = e.createXKSKey(ctx, id, "good")
	wantErr[*types.CustomKeyStoreInvalidStateException](t, err)
	e.mustConnect(t, id)

	_, err = e.createXKSKey(ctx, id, "no-such-key")
	wantErr[*types.XksKeyNotFoundException](t, err)
	_, err = e.createXKSKey(ctx, id, "enc-only")
	wantErr[*types.XksKeyInvalidConfigurationException](t, err)
	_, err = e.createXKSKey(ctx, id, "disabled")
	wantErr[*types.XksKeyInvalidConfigurationException](t, err)
	for name, want := range map[string]func(error){
		xks.InvalidStateException:         func(err error) { wantErr[*types.XksKeyInvalidConfigurationException](t, err) },
		xks.KeyNotFoundException:          func(err error) { wantErr[*types.XksKeyNotFoundException](t, err) },
		xks.InternalException:             func(err error) { wantErr[*types.CustomKeyStoreInvalidStateException](t, err) },
		xks.UnsupportedOperationException: func(err error) { wantErr[*types.CustomKeyStoreInvalidStateException](t, err) },
		xks.AccessDeniedException:         func(err error) { wantErr[*types.KMSInvalidStateException](t, err) },
	} {
		f.SetErrorName(name)
		f.SetFault(xkstest.ErrorName)
		_, err = e.createXKSKey(ctx, id, "good")
		want(err)
	}
	f.SetFault(xkstest.None)

	// Missing XksKeyId, XksKeyId on a non-XKS origin, wrong store type.
	_, err = e.KMS.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternalKeyStore, CustomKeyStoreId: aws.String(id)})
	wantCode(t, err, "ValidationException")
	_, err = e.KMS.CreateKey(ctx, &kms.CreateKeyInput{XksKeyId: aws.String("good")})
	wantCode(t, err, "ValidationException")
	_, err = e.KMS.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeAwsCloudhsm, CustomKeyStoreId: aws.String(id)})
	wantErr[*types.UnsupportedOperationException](t, err)

	k, err := e.createXKSKey(ctx, id, "good")
	if err != nil {
		t.Fatal(err)
	}
	if k.Origin != types.OriginTypeExternalKeyStore || k.XksKeyConfiguration == nil || aws.ToString(k.XksKeyConfiguration.Id) != "good" ||
		aws.ToString(k.CustomKeyStoreId) != id || k.KeyState != types.KeyStateEnabled || k.CurrentKeyMaterialId != nil {
		t.Fatalf("key metadata: %+v", k)
	}
	_, err = e.createXKSKey(ctx, id, "good")
	wantErr[*types.XksKeyAlreadyInUseException](t, err)

	// Disconnected: the key is Unavailable, crypto fails, Delete still refuses a store with keys.
	e.disconnect(t, id)
	d, err := e.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: k.KeyId})
	if err != nil || d.KeyMetadata.KeyState != types.KeyStateUnavailable {
		t.Fatalf("describe after disconnect: %v %v", err, d)
	}
	_, err = e.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("x")})
	wantErr[*types.KMSInvalidStateException](t, err)
	_, err = e.KMS.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)})
	wantErr[*types.CustomKeyStoreHasCMKsException](t, err)
	// GenerateRandom in an external key store is unsupported.
	_, err = e.KMS.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(8), CustomKeyStoreId: aws.String(id)})
	wantErr[*types.UnsupportedOperationException](t, err)
}

// TestXKSUniqueness covers the field rules and every uniqueness rule.
func TestXKSUniqueness(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newRecProxy(t)
	e := startXKSKeyhold(t, trustFile(t, p.Leaf))
	vpce := func(name, svc string) func(*kms.CreateCustomKeyStoreInput) {
		return func(in *kms.CreateCustomKeyStoreInput) {
			in.XksProxyConnectivity = types.XksProxyConnectivityTypeVpcEndpointService
			in.XksProxyVpcEndpointServiceName = aws.String(svc)
			if name != "" {
				in.XksProxyUriEndpoint = aws.String(name)
			}
		}
	}
	registerVPCE(t, e, xksstore.VPCEndpointService{ServiceName: "com.amazonaws.vpce.us-east-1.vpce-svc-0aaa", Endpoint: p.Endpoint,
		PrivateDNSName: "xks-a.example.internal", PrivateDNSVerified: true, AllowedPrincipals: []string{"cks.kms.us-east-1.amazonaws.com"},
		AvailabilityZones: []string{"us-east-1a", "us-east-1b"}},
		xksstore.VPCEndpointService{ServiceName: "com.amazonaws.vpce.us-east-1.vpce-svc-0bbb", Endpoint: p.Endpoint,
			PrivateDNSName: "xks-b.example.internal", PrivateDNSVerified: true, AllowedPrincipals: []string{"*"},
			AvailabilityZones: []string{"us-east-1a", "us-east-1c"}})

	// Required fields and combinations.
	for name, mod := range map[string]func(*kms.CreateCustomKeyStoreInput){
		"no endpoint":     func(in *kms.CreateCustomKeyStoreInput) { in.XksProxyUriEndpoint = nil },
		"no path":         func(in *kms.CreateCustomKeyStoreInput) { in.XksProxyUriPath = nil },
		"no connectivity": func(in *kms.CreateCustomKeyStoreInput) { in.XksProxyConnectivity = "" },
		"no credential":   func(in *kms.CreateCustomKeyStoreInput) { in.XksProxyAuthenticationCredential = nil },
		"vpc without name": func(in *kms.CreateCustomKeyStoreInput) {
			in.XksProxyConnectivity = types.XksProxyConnectivityTypeVpcEndpointService
		},
		"public with vpc name": func(in *kms.CreateCustomKeyStoreInput) {
			in.XksProxyVpcEndpointServiceName = aws.String("com.amazonaws.vpce.us-east-1.vpce-svc-0aaa")
		},
		"cloudhsm fields":  func(in *kms.CreateCustomKeyStoreInput) { in.KeyStorePassword = aws.String("kmsPswd1") },
		"bad path pattern": func(in *kms.CreateCustomKeyStoreInput) { in.XksProxyUriPath = aws.String("/kms/xks/v1/extra") },
		"short secret": func(in *kms.CreateCustomKeyStoreInput) {
			in.XksProxyAuthenticationCredential.RawSecretAccessKey = aws.String("c2hvcnQ=")
		},
		"lowercase access key": func(in *kms.CreateCustomKeyStoreInput) {
			in.XksProxyAuthenticationCredential.AccessKeyId = aws.String(strings.ToLower(p.AccessKeyID))
		},
	} {
		_, err := e.createXKS(ctx, "bad", p.xksTarget, mod)
		if err == nil {
			t.Fatalf("%s: created", name)
		}
		wantCode(t, err, "ValidationException")
	}
	// The proxy answers InvalidUriPathException for a prefix it does not serve.
	_, err := e.createXKS(ctx, "wrong-prefix", xksTarget{p.Endpoint, "/nope/kms/xks/v1", p.AccessKeyID, p.Secret})
	wantErr[*types.XksProxyInvalidConfigurationException](t, err)

	a, err := e.createXKS(ctx, "a", p.xksTarget)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.createXKS(ctx, "a", p.Target2)
	wantErr[*types.CustomKeyStoreNameInUseException](t, err)
	// Same endpoint and path: XksProxyUriInUseException.
	_, err = e.createXKS(ctx, "a2", p.xksTarget)
	wantErr[*types.XksProxyUriInUseException](t, err)
	// Same endpoint, another path: allowed for public endpoints.
	if _, err := e.createXKS(ctx, "a-other-path", p.Target2); err != nil {
		t.Fatalf("same endpoint, other path: %v", err)
	}
	// A VPC store cannot use a public store's endpoint.
	_, err = e.createXKS(ctx, "vpc-clash", xksTarget{p.Endpoint, "/vpc/kms/xks/v1", p.AccessKeyID, p.Secret}, vpce("", "com.amazonaws.vpce.us-east-1.vpce-svc-0aaa"))
	wantErr[*types.XksProxyUriEndpointInUseException](t, err)

	calls := len(p.calls())
	v1, err := e.createXKS(ctx, "vpc-a", p.xksTarget, vpce("https://xks-a.example.internal", "com.amazonaws.vpce.us-east-1.vpce-svc-0aaa"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.calls()); n != calls {
		t.Fatalf("a VPC store was contacted at create (%d calls)", n-calls)
	}
	// Each VPC store needs its own private DNS name, even with another path...
	_, err = e.createXKS(ctx, "vpc-a2", p.Target2,
		vpce("https://xks-a.example.internal", "com.amazonaws.vpce.us-east-1.vpce-svc-0bbb"))
	wantErr[*types.XksProxyUriEndpointInUseException](t, err)
	// ...and its own VPC endpoint service.
	_, err = e.createXKS(ctx, "vpc-b", p.xksTarget, vpce("https://xks-b.example.internal", "com.amazonaws.vpce.us-east-1.vpce-svc-0aaa"))
	wantErr[*types.XksProxyVpcEndpointServiceInUseException](t, err)
	// A public store cannot use a VPC store's endpoint.
	_, err = e.createXKS(ctx, "public-clash", xksTarget{"https://xks-a.example.internal", "/pub/kms/xks/v1", p.AccessKeyID, p.Secret})
	wantErr[*types.XksProxyUriEndpointInUseException](t, err)
	// Update runs the same rules: moving a's path onto the other store's.
	_, err = e.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(a), XksProxyUriPath: aws.String(p.Path2)})
	wantErr[*types.XksProxyUriInUseException](t, err)

	// The VPC store connects through its registered endpoint service.
	e.mustConnect(t, v1)
	k, err := e.createXKSKey(ctx, v1, "rec-key-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyId, Plaintext: []byte("via vpce")}); err != nil {
		t.Fatal(err)
	}
	s := e.describeStore(t, v1)
	if c := s.XksProxyConfiguration; c == nil || c.Connectivity != types.XksProxyConnectivityTypeVpcEndpointService ||
		aws.ToString(c.VpcEndpointServiceName) != "com.amazonaws.vpce.us-east-1.vpce-svc-0aaa" || aws.ToString(c.UriEndpoint) != "https://xks-a.example.internal" {
		t.Fatalf("vpc store: %+v", c)
	}
}

func registerVPCE(t *testing.T, e *env, svcs ...xksstore.VPCEndpointService) {
	t.Helper()
	if err := xksstore.ReplaceVPCEndpointServices(context.Background(), e.Instance.Store, svcs); err != nil {
		t.Fatal(err)
	}
}

// TestXKSVPCErrors provokes each VPC endpoint service error at create and
// at connect.
func TestXKSVPCErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newRecProxy(t)
	e := startXKSKeyhold(t, trustFile(t, p.Leaf))
	good := xksstore.VPCEndpointService{ServiceName: "com.amazonaws.vpce.us-east-1.vpce-svc-0123abcd", Endpoint: p.Endpoint,
		PrivateDNSName: "xks.example.internal", PrivateDNSVerified: true, AllowedPrincipals: []string{"cks.kms.us-east-1.amazonaws.com"},
		AvailabilityZones: []string{"us-east-1a", "us-east-1b"}}
	vpc := func(in *kms.CreateCustomKeyStoreInput) {
		in.XksProxyConnectivity = types.XksProxyConnectivityTypeVpcEndpointService
		in.XksProxyVpcEndpointServiceName = aws.String(good.ServiceName)
		in.XksProxyUriEndpoint = aws.String("https://xks.example.internal")
	}
	target := p.xksTarget
	bad := map[string]struct {
		mod      func(*xksstore.VPCEndpointService)
		notFound bool
	}{
		"unregistered": {func(v *xksstore.VPCEndpointService) { v.ServiceName = "com.amazonaws.vpce.us-east-1.vpce-svc-0fff" }, true},
		"other owner":  {func(v *xksstore.VPCEndpointService) { v.Owner = "111122223333" }, true},
		"kms not allowed": {func(v *xksstore.VPCEndpointService) {
			v.AllowedPrincipals = []string{"arn:aws:iam::111122223333:root"}
		}, true},
		"acceptance required": {func(v *xksstore.VPCEndpointService) { v.AcceptanceRequired = true }, false},
		"one zone":            {func(v *xksstore.VPCEndpointService) { v.AvailabilityZones = []string{"us-east-1a", "us-east-1a"} }, false},
		"dns mismatch":        {func(v *xksstore.VPCEndpointService) { v.PrivateDNSName = "other.example.internal" }, false},
		"dns unverified":      {func(v *xksstore.VPCEndpointService) { v.PrivateDNSVerified = false }, false},
	}
	for name, b := range bad {
		v := good
		b.mod(&v)
		registerVPCE(t, e, v)
		_, err := e.createXKS(ctx, "vpc", target, vpc)
		if b.notFound {
			wantErr[*types.XksProxyVpcEndpointServiceNotFoundException](t, err)
		} else {
			wantErr[*types.XksProxyVpcEndpointServiceInvalidConfigurationException](t, err)
		}
		_ = name
	}
	// The owner defaults to the caller; naming it explicitly works too.
	registerVPCE(t, e, good)
	id, err := e.createXKS(ctx, "vpc", target, vpc, func(in *kms.CreateCustomKeyStoreInput) { in.XksProxyVpcEndpointServiceOwner = aws.String(e.Account) })
	if err != nil {
		t.Fatal(err)
	}
	// Connect re-checks the service: each problem is a ConnectionErrorCode.
	for name, b := range bad {
		v := good
		b.mod(&v)
		registerVPCE(t, e, v)
		want := types.ConnectionErrorCodeTypeXksVpcEndpointServiceInvalidConfiguration
		if b.notFound {
			want = types.ConnectionErrorCodeTypeXksVpcEndpointServiceNotFound
		}
		if st, code := e.connectAndWait(t, id); st != types.ConnectionStateTypeFailed || code != want {
			t.Fatalf("%s: connect %s %s, want FAILED %s", name, st, code, want)
		}
		e.disconnect(t, id)
	}
	// A reachable service with a proxy that rejects the credential.
	v := good
	registerVPCE(t, e, v)
	p.keepOnly(t, p.Spare.AccessKeyID)
	if st, code := e.connectAndWait(t, id); st != types.ConnectionStateTypeFailed || code != types.ConnectionErrorCodeTypeInvalidCredentials {
		t.Fatalf("connect with a rejected credential: %s %s", st, code)
	}
	e.disconnect(t, id)
	// Endpoint changes need DISCONNECTED; switching connectivity needs a new endpoint.
	err = updateSettled(t, e, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id),
		XksProxyConnectivity: types.XksProxyConnectivityTypePublicEndpoint})
	wantCode(t, err, "ValidationException")
	// Switch to the spare credential while disconnected (VPC: not contacted), then connect.
	if err := updateSettled(t, e, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id),
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String(p.Spare.AccessKeyID), RawSecretAccessKey: aws.String(p.Spare.Secret)}}); err != nil {
		t.Fatal(err)
	}
	e.mustConnect(t, id)
	_, err = e.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id),
		XksProxyUriEndpoint: aws.String("https://xks2.example.internal")})
	wantErr[*types.CustomKeyStoreInvalidStateException](t, err)
}

// TestXKSRequestMetadataAndRotation checks what the proxy is told
// (requestMetadata), the periodic health check, updates while connected
// and credential rotation with both proxy credentials live.
func TestXKSRequestMetadataAndRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newRecProxy(t)
	e := startXKSKeyhold(t, trustFile(t, p.Leaf))
	e.Instance.Service.SetXKSHealthCheckInterval(50 * time.Millisecond)
	created, err := e.KMS.CreateCustomKeyStore(ctx, &kms.CreateCustomKeyStoreInput{
		CustomKeyStoreName: aws.String("rec"), CustomKeyStoreType: types.CustomKeyStoreTypeExternalKeyStore,
		XksProxyConnectivity: types.XksProxyConnectivityTypePublicEndpoint, XksProxyUriEndpoint: aws.String(p.Endpoint),
		XksProxyUriPath: aws.String(p.Path), XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{
			AccessKeyId: aws.String(p.AccessKeyID), RawSecretAccessKey: aws.String(p.Secret)}})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(created.CustomKeyStoreId)
	reqID, _ := awsmw.GetRequestIDMetadata(created.ResultMetadata)
	e.mustConnect(t, id)
	ck, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternalKeyStore, CustomKeyStoreId: aws.String(id), XksKeyId: aws.String("rec-key-1")})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(ck.KeyMetadata.Arn)
	ec := map[string]string{"purpose": "metadata"}
	enc, err := e.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("payload"), EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	encID, _ := awsmw.GetRequestIDMetadata(enc.ResultMetadata)
	dec, err := e.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	if err != nil || string(dec.Plaintext) != "payload" {
		t.Fatalf("decrypt: %v", err)
	}
	// A wrong encryption context fails in keyhold's own layer: InvalidCiphertextException.
	_, err = e.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"purpose": "other"}})
	wantErr[*types.InvalidCiphertextException](t, err)
	// A tampered outer layer is rejected by the proxy: KMSInvalidStateException.
	bad := bytes.Clone(enc.CiphertextBlob)
	bad[len(bad)-1] ^= 1
	_, err = e.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: bad, EncryptionContext: ec})
	if ise := wantErr[*types.KMSInvalidStateException](t, err); !strings.Contains(ise.ErrorMessage(), "ciphertext or encryption context is corrupted") {
		t.Fatalf("tampered: %q", ise.ErrorMessage())
	}
	gdk, err := e.KMS.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(arn), NumberOfBytes: aws.Int32(32)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.KMS.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes128}); err != nil {
		t.Fatal(err)
	}
	soft, err := e.KMS.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	re, err := e.KMS.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: gdk.CiphertextBlob, DestinationKeyId: soft.KeyMetadata.KeyId})
	if err != nil {
		t.Fatal(err)
	}
	back, err := e.KMS.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: re.CiphertextBlob, DestinationKeyId: aws.String(arn)})
	if err != nil || aws.ToString(back.KeyId) != arn || aws.ToString(back.SourceKeyId) != aws.ToString(soft.KeyMetadata.Arn) {
		t.Fatalf("reencrypt into xks: %v", err)
	}
	final, err := e.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: back.CiphertextBlob})
	if err != nil || !bytes.Equal(final.Plaintext, gdk.Plaintext) {
		t.Fatalf("round trip through ReEncrypt: %v", err)
	}

	// Wait for a periodic health check.
	eventually(t, "a periodic health check", func() (bool, error) {
		code, _, ok := e.Instance.Service.XKSHealth(id)
		return ok && code == "", nil
	})

	principal := "arn:aws:iam::" + e.Account + ":user/keyhold-admin"
	allowed := map[string]map[string]bool{
		"health":   {"CreateCustomKeyStore": true, "ConnectCustomKeyStore": true, "UpdateCustomKeyStore": true, "KmsHealthCheck": true},
		"metadata": {"CreateKey": true},
		"encrypt":  {"Encrypt": true, "GenerateDataKey": true, "GenerateDataKeyWithoutPlaintext": true, "ReEncrypt": true},
		"decrypt":  {"Decrypt": true, "ReEncrypt": true},
	}
	seen := map[string]bool{}
	for _, c := range p.calls() {
		op := c["kmsOperation"]
		seen[op] = true
		if !allowed[c["api"]][op] {
			t.Errorf("%s call with kmsOperation %q", c["api"], op)
		}
		if c["kmsRequestId"] == "" {
			t.Errorf("%s call without kmsRequestId", c["api"])
		}
		if c["api"] != "health" && (c["awsPrincipalArn"] != principal || c["kmsKeyArn"] != arn) {
			t.Errorf("%s call: principal %q key %q", c["api"], c["awsPrincipalArn"], c["kmsKeyArn"])
		}
		if op == "CreateCustomKeyStore" && c["kmsRequestId"] != reqID {
			t.Errorf("CreateCustomKeyStore health: kmsRequestId %q, want the caller's %q", c["kmsRequestId"], reqID)
		}
	}
	for _, op := range []string{"CreateCustomKeyStore", "ConnectCustomKeyStore", "KmsHealthCheck", "CreateKey"} {
		if !seen[op] {
			t.Errorf("no call with kmsOperation %s", op)
		}
	}
	found := false
	for _, c := range p.calls() {
		found = found || (c["api"] == "encrypt" && c["kmsRequestId"] == encID)
	}
	if !found {
		t.Errorf("no encrypt call carried the Encrypt request id %s", encID)
	}

	// Updates while CONNECTED: a path the proxy does not serve is refused
	// and the store keeps working; a wrong secret is refused.
	_, err = e.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id), XksProxyUriPath: aws.String("/gone/kms/xks/v1")})
	wantErr[*types.XksProxyInvalidConfigurationException](t, err)
	_, otherSecret := randomCredential()
	_, err = e.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id),
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String(p.AccessKeyID), RawSecretAccessKey: aws.String(otherSecret)}})
	wantErr[*types.XksProxyIncorrectAuthenticationCredentialException](t, err)
	_, err = e.KMS.DeleteCustomKeyStore(ctx, &kms.DeleteCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)})
	wantErr[*types.CustomKeyStoreInvalidStateException](t, err)

	// Rotation: both credentials are live at the proxy; switch keyhold to
	// the spare one while connected, retire the first at the proxy, and
	// everything keeps working.
	if _, err := e.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id),
		NewCustomKeyStoreName:            aws.String("rec-rotated"),
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String(p.Spare.AccessKeyID), RawSecretAccessKey: aws.String(p.Spare.Secret)}}); err != nil {
		t.Fatal(err)
	}
	p.keepOnly(t, p.Spare.AccessKeyID)
	if _, err := e.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec}); err != nil {
		t.Fatalf("decrypt after rotation: %v", err)
	}
	s := e.describeStore(t, id)
	if aws.ToString(s.CustomKeyStoreName) != "rec-rotated" || aws.ToString(s.XksProxyConfiguration.AccessKeyId) != p.Spare.AccessKeyID ||
		s.ConnectionState != types.ConnectionStateTypeConnected {
		t.Fatalf("after rotation: %+v", s)
	}
	// A path and credential change while connected is applied live (the
	// second prefix has the same key ids, but other keys: the old
	// ciphertext no longer decrypts).
	if _, err := e.KMS.UpdateCustomKeyStore(ctx, &kms.UpdateCustomKeyStoreInput{CustomKeyStoreId: aws.String(id), XksProxyUriPath: aws.String(p.Path2),
		XksProxyAuthenticationCredential: &types.XksProxyAuthenticationCredentialType{AccessKeyId: aws.String(p.Target2.AccessKeyID), RawSecretAccessKey: aws.String(p.Target2.Secret)}}); err != nil {
		t.Fatal(err)
	}
	_, err = e.KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	wantErr[*types.KMSInvalidStateException](t, err)
}

// updateSettled calls UpdateCustomKeyStore right after a connect attempt,
// retrying once on KMSInternalException: the connect worker publishes
// FAILED before it persists it, so an update racing that write loses with
// a version conflict (reported to the lead; UpdateCustomKeyStore should
// retry on store.ErrConflict).
func updateSettled(t *testing.T, e *env, in *kms.UpdateCustomKeyStoreInput) error {
	t.Helper()
	_, err := e.KMS.UpdateCustomKeyStore(context.Background(), in)
	var ie *types.KMSInternalException
	if errorsAs(err, &ie) {
		t.Log("UpdateCustomKeyStore raced the connect worker's state write; retrying once")
		_, err = e.KMS.UpdateCustomKeyStore(context.Background(), in)
	}
	return err
}
