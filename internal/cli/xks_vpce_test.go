package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyhold/keyhold/internal/keystore/xksstore"
	"github.com/keyhold/keyhold/internal/store/sqlite"
)

func TestVPCECommand(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		code, out, errOut := run(append([]string{"vpce"}, args...)...)
		if code != 0 {
			return out, fmt.Errorf("exit %d: %s", code, errOut)
		}
		return out, nil
	}
	list := func() ([]xksstore.VPCEndpointService, error) {
		db, err := sqlite.Open(context.Background(), filepath.Join(dir, DatabaseFile))
		if err != nil {
			return nil, err
		}
		defer db.Close()
		return xksstore.ListVPCEndpointServices(context.Background(), db)
	}
	name := "com.amazonaws.vpce.us-east-1.vpce-svc-0123abcd"
	if _, err := run("register", "--data-dir", dir, "--service-name", name, "--endpoint", "https://127.0.0.1:8443", "--private-dns-name", "xks.example.internal"); err != nil {
		t.Fatal(err)
	}
	svcs, err := list()
	if err != nil || len(svcs) != 1 {
		t.Fatalf("registry: %v %+v", err, svcs)
	}
	s := svcs[0]
	if !s.PrivateDNSVerified || s.AcceptanceRequired || len(s.AvailabilityZones) != 2 || s.AllowedPrincipals[0] != "cks.kms.us-east-1.amazonaws.com" {
		t.Fatalf("defaults: %+v", s)
	}
	// Registering again replaces.
	if _, err := run("register", "--data-dir", dir, "--service-name", name, "--endpoint", "https://127.0.0.1:9443", "--private-dns-name", "xks.example.internal", "--acceptance-required", "--zones", "us-east-1a"); err != nil {
		t.Fatal(err)
	}
	out, err := run("list", "--data-dir", dir)
	if err != nil || strings.Count(out, "serviceName") != 1 || !strings.Contains(out, "9443") || !strings.Contains(out, `"acceptanceRequired": true`) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	for _, bad := range [][]string{
		{"register", "--data-dir", dir, "--service-name", "vpce-svc-1", "--endpoint", "https://h", "--private-dns-name", "h"},
		{"register", "--data-dir", dir, "--service-name", name, "--endpoint", "http://h", "--private-dns-name", "h"},
		{"register", "--data-dir", dir, "--service-name", name, "--endpoint", "https://h", "--private-dns-name", "h", "--owner", "12"},
		{"remove", "--data-dir", dir, "--service-name", "com.amazonaws.vpce.us-east-1.vpce-svc-0fff"},
		{"frobnicate", "--data-dir", dir},
	} {
		if _, err := run(bad...); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	if _, err := run("remove", "--data-dir", dir, "--service-name", name); err != nil {
		t.Fatal(err)
	}
	if svcs, _ := list(); len(svcs) != 0 {
		t.Fatalf("after remove: %+v", svcs)
	}
	// The registry is in the store: no state file beside it.
	if files, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(files) != 0 {
		t.Fatalf("state files in the data directory: %v", files)
	}
}
