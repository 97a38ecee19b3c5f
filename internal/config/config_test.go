package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

type opts struct {
	addr    string
	debug   bool
	every   time.Duration
	workers int
}

func settings(o *opts) *Set {
	return &Set{Command: "serve", Settings: []*Setting{
		{Name: "addr", Usage: "listen address", Default: "127.0.0.1:4599", Target: &o.addr},
		{Name: "debug", Usage: "debug", Default: "false", Kind: Bool, Target: &o.debug},
		{Name: "every", Usage: "interval", Default: "1m", Kind: Duration, Target: &o.every},
		{Name: "workers", Usage: "workers", Default: "2", Kind: Int, Target: &o.workers},
	}}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keyhold.conf")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func resolve(t *testing.T, args []string, file string, env map[string]string) (*opts, *Set, error) {
	t.Helper()
	o := &opts{}
	s := settings(o)
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	s.Bind(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	err := s.Resolve(fs, file, func(k string) string { return env[k] })
	return o, s, err
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "# comment\naddr = \"127.0.0.1:1\" # trailing\nevery = 5m\nworkers = 7\n")
	env := map[string]string{"KEYHOLD_ADDR": "127.0.0.1:2", "KEYHOLD_EVERY": "10s"}
	tests := []struct {
		name  string
		args  []string
		file  string
		env   map[string]string
		want  opts
		where map[string]string
	}{
		{"defaults", nil, "", nil, opts{"127.0.0.1:4599", false, time.Minute, 2}, map[string]string{"addr": "default"}},
		{"file over default", nil, file, nil, opts{"127.0.0.1:1", false, 5 * time.Minute, 7}, map[string]string{"addr": file + ":2", "every": file + ":3"}},
		{"env over file", nil, file, env, opts{"127.0.0.1:2", false, 10 * time.Second, 7}, map[string]string{"addr": "KEYHOLD_ADDR", "workers": file + ":4"}},
		{"flag over env", []string{"--addr", "127.0.0.1:3", "--debug"}, file, env, opts{"127.0.0.1:3", true, 10 * time.Second, 7}, map[string]string{"addr": "--addr", "debug": "--debug"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, s, err := resolve(t, tc.args, tc.file, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if *o != tc.want {
				t.Errorf("got %+v, want %+v", *o, tc.want)
			}
			for k, v := range tc.where {
				if s.Sources[k] != v {
					t.Errorf("source of %s = %q, want %q", k, s.Sources[k], v)
				}
			}
		})
	}
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want string // substring; FILE is replaced by the file's path
	}{
		{"bad duration in file", "addr = x\n\nevery = 5x\n", nil, nil, "FILE:3: every: \"5x\" is not a duration"},
		{"bad int in file", "workers = many\n", nil, nil, "FILE:1: workers: \"many\" is not an integer"},
		{"unknown key", "# c\nport = 1\n", nil, nil, "FILE:2: unknown setting \"port\""},
		{"no equals", "addr\n", nil, nil, "FILE:1: expected \"name = value\""},
		{"duplicate", "addr = a\naddr = b\n", nil, nil, "FILE:2: addr is already set on line 1"},
		{"unterminated quote", "addr = \"x\n", nil, nil, "FILE:1: addr: unterminated"},
		{"bad env", "", map[string]string{"KEYHOLD_DEBUG": "yes please"}, nil, "KEYHOLD_DEBUG: debug: \"yes please\" is not a boolean"},
		{"bad flag", "", nil, []string{"--every", "-1s"}, "--every: every: \"-1s\" is negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, tc.file)
			_, _, err := resolve(t, tc.args, file, tc.env)
			want := strings.ReplaceAll(tc.want, "FILE", file)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v, want it to contain %q", err, want)
			}
		})
	}
}

func TestCheckAndExample(t *testing.T) {
	o := &opts{}
	s := settings(o)
	s.Settings[0].Check = func(v string) error {
		if !strings.Contains(v, ":") {
			return os.ErrInvalid
		}
		return nil
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	s.Bind(fs)
	file := writeFile(t, "addr = nocolon\n")
	if err := s.Resolve(fs, file, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), file+":1: addr") {
		t.Fatalf("Check error %v", err)
	}
	var b strings.Builder
	if err := s.WriteExample(&b); err != nil {
		t.Fatal(err)
	}
	// The example, uncommented, is a valid file giving the defaults.
	var lines []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "# ") && strings.Contains(l, " = ") && !strings.Contains(l, "Precedence") && !strings.Contains(l, "name = value") {
			lines = append(lines, strings.TrimPrefix(l, "# "))
		}
	}
	if len(lines) != len(s.Settings) {
		t.Fatalf("example has %d settings, want %d:\n%s", len(lines), len(s.Settings), b.String())
	}
	o2 := &opts{}
	s2 := settings(o2)
	fs2 := pflag.NewFlagSet("x", pflag.ContinueOnError)
	s2.Bind(fs2)
	if err := s2.Resolve(fs2, writeFile(t, strings.Join(lines, "\n")), func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if *o2 != (opts{"127.0.0.1:4599", false, time.Minute, 2}) {
		t.Fatalf("example values %+v", *o2)
	}
}
