package proxy

import (
	"strings"
	"testing"
)

// FuzzRoute checks that routing never cleans or rewrites a path: whatever
// it accepts is exactly prefix + /kms/xks/v1/ + a known API.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{
		"/a/kms/xks/v1/health", "/kms/xks/v1/keys/k/encrypt", "/a/b/kms/xks/v1/keys/x.y-z/decrypt",
		"/a/kms/xks/v1/keys/../health", "//kms/xks/v1/health", "/a/kms/xks/v1/keys/k/metadata/",
		"/a%2Fb/kms/xks/v1/health",
	} {
		f.Add(s)
	}
	st := &state{byPrefix: map[string]*store{}}
	for _, p := range []string{"/a/b", "/a", ""} {
		ks := &store{prefix: p}
		st.stores = append(st.stores, ks)
		st.byPrefix[p] = ks
	}
	f.Fuzz(func(t *testing.T, path string) {
		ks, api, keyID, ok := st.route(path)
		if !ok {
			return
		}
		want := ks.prefix + "/kms/xks/v1/health"
		if api != "health" {
			want = ks.prefix + "/kms/xks/v1/keys/" + keyID + "/" + api
		}
		if path != want {
			t.Fatalf("route(%q) = %q %q %q, which spells %q", path, ks.prefix, api, keyID, want)
		}
		if strings.Contains(keyID, "/") {
			t.Fatalf("route(%q) accepted key id %q", path, keyID)
		}
	})
}
