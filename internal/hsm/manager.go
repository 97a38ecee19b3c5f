package hsm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

const defaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// Config configures a Manager.
type Config struct {
	Dir        string // DATADIR/hsm
	Region     string
	ModulePath string // default /usr/lib/softhsm/libsofthsm2.so
	// Exe and ExeArgs start an HSM daemon: default os.Executable() and
	// ["hsm-daemon"]; the daemon flags are appended.
	Exe     string
	ExeArgs []string
	Logger  *slog.Logger
	// Records is keyhold's store, where cluster and backup records live
	// (a StoreRegistry over it, with token directories under Dir). It is
	// required unless Registry is given.
	Records Records
	// Registry replaces the StoreRegistry (tests).
	Registry Registry
	// TransitionDelay is how long asynchronous state changes take
	// (CREATE_IN_PROGRESS, INITIALIZE_IN_PROGRESS, ...); default 500ms.
	TransitionDelay time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *Config) defaults() error {
	if c.Dir == "" {
		return errors.New("hsm: Config.Dir is required")
	}
	// Token paths in records and daemons' configs derive from Dir: they
	// must not depend on the working directory.
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return fmt.Errorf("hsm: %w", err)
	}
	c.Dir = dir
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.ModulePath == "" {
		c.ModulePath = defaultModule
	}
	if c.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("hsm: %w", err)
		}
		c.Exe = exe
		if c.ExeArgs == nil {
			c.ExeArgs = []string{"hsm-daemon"}
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.TransitionDelay == 0 {
		c.TransitionDelay = 500 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Manager runs the clusters of one data directory: the control plane, the
// HSM processes and the crypto-user sessions. It is safe for concurrent use.
type Manager struct {
	cfg      Config
	reg      Registry
	log      *slog.Logger
	instance string
	sockDir  string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	csrMu sync.Mutex // one cluster CSR at a time

	mu       sync.Mutex
	procs    map[string]*proc        // by HSM ID
	sessions map[string]*UserSession // by cluster ID
	closed   bool
}

// Open loads the registry, finishes transitions interrupted by a crash and
// starts a daemon for every HSM that was running (ACTIVE, DEGRADED or being
// created). Logins held by a previous server are released: their daemons
// died with it.
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	reg := cfg.Registry
	if reg == nil {
		if cfg.Records == nil {
			return nil, errors.New("hsm.Open: Config.Records (the store) is required")
		}
		sr, err := NewStoreRegistry(ctx, cfg.Records, cfg.Dir)
		if err != nil {
			return nil, err
		}
		reg = sr
	}
	sockDir, err := socketDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("hsm.Open: %w", err)
	}
	m := &Manager{cfg: cfg, reg: reg, log: cfg.Logger, instance: randomHex(8), sockDir: sockDir,
		procs: map[string]*proc{}, sessions: map[string]*UserSession{}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	clusters, err := reg.ListClusters(ctx)
	if err != nil {
		m.Close()
		return nil, err
	}
	for _, c := range clusters {
		rec, err := reg.UpdateCluster(ctx, c.ID, func(r *ClusterRecord) error {
			r.User.LoggedInBy = ""
			return nil
		})
		if err != nil {
			m.Close()
			return nil, err
		}
		switch rec.State {
		case ClusterCreateInProgress:
			m.async(func() { m.finishCreateCluster(rec.ID) })
			continue
		case ClusterInitializeInProgress:
			m.async(func() {
				m.setClusterState(rec.ID, ClusterInitializeInProgress, ClusterInitialized, "Cluster initialized.")
			})
		case ClusterDeleteInProgress:
			m.async(func() { m.finishDeleteCluster(rec.ID) })
			continue
		case ClusterDeleted:
			continue
		}
		for _, h := range rec.HSMs {
			switch h.State {
			case HSMActive, HSMDegraded, HSMCreateInProgress:
				if err := m.startHSM(ctx, rec, h.ID); err != nil {
					m.log.Warn("hsm: restart HSM", "cluster", rec.ID, "hsm", h.ID, "err", err)
				}
			case HSMDeleteInProgress, HSMDeleted:
				hsmID := h.ID
				m.async(func() { m.finishDeleteHSM(rec.ID, hsmID) })
			}
		}
	}
	m.async(m.janitor)
	return m, nil
}

// socketDir is where the HSM daemons of the data directory dir listen:
// DIR/run when the socket paths fit a unix socket address, else a directory
// of the system temp dir named after DIR. Either way it is emptied and made
// afresh on start (one server per data directory), so that a kill -9 leaves
// nothing behind beyond the next start.
func socketDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", err
	}
	run := filepath.Join(abs, "run")
	// The longest name inside: a temporary daemon's "/tNNNNNNNNNN/d.sock"
	// or "/hsm-xxxxxxxxxxx.sock"; sun_path holds 107 bytes.
	if len(run)+24 > 100 {
		sum := sha256.Sum256([]byte(abs))
		run = filepath.Join(os.TempDir(), "khsm-"+hex.EncodeToString(sum[:8]))
	}
	if err := os.RemoveAll(run); err != nil {
		return "", err
	}
	// Mkdir, not MkdirAll: never adopt a directory someone else made.
	if err := os.Mkdir(run, 0o700); err != nil {
		return "", err
	}
	return run, nil
}

