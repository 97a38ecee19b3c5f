package hsm

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keyhold/keyhold/internal/netlimit"
	"github.com/keyhold/keyhold/internal/pkcs11"
)

// identityLabel labels the cluster's in-token identity key pair.
const identityLabel = "keyhold-cluster-identity"

// daemon is one HSM process: one PKCS#11 module (C_Initialize once, with the
// cluster's SOFTHSM2_CONF), one token, and at most one logged-in crypto user.
// PKCS#11 login state belongs to the process, so the clients that log in
// (keyhold replicas, each with its own session) share the token login:
// the first login with a PIN logs the token in, later logins with the same
// PIN get sessions of their own, and the token logs out when the last
// session does.
type daemon struct {
	path  string
	mod   *pkcs11.Module
	label string

	loginMu sync.Mutex // one login or logout at a time

	mu       sync.Mutex
	slot     *uint
	user     *pkcs11.Session
	pinKey   []byte            // random per process: the PIN is kept only as a MAC
	pinMAC   []byte            // MAC of the PIN the token is logged in with
	sessions map[string]string // session -> the client that opened it
	peers    map[string]int    // open connections per client
}

// DaemonCommand runs an HSM process (the hidden `keyhold hsm-daemon`):
//
//	--module PATH   PKCS#11 library (SOFTHSM2_CONF comes from the environment)
//	--token LABEL   the cluster's token
//	--listen ADDR   TCP address to serve with mutual TLS (an HSM); the TLS
//	                bundle (certificate, key, client CA) comes first on stdin
//	--socket PATH   unix socket to listen on (a temporary daemon)
//
// It prints "ready ADDR" on stdout once it listens, and exits when its
// standard input reaches EOF (the parent died), on SIGTERM, or when ctx
// ends. With --listen, when ADDR's port is taken it listens on a free port
// of the same address instead.
func DaemonCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hsm-daemon", flag.ContinueOnError)
	fs.SetOutput(stderr)
	module := fs.String("module", defaultModule, "PKCS#11 library")
	token := fs.String("token", "", "token label")
	socket := fs.String("socket", "", "unix socket path")
	listen := fs.String("listen", "", "TCP address (mutual TLS)")
	watchStdin := fs.Bool("watch-stdin", true, "exit when standard input closes")
	maxConns := fs.Int("max-conns", 512, "most concurrent connections; more are closed at once (-1: no cap)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *token == "" || (*socket == "") == (*listen == "") {
		return errors.New("hsm-daemon: --token and one of --socket or --listen are required")
	}
	stdin := bufio.NewReader(os.Stdin)
	var tlsCfg *tls.Config
	if *listen != "" {
		var err error
		if tlsCfg, err = readServerBundle(stdin); err != nil {
			return err
		}
	}
	mod, err := pkcs11.Open(*module)
	if err != nil {
		return fmt.Errorf("hsm-daemon: %w", err)
	}
	pinKey := make([]byte, 32)
	rand.Read(pinKey)
	d := &daemon{path: *module, mod: mod, label: *token, pinKey: pinKey, sessions: map[string]string{}, peers: map[string]int{}}
	defer d.close()

	var base net.Listener
	if *listen != "" {
		base, err = net.Listen("tcp", *listen)
		if err != nil {
			host, _, serr := net.SplitHostPort(*listen)
			if serr != nil {
				return fmt.Errorf("hsm-daemon: %w", err)
			}
			if base, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
				return fmt.Errorf("hsm-daemon: %w", err)
			}
		}
	} else {
		os.Remove(*socket)
		if base, err = net.Listen("unix", *socket); err != nil {
			return fmt.Errorf("hsm-daemon: %w", err)
		}
		defer os.Remove(*socket)
		os.Chmod(*socket, 0o600)
	}
	// A cap on connections so that a runaway caller cannot exhaust file
	// descriptors (none per address: the replicas of one host share one).
	ln := netlimit.Limits{MaxConns: *maxConns, MaxConnsPerClient: -1}.Listen(base, nil, nil)

	ctx, cancel := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if *watchStdin {
		go func() {
			io.Copy(io.Discard, stdin)
			cancel()
		}()
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	fmt.Fprintln(stdout, "ready", base.Addr().String())

	var wg sync.WaitGroup
	var conns sync.Map
	for {
		conn, err := ln.Accept()
		if err != nil {
			break
		}
		conns.Store(conn, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conns.Delete(conn)
			peer := "local"
			if tlsCfg != nil {
				tc := tls.Server(conn, tlsCfg)
				hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
				err := tc.HandshakeContext(hctx)
				hcancel()
				if err != nil {
					conn.Close()
					return
				}
				// The certificate the cluster CA issued this client.
				peer = tc.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
				conn = tc
			}
			d.connected(peer, 1)
			defer d.connected(peer, -1)
			if tc, ok := conn.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == muxProto {
				serveMux(conn, peer, d.handle)
				return
			}
			serveConn(conn, peer, d.handle)
		}()
	}
	conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	wg.Wait()
	return nil
}

