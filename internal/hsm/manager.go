package hsm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	// Sealer seals each cluster's HSM network CA key in its record: the
	// root key, which every replica sharing the records holds. Default: a
	// key file network-ca.key in Dir (mode 0600), for a single process.
	Sealer Sealer
	// ListenIP is the address this process's HSMs listen on. Empty: each
	// HSM listens on its own ENI IP, an address of keyhold's default
	// network, which is this host's loopback network (127.100.0.0/16),
	// reachable by the replicas of this host. Set it to an address of this
	// host that other hosts reach, for replicas on several hosts; the
	// HSMs' EniIp is then that address.
	ListenIP string
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
	if c.ListenIP != "" {
		if _, err := netip.ParseAddr(c.ListenIP); err != nil {
			return fmt.Errorf("hsm: listen address %q is not an IP address", c.ListenIP)
		}
	}
	if c.Sealer == nil {
		if err := os.MkdirAll(c.Dir, 0o700); err != nil {
			return fmt.Errorf("hsm: %w", err)
		}
		s, err := fileSealer(c.Dir)
		if err != nil {
			return fmt.Errorf("hsm: %w", err)
		}
		c.Sealer = s
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
	iss   issuers

	mu       sync.Mutex
	procs    map[string]*proc                 // by HSM ID: the daemons this process runs
	remote   map[string]*client               // by HSM ID: HSMs other replicas run
	sessions map[string]map[*UserSession]bool // by cluster ID
	busy     map[string]bool                  // HSM IDs being created or deleted here
	closed   bool
}

// hsmClient is a connection pool to one HSM.
type hsmClient struct {
	hsmID string
	cl    *client
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
		procs: map[string]*proc{}, remote: map[string]*client{}, sessions: map[string]map[*UserSession]bool{}, busy: map[string]bool{}}
	m.iss = issuers{sealer: cfg.Sealer, byID: map[string]*issuer{}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	clusters, err := reg.ListClusters(ctx)
	if err != nil {
		m.Close()
		return nil, err
	}
	for _, c := range clusters {
		if !m.owns(c) {
			// Another replica runs this cluster's HSMs and its transitions.
			continue
		}
		rec, err := reg.UpdateCluster(ctx, c.ID, func(r *ClusterRecord) error {
			// An exclusive login died with the process that held it; a
			// shared one (LoginAs) belongs to a client other replicas
			// may still serve.
			if !strings.HasPrefix(r.User.LoggedInBy, "client:") {
				r.User.LoggedInBy = ""
			}
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
	m.async(m.reconcile)
	return m, nil
}

// owns reports whether this process runs the cluster's HSMs: the cluster's
// token directory is in its data directory (the replica that created the
// cluster). An external HSM (no token directory) is reached through its
// vendor's library by every process itself.
func (m *Manager) owns(rec ClusterRecord) bool {
	return rec.TokenDir == "" || strings.HasPrefix(rec.TokenDir, m.cfg.Dir+string(filepath.Separator))
}

// endpoints lists connection pools to the cluster's ACTIVE HSMs: the
// daemons this process runs, and those other replicas run at the address
// their records give (EniIp and port, mutual TLS).
func (m *Manager) endpoints(ctx context.Context, rec ClusterRecord) []hsmClient {
	var out []hsmClient
	for _, h := range rec.HSMs {
		if h.State != HSMActive {
			continue
		}
		m.mu.Lock()
		p := m.procs[h.ID]
		m.mu.Unlock()
		if p != nil && p.alive.Load() {
			out = append(out, hsmClient{h.ID, p.cl})
			continue
		}
		if m.owns(rec) || h.Port == 0 {
			continue
		}
		addr := net.JoinHostPort(h.EniIP, strconv.Itoa(h.Port))
		m.mu.Lock()
		cl := m.remote[h.ID]
		m.mu.Unlock()
		if cl == nil || cl.addr != addr {
			is, err := m.issuer(ctx, rec.ID)
			if err != nil {
				m.log.Warn("hsm: cluster network CA", "cluster", rec.ID, "err", err)
				continue
			}
			m.mu.Lock()
			if old := m.remote[h.ID]; old != nil && old.addr == addr {
				cl = old
			} else {
				if old != nil {
					go old.close()
				}
				cl = newTLSClient(addr, is.clientTLS(h.ID))
				m.remote[h.ID] = cl
			}
			m.mu.Unlock()
		}
		out = append(out, hsmClient{h.ID, cl})
	}
	return out
}

// reconcile runs the HSM work of the clusters this process owns that
// another replica asked for (an HSM created or deleted through it), every
// second; and the housekeeping when this process runs it alone (Config
// has no Lead... see Housekeeping).
func (m *Manager) reconcile() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-m.ctx.Done():
			return
		}
		clusters, err := m.reg.ListClusters(m.ctx)
		if err != nil {
			continue
		}
		for _, rec := range clusters {
			if rec.TokenDir == "" || !m.owns(rec) {
				continue
			}
			for _, h := range rec.HSMs {
				m.mu.Lock()
				running, busy := m.procs[h.ID] != nil, m.busy[h.ID]
				m.mu.Unlock()
				switch {
				case busy:
				case h.State == HSMCreateInProgress && !running:
					cid, hid := rec.ID, h.ID
					m.async(func() { m.finishCreateHSM(cid, hid) })
				case h.State == HSMDeleteInProgress:
					cid, hid := rec.ID, h.ID
					m.async(func() { m.finishDeleteHSM(cid, hid) })
				}
			}
		}
	}
}

