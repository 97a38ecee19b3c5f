package hsm

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
)

// maxFailedLogins is CloudHSM's lockout threshold for a crypto user.
const maxFailedLogins = 5

// ClusterInfo is what KMS needs to know about a cluster.
type ClusterInfo struct {
	ID, State             string
	HSMs                  []HSMInfo
	ClusterCertificatePEM string
	TrustAnchorPEM        string
}

// HSMInfo is one HSM of a ClusterInfo.
type HSMInfo struct{ ID, AvailabilityZone, State string }

// Cluster describes a cluster for KMS. Deleted clusters give
// ErrClusterNotFound.
func (m *Manager) Cluster(ctx context.Context, id string) (ClusterInfo, error) {
	r, err := m.reg.GetCluster(ctx, id)
	if err != nil {
		return ClusterInfo{}, err
	}
	if r.State == ClusterDeleted || r.State == ClusterDeleteInProgress {
		return ClusterInfo{}, clusterNotFound(id)
	}
	ci := ClusterInfo{ID: r.ID, State: r.State, ClusterCertificatePEM: r.ClusterCertPEM, TrustAnchorPEM: r.TrustAnchorPEM}
	for _, h := range r.HSMs {
		ci.HSMs = append(ci.HSMs, HSMInfo{ID: h.ID, AvailabilityZone: h.AvailabilityZone, State: h.State})
	}
	return ci, nil
}

// UserSession is a crypto user logged in to a cluster through its HSMs. It
// spreads calls over the cluster's running HSMs and fails over when one
// dies. It is safe for concurrent use.
type UserSession struct {
	m         *Manager
	clusterID string
	owner     string

	mu     sync.Mutex
	pin    Password
	procs  []*proc
	closed bool
	rr     atomic.Uint32
}

// Login logs username in to every running HSM of the cluster. Errors
// (errors.Is): ErrClusterNotFound, ErrNoActiveHSM, ErrUserNotFound,
// ErrInvalidCredentials (counted toward the lockout), ErrUserLockedOut,
// ErrUserLoggedIn, ErrNetwork. Only one session per cluster may exist.
func (m *Manager) Login(ctx context.Context, clusterID, username string, password string) (*UserSession, error) {
	rec, err := m.reg.GetCluster(ctx, clusterID)
	if err != nil {
		return nil, err
	}
	if rec.State == ClusterDeleted || rec.State == ClusterDeleteInProgress {
		return nil, clusterNotFound(clusterID)
	}
	if !rec.User.Exists || rec.User.Name != username {
		return nil, errf(ErrUserNotFound, "User %s does not exist in cluster %s.", username, clusterID)
	}
	if rec.User.LockedOut {
		return nil, errf(ErrUserLockedOut, "User %s is locked out after %d failed logins.", username, maxFailedLogins)
	}
	if rec.User.LoggedInBy != "" {
		return nil, errf(ErrUserLoggedIn, "User %s is logged in elsewhere.", username)
	}
	procs := m.liveProcs(clusterID)
	if len(procs) == 0 {
		return nil, errf(ErrNoActiveHSM, "Cluster %s has no active HSM.", clusterID)
	}
	pin := Password(password)
	var first *proc
	err = ErrNetwork
	for _, p := range procs {
		_, err = p.cl.call(ctx, &request{Op: opLogin, PIN: pin})
		if !isNetwork(err) {
			first = p
			break
		}
	}
	switch {
	case errors.Is(err, ErrInvalidCredentials):
		m.reg.UpdateCluster(ctx, clusterID, func(r *ClusterRecord) error {
			r.User.FailedLogins++
			if r.User.FailedLogins >= maxFailedLogins {
				r.User.LockedOut = true
			}
			return nil
		})
		return nil, errf(ErrInvalidCredentials, "Incorrect password for user %s.", username)
	case errors.Is(err, ErrUserNotFound):
		return nil, errf(ErrUserNotFound, "User %s does not exist in cluster %s (the HSM has no user PIN).", username, clusterID)
	case err != nil:
		return nil, err
	}
	s := &UserSession{m: m, clusterID: clusterID, owner: m.instance + "/" + randomHex(8), pin: pin, procs: []*proc{first}}
	_, err = m.reg.UpdateCluster(ctx, clusterID, func(r *ClusterRecord) error {
		if r.User.LoggedInBy != "" {
			return errf(ErrUserLoggedIn, "User %s is logged in elsewhere.", username)
		}
		if r.User.LockedOut || !r.User.Exists {
			return errf(ErrUserLockedOut, "User %s is locked out.", username)
		}
		r.User.FailedLogins = 0
		r.User.LoggedInBy = s.owner
		return nil
	})
	if err != nil {
		first.cl.call(ctx, &request{Op: opLogout})
		return nil, err
	}
	m.mu.Lock()
	m.sessions[clusterID] = s
	m.mu.Unlock()
	for _, p := range procs {
		if p != first {
			s.attach(ctx, p)
		}
	}
	return s, nil
}