func (d *daemon) connected(peer string, n int) {
	d.mu.Lock()
	d.peers[peer] += n
	if d.peers[peer] <= 0 {
		delete(d.peers, peer)
	}
	d.mu.Unlock()
}

func (d *daemon) mac(pin Password) []byte {
	h := hmac.New(sha256.New, d.pinKey)
	h.Write([]byte(pin))
	return h.Sum(nil)
}

func (d *daemon) close() {
	d.mu.Lock()
	if d.user != nil {
		d.user.Close()
		d.user = nil
	}
	d.mu.Unlock()
	d.mod.Close()
}

// reload finalises and reinitialises the library (no session may be open).
func (d *daemon) reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.mod.Close(); err != nil {
		return err
	}
	mod, err := pkcs11.Open(d.path)
	if err != nil {
		return err
	}
	d.mod, d.slot = mod, nil
	return nil
}

func (d *daemon) module() *pkcs11.Module {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mod
}

func (d *daemon) tokenSlot() (uint, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.slot != nil {
		return *d.slot, nil
	}
	s, err := d.mod.FindToken(d.label)
	if err != nil {
		return 0, err
	}
	d.slot = &s
	return s, nil
}

func (d *daemon) userSession(session string) (*pkcs11.Session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.user == nil || session == "" || d.sessions[session] == "" {
		return nil, pkcs11.ErrUserNotLoggedIn
	}
	return d.user, nil
}

// login gives the client peer a session of the crypto user: a new token
// login when none is held (or when the held one's clients are all gone and
// the PIN differs: the password was changed meanwhile), else a session of
// the held login if the PIN is the one it was made with.
func (d *daemon) login(pin Password, peer string) (string, error) {
	d.loginMu.Lock()
	defer d.loginMu.Unlock()
	mac := d.mac(pin)
	session := randomHex(32)
	d.mu.Lock()
	if d.user != nil {
		if hmac.Equal(mac, d.pinMAC) {
			d.sessions[session] = peer
			d.mu.Unlock()
			return session, nil
		}
		// Sessions of clients with no connection left died with them.
		for s, p := range d.sessions {
			if d.peers[p] == 0 {
				delete(d.sessions, s)
			}
		}
		if len(d.sessions) > 0 {
			d.mu.Unlock()
			return "", pkcs11.ErrPINIncorrect
		}
	}
	old := d.user
	d.user, d.pinMAC = nil, nil
	d.mu.Unlock()
	if old != nil {
		old.Close()
	}
	// SoftHSM2 reads the token's PIN blobs when the library is
	// initialised, so a user created or a password changed by another
	// process is invisible until then: reinitialise before logging in.
	if err := d.reload(); err != nil {
		return "", err
	}
	slot, err := d.tokenSlot()
	if err != nil {
		return "", err
	}
	s, err := d.module().OpenSession(slot, pkcs11.User, string(pin))
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	d.user, d.pinMAC = s, mac
	clear(d.sessions)
	d.sessions[session] = peer
	d.mu.Unlock()
	return session, nil
}

