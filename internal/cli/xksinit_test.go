package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyhold/keyhold/internal/xks/proxy"
)

func TestNormalizePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"example": "/example", "/example": "/example", "/example/": "/example", "example/": "/example",
		" /a/b ": "/a/b", "": "", "/": "", "//": "",
	} {
		if got := proxy.NormalizePrefix(in); got != want {
			t.Errorf("NormalizePrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestXKSProxyInitPrefixWithoutSlash: `xks-proxy init --prefix example`
// (no leading slash) makes the proxy at /example, and --restricted-keys
// adds the keys AWS's XKS proxy test client needs.
func TestXKSProxyInitPrefixWithoutSlash(t *testing.T) {
	if _, err := os.Stat(proxy.DefaultModule); err != nil {
		t.Skipf("SoftHSM2 (%s) is not installed", proxy.DefaultModule)
	}
	dir := filepath.Join(t.TempDir(), "proxy")
	code, out, errOut := run("xks-proxy", "init", "--dir", dir, "--prefix", "example", "--restricted-keys", "--addr", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res proxy.InitResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.XksProxyUriPath != "/example/kms/xks/v1" {
		t.Fatalf("XksProxyUriPath %q", res.XksProxyUriPath)
	}
	cfg, err := os.ReadFile(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, label := range []string{proxy.EncryptOnlyKeyLabel, proxy.DecryptOnlyKeyLabel, proxy.NoUsageKeyLabel, `"/example"`} {
		if !strings.Contains(string(cfg), label) {
			t.Errorf("config.json lacks %s", label)
		}
	}
	if st, _ := os.Stat(res.ConfigFile); st.Mode().Perm() != 0o600 {
		t.Errorf("config.json mode %v, want 0600", st.Mode().Perm())
	}
}