// attach logs a daemon in with the session's password and adds it to the
// HSMs the session uses.
func (s *UserSession) attach(ctx context.Context, p *proc) {
	s.mu.Lock()
	pin, closed := s.pin, s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	if _, err := p.cl.call(ctx, &request{Op: opLogin, PIN: pin}); err != nil {
		s.m.log.Warn("hsm: log in to new HSM", "cluster", s.clusterID, "hsm", p.hsmID, "err", err)
		return
	}
	s.mu.Lock()
	s.procs = append(slices.DeleteFunc(s.procs, func(o *proc) bool { return o.hsmID == p.hsmID }), p)
	s.mu.Unlock()
}

func (s *UserSession) invalidate() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// call runs req on one HSM, moving on to the next when an HSM is
// unreachable.
func (s *UserSession) call(ctx context.Context, req *request) (*response, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrSessionClosed
	}
	procs := make([]*proc, 0, len(s.procs))
	for _, p := range s.procs {
		if p.alive.Load() {
			procs = append(procs, p)
		}
	}
	s.mu.Unlock()
	if len(procs) == 0 {
		return nil, errf(ErrNoActiveHSM, "Cluster %s has no active HSM.", s.clusterID)
	}
	start := int(s.rr.Add(1))
	var err error
	for i := range procs {
		p := procs[(start+i)%len(procs)]
		var resp *response
		resp, err = p.cl.call(ctx, req)
		if !isNetwork(err) {
			return resp, err
		}
	}
	return nil, err
}

// ChangePassword changes the crypto user's password (C_SetPIN).
func (s *UserSession) ChangePassword(ctx context.Context, newPassword string) error {
	np := Password(newPassword)
	if err := checkCUPassword(np); err != nil {
		return err
	}
	s.mu.Lock()
	old := s.pin
	s.mu.Unlock()
	if _, err := s.call(ctx, &request{Op: opSetPIN, PIN: old, NewPIN: np}); err != nil {
		return err
	}
	s.mu.Lock()
	s.pin = np
	s.mu.Unlock()
	return nil
}

// GenerateKey makes a persistent, non-extractable AES-256 key labelled
// label (the KMS key ARN) and returns its handle (the hex CKA_ID).
func (s *UserSession) GenerateKey(ctx context.Context, label string) (string, error) {
	resp, err := s.call(ctx, &request{Op: opGenerateKey, Label: label})
	if err != nil {
		return "", err
	}
	return resp.Text, nil
}

// Encrypt encrypts with AES-GCM under a random 12-byte IV inside the HSM.
func (s *UserSession) Encrypt(ctx context.Context, label string, plaintext, aad []byte) (iv, ciphertextWithTag []byte, err error) {
	resp, err := s.call(ctx, &request{Op: opEncrypt, Label: label, Data: plaintext, AAD: aad})
	if err != nil {
		return nil, nil, err
	}
	return resp.IV, resp.Data, nil
}

// Decrypt reverses Encrypt: ErrDecrypt when the tag does not verify,
// ErrKeyNotFound when no key has the label.
func (s *UserSession) Decrypt(ctx context.Context, label string, iv, ciphertextWithTag, aad []byte) ([]byte, error) {
	if len(iv) != 12 {
		return nil, ErrDecrypt
	}
	resp, err := s.call(ctx, &request{Op: opDecrypt, Label: label, IV: iv, Data: ciphertextWithTag, AAD: aad})
	if err != nil {
		return nil, err
	}
	return resp.Data, nil
}

// DestroyKey deletes the key from the cluster (not from its backups).
func (s *UserSession) DestroyKey(ctx context.Context, label string) error {
	_, err := s.call(ctx, &request{Op: opDestroyKey, Label: label})
	return err
}

// GenerateRandom returns n random bytes from the HSM.
func (s *UserSession) GenerateRandom(ctx context.Context, n int) ([]byte, error) {
	resp, err := s.call(ctx, &request{Op: opRandom, N: n})
	if err != nil {
		return nil, err
	}
	return resp.Data, nil
}

// Logout logs the user out of every HSM and releases the login.
func (s *UserSession) Logout(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	for _, p := range procs {
		if p.alive.Load() {
			p.cl.call(ctx, &request{Op: opLogout})
		}
	}
	m := s.m
	m.mu.Lock()
	if m.sessions[s.clusterID] == s {
		delete(m.sessions, s.clusterID)
	}
	m.mu.Unlock()
	_, err := m.reg.UpdateCluster(ctx, s.clusterID, func(r *ClusterRecord) error {
		if r.User.LoggedInBy == s.owner {
			r.User.LoggedInBy = ""
		}
		return nil
	})
	if errors.Is(err, ErrClusterNotFound) {
		return nil
	}
	return err
}