// Close stops every HSM daemon and background task.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	procs := m.procs
	m.procs = map[string]*proc{}
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
	os.RemoveAll(m.sockDir)
	return nil
}

// async runs fn in the background; Close waits for it.
func (m *Manager) async(fn func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); fn() }()
}

// pause waits for the transition delay; false if the Manager is closing.
func (m *Manager) pause() bool {
	t := time.NewTimer(m.cfg.TransitionDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-m.ctx.Done():
		return false
	}
}

func (m *Manager) now() time.Time { return m.cfg.Now().UTC() }

func (m *Manager) spec(rec ClusterRecord) spawnSpec {
	sp := spawnSpec{exe: m.cfg.Exe, exeArgs: m.cfg.ExeArgs, module: m.cfg.ModulePath, label: rec.TokenLabel,
		logger: m.log, cluster: rec.ID, sockDir: m.sockDir}
	if rec.ModulePath != "" {
		sp.module = rec.ModulePath
	}
	if rec.TokenDir != "" {
		sp.conf = filepath.Join(m.reg.ClusterDir(rec.ID), "softhsm2.conf")
	}
	return sp
}

// startHSM spawns the daemon of one HSM, marks it ACTIVE and, when a crypto
// user is logged in to the cluster, logs the new daemon in too.
func (m *Manager) startHSM(ctx context.Context, rec ClusterRecord, hsmID string) error {
	sp := m.spec(rec)
	sp.hsmID = hsmID
	sp.socket = filepath.Join(m.sockDir, hsmID+".sock")
	p, err := spawn(ctx, sp)
	if err != nil {
		m.setHSMState(rec.ID, hsmID, HSMDegraded, "The HSM could not be started.")
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		go p.wait(nil)
		p.stop()
		return errors.New("hsm: manager closed")
	}
	if old := m.procs[hsmID]; old != nil {
		go old.stop()
	}
	m.procs[hsmID] = p
	sess := m.sessions[rec.ID]
	m.mu.Unlock()
	go p.wait(m.onDaemonExit)
	if sess != nil {
		sess.attach(ctx, p)
	}
	m.setHSMState(rec.ID, hsmID, HSMActive, "HSM created.")
	return nil
}

// onDaemonExit records an HSM failure: the process died on its own.
func (m *Manager) onDaemonExit(p *proc, err error) {
	m.log.Warn("hsm: HSM process exited", "cluster", p.clusterID, "hsm", p.hsmID, "err", err)
	m.mu.Lock()
	if m.procs[p.hsmID] == p {
		delete(m.procs, p.hsmID)
	}
	m.mu.Unlock()
	m.setHSMState(p.clusterID, p.hsmID, HSMDegraded, "The HSM is unreachable: its process exited.")
}

