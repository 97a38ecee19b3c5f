package hsm

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one running HSM daemon.
type proc struct {
	clusterID string
	hsmID     string
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	cl        *client
	addr      string // where it listens (host:port or the socket path)
	alive     atomic.Bool
	stopping  atomic.Bool
	exited    chan struct{}
}

// spawnSpec says how to start a daemon for one token.
type spawnSpec struct {
	exe      string
	exeArgs  []string
	module   string
	conf     string // SOFTHSM2_CONF, empty for a real HSM
	label    string
	socket   string // a temporary daemon's unix socket, or
	listen   string // an HSM's TCP address (mutual TLS)
	bundle   []byte // the HSM's TLS bundle (tls.go), written to its stdin
	sockDir  string // where temporary daemons' sockets go ("" = system temp dir)
	logger   *slog.Logger
	hsmID    string
	cluster  string
	startTTL time.Duration
}

// spawn starts a daemon and waits until it listens. The daemon is killed if
// this process dies (Pdeathsig, and EOF on its stdin).
func spawn(ctx context.Context, sp spawnSpec) (*proc, error) {
	args := append(append([]string{}, sp.exeArgs...), "--module", sp.module, "--token", sp.label)
	if sp.listen != "" {
		args = append(args, "--listen", sp.listen)
	} else {
		args = append(args, "--socket", sp.socket)
	}
	cmd := exec.Command(sp.exe, args...)
	env := make([]string, 0, len(os.Environ())+2)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SOFTHSM2_CONF=") && !strings.HasPrefix(e, daemonEnv+"=") {
			env = append(env, e)
		}
	}
	if sp.conf != "" {
		env = append(env, "SOFTHSM2_CONF="+sp.conf)
	}
	cmd.Env = append(env, daemonEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("hsm: start HSM process: %w", err)
	}
	if sp.listen != "" {
		// The pipe holds the bundle until the daemon reads it.
		go func() {
			if _, err := stdin.Write(sp.bundle); err != nil {
				sp.logger.Warn("hsm: hand the HSM its TLS bundle", "hsm", sp.hsmID, "err", err)
			}
		}()
	}
	p := &proc{clusterID: sp.cluster, hsmID: sp.hsmID, cmd: cmd, stdin: stdin, cl: newClient(sp.socket), addr: sp.socket, exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			sp.logger.Warn("hsm daemon", "cluster", sp.cluster, "hsm", sp.hsmID, "line", sc.Text())
		}
	}()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		line := ""
		if sc.Scan() {
			line = sc.Text()
		}
		ready <- line
		io.Copy(io.Discard, stdout)
	}()
	ttl := sp.startTTL
	if ttl == 0 {
		ttl = 15 * time.Second
	}
	timer := time.NewTimer(ttl)
	defer timer.Stop()
	select {
	case line := <-ready:
		addr, ok := strings.CutPrefix(line, "ready ")
		if !ok {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, fmt.Errorf("hsm: HSM process for %s failed to start", sp.hsmID)
		}
		if sp.listen != "" {
			p.addr = addr
		}
	case <-timer.C:
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("hsm: HSM process for %s did not start in %s", sp.hsmID, ttl)
	case <-ctx.Done():
		cmd.Process.Kill()
		cmd.Wait()
		return nil, ctx.Err()
	}
	p.alive.Store(true)
	return p, nil
}

// wait reaps the process; onExit runs if it died without being stopped.
func (p *proc) wait(onExit func(*proc, error)) {
	err := p.cmd.Wait()
	p.alive.Store(false)
	p.cl.close()
	close(p.exited)
	if !p.stopping.Load() && onExit != nil {
		onExit(p, err)
	}
}

// stop ends the daemon: EOF on stdin, then SIGTERM, then SIGKILL.
func (p *proc) stop() {
	if !p.stopping.CompareAndSwap(false, true) {
		<-p.exited
		return
	}
	p.alive.Store(false)
	p.cl.close()
	p.stdin.Close()
	select {
	case <-p.exited:
		return
	case <-time.After(2 * time.Second):
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// daemonEnv is set in every daemon's environment, so a test binary (or any
// re-executed binary) can tell it should run DaemonCommand.
const daemonEnv = "KEYHOLD_HSM_DAEMON"

// withTempDaemon starts a daemon for one job (token initialisation, crypto
// officer work, the raw benchmark) and stops it afterwards.
func withTempDaemon(ctx context.Context, sp spawnSpec, fn func(*client) error) error {
	prefix := "khsm-"
	if sp.sockDir != "" {
		prefix = "t"
	}
	dir, err := os.MkdirTemp(sp.sockDir, prefix)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sp.socket = filepath.Join(dir, "d.sock")
	if sp.hsmID == "" {
		sp.hsmID = "temporary"
	}
	p, err := spawn(ctx, sp)
	if err != nil {
		return err
	}
	go p.wait(nil)
	defer p.stop()
	return fn(p.cl)
}
