package cli

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/keyhold/keyhold/internal/config"
)

// TestPackagingMatchesCLI: the Containerfile and the systemd unit (which
// CI cannot run: no container engine, no systemd) use settings, commands
// and flags keyhold serve has, with values it accepts.
func TestPackagingMatchesCLI(t *testing.T) {
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	container := read("../../packaging/Containerfile")
	unit := read("../../packaging/keyhold.service")
	gomod := read("../../go.mod")

	// Every KEYHOLD_* variable is a serve setting, and the values resolve.
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`(KEYHOLD_[A-Z_]+)=(\S+)`).FindAllStringSubmatch(container+unit, -1) {
		env[m[1]] = strings.TrimSuffix(m[2], `\`)
	}
	if len(env) < 3 {
		t.Fatalf("found %d KEYHOLD_ variables: %v", len(env), env)
	}
	set := serveSettings(&serveOptions{})
	names := map[string]bool{}
	for _, n := range set.Names() {
		names[config.EnvName(n)] = true
	}
	for k := range env {
		if !names[k] {
			t.Errorf("packaging sets %s, which keyhold serve does not read", k)
		}
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	set.Bind(fs)
	if err := set.Resolve(fs, "", func(k string) string { return env[k] }); err != nil {
		t.Errorf("the packaging's settings are refused: %v", err)
	}

	// The container serves on the port it exposes and checks /healthz there.
	port := env["KEYHOLD_ADDR"][strings.LastIndexByte(env["KEYHOLD_ADDR"], ':')+1:]
	if !strings.Contains(container, "EXPOSE "+port) || !strings.Contains(container, "http://127.0.0.1:"+port+"/healthz") {
		t.Errorf("Containerfile: EXPOSE and HEALTHCHECK do not use port %s of KEYHOLD_ADDR", port)
	}
	if !strings.Contains(container, `CMD ["serve"]`) || !strings.Contains(container, `ENTRYPOINT ["/usr/local/bin/keyhold"]`) {
		t.Error("Containerfile: the entry point is not keyhold serve")
	}
	// The builder's Go is the one go.mod asks for (major.minor).
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if goVersion == nil || !strings.Contains(container, "golang:"+goVersion[1]+"-") {
		t.Errorf("Containerfile: the build image is not Go %v (go.mod)", goVersion)
	}
	// The version stamps name variables that exist (VersionText reads them).
	for _, v := range []string{"internal/cli.version=", "internal/cli.commit="} {
		if !strings.Contains(container, "github.com/keyhold/keyhold/"+v) {
			t.Errorf("Containerfile: -ldflags lacks -X github.com/keyhold/keyhold/%s", v)
		}
	}

	// systemd: ExecStart is keyhold serve with flags serve takes.
	exec := regexp.MustCompile(`(?m)^ExecStart=(\S+) (.*)$`).FindStringSubmatch(unit)
	if exec == nil {
		t.Fatal("keyhold.service has no ExecStart")
	}
	args := strings.Fields(exec[2])
	if args[0] != "serve" {
		t.Fatalf("ExecStart runs %q, want serve", args[0])
	}
	root := NewRootCommand(nil, nil)
	serve, _, err := root.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.ParseFlags(args[1:]); err != nil || len(serve.Flags().Args()) != 0 {
		t.Errorf("ExecStart flags %v: %v (stray %v)", args[1:], err, serve.Flags().Args())
	}
	if !strings.Contains(unit, "ExecReload=/bin/kill -HUP $MAINPID") {
		t.Error("keyhold.service: reload is not SIGHUP")
	}
}
