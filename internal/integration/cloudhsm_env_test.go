package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudhsmv2"
	hsmtypes "github.com/aws/aws-sdk-go-v2/service/cloudhsmv2/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/hsm"
)

// softHSMModule is where Debian's softhsm2 package puts the PKCS#11 library.
const softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

func needSoftHSM(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(softHSMModule); err != nil {
		t.Skip("SoftHSM2 not installed (apt-get install softhsm2 to run the CloudHSM key store tests); skipping")
	}
}

// hsmEnv is a keyhold with the CloudHSM control plane, an aws-sdk-go-v2
// cloudhsmv2 client for it, a KMS client that records every response body
// (to prove no secret is ever returned), and the customer's CA.
type hsmEnv struct {
	*env
	t       *testing.T
	dataDir string
	HSM     *cloudhsmv2.Client
	KMS     *kms.Client
	rec     *recorder
	ca      *testCA
}

func startCloudHSM(t *testing.T, mods ...func(*cli.ServeConfig)) *hsmEnv {
	t.Helper()
	needSoftHSM(t)
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e := startWith(t, dir, func(c *cli.ServeConfig) {
		c.Logger = log
		// The HSM daemons are this test binary re-executed (see TestMain).
		c.Extra = cli.CloudHSMExtra(hsm.Config{Dir: filepath.Join(dir, "hsm"), Region: "us-east-1",
			TransitionDelay: 20 * time.Millisecond, Logger: log})
		for _, m := range mods {
			m(c)
		}
	})
	h := &hsmEnv{env: e, t: t, dataDir: dir, rec: &recorder{}, ca: newTestCA(t)}
	h.KMS = e.client(t, e.AccessKey, e.Secret, func(o *kms.Options) {
		next := o.HTTPClient
		if next == nil {
			next = http.DefaultClient
		}
		h.rec.next = next
		o.HTTPClient = h.rec
	})
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(e.AccessKey, e.Secret, "")),
		config.WithRetryMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	h.HSM = cloudhsmv2.NewFromConfig(cfg, func(o *cloudhsmv2.Options) { o.BaseEndpoint = aws.String(e.Endpoint) })
	return h
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// recorder is the KMS client's HTTP client: it keeps every response body.
type recorder struct {
	next interface {
		Do(*http.Request) (*http.Response, error)
	}
	mu     sync.Mutex
	bodies [][]byte
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	resp, err := r.next.Do(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.bodies = append(r.bodies, b)
	r.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// assertNeverReturned fails if any recorded response contains one of the
// secrets or a member named like a password.
func (r *recorder) assertNeverReturned(t *testing.T, secrets ...string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bodies) == 0 {
		t.Fatal("no KMS response was recorded")
	}
	for _, b := range r.bodies {
		for _, s := range secrets {
			if s != "" && bytes.Contains(b, []byte(s)) {
				t.Errorf("a KMS response contains a key store password: %.200s", b)
			}
		}
		if bytes.Contains(b, []byte("KeyStorePassword")) {
			t.Errorf("a KMS response has a KeyStorePassword member: %.200s", b)
		}
	}
}

// owner runs `keyhold hsm ARGS --data-dir DIR`, the crypto officer's tools.
func (h *hsmEnv) owner(args ...string) error {
	var out, errb bytes.Buffer
	err := hsm.Command(context.Background(), append(args, "--data-dir", h.dataDir), &out, &errb, h.openRecords)
	if err != nil {
		return fmt.Errorf("keyhold hsm %s: %w (%s)", args[0], err, strings.TrimSpace(errb.String()))
	}
	return nil
}

// openRecords opens the cluster records as `keyhold hsm` does
// (cli.OpenRecords), with the instance's database named here rather than
// in KEYHOLD_DATABASE_URL: the environment is the whole test binary's, and
// tests on different databases run in parallel.
func (h *hsmEnv) openRecords(ctx context.Context, dataDir string) (hsm.Records, func(), error) {
	db, err := cli.OpenDatabase(ctx, h.Instance.Config.DatabaseURL, dataDir, 0, nil)
	if err != nil {
		return nil, nil, err
	}
	return db, func() { db.Close() }, nil
}

// registry is the cluster records, as another client of the cluster
// (cloudhsm_mgmt_util, a second KMS) would change them.
func (h *hsmEnv) registry() *hsm.StoreRegistry {
	st, closeStore, err := h.openRecords(context.Background(), h.dataDir)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(closeStore)
	r, err := hsm.NewStoreRegistry(context.Background(), st, filepath.Join(h.dataDir, "hsm"))
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

const pollEvery = 10 * time.Millisecond

// eventually polls cond until it is true. It waits as long as the test
// binary may run (less a margin to report what it was waiting for): what
// the tests wait for (HSM daemons starting, stores connecting) must happen,
// and how soon depends on how busy the machine is, which is not what they
// check.
func eventually(t testing.TB, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := waitDeadline(t)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s (the test binary's deadline is near)", what)
		}
		time.Sleep(pollEvery)
	}
}

func (h *hsmEnv) cluster(t testing.TB, id string) hsmtypes.Cluster {
	t.Helper()
	out, err := h.HSM.DescribeClusters(context.Background(), &cloudhsmv2.DescribeClustersInput{
		Filters: map[string][]string{"clusterIds": {id}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Clusters) != 1 {
		t.Fatalf("DescribeClusters %s: %d clusters", id, len(out.Clusters))
	}
	return out.Clusters[0]
}

func (h *hsmEnv) waitCluster(t testing.TB, id string, state hsmtypes.ClusterState) hsmtypes.Cluster {
	t.Helper()
	var c hsmtypes.Cluster
	eventually(t, id+" "+string(state), func() (bool, error) {
		c = h.cluster(t, id)
		return c.State == state, nil
	})
	return c
}

// waitHSMs waits until the cluster's HSMs are exactly want (zone list,
// every one ACTIVE).
func (h *hsmEnv) waitHSMs(t testing.TB, id string, azs ...string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s HSMs ACTIVE in %v", id, azs), func() (bool, error) {
		c := h.cluster(t, id)
		if len(c.Hsms) != len(azs) {
			return false, nil
		}
		count := map[string]int{}
		for _, x := range c.Hsms {
			if x.State != hsmtypes.HsmStateActive {
				return false, nil
			}
			count[aws.ToString(x.AvailabilityZone)]++
		}
		for _, az := range azs {
			count[az]--
		}
		for _, n := range count {
			if n != 0 {
				return false, nil
			}
		}
		return true, nil
	})
}

func (h *hsmEnv) addHSM(t testing.TB, id, az string) string {
	t.Helper()
	out, err := h.HSM.CreateHsm(context.Background(), &cloudhsmv2.CreateHsmInput{ClusterId: aws.String(id), AvailabilityZone: aws.String(az)})
	if err != nil {
		t.Fatalf("CreateHsm %s %s: %v", id, az, err)
	}
	return aws.ToString(out.Hsm.HsmId)
}

// deleteHSMs deletes the cluster's HSMs in the given zones (one per zone
// listed) and waits until they are gone.
func (h *hsmEnv) deleteHSMs(t testing.TB, id string, azs ...string) {
	t.Helper()
	c := h.cluster(t, id)
	for _, az := range azs {
		found := false
		for i, x := range c.Hsms {
			if aws.ToString(x.AvailabilityZone) == az {
				if _, err := h.HSM.DeleteHsm(context.Background(), &cloudhsmv2.DeleteHsmInput{ClusterId: aws.String(id), HsmId: x.HsmId}); err != nil {
					t.Fatalf("DeleteHsm: %v", err)
				}
				c.Hsms = append(c.Hsms[:i], c.Hsms[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("cluster %s has no HSM in %s", id, az)
		}
	}
	want := len(c.Hsms)
	eventually(t, fmt.Sprintf("%s down to %d HSMs", id, want), func() (bool, error) {
		return len(h.cluster(t, id).Hsms) == want, nil
	})
}

// Availability zones of keyhold's default network in us-east-1.
var zoneA, zoneB, zoneC = subnetZone(0), subnetZone(1), subnetZone(2)

func subnetZone(i int) string { return hsm.Subnets("us-east-1")[i].AvailabilityZone }

type clusterSpec struct {
	azs      []string // one HSM per entry
	activate bool     // INITIALIZED -> ACTIVE
	kmsuser  string   // create the CU kmsuser with this password ("" = none)
	ca       *testCA  // the customer CA (default: the env's)
}

const coPassword = "CoPassword1"

// newCluster walks a cluster through the documented steps: CreateCluster,
// CreateHsm, sign the CSR with the customer's CA, InitializeCluster, then
// the owner's activate and create-user.
func (h *hsmEnv) newCluster(t testing.TB, spec clusterSpec) string {
	t.Helper()
	ctx := context.Background()
	var subnets []string
	for _, s := range hsm.Subnets("us-east-1")[:3] {
		subnets = append(subnets, s.ID)
	}
	out, err := h.HSM.CreateCluster(ctx, &cloudhsmv2.CreateClusterInput{HsmType: aws.String("hsm1.medium"), SubnetIds: subnets})
	if err != nil {
		t.Fatalf("CreateCluster: %v", err)
	}
	id := aws.ToString(out.Cluster.ClusterId)
	h.waitCluster(t, id, hsmtypes.ClusterStateUninitialized)
	for _, az := range spec.azs {
		h.addHSM(t, id, az)
	}
	h.waitHSMs(t, id, spec.azs...)
	var csr string
	eventually(t, id+" CSR", func() (bool, error) {
		c := h.cluster(t, id)
		if c.Certificates != nil {
			csr = aws.ToString(c.Certificates.ClusterCsr)
		}
		return csr != "", nil
	})
	authority := spec.ca
	if authority == nil {
		authority = h.ca
	}
	if _, err := h.HSM.InitializeCluster(ctx, &cloudhsmv2.InitializeClusterInput{ClusterId: aws.String(id),
		SignedCert: aws.String(authority.signCSR(t, csr)), TrustAnchor: aws.String(authority.pem)}); err != nil {
		t.Fatalf("InitializeCluster: %v", err)
	}
	h.waitCluster(t, id, hsmtypes.ClusterStateInitialized)
	if !spec.activate {
		return id
	}
	if err := h.owner("activate", "--cluster-id", id, "--co-password", coPassword); err != nil {
		t.Fatal(err)
	}
	h.waitCluster(t, id, hsmtypes.ClusterStateActive)
	if spec.kmsuser != "" {
		if err := h.owner("create-user", "--cluster-id", id, "--type", "CU", "--username", "kmsuser",
			"--password", spec.kmsuser, "--co-password", coPassword); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// newClusters makes several clusters at once.
func (h *hsmEnv) newClusters(t *testing.T, specs ...clusterSpec) []string {
	t.Helper()
	ids := make([]string, len(specs))
	var wg sync.WaitGroup
	errs := make(chan string, len(specs))
	for i, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ft := &fatalRecorder{TB: t}
			defer func() {
				if r := recover(); r != nil && r != errFatal {
					panic(r)
				}
				if ft.msg != "" {
					errs <- ft.msg
				}
			}()
			ids[i] = h.newCluster(ft, s)
		}()
	}
	wg.Wait()
	close(errs)
	for m := range errs {
		t.Fatal(m)
	}
	return ids
}

// fatalRecorder lets helpers that call t.Fatal run in a goroutine: Fatal
// records the message and unwinds with a panic that newClusters recovers.
type fatalRecorder struct {
	testing.TB
	msg string
}

var errFatal = &struct{ s string }{"fatal"}

func (f *fatalRecorder) Helper() {}

// Deadline is the test's, for eventually.
func (f *fatalRecorder) Deadline() (time.Time, bool) { return testDeadline(f.TB) }
func (f *fatalRecorder) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	panic(errFatal)
}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(errFatal)
}

// backupOf returns a READY backup of the cluster (activation makes one).
func (h *hsmEnv) backupOf(t testing.TB, clusterID string) string {
	t.Helper()
	var id string
	eventually(t, "a READY backup of "+clusterID, func() (bool, error) {
		out, err := h.HSM.DescribeBackups(context.Background(), &cloudhsmv2.DescribeBackupsInput{
			Filters: map[string][]string{"clusterIds": {clusterID}, "states": {"READY"}}})
		if err != nil {
			return false, err
		}
		if len(out.Backups) > 0 {
			id = aws.ToString(out.Backups[0].BackupId)
		}
		return id != "", nil
	})
	return id
}

// restoredCluster creates a cluster from a backup (ACTIVE, same cluster
// certificate) with HSMs in azs.
func (h *hsmEnv) restoredCluster(t testing.TB, backupID string, azs ...string) string {
	t.Helper()
	var subnets []string
	for _, s := range hsm.Subnets("us-east-1")[:3] {
		subnets = append(subnets, s.ID)
	}
	out, err := h.HSM.CreateCluster(context.Background(), &cloudhsmv2.CreateClusterInput{HsmType: aws.String("hsm1.medium"),
		SubnetIds: subnets, SourceBackupId: aws.String(backupID)})
	if err != nil {
		t.Fatalf("CreateCluster from %s: %v", backupID, err)
	}
	id := aws.ToString(out.Cluster.ClusterId)
	h.waitCluster(t, id, hsmtypes.ClusterStateActive)
	for _, az := range azs {
		h.addHSM(t, id, az)
	}
	h.waitHSMs(t, id, azs...)
	return id
}

// store describes one custom key store by ID.
func (h *hsmEnv) store(t testing.TB, id string) kmstypes.CustomKeyStoresListEntry {
	t.Helper()
	out, err := h.KMS.DescribeCustomKeyStores(context.Background(), &kms.DescribeCustomKeyStoresInput{CustomKeyStoreId: aws.String(id)})
	if err != nil {
		t.Fatalf("DescribeCustomKeyStores %s: %v", id, err)
	}
	if len(out.CustomKeyStores) != 1 {
		t.Fatalf("DescribeCustomKeyStores %s: %d stores", id, len(out.CustomKeyStores))
	}
	return out.CustomKeyStores[0]
}

// settle waits until the store leaves CONNECTING and DISCONNECTING.
func (h *hsmEnv) settle(t testing.TB, id string) kmstypes.CustomKeyStoresListEntry {
	t.Helper()
	var s kmstypes.CustomKeyStoresListEntry
	eventually(t, id+" to leave CONNECTING/DISCONNECTING", func() (bool, error) {
		s = h.store(t, id)
		return s.ConnectionState != kmstypes.ConnectionStateTypeConnecting &&
			s.ConnectionState != kmstypes.ConnectionStateTypeDisconnecting, nil
	})
	return s
}

// connect connects a store and waits for the outcome.
func (h *hsmEnv) connect(t testing.TB, id string) kmstypes.CustomKeyStoresListEntry {
	t.Helper()
	if _, err := h.KMS.ConnectCustomKeyStore(context.Background(), &kms.ConnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatalf("ConnectCustomKeyStore %s: %v", id, err)
	}
	return h.settle(t, id)
}

// mustConnect connects and requires CONNECTED.
func (h *hsmEnv) mustConnect(t testing.TB, id string) {
	t.Helper()
	s := h.connect(t, id)
	if s.ConnectionState != kmstypes.ConnectionStateTypeConnected {
		t.Fatalf("store %s: %s (%s), want CONNECTED", id, s.ConnectionState, s.ConnectionErrorCode)
	}
	if s.ConnectionErrorCode != "" {
		t.Fatalf("CONNECTED store %s has ConnectionErrorCode %s", id, s.ConnectionErrorCode)
	}
}

// connectFails connects and requires FAILED with code.
func (h *hsmEnv) connectFails(t testing.TB, id string, code kmstypes.ConnectionErrorCodeType) {
	t.Helper()
	s := h.connect(t, id)
	if s.ConnectionState != kmstypes.ConnectionStateTypeFailed || s.ConnectionErrorCode != code {
		t.Fatalf("store %s: %s (%q), want FAILED (%s)", id, s.ConnectionState, s.ConnectionErrorCode, code)
	}
}

func (h *hsmEnv) disconnect(t testing.TB, id string) {
	t.Helper()
	if _, err := h.KMS.DisconnectCustomKeyStore(context.Background(), &kms.DisconnectCustomKeyStoreInput{CustomKeyStoreId: aws.String(id)}); err != nil {
		t.Fatalf("DisconnectCustomKeyStore %s: %v", id, err)
	}
	if s := h.settle(t, id); s.ConnectionState != kmstypes.ConnectionStateTypeDisconnected || s.ConnectionErrorCode != "" {
		t.Fatalf("store %s after Disconnect: %s (%q)", id, s.ConnectionState, s.ConnectionErrorCode)
	}
}

func (h *hsmEnv) createStore(name, clusterID, password, anchor string) (string, error) {
	out, err := h.KMS.CreateCustomKeyStore(context.Background(), &kms.CreateCustomKeyStoreInput{
		CustomKeyStoreName: aws.String(name), CloudHsmClusterId: aws.String(clusterID),
		KeyStorePassword: aws.String(password), TrustAnchorCertificate: aws.String(anchor)})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.CustomKeyStoreId), nil
}

func (h *hsmEnv) mustCreateStore(t testing.TB, name, clusterID, password string) string {
	t.Helper()
	id, err := h.createStore(name, clusterID, password, h.ca.pem)
	if err != nil {
		t.Fatalf("CreateCustomKeyStore %s on %s: %v", name, clusterID, err)
	}
	return id
}

// testCA is the customer's CA: RSA 2048, self-signed (customerCA.crt).
type testCA struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
	pem  string
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "customerCA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

var serial = struct {
	sync.Mutex
	n int64
}{n: 100}

// signCSR signs a cluster CSR, as `openssl x509 -req -CA customerCA.crt` does.
func (c *testCA) signCSR(t testing.TB, csrPEM string) string {
	t.Helper()
	b, _ := pem.Decode([]byte(csrPEM))
	if b == nil {
		t.Fatalf("cluster CSR is not PEM")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("cluster CSR signature: %v", err)
	}
	serial.Lock()
	serial.n++
	sn := serial.n
	serial.Unlock()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(sn), Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, csr.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