func (m *Manager) setHSMState(clusterID, hsmID, state, msg string) {
	_, err := m.reg.UpdateCluster(context.Background(), clusterID, func(r *ClusterRecord) error {
		for i := range r.HSMs {
			if r.HSMs[i].ID == hsmID && r.HSMs[i].State != HSMDeleteInProgress {
				r.HSMs[i].State, r.HSMs[i].StateMessage = state, msg
			}
		}
		recomputeClusterState(r)
		return nil
	})
	if err != nil {
		m.log.Error("hsm: record HSM state", "cluster", clusterID, "hsm", hsmID, "err", err)
	}
}

// recomputeClusterState moves an activated cluster between ACTIVE and
// DEGRADED: DEGRADED when it has HSMs and none of them is ACTIVE.
func recomputeClusterState(r *ClusterRecord) {
	if r.State != ClusterActive && r.State != ClusterDegraded {
		return
	}
	var active, broken int
	for _, h := range r.HSMs {
		switch h.State {
		case HSMActive:
			active++
		case HSMDegraded:
			broken++
		}
	}
	if active == 0 && broken > 0 {
		r.State, r.StateMessage = ClusterDegraded, "No HSM of the cluster is reachable."
	} else {
		r.State, r.StateMessage = ClusterActive, ""
	}
}

func (m *Manager) setClusterState(id, from, to, msg string) {
	if !m.pause() {
		return
	}
	_, err := m.reg.UpdateCluster(context.Background(), id, func(r *ClusterRecord) error {
		if r.State != from {
			return nil
		}
		r.State, r.StateMessage = to, msg
		return nil
	})
	if err != nil {
		m.log.Error("hsm: cluster state", "cluster", id, "err", err)
	}
}

// liveProcs lists the running daemons of a cluster.
func (m *Manager) liveProcs(clusterID string) []*proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*proc
	for _, p := range m.procs {
		if p.clusterID == clusterID && p.alive.Load() {
			out = append(out, p)
		}
	}
	return out
}

func (m *Manager) stopProc(hsmID string) {
	m.mu.Lock()
	p := m.procs[hsmID]
	delete(m.procs, hsmID)
	m.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// janitor makes the daily backups and finishes backup deletions.
func (m *Manager) janitor() {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		m.housekeeping()
		select {
		case <-t.C:
		case <-m.ctx.Done():
			return
		}
	}
}

func (m *Manager) housekeeping() {
	ctx := m.ctx
	now := m.now()
	clusters, err := m.reg.ListClusters(ctx)
	if err != nil {
		return
	}
	for _, c := range clusters {
		if (c.State == ClusterActive || c.State == ClusterDegraded) && now.Sub(c.LastBackup) > 24*time.Hour && !c.LastBackup.IsZero() {
			if _, err := m.CreateBackup(ctx, c.ID); err != nil {
				m.log.Warn("hsm: daily backup", "cluster", c.ID, "err", err)
			}
		}
	}
	backups, err := m.reg.ListBackups(ctx)
	if err != nil {
		return
	}
	for _, b := range backups {
		if b.State == BackupPendingDeletion && now.After(b.DeleteTime) {
			m.reg.UpdateBackup(ctx, b.ID, func(r *BackupRecord) error {
				if r.State == BackupPendingDeletion {
					r.State = BackupDeleted
				}
				return nil
			})
			os.RemoveAll(filepath.Join(m.reg.BackupDir(b.ID), "tokens"))
		}
	}
}

// writeSoftHSMConf writes the cluster's private SoftHSM2 configuration.
func writeSoftHSMConf(clusterDir, tokenDir string) error {
	if err := os.MkdirAll(tokenDir, 0o700); err != nil {
		return err
	}
	conf := "# keyhold cluster token directory\ndirectories.tokendir = " + tokenDir +
		"\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	f := filepath.Join(clusterDir, "softhsm2.conf")
	if err := os.WriteFile(f+".tmp", []byte(conf), 0o600); err != nil {
		return err
	}
	return os.Rename(f+".tmp", f)
}

// copyDir copies a token directory tree (regular files and directories),
// fsyncing files, with private permissions.
func copyDir(src, dst string) error {
	return filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
