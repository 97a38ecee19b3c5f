package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudhsmv2"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/hsm"
	"github.com/keyhold/keyhold/internal/store/postgres/pgtest"
)

// cksReplica starts one keyhold replica with the CloudHSM control plane on
// a shared PostgreSQL database and root key, trusting xksCA for XKS
// proxies; credentials and the customer CA are the first replica's.
func cksReplica(t *testing.T, url, rootKey, xksCA string, first *hsmEnv) *hsmEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := cli.ServeConfig{DataDir: dir, Region: "us-east-1", DatabaseURL: url, RootKeyFile: rootKey, XKSCAFile: xksCA, XKSCallTimeout: xksPatient, Logger: log,
		Extra: cli.CloudHSMExtra(hsm.Config{Dir: filepath.Join(dir, "hsm"), Region: "us-east-1", TransitionDelay: 20 * time.Millisecond, Logger: log})}
	in, err := cli.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: in.Handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); in.Close() })
	e := &env{Endpoint: "http://" + ln.Addr().String(), Account: in.AccountID, Instance: in}
	h := &hsmEnv{env: e, t: t, dataDir: dir, rec: &recorder{next: http.DefaultClient}}
	if first == nil {
		e.AccessKey, e.Secret = readCredentials(t, filepath.Join(dir, "credentials"))
		h.ca = newTestCA(t)
	} else {
		e.AccessKey, e.Secret = first.AccessKey, first.Secret
		h.ca = first.ca
	}
	e.KMS = e.client(t, e.AccessKey, e.Secret)
	h.KMS = e.client(t, e.AccessKey, e.Secret, func(o *kms.Options) { o.HTTPClient = h.rec })
	acfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(e.AccessKey, e.Secret, "")),
		config.WithRetryMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	h.HSM = cloudhsmv2.NewFromConfig(acfg, func(o *cloudhsmv2.Options) { o.BaseEndpoint = aws.String(e.Endpoint) })
	return h
}

