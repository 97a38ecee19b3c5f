package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/help golden files")

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = MainContext(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

// TestHelpGolden pins every command's help text (go test -run TestHelpGolden -update rewrites them).
func TestHelpGolden(t *testing.T) {
	cmds := [][]string{
		{}, {"serve"}, {"xks-proxy"}, {"xks-proxy", "init"}, {"bench"}, {"hsm"}, {"hsm", "activate"}, {"hsm", "create-user"}, {"hsm", "pkcs11-bench"}, {"admin"}, {"admin", "create-access-key"},
		{"admin", "attach-policy"}, {"vpce"}, {"vpce", "register"}, {"vpce", "list"}, {"vpce", "remove"}, {"audit"}, {"config", "example"}, {"version"}, {"completion"},
	}
	t.Setenv("KEYHOLD_DATA_DIR", "")
	t.Setenv("AWS_REGION", "")
	for _, c := range cmds {
		name := "keyhold"
		if len(c) > 0 {
			name = strings.Join(c, "_")
		}
		t.Run(name, func(t *testing.T) {
			code, out, errOut := run(append(append([]string{}, c...), "--help")...)
			if code != 0 {
				t.Fatalf("--help exit %d, stderr %s", code, errOut)
			}
			path := filepath.Join("testdata", "help", name+".txt")
			if *update {
				if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if out != string(want) {
				t.Errorf("help of %q changed (run with -update if intended):\n%s", name, out)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve", "x", "--addr", "127.0.0.1:1"}, 2, `unknown command "x"`},
		{[]string{"serve", "--no-such-flag"}, 2, "unknown flag: --no-such-flag"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"admin", "bogus"}, 2, `unknown command "bogus" for "keyhold admin"`},
		{[]string{"admin", "create-user", "--trust-policy", "x"}, 2, "unknown flag: --trust-policy"},
		{[]string{"version", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"serve", "--log-level", "loud"}, 1, `--log-level: log-level: unknown log level "loud"`},
		{[]string{"serve", "--addr", "nope"}, 1, `--addr: addr: "nope" is not HOST:PORT`},
		{[]string{"serve", "--addr", "127.0.0.1:45x9"}, 1, `--addr: addr: "127.0.0.1:45x9" is not HOST:PORT (the port must be a number`},
		{[]string{"serve", "--account-id", "12"}, 1, "account-id: want 12 digits"},
		{[]string{"serve", "--pprof-addr", "0.0.0.0:6060"}, 1, "is not a loopback address"},
		{[]string{"xks-proxy"}, 2, "key store file is required"},
		{[]string{"xks-proxy", "--config", "x.json", "extra"}, 2, `unknown command "extra"`},
		{[]string{"xks-proxy", "--config", "/nonexistent/keyhold-xks.json"}, 1, "no such file or directory"},
		{[]string{"xks-proxy", "init"}, 2, "--dir is required"},
		{[]string{"vpce", "list", "extra"}, 2, `unexpected argument "extra": keyhold vpce list takes only flags`},
		{[]string{"vpce", "bogus"}, 2, `unknown command "bogus" for "keyhold vpce"`},
		{[]string{"vpce", "list", "--service-name", "x"}, 2, "unknown flag: --service-name"},
		{[]string{"vpce", "register", "--endpoint", "https://h"}, 2, `required flag(s) "private-dns-name", "service-name" not set`},
		{[]string{"vpce", "remove"}, 2, `required flag(s) "service-name" not set`},
		{[]string{"bench"}, 2, `required flag(s) "endpoint" not set`},
		{[]string{"bench", "--endpoint", "http://127.0.0.1:1", "extra"}, 2, `unexpected argument "extra": keyhold bench takes only flags`},
		{[]string{"bench", "-endpoint", "http://127.0.0.1:1"}, 2, "unknown shorthand flag"},
		{[]string{"bench", "--endpoint", "http://127.0.0.1:1", "--op", "dance"}, 1, `bench: unknown --op "dance"`},
		{[]string{"bench", "--endpoint", "http://192.0.2.1:1"}, 1, "refusing to send load to 192.0.2.1"},
		{[]string{"hsm", "activate", "--password", "x"}, 2, "unknown flag: --password"},
		{[]string{"hsm", "backup", "--concurrency", "4"}, 2, "unknown flag: --concurrency"},
		{[]string{"hsm", "subnets", "extra"}, 2, `unexpected argument "extra": keyhold hsm subnets takes only flags`},
		{[]string{"hsm", "bogus"}, 2, `unknown command "bogus" for "keyhold hsm"`},
		{[]string{"hsm", "activate", "--co-password", "x"}, 2, `required flag(s) "cluster-id" not set`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errOut := run(tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut, tc.code, tc.want)
			}
		})
	}
}

func TestXKSProxyAddrChecked(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "xks.json")
	os.WriteFile(cfg, []byte(`{"listen": "127.0.0.1:0", "keyStores": []}`), 0o600)
	code, _, errOut := run("xks-proxy", "--config", cfg, "--addr", "localhost:https")
	if code != 1 || !strings.Contains(errOut, `--addr: addr: "localhost:https" is not HOST:PORT`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestServeConfigFileErrorNamesLine(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "keyhold.conf")
	os.WriteFile(cfg, []byte("# keyhold\ndata-dir = "+dir+"\n\ndeletion-interval = soon\n"), 0o600)
	code, _, errOut := run("serve", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, cfg+":4: deletion-interval: \"soon\" is not a duration") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	t.Setenv("KEYHOLD_CONFIG", cfg)
	code, _, errOut = run("serve")
	if code != 1 || !strings.Contains(errOut, cfg+":4:") {
		t.Fatalf("KEYHOLD_CONFIG: exit %d, stderr %q", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run("version")
	if code != 0 || !strings.HasPrefix(out, "keyhold ") || !strings.Contains(out, "go:         go1.") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestCompletion(t *testing.T) {
	code, out, _ := run("completion", "bash")
	if code != 0 || !strings.Contains(out, "bash completion") {
		t.Fatalf("exit %d: %.200s", code, out)
	}
}

// Each hsm subcommand's help lists only the flags that subcommand takes.
func TestHSMSubcommandHelpListsOnlyItsFlags(t *testing.T) {
	code, out, errOut := run("hsm", "activate", "--help")
	help := out + errOut
	if code != 0 {
		t.Fatalf("exit %d, output %q", code, help)
	}
	for _, want := range []string{"--cluster-id", "--co-password", "--data-dir"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %s:\n%s", want, help)
		}
	}
	for _, other := range []string{"--concurrency", "--duration", "--username", "--type"} {
		if strings.Contains(help, other) {
			t.Errorf("help lists another subcommand's flag %s:\n%s", other, help)
		}
	}
}

// vpce's subcommands each list only their own flags.
func TestVPCESubcommandHelpListsOnlyItsFlags(t *testing.T) {
	for sub, tc := range map[string]struct{ want, not []string }{
		"register": {want: []string{"--service-name", "--endpoint", "--private-dns-name", "--zones", "--data-dir"}},
		"list":     {want: []string{"--data-dir"}, not: []string{"--service-name", "--endpoint", "--zones"}},
		"remove":   {want: []string{"--data-dir", "--service-name"}, not: []string{"--endpoint", "--zones", "--owner"}},
	} {
		code, out, errOut := run("vpce", sub, "--help")
		if code != 0 {
			t.Fatalf("vpce %s --help: exit %d %s", sub, code, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("vpce %s --help lacks %s:\n%s", sub, w, out)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(out, n) {
				t.Errorf("vpce %s --help lists %s:\n%s", sub, n, out)
			}
		}
	}
}