// logout ends one session; the token logs out with the last one.
func (d *daemon) logout(session string) error {
	d.loginMu.Lock()
	defer d.loginMu.Unlock()
	d.mu.Lock()
	delete(d.sessions, session)
	var s *pkcs11.Session
	if len(d.sessions) == 0 {
		s = d.user
		d.user, d.pinMAC = nil, nil
	}
	d.mu.Unlock()
	if s != nil {
		return s.Close()
	}
	return nil
}

// withSO runs fn in a security-officer session that is closed afterwards.
func (d *daemon) withSO(pin Password, fn func(*pkcs11.Session) error) error {
	slot, err := d.tokenSlot()
	if err != nil {
		return err
	}
	s, err := d.module().OpenSession(slot, pkcs11.SO, string(pin))
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}

func (d *daemon) handle(req *request, peer string) *response {
	resp, err := d.do(req, peer)
	if err != nil {
		return errorResponse(err)
	}
	if resp == nil {
		resp = &response{}
	}
	return resp
}

func errorResponse(err error) *response {
	code := codeInternal
	switch {
	case errors.Is(err, pkcs11.ErrPINIncorrect), errors.Is(err, pkcs11.ErrPINLocked):
		code = codePINIncorrect
	case errors.Is(err, pkcs11.ErrUserPINNotInitialized):
		code = codeUserNotFound
	case errors.Is(err, pkcs11.ErrUserNotLoggedIn), errors.Is(err, pkcs11.ErrSessionClosed):
		code = codeNotLoggedIn
	case errors.Is(err, pkcs11.ErrKeyNotFound):
		code = codeKeyNotFound
	case errors.Is(err, pkcs11.ErrDuplicateKey):
		code = codeKeyExists
	case errors.Is(err, pkcs11.ErrDecrypt):
		code = codeDecrypt
	case errors.Is(err, pkcs11.ErrTokenNotFound):
		code = codeTokenNotFound
	case errors.Is(err, errBadRequest):
		code = codeBadRequest
	}
	// pkcs11 errors name operations, labels and return codes, never PINs.
	return &response{Code: code, Msg: err.Error()}
}

var errBadRequest = errors.New("bad request")

