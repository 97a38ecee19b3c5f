package hsm

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
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

// UserSession is a crypto user logged in to a cluster through its HSMs,
// reached over the HSM network (each HSM at its ENI IP, mutual TLS). It
// spreads calls over the cluster's active HSMs, fails over when one dies,
// logs in again to an HSM that restarted, and picks up HSMs added since
// (re-reading the cluster record). It is safe for concurrent use.
type UserSession struct {
	m         *Manager
	clusterID string
	owner     string // what the record's LoggedInBy holds for this login

	mu        sync.Mutex
	pin       Password
	eps       []*endpoint
	closed    bool
	refreshed time.Time
	refreshMu sync.Mutex // one refresh at a time
	rr        atomic.Uint32
}

// endpoint is one HSM a session is logged in to.
type endpoint struct {
	hsmID   string
	cl      *client
	session string // the daemon's session for this login
}

// Login logs username in to every active HSM of the cluster as a new,
// exclusive session. Errors (errors.Is): ErrClusterNotFound,
// ErrNoActiveHSM, ErrUserNotFound, ErrInvalidCredentials (counted toward
// the lockout), ErrUserLockedOut, ErrUserLoggedIn, ErrNetwork.
func (m *Manager) Login(ctx context.Context, clusterID, username string, password string) (*UserSession, error) {
	return m.login(ctx, clusterID, username, password, m.instance+"/"+randomHex(8))
}

// LoginAs is Login for one client of the cluster that several processes
// share: a KMS custom key store connected through several keyhold
// replicas, each of which holds its own session. Sessions made with the
// same client name share the crypto user's login (CloudHSM's one login
// per crypto user is the client's, not each replica's); anyone else still
// gets ErrUserLoggedIn while it lasts.
func (m *Manager) LoginAs(ctx context.Context, clusterID, username, password, clientName string) (*UserSession, error) {
	if clientName == "" {
		return nil, errors.New("hsm.LoginAs: empty client name")
	}
	return m.login(ctx, clusterID, username, password, "client:"+clientName)
}

// ReleaseLogin ends the shared login of clientName on the cluster when this
// process holds no session of it (another replica made it): the client
// disconnected. The HSMs log each session out when its owner does.
func (m *Manager) ReleaseLogin(ctx context.Context, clusterID, clientName string) error {
	_, err := m.reg.UpdateCluster(ctx, clusterID, func(r *ClusterRecord) error {
		if r.User.LoggedInBy == "client:"+clientName {
			r.User.LoggedInBy = ""
		}
		return nil
	})
	if errors.Is(err, ErrClusterNotFound) {
		return nil
	}
	return err
}

func (m *Manager) login(ctx context.Context, clusterID, username, password, owner string) (*UserSession, error) {
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
	if rec.User.LoggedInBy != "" && rec.User.LoggedInBy != owner {
		return nil, errf(ErrUserLoggedIn, "User %s is logged in elsewhere.", username)
	}
	cands := m.endpoints(ctx, rec)
	if len(cands) == 0 {
		return nil, errf(ErrNoActiveHSM, "Cluster %s has no active HSM.", clusterID)
	}
	s := &UserSession{m: m, clusterID: clusterID, owner: owner, pin: Password(password), refreshed: time.Now()}
	var first *endpoint
	err = ErrNetwork
	for _, c := range cands {
		first, err = s.loginTo(ctx, c)
		if !isNetwork(err) {
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
	s.eps = []*endpoint{first}
	_, err = m.reg.UpdateCluster(ctx, clusterID, func(r *ClusterRecord) error {
		if r.User.LoggedInBy != "" && r.User.LoggedInBy != owner {
			return errf(ErrUserLoggedIn, "User %s is logged in elsewhere.", username)
		}
		if r.User.LockedOut || !r.User.Exists {
			return errf(ErrUserLockedOut, "User %s is locked out.", username)
		}
		r.User.FailedLogins = 0
		r.User.LoggedInBy = owner
		return nil
	})
	if err != nil {
		first.cl.call(ctx, &request{Op: opLogout, Session: first.session})
		return nil, err
	}
	m.mu.Lock()
	if m.sessions[clusterID] == nil {
		m.sessions[clusterID] = map[*UserSession]bool{}
	}
	m.sessions[clusterID][s] = true
	m.mu.Unlock()
	for _, c := range cands {
		if c.hsmID != first.hsmID {
			s.attach(ctx, c)
		}
	}
	return s, nil
}

// loginTo opens this login's session on one HSM.
func (s *UserSession) loginTo(ctx context.Context, c hsmClient) (*endpoint, error) {
	s.mu.Lock()
	pin := s.pin
	s.mu.Unlock()
	resp, err := c.cl.call(ctx, &request{Op: opLogin, PIN: pin})
	if err != nil {
		return nil, err
	}
	return &endpoint{hsmID: c.hsmID, cl: c.cl, session: resp.Text}, nil
}

// attach logs in to one more HSM and adds it to the ones the session uses
// (replacing an older connection to the same HSM).
func (s *UserSession) attach(ctx context.Context, c hsmClient) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	ep, err := s.loginTo(ctx, c)
	if err != nil {
		s.m.log.Warn("hsm: log in to HSM", "cluster", s.clusterID, "hsm", c.hsmID, "err", err)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ep.cl.call(ctx, &request{Op: opLogout, Session: ep.session})
		return
	}
	s.eps = append(slices.DeleteFunc(s.eps, func(o *endpoint) bool { return o.hsmID == c.hsmID }), ep)
	s.mu.Unlock()
}

// refresh re-reads the cluster record: HSMs added (or restarted at another
// address) are logged in to, deleted or failed ones dropped. At most one
// refresh per quarter second unless forced.
func (s *UserSession) refresh(ctx context.Context, force bool) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	s.mu.Lock()
	if s.closed || (!force && time.Since(s.refreshed) < 250*time.Millisecond) {
		s.mu.Unlock()
		return
	}
	s.refreshed = time.Now()
	s.mu.Unlock()
	rec, err := s.m.reg.GetCluster(ctx, s.clusterID)
	if err != nil {
		return
	}
	cands := s.m.endpoints(ctx, rec)
	live := map[string]bool{}
	for _, c := range cands {
		live[c.hsmID] = true
		s.mu.Lock()
		i := slices.IndexFunc(s.eps, func(e *endpoint) bool { return e.hsmID == c.hsmID })
		same := i >= 0 && s.eps[i].cl == c.cl
		s.mu.Unlock()
		if !same {
			s.attach(ctx, c)
		}
	}
	s.mu.Lock()
	s.eps = slices.DeleteFunc(s.eps, func(e *endpoint) bool { return !live[e.hsmID] })
	s.mu.Unlock()
}

