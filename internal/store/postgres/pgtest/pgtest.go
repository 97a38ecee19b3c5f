// Package pgtest starts a throwaway PostgreSQL server for tests: initdb on
// a temporary directory, postgres on a free port of 127.0.0.1, stopped and
// removed at the end. Tests that need it skip with a one-line message when
// the PostgreSQL binaries are not installed.
//
// One server serves a whole test binary (Main); each test gets its own
// schema (Schema) or database (Database), so tests stay independent.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bin finds the directory holding initdb and postgres: $KEYHOLD_PG_BIN,
// PATH, then Debian's /usr/lib/postgresql/<version>/bin (newest first).
func Bin() (string, error) {
	if d := os.Getenv("KEYHOLD_PG_BIN"); d != "" {
		return d, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL binaries (initdb, postgres) not found: install postgresql or set KEYHOLD_PG_BIN")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Server is a running throwaway PostgreSQL.
type Server struct {
	// URL reaches the server's "postgres" database as its superuser.
	URL  string
	Port int
	dir  string
	cmd  *exec.Cmd
	n    atomic.Int64
}

// Options for Start.
type Options struct {
	// Durable keeps fsync on (benchmarks); tests turn it off for speed.
	Durable bool
}

// Start runs initdb and postgres. When the process runs as root, PostgreSQL
// (which refuses root) runs as the "postgres" or "nobody" user.
func Start(ctx context.Context, o Options) (*Server, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "keyhold-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	cred, err := runAs(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "keyhold", "--auth=trust",
		"--locale=C", "-E", "UTF8", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB"}
	if !o.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), args...)
	// Pdeathsig: a test binary that dies (a panic, a timeout) takes its
	// server with it (SIGQUIT: the postmaster's immediate shutdown).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s.Port = port
	s.URL = fmt.Sprintf("postgres://keyhold@127.0.0.1:%d/postgres?sslmode=disable", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := pgx.Connect(ctx, s.URL)
		if err == nil {
			c.Close(ctx)
			return s, nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			s.Stop()
			return nil, fmt.Errorf("postgres did not accept connections in 30s: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runAs chowns dir to an unprivileged user when running as root and
// returns that user's credential (nil otherwise).
func runAs(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and no postgres or nobody user to run PostgreSQL as")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop shuts the server down (fast shutdown) and removes its files.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-done
		}
	}
	os.RemoveAll(s.dir)
}

// Kill stops the server abruptly (SIGKILL of the postmaster's process
// group), as a crashed database host would; Restart brings it back on the
// same port and data.
//
// PostgreSQL's child processes (backends, background workers) leave the
// postmaster's process group (setsid), so they are killed one by one: the
// postmaster is stopped first so that it forks no more, its children are
// found by parent pid, then all die. Without that a backend could still
// answer a client on an open connection for a moment after the "crash".
func (s *Server) Kill() {
	pm := s.cmd.Process.Pid
	syscall.Kill(pm, syscall.SIGSTOP)
	kids := children(pm)
	syscall.Kill(-pm, syscall.SIGKILL)
	syscall.Kill(pm, syscall.SIGKILL)
	for _, k := range kids {
		syscall.Kill(k, syscall.SIGKILL)
	}
	s.cmd.Wait()
	// Each child is gone (or a zombie) before Kill returns.
	deadline := time.Now().Add(5 * time.Second)
	for _, k := range kids {
		for alive(k) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// children lists the processes whose parent is pid (from /proc).
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so parse after ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// alive reports whether pid runs (a zombie has died).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// Restart starts the server again after Kill, on the same port and data.
func (s *Server) Restart(ctx context.Context) error {
	old := s.cmd
	cmd := exec.Command(old.Path, old.Args[1:]...)
	cmd.SysProcAttr = old.SysProcAttr
	logf, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	// A killed postmaster leaves its shared memory and pid file; postgres
	// recovers from both.
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := pgx.Connect(ctx, s.URL)
		if err == nil {
			c.Close(ctx)
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Database creates a fresh database and returns its URL.
func (s *Server) Database(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.n.Add(1))
	c, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return fmt.Sprintf("postgres://keyhold@127.0.0.1:%d/%s?sslmode=disable", s.Port, name), nil
}

// Schema creates a fresh schema in the server's database and returns a URL
// whose connections use it (cheaper than a database).
func (s *Server) Schema(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.n.Add(1))
	c, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		return "", err
	}
	return s.URL + "&search_path=" + name, nil
}

var (
	shared    *Server
	sharedErr error
	mu        sync.Mutex
)

// Main runs a test binary with one shared server (started on first use by
// Need, stopped after the tests): call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	if shared != nil {
		shared.Stop()
	}
	mu.Unlock()
	os.Exit(code)
}

// Need returns the binary's shared server, starting it on first use, or
// skips the test when PostgreSQL is not installed (Main must run the
// binary, or the server outlives it).
func Need(t testing.TB) *Server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = Start(context.Background(), Options{})
	}
	if sharedErr != nil {
		if _, err := Bin(); err != nil {
			t.Skipf("skipping: %v", err)
		}
		t.Fatalf("starting PostgreSQL: %v", sharedErr)
	}
	return shared
}

// URL returns a fresh schema's URL on the shared server (see Need).
func URL(t testing.TB) string {
	t.Helper()
	s := Need(t)
	u, err := s.Schema(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return u
}