func (d *daemon) do(req *request, peer string) (*response, error) {
	switch req.Op {
	case opPing:
		return &response{Text: d.label}, nil

	case opInitToken:
		slot, err := d.module().FreeSlot()
		if err != nil {
			return nil, err
		}
		if err := d.module().InitToken(slot, string(req.PIN), d.label); err != nil {
			return nil, err
		}
		_, err = d.tokenSlot()
		return nil, err

	case opCSR:
		var der []byte
		err := d.withSO(req.PIN, func(s *pkcs11.Session) error {
			signer, err := s.ECSigner(identityLabel)
			if err != nil {
				return err
			}
			der, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
				Subject: pkix.Name{CommonName: req.Label, Organization: []string{"keyhold"}, OrganizationalUnit: []string{"CloudHSM cluster"}},
			}, signer)
			return err
		})
		return &response{Data: der}, err

	case opLogin:
		session, err := d.login(req.PIN, peer)
		if err != nil {
			return nil, err
		}
		return &response{Text: session}, nil

	case opLogout:
		return nil, d.logout(req.Session)

	case opSetPIN:
		s, err := d.userSession(req.Session)
		if err != nil {
			return nil, err
		}
		if err := s.SetPIN(string(req.PIN), string(req.NewPIN)); err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.pinMAC = d.mac(req.NewPIN)
		d.mu.Unlock()
		return nil, nil

	case opNotePIN:
		// Another HSM of the token changed the PIN (C_SetPIN) for a session
		// of this login: later logins must use the new one. The caller
		// proves it knew the current PIN.
		if _, err := d.userSession(req.Session); err != nil {
			return nil, err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if !hmac.Equal(d.mac(req.PIN), d.pinMAC) {
			return nil, pkcs11.ErrPINIncorrect
		}
		d.pinMAC = d.mac(req.NewPIN)
		return nil, nil

	case opSOSetPIN:
		return nil, d.withSO(req.PIN, func(s *pkcs11.Session) error {
			return s.SetPIN(string(req.PIN), string(req.NewPIN))
		})

	case opSOInitPIN:
		return nil, d.withSO(req.PIN, func(s *pkcs11.Session) error {
			return s.InitPIN(string(req.NewPIN))
		})

	case opGenerateKey:
		s, err := d.userSession(req.Session)
		if err != nil {
			return nil, err
		}
		id := make([]byte, 16)
		rand.Read(id)
		k, err := s.GenerateAESKey(req.Label, id, pkcs11.KeyUsage{Encrypt: true, Decrypt: true}, true)
		if err != nil {
			return nil, err
		}
		return &response{Text: hex.EncodeToString(k.ID)}, nil

	case opEncrypt:
		s, err := d.userSession(req.Session)
		if err != nil {
			return nil, err
		}
		iv := make([]byte, 12)
		if _, err := rand.Read(iv); err != nil {
			return nil, err
		}
		ct, ivUsed, err := s.EncryptGCM(pkcs11.Key{Label: req.Label}, iv, req.AAD, req.Data)
		if err != nil {
			return nil, err
		}
		return &response{Data: ct, IV: ivUsed}, nil

	case opDecrypt:
		s, err := d.userSession(req.Session)
		if err != nil {
			return nil, err
		}
		pt, err := s.DecryptGCM(pkcs11.Key{Label: req.Label}, req.IV, req.AAD, req.Data)
		if err != nil {
			return nil, err
		}
		return &response{Data: pt}, nil

	case opDestroyKey:
		s, err := d.userSession(req.Session)
		if err != nil {
			return nil, err
		}
		return nil, s.DestroyKey(pkcs11.Key{Label: req.Label})

	case opRandom:
		s, err := d.userSession(req.Session)
		if err != nil {
			return nil, err
		}
		if req.N < 1 || req.N > 1<<16 {
			return nil, fmt.Errorf("%w: random length %d", errBadRequest, req.N)
		}
		b, err := s.GenerateRandom(req.N)
		return &response{Data: b}, err

	case opBench:
		return d.bench(req)
	}
	return nil, fmt.Errorf("%w: unknown operation %d", errBadRequest, req.Op)
}

// bench measures raw AES-GCM encrypts of 32 bytes with a persistent token
// key, req.N goroutines for req.Duration, in a fresh user login.
func (d *daemon) bench(req *request) (*response, error) {
	slot, err := d.tokenSlot()
	if err != nil {
		return nil, err
	}
	s, err := d.module().OpenSession(slot, pkcs11.User, string(req.PIN))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	label := "keyhold-bench-" + randomHex(12)
	k, err := s.GenerateAESKey(label, nil, pkcs11.KeyUsage{Encrypt: true, Decrypt: true}, true)
	if err != nil {
		return nil, err
	}
	defer s.DestroyKey(k)
	conc := max(req.N, 1)
	var ops atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(req.Duration)
	var wg sync.WaitGroup
	pt := make([]byte, 32)
	cpu0 := processCPU()
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			iv := make([]byte, 12)
			for time.Now().Before(stop) {
				rand.Read(iv)
				if _, _, err := s.EncryptGCM(k, iv, nil, pt); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	if e, ok := firstErr.Load().(error); ok {
		return nil, e
	}
	el := time.Since(start)
	cpu := processCPU() - cpu0
	return &response{N: ops.Load(), Text: el.String(), Data: []byte(fmt.Sprint(el.Nanoseconds(), cpu.Nanoseconds()))}, nil
}

// processCPU is the user and system CPU time this process has used (all
// its threads), or 0 when the system does not say.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