func (s *UserSession) invalidate() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// call runs req on one HSM, moving on to the next when an HSM is
// unreachable, and logging in again to one that lost the session (it
// restarted).
func (s *UserSession) call(ctx context.Context, req *request) (*response, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrSessionClosed
	}
	eps := slices.Clone(s.eps)
	stale := time.Since(s.refreshed) > 5*time.Second
	s.mu.Unlock()
	if stale {
		// Pick up HSMs added since, in the background.
		go s.refresh(context.WithoutCancel(ctx), false)
	}
	try := func(eps []*endpoint) (*response, error) {
		if len(eps) == 0 {
			return nil, errf(ErrNoActiveHSM, "Cluster %s has no active HSM.", s.clusterID)
		}
		start := int(s.rr.Add(1))
		var err error
		for i := range eps {
			ep := eps[(start+i)%len(eps)]
			r := *req
			r.Session = ep.session
			var resp *response
			resp, err = ep.cl.call(ctx, &r)
			if errors.Is(err, ErrSessionClosed) && s.alive() {
				// The HSM restarted (or dropped this login): log in again.
				s.attach(ctx, hsmClient{hsmID: ep.hsmID, cl: ep.cl})
				if ne := s.endpoint(ep.hsmID); ne != nil && ne != ep {
					r.Session = ne.session
					resp, err = ne.cl.call(ctx, &r)
				}
			}
			if !isNetwork(err) {
				return resp, err
			}
		}
		return nil, err
	}
	resp, err := try(eps)
	if (isNetwork(err) || errors.Is(err, ErrNoActiveHSM)) && s.alive() {
		// Every HSM this session knew failed: the cluster may have moved
		// (an HSM restarted at another port, one was added).
		s.refresh(ctx, true)
		s.mu.Lock()
		fresh := slices.DeleteFunc(slices.Clone(s.eps), func(e *endpoint) bool { return slices.Contains(eps, e) })
		s.mu.Unlock()
		if len(fresh) > 0 {
			resp, err = try(fresh)
		}
	}
	return resp, err
}

func (s *UserSession) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed
}

func (s *UserSession) endpoint(hsmID string) *endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.eps {
		if e.hsmID == hsmID {
			return e
		}
	}
	return nil
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
	eps := slices.Clone(s.eps)
	s.mu.Unlock()
	// The other HSMs of the token share the new PIN (one token) but hold
	// the login made with the old one: tell them, so that other replicas
	// joining with the new password are recognised. The HSM that made the
	// change refuses (it knows already).
	for _, e := range eps {
		e.cl.call(ctx, &request{Op: opNotePIN, Session: e.session, PIN: old, NewPIN: np})
	}
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

// Logout ends the session on every HSM and releases the login (a shared
// login too: its client disconnected).
func (s *UserSession) Logout(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	eps := s.eps
	s.eps = nil
	s.mu.Unlock()
	for _, e := range eps {
		e.cl.call(ctx, &request{Op: opLogout, Session: e.session})
	}
	m := s.m
	m.mu.Lock()
	delete(m.sessions[s.clusterID], s)
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