// claim marks an HSM as being worked on by this process; false if it is.
func (m *Manager) claim(hsmID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.busy[hsmID] {
		return false
	}
	m.busy[hsmID] = true
	return true
}

func (m *Manager) unclaim(hsmID string) {
	m.mu.Lock()
	delete(m.busy, hsmID)
	m.mu.Unlock()
}

// socketDir is where the temporary daemons of the data directory dir listen:
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
	remote := m.remote
	m.remote = map[string]*client{}
	m.mu.Unlock()
	for _, cl := range remote {
		cl.close()
	}
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

// startHSM spawns the daemon of one HSM on the HSM network (at its ENI IP
// or the configured listen address, on the port it had if that is free),
// records its address and marks it ACTIVE, and logs this process's
// sessions of the cluster in to it.
func (m *Manager) startHSM(ctx context.Context, rec ClusterRecord, hsmID string) error {
	var h HSMRecord
	for _, o := range rec.HSMs {
		if o.ID == hsmID {
			h = o
		}
	}
	ip := h.EniIP
	if m.cfg.ListenIP != "" {
		ip = m.cfg.ListenIP
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("hsm: HSM %s has no usable address %q", hsmID, ip)
	}
	is, err := m.issuer(ctx, rec.ID)
	if err != nil {
		m.setHSMState(rec.ID, hsmID, HSMDegraded, "The HSM could not be started.")
		return err
	}
	bundle, err := is.serverBundle(hsmID, net.IP(addr.AsSlice()), m.now())
	if err != nil {
		return err
	}
	sp := m.spec(rec)
	sp.hsmID = hsmID
	sp.listen = net.JoinHostPort(ip, strconv.Itoa(h.Port))
	sp.bundle = bundle
	p, err := spawn(ctx, sp)
	if err != nil {
		m.setHSMState(rec.ID, hsmID, HSMDegraded, "The HSM could not be started.")
		return err
	}
	p.cl = newTLSClient(p.addr, is.clientTLS(hsmID))
	_, port, _ := net.SplitHostPort(p.addr)
	portN, _ := strconv.Atoi(port)
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
	var sessions []*UserSession
	for s := range m.sessions[rec.ID] {
		sessions = append(sessions, s)
	}
	m.mu.Unlock()
	go p.wait(m.onDaemonExit)
	for _, s := range sessions {
		s.attach(ctx, hsmClient{hsmID, p.cl})
	}
	_, err = m.reg.UpdateCluster(context.Background(), rec.ID, func(r *ClusterRecord) error {
		for i := range r.HSMs {
			if r.HSMs[i].ID == hsmID && r.HSMs[i].State != HSMDeleteInProgress {
				r.HSMs[i].State, r.HSMs[i].StateMessage = HSMActive, "HSM created."
				r.HSMs[i].Port = portN
				if m.cfg.ListenIP != "" {
					r.HSMs[i].EniIP = ip
				}
			}
		}
		recomputeClusterState(r)
		return nil
	})
	if err != nil {
		m.log.Error("hsm: record HSM address", "cluster", rec.ID, "hsm", hsmID, "err", err)
	}
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

// RunHousekeeping makes the daily backups and finishes backup deletions,
// now and hourly, until ctx ends or the Manager closes. Of the processes
// sharing the records (keyhold replicas), one runs it: the leader.
func (m *Manager) RunHousekeeping(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		m.housekeeping()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
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
