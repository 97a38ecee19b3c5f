package hsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSubnetsDeterministic(t *testing.T) {
	a, b := Subnets("us-east-1"), Subnets("us-east-1")
	if len(a) != 6 || a[0].AvailabilityZone != "us-east-1a" || a[5].AvailabilityZone != "us-east-1f" {
		t.Fatalf("us-east-1 subnets: %+v", a)
	}
	for i := range a {
		if a[i].ID != b[i].ID || len(a[i].ID) != len("subnet-")+17 {
			t.Fatalf("subnet %d: %s vs %s", i, a[i].ID, b[i].ID)
		}
	}
	if Subnets("eu-west-1")[0].ID == a[0].ID {
		t.Fatal("regions share subnet IDs")
	}
	for range 100 {
		for _, p := range []string{"cluster", "hsm", "backup"} {
			if id := newID(p); !clusterIDRe.MatchString(id) && !hsmIDRe.MatchString(id) && !backupIDRe.MatchString(id) || strings.ToLower(id) != id {
				t.Fatalf("bad id %s", id)
			}
		}
	}
}

func TestClusterLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sn := Subnets("us-east-1")

	t.Run("create validation", func(t *testing.T) {
		for name, in := range map[string]CreateClusterInput{
			"bad type":       {HsmType: "hsm9.huge", SubnetIDs: []string{sn[0].ID}},
			"unknown subnet": {HsmType: "hsm1.medium", SubnetIDs: []string{"subnet-0123456789abcdef0"}},
			"same AZ twice":  {HsmType: "hsm1.medium", SubnetIDs: []string{sn[0].ID, sn[0].ID}},
			"no such backup": {HsmType: "hsm1.medium", SubnetIDs: []string{sn[0].ID}, SourceBackupID: "backup-aaaaaaaaaaa"},
			"reserved tag":   {HsmType: "hsm1.medium", SubnetIDs: []string{sn[0].ID}, Tags: []Tag{{"aws:x", "y"}}},
		} {
			t.Run(name, func(t *testing.T) {
				if _, err := e.m.CreateCluster(ctx, in); err == nil {
					t.Fatal("accepted")
				}
			})
		}
	})

	c, err := e.m.CreateCluster(ctx, CreateClusterInput{HsmType: "hsm2m.medium", SubnetIDs: []string{sn[0].ID, sn[1].ID}, Tags: []Tag{{"team", "kms"}}})
	if err != nil {
		t.Fatal(err)
	}
	if c.State != ClusterCreateInProgress || !ValidClusterID(c.ID) || c.SubnetMapping["us-east-1b"] != sn[1].ID {
		t.Fatalf("created: %+v", c)
	}
	e.waitCluster(c.ID, ClusterUninitialized)
	if _, _, err := e.m.InitializeCluster(ctx, c.ID, "x", "y"); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("initialize without CSR: %v", err)
	}
	if _, err := e.m.CreateHsm(ctx, c.ID, "us-east-1c", ""); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("HSM outside the cluster's AZs: %v", err)
	}
	h, err := e.m.CreateHsm(ctx, c.ID, "us-east-1a", "127.100.0.20")
	if err != nil || h.State != HSMCreateInProgress || h.EniIP != "127.100.0.20" {
		t.Fatalf("CreateHsm: %+v %v", h, err)
	}
	if _, err := e.m.CreateHsm(ctx, c.ID, "us-east-1a", "127.100.0.20"); err == nil {
		t.Fatal("duplicate IP accepted")
	}
	e.waitHSM(c.ID, h.ID, HSMActive)
	cl := e.cluster(c.ID)
	if !strings.Contains(cl.Certificates.ClusterCSR, "CERTIFICATE REQUEST") || cl.PreCoPassword == "" {
		t.Fatalf("no CSR: %+v", cl.Certificates)
	}
	pub := csrKey(t, cl.Certificates.ClusterCSR) // the token signed it
	authority := newCA(t, 2048)
	other := newCA(t, 2048)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	smallCA := newCA(t, 1024)

	for name, tc := range map[string]struct{ signed, anchor, want string }{
		"wrong trust anchor":     {authority.sign(t, pub), other.pem, "not signed by TrustAnchor"},
		"cert for another key":   {authority.sign(t, &otherKey.PublicKey), authority.pem, "public key of the cluster CSR"},
		"not PEM":                {"hello", authority.pem, "not a PEM"},
		"too long":               {strings.Repeat("A", 5001), authority.pem, "at most 5000"},
		"anchor not self-signed": {authority.sign(t, pub), authority.sign(t, &authority.key.PublicKey), "self-signed"},
		"1024-bit anchor":        {smallCA.sign(t, pub), smallCA.pem, "RSA 2048-bit or 4096-bit"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := e.m.InitializeCluster(ctx, c.ID, tc.signed, tc.anchor)
			if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if e.cluster(c.ID).State != ClusterUninitialized {
		t.Fatal("a failed InitializeCluster changed the state")
	}
	signed, anchor := authority.sign(t, pub), authority.pem
	if _, err := exec.LookPath("openssl"); err == nil {
		signed, anchor = opensslSign(t, cl.Certificates.ClusterCSR)
	}
	state, _, err := e.m.InitializeCluster(ctx, c.ID, signed, anchor)
	if err != nil || state != ClusterInitializeInProgress {
		t.Fatalf("InitializeCluster: %s %v", state, err)
	}
	cl = e.waitCluster(c.ID, ClusterInitialized)
	if cl.Certificates.ClusterCertificate != signed || cl.Certificates.ClusterCSR != "" {
		t.Fatal("certificates not recorded")
	}
	if err := e.owner("activate", "--cluster-id", c.ID, "--co-password", "short"); err == nil {
		t.Fatal("short CO password accepted")
	}
	if err := e.owner("activate", "--cluster-id", c.ID, "--co-password", coPass); err != nil {
		t.Fatal(err)
	}
	cl = e.cluster(c.ID)
	if cl.State != ClusterActive || cl.PreCoPassword != "" {
		t.Fatalf("after activate: %s", cl.State)
	}
	if err := e.owner("create-user", "--cluster-id", c.ID, "--username", "kmsuser", "--password", userPass, "--co-password", "WrongCo123"); err == nil {
		t.Fatal("wrong CO password accepted")
	}
	if err := e.owner("create-user", "--cluster-id", c.ID, "--username", "kmsuser", "--password", "not-alnum!", "--co-password", coPass); err == nil {
		t.Fatal("non-alphanumeric kmsuser password accepted")
	}
	if err := e.owner("create-user", "--cluster-id", c.ID, "--username", "kmsuser", "--password", userPass, "--co-password", coPass); err != nil {
		t.Fatal(err)
	}
	if err := e.owner("create-user", "--cluster-id", c.ID, "--username", "other", "--password", userPass, "--co-password", coPass); err == nil {
		t.Fatal("second CU accepted")
	}
	s, err := e.m.Login(ctx, c.ID, "kmsuser", userPass)
	if err != nil {
		t.Fatal(err)
	}
	s.Logout(ctx)

	// Backups were made on activation; the cluster can be deleted only
	// without HSMs.
	bs, _, err := e.m.DescribeBackups(ctx, BackupFilter{ClusterIDs: []string{c.ID}}, false, "", 0)
	if err != nil || len(bs) != 1 || bs[0].State != BackupReady {
		t.Fatalf("backups after activate: %+v %v", bs, err)
	}
	if _, err := e.m.DeleteCluster(ctx, c.ID); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("delete with HSMs: %v", err)
	}
	if _, err := e.m.DeleteHsm(ctx, c.ID, "", "", h.EniIP); err != nil {
		t.Fatal(err)
	}
	e.waitHSM(c.ID, h.ID, HSMDeleted)
	if d, err := e.m.DeleteCluster(ctx, c.ID); err != nil || d.State != ClusterDeleteInProgress {
		t.Fatalf("DeleteCluster: %v", err)
	}
	e.waitCluster(c.ID, ClusterDeleted)
	if _, err := e.m.Cluster(ctx, c.ID); !errors.Is(err, ErrClusterNotFound) {
		t.Fatalf("deleted cluster: %v", err)
	}
	if _, err := e.m.Login(ctx, c.ID, "kmsuser", userPass); !errors.Is(err, ErrClusterNotFound) {
		t.Fatalf("login to deleted cluster: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dataDir, "hsm", "clusters", c.ID, "tokens")); !os.IsNotExist(err) {
		t.Fatalf("token dir left behind: %v", err)
	}
}

// opensslSign makes a CA and signs the CSR with the openssl CLI, as the
// CloudHSM guide tells owners to.
func opensslSign(t *testing.T, csrPEM string) (signed, anchor string) {
	dir := t.TempDir()
	run := func(args ...string) {
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	os.WriteFile(filepath.Join(dir, "cluster.csr"), []byte(csrPEM), 0o600)
	run("genrsa", "-out", "customerCA.key", "2048")
	run("req", "-new", "-x509", "-days", "2", "-key", "customerCA.key", "-out", "customerCA.crt", "-subj", "/CN=customerCA")
	run("x509", "-req", "-days", "2", "-in", "cluster.csr", "-CA", "customerCA.crt", "-CAkey", "customerCA.key", "-CAcreateserial", "-out", "cluster.crt")
	s, _ := os.ReadFile(filepath.Join(dir, "cluster.crt"))
	a, _ := os.ReadFile(filepath.Join(dir, "customerCA.crt"))
	return string(s), string(a)
}
