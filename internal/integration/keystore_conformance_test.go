package integration

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/keystore/keystoretest"
	"github.com/keyhold/keyhold/internal/keystore/soft"
	"github.com/keyhold/keyhold/internal/keystore/xksstore"
	"github.com/keyhold/keyhold/internal/rootkey"
	"github.com/keyhold/keyhold/internal/xks/proxy"
)

// TestCloudHSMDriverConformance runs the key store conformance suite
// against the CloudHSM driver over SoftHSM2: a real cluster (two HSM
// processes in two zones, kmsuser created by the owner's command), the
// driver keyhold's domain uses.
func TestCloudHSMDriverConformance(t *testing.T) {
	t.Parallel()
	h := startCloudHSM(t)
	const password = "KmsUserPassword1"
	id := h.newCluster(t, clusterSpec{azs: []string{zoneA, zoneB}, activate: true, kmsuser: password})
	st := keystore.Store{AccountID: h.Account, ID: "cks-0123456789abcdef0", Name: "conformance", Type: keystore.TypeCloudHSM,
		Config: keystore.Config{CloudHsmClusterID: id}, Secret: keystore.Secret{Password: password}}
	keystoretest.RunDriver(t, keystoretest.Harness{
		Driver: h.Instance.CloudHSM,
		Store:  st,
		BadSecret: func(s *keystore.Store) string {
			s.Secret.Password, s.Secret.PendingPassword = "NotThePassword1", ""
			return "INVALID_CREDENTIALS"
		},
		// An outage is every HSM of the cluster gone; recovery is two new
		// ones (the token, and so the keys, survive).
		Break:          func(t *testing.T) { h.deleteHSMs(t, id, zoneA, zoneB) },
		Restore:        func(t *testing.T) { h.addHSM(t, id, zoneA); h.addHSM(t, id, zoneB); h.waitHSMs(t, id, zoneA, zoneB) },
		DestroyRemoves: true,
	})
}

// TestXKSDriverConformanceAgainstXKSProxy runs the suite against the XKS
// driver talking to `keyhold xks-proxy` itself: a separate process (this
// test binary re-executed as the proxy) set up by `xks-proxy init` over a
// SoftHSM2 token, reached over HTTPS with SigV4. An outage is the proxy
// process killed; recovery is the same proxy started again.
func TestXKSDriverConformanceAgainstXKSProxy(t *testing.T) {
	t.Parallel()
	needSoftHSM(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	run := func(args ...string) *exec.Cmd {
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), "KEYHOLD_XKS_PROXY=1")
		return cmd
	}
	initCmd := run("init", "--dir", dir, "--addr", addr, "--prefix", "/conformance")
	var initErr bytes.Buffer
	initCmd.Stderr = &initErr
	out, err := initCmd.Output()
	if err != nil {
		t.Fatalf("xks-proxy init: %v\n%s", err, initErr.String())
	}
	var res proxy.InitResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("xks-proxy init printed %q: %v", out, err)
	}
	var srv *exec.Cmd
	start := func(t *testing.T) {
		srv = run("--config", res.ConfigFile)
		// The proxy logs every request; its output is not the test's.
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "xks-proxy listening", func() (bool, error) {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
			}
			return err == nil, nil
		})
	}
	stop := func(*testing.T) {
		if srv != nil && srv.Process != nil {
			srv.Process.Kill()
			srv.Wait()
		}
	}
	start(t)
	t.Cleanup(func() { stop(t) })

	caPEM, err := os.ReadFile(res.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate from xks-proxy init")
	}
	root, err := rootkey.LoadOrCreateFile(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	d := xksstore.New(xksstore.Config{Region: "us-east-1", Inner: soft.New(root), RootCAs: pool, CallTimeout: xksPatient,
		Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	st := keystore.Store{AccountID: "111122223333", ID: "cks-0123456789abcdef0", Name: "conformance", Type: keystore.TypeExternal,
		Config: keystore.Config{XksProxyUriEndpoint: res.XksProxyUriEndpoint, XksProxyUriPath: res.XksProxyUriPath,
			XksProxyConnectivity: xksstore.PublicEndpoint, XksAccessKeyID: res.XksProxyAuthenticationCredential.AccessKeyId},
		Secret: keystore.Secret{XksSecretAccessKey: res.XksProxyAuthenticationCredential.RawSecretAccessKey}}
	keystoretest.RunDriver(t, keystoretest.Harness{
		Driver:   d,
		Store:    st,
		XksKeyID: res.XksKeyId,
		BadSecret: func(s *keystore.Store) string {
			s.Secret.XksSecretAccessKey = strings.Repeat("x", 43)
			return "INVALID_CREDENTIALS"
		},
		Break:   stop,
		Restore: start,
	})
}