// TestReplicasCustomKeyStores runs two replicas on one PostgreSQL database:
// a CloudHSM key store and an external key store connected through one are
// usable through both, each replica with its own session to the HSMs (over
// the HSM network, mutual TLS) or to the proxy, with no USER_LOGGED_IN for
// the second replica; a disconnect through one makes the keys Unavailable
// on both within a second; a connect asked of a non-leader replica is
// carried out by the leader.
func TestReplicasCustomKeyStores(t *testing.T) {
	t.Parallel()
	oncePerSuite(t, "its replicas use PostgreSQL in every pass")
	pgtest.Need(t)
	needSoftHSM(t)
	ctx := context.Background()
	url := pgtest.URL(t)
	rootKey := sharedRootKey(t)
	px := newRecProxy(t)
	caFile := trustFile(t, px.Leaf)
	a := cksReplica(t, url, rootKey, caFile, nil)
	b := cksReplica(t, url, rootKey, caFile, a)

	// --- CloudHSM: the cluster's HSMs are processes of replica A, reached by B
	// at their EniIp.
	const pw = "kmsPswdRep1"
	cl := a.newCluster(t, clusterSpec{azs: []string{zoneA, zoneB}, activate: true, kmsuser: pw})
	loopback := netip.MustParsePrefix("127.100.0.0/16")
	fromA, fromB := a.cluster(t, cl), b.cluster(t, cl)
	if len(fromB.Hsms) != 2 {
		t.Fatalf("replica B sees %d HSMs", len(fromB.Hsms))
	}
	for i, h := range fromB.Hsms {
		ip, err := netip.ParseAddr(aws.ToString(h.EniIp))
		if err != nil || !loopback.Contains(ip) || aws.ToString(h.EniIp) != aws.ToString(fromA.Hsms[i].EniIp) {
			t.Fatalf("HSM %s EniIp %q (replica A: %q)", aws.ToString(h.HsmId), aws.ToString(h.EniIp), aws.ToString(fromA.Hsms[i].EniIp))
		}
	}
	ks := a.mustCreateStore(t, "replicated-hsm", cl, pw)

	describeState := func(h *hsmEnv, id string) (kmstypes.ConnectionStateType, kmstypes.ConnectionErrorCodeType) {
		out, err := h.KMS.DescribeCustomKeyStores(ctx, &kms.DescribeCustomKeyStoresInput{CustomKeyStoreId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		return out.CustomKeyStores[0].ConnectionState, out.CustomKeyStores[0].ConnectionErrorCode
	}
	connectedOnBoth := func(id string) {
		t.Helper()
		for _, h := range []*hsmEnv{a, b} {
			eventually(t, "store "+id+" CONNECTED on "+h.Endpoint, func() (bool, error) {
				st, code := describeState(h, id)
				if st == kmstypes.ConnectionStateTypeFailed {
					return false, fmt.Errorf("FAILED %s", code)
				}
				return st == kmstypes.ConnectionStateTypeConnected, nil
			})
		}
	}
	// Usable: encrypt through one replica, decrypt through the other, both
	// ways; each needs its own session.
	usable := func(keyID string) error {
		for _, p := range [][2]*hsmEnv{{a, b}, {b, a}} {
			enc, err := p[0].KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("replicated")})
			if err != nil {
				return fmt.Errorf("Encrypt through %s: %w", p[0].Endpoint, err)
			}
			dec, err := p[1].KMS.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
			if err != nil {
				return fmt.Errorf("Decrypt through %s: %w", p[1].Endpoint, err)
			}
			if string(dec.Plaintext) != "replicated" {
				return fmt.Errorf("Decrypt through %s: %q", p[1].Endpoint, dec.Plaintext)
			}
		}
		return nil
	}
	unavailableOnBoth := func(keyID string) time.Duration {
		t.Helper()
		var worst time.Duration
		for _, h := range []*hsmEnv{a, b} {
			d := within(t, "keys Unavailable on "+h.Endpoint, func() error {
				k, err := h.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
				if err != nil {
					return err
				}
				if k.KeyMetadata.KeyState != kmstypes.KeyStateUnavailable {
					return fmt.Errorf("KeyState %s", k.KeyMetadata.KeyState)
				}
				_, err = h.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("x")})
				var ise *kmstypes.KMSInvalidStateException
				if !errors.As(err, &ise) {
					return fmt.Errorf("Encrypt = %v, want KMSInvalidStateException", err)
				}
				return nil
			})
			worst = max(worst, d)
		}
		return worst
	}

	// Connect through B: whichever replica leads runs the connect worker
	// (log in, rotate kmsuser's password); the other joins the login.
	if _, err := b.KMS.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks)}); err != nil {
		t.Fatal(err)
	}
	connectedOnBoth(ks)
	reg := a.registry()
	rec, err := reg.GetCluster(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if want := "client:kms:" + a.Account + "/" + ks; rec.User.LoggedInBy != want {
		t.Fatalf("kmsuser logged in by %q, want the store's one login %q", rec.User.LoggedInBy, want)
	}
	key, err := b.KMS.CreateKey(ctx, &kms.CreateKeyInput{Origin: kmstypes.OriginTypeAwsCloudhsm, CustomKeyStoreId: aws.String(ks)})
	if err != nil {
		t.Fatalf("CreateKey through B: %v", err)
	}
	hsmKey := aws.ToString(key.KeyMetadata.KeyId)
	within(t, "CloudHSM key usable through both replicas", func() error { return usable(hsmKey) })
	// The password the store rotated to no longer matches the one we set.
	if err := a.owner("pkcs11-bench", "--cluster-id", cl, "--password", pw, "--duration", "20ms"); err == nil {
		t.Fatal("kmsuser's password was not rotated at connect")
	}

	// Disconnect through A: Unavailable through both within a second.
	if _, err := a.KMS.DisconnectCustomKeyStore(ctx, &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks)}); err != nil {
		t.Fatal(err)
	}
	t.Logf("CloudHSM store disconnected through A: keys Unavailable on both after %v", unavailableOnBoth(hsmKey))
	if rec, _ := reg.GetCluster(ctx, cl); rec.User.LoggedInBy != "" {
		t.Fatalf("after disconnect kmsuser is still logged in by %q", rec.User.LoggedInBy)
	}
	// Reconnect through A: usable through B again.
	if _, err := a.KMS.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(ks)}); err != nil {
		t.Fatal(err)
	}
	connectedOnBoth(ks)
	within(t, "CloudHSM key usable after reconnect", func() error { return usable(hsmKey) })

	// --- XKS: each replica its own connection to the proxy.
	xs, err := a.env.createXKS(ctx, "replicated-xks", px.xksTarget)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.KMS.ConnectCustomKeyStore(ctx, &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(xs)}); err != nil {
		t.Fatal(err)
	}
	connectedOnBoth(xs)
	md, err := b.env.createXKSKey(ctx, xs, "rec-key-1")
	if err != nil {
		t.Fatalf("CreateKey in the XKS store through B: %v", err)
	}
	xksKey := aws.ToString(md.KeyId)
	within(t, "XKS key usable through both replicas", func() error { return usable(xksKey) })
	if _, err := b.KMS.DisconnectCustomKeyStore(ctx, &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(xs)}); err != nil {
		t.Fatal(err)
	}
	t.Logf("XKS store disconnected through B: keys Unavailable on both after %v", unavailableOnBoth(xksKey))
	// The CloudHSM store is unaffected.
	if err := usable(hsmKey); err != nil {
		t.Fatal(err)
	}
	a.rec.assertNeverReturned(t, pw)
	b.rec.assertNeverReturned(t, pw)
}
