package hsm

import (
	"github.com/keyhold/keyhold/internal/store/sqlite"

	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the HSM daemon: the Manager
// re-executes os.Executable() with KEYHOLD_HSM_DAEMON=1.
func TestMain(m *testing.M) {
	if os.Getenv(daemonEnv) == "1" {
		args := os.Args[1:]
		if len(args) > 0 && args[0] == "hsm-daemon" {
			args = args[1:]
		}
		if err := DaemonCommand(context.Background(), args, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func needSoftHSM(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(defaultModule); err != nil {
		t.Skip("SoftHSM2 not installed (apt-get install softhsm2); skipping")
	}
}

type env struct {
	t       testing.TB
	dataDir string
	m       *Manager
}

func newEnv(t testing.TB) *env {
	needSoftHSM(t)
	e := &env{t: t, dataDir: t.TempDir()}
	e.open()
	return e
}

// openRecords opens the data directory's store, as internal/cli does for
// owner commands.
func openRecords(ctx context.Context, dataDir string) (Records, func(), error) {
	db, err := sqlite.Open(ctx, filepath.Join(dataDir, "keyhold.db"))
	if err != nil {
		return nil, nil, err
	}
	return db, func() { db.Close() }, nil
}

func (e *env) open() {
	st, closeStore, err := openRecords(context.Background(), e.dataDir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(closeStore)
	m, err := Open(context.Background(), Config{Dir: filepath.Join(e.dataDir, "hsm"), Region: "us-east-1", Records: st,
		TransitionDelay: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(testWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		e.t.Fatal(err)
	}
	e.m = m
	e.t.Cleanup(func() { m.Close() })
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

func (e *env) owner(args ...string) error {
	var out, errb bytes.Buffer
	err := Command(context.Background(), append(args, "--data-dir", e.dataDir), &out, &errb, openRecords)
	if err != nil {
		e.t.Logf("hsm %v: %v (%s)", args[0], err, errb.String())
	}
	return err
}

// waitFor polls cond until it holds (these transitions take milliseconds).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) cluster(id string) Cluster {
	cs, _, err := e.m.DescribeClusters(context.Background(), ClusterFilter{IDs: []string{id}}, "", 0)
	if err != nil || len(cs) != 1 {
		e.t.Fatalf("describe %s: %v %d", id, err, len(cs))
	}
	return cs[0]
}

func (e *env) waitCluster(id, state string) Cluster {
	e.t.Helper()
	var c Cluster
	waitFor(e.t, id+" "+state, func() bool { c = e.cluster(id); return c.State == state })
	return c
}

func (e *env) waitHSM(clusterID, hsmID, state string) {
	e.t.Helper()
	waitFor(e.t, hsmID+" "+state, func() bool {
		for _, h := range e.cluster(clusterID).HSMs {
			if h.ID == hsmID {
				return h.State == state
			}
		}
		return state == HSMDeleted
	})
}

type ca struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
	pem  string
}

func newCA(t testing.TB, bits int) *ca {
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "customerCA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &ca{cert: c, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// sign issues a certificate for pub.
func (c *ca) sign(t testing.TB, pub any) string {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "cluster"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func csrKey(t testing.TB, csrPEM string) any {
	csr, err := parseCSRPEM(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	return csr.PublicKey
}

const (
	coPass   = "CoPassword1!"
	userPass = "kmsPswd123"
)

// activeCluster walks a cluster to ACTIVE with kmsuser and HSMs in azs.
func (e *env) activeCluster(azs ...string) string {
	t := e.t
	t.Helper()
	ctx := context.Background()
	var subnets []string
	for _, s := range Subnets("us-east-1")[:3] {
		subnets = append(subnets, s.ID)
	}
	c, err := e.m.CreateCluster(ctx, CreateClusterInput{HsmType: "hsm2m.medium", SubnetIDs: subnets})
	if err != nil {
		t.Fatal(err)
	}
	e.waitCluster(c.ID, ClusterUninitialized)
	var hsms []string
	for _, az := range azs {
		h, err := e.m.CreateHsm(ctx, c.ID, az, "")
		if err != nil {
			t.Fatal(err)
		}
		hsms = append(hsms, h.ID)
	}
	for _, h := range hsms {
		e.waitHSM(c.ID, h, HSMActive)
	}
	cl := e.cluster(c.ID)
	authority := newCA(t, 2048)
	if _, _, err := e.m.InitializeCluster(ctx, c.ID, authority.sign(t, csrKey(t, cl.Certificates.ClusterCSR)), authority.pem); err != nil {
		t.Fatal(err)
	}
	e.waitCluster(c.ID, ClusterInitialized)
	if err := e.owner("activate", "--cluster-id", c.ID, "--co-password", coPass); err != nil {
		t.Fatal(err)
	}
	if err := e.owner("create-user", "--cluster-id", c.ID, "--type", "CU", "--username", "kmsuser", "--password", userPass, "--co-password", coPass); err != nil {
		t.Fatal(err)
	}
	return c.ID
}
