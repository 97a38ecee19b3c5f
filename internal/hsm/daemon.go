package hsm

import (
	"context"
	"crypto/rand"
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
type daemon struct {
	path  string
	mod   *pkcs11.Module
	label string

	mu   sync.Mutex
	slot *uint
	user *pkcs11.Session
}

// DaemonCommand runs an HSM process (the hidden `keyhold hsm-daemon`):
//
//	--module PATH   PKCS#11 library (SOFTHSM2_CONF comes from the environment)
//	--token LABEL   the cluster's token
//	--socket PATH   unix socket to listen on
//
// It prints "ready" on stdout once it listens, and exits when its standard
// input reaches EOF (the parent died), on SIGTERM, or when ctx ends.
func DaemonCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hsm-daemon", flag.ContinueOnError)
	fs.SetOutput(stderr)
	module := fs.String("module", defaultModule, "PKCS#11 library")
	token := fs.String("token", "", "token label")
	socket := fs.String("socket", "", "unix socket path")
	watchStdin := fs.Bool("watch-stdin", true, "exit when standard input closes")
	maxConns := fs.Int("max-conns", 512, "most concurrent connections; more are closed at once (-1: no cap)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *token == "" || *socket == "" {
		return errors.New("hsm-daemon: --token and --socket are required")
	}
	mod, err := pkcs11.Open(*module)
	if err != nil {
		return fmt.Errorf("hsm-daemon: %w", err)
	}
	d := &daemon{path: *module, mod: mod, label: *token}
	defer d.close()

	os.Remove(*socket)
	uln, err := net.Listen("unix", *socket)
	if err != nil {
		return fmt.Errorf("hsm-daemon: %w", err)
	}
	// A cap on connections (all from one client: unix sockets have no
	// address), so that a runaway caller cannot exhaust file descriptors.
	ln := netlimit.Limits{MaxConns: *maxConns, MaxConnsPerClient: -1}.Listen(uln, nil, nil)
	defer os.Remove(*socket)
	os.Chmod(*socket, 0o600)

	ctx, cancel := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if *watchStdin {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	fmt.Fprintln(stdout, "ready")

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
			serveConn(conn, d.handle)
			conns.Delete(conn)
		}()
	}
	conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	wg.Wait()
	return nil
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

func (d *daemon) userSession() (*pkcs11.Session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.user == nil {
		return nil, pkcs11.ErrUserNotLoggedIn
	}
	return d.user, nil
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

func (d *daemon) handle(req *request) *response {
	resp, err := d.do(req)
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

func (d *daemon) do(req *request) (*response, error) {
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
		slot, err := d.tokenSlot()
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		old := d.user
		d.user = nil
		d.mu.Unlock()
		if old != nil {
			old.Close()
		}
		// SoftHSM2 reads the token's PIN blobs when the library is
		// initialised, so a user created or a password changed by another
		// process is invisible until then: reinitialise before logging in.
		if err := d.reload(); err != nil {
			return nil, err
		}
		if slot, err = d.tokenSlot(); err != nil {
			return nil, err
		}
		s, err := d.module().OpenSession(slot, pkcs11.User, string(req.PIN))
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.user = s
		d.mu.Unlock()
		return nil, nil

	case opLogout:
		d.mu.Lock()
		s := d.user
		d.user = nil
		d.mu.Unlock()
		if s != nil {
			return nil, s.Close()
		}
		return nil, nil

	case opSetPIN:
		s, err := d.userSession()
		if err != nil {
			return nil, err
		}
		return nil, s.SetPIN(string(req.PIN), string(req.NewPIN))

	case opSOSetPIN:
		return nil, d.withSO(req.PIN, func(s *pkcs11.Session) error {
			return s.SetPIN(string(req.PIN), string(req.NewPIN))
		})

	case opSOInitPIN:
		return nil, d.withSO(req.PIN, func(s *pkcs11.Session) error {
			return s.InitPIN(string(req.NewPIN))
		})

	case opGenerateKey:
		s, err := d.userSession()
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
		s, err := d.userSession()
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
		s, err := d.userSession()
		if err != nil {
			return nil, err
		}
		pt, err := s.DecryptGCM(pkcs11.Key{Label: req.Label}, req.IV, req.AAD, req.Data)
		if err != nil {
			return nil, err
		}
		return &response{Data: pt}, nil

	case opDestroyKey:
		s, err := d.userSession()
		if err != nil {
			return nil, err
		}
		return nil, s.DestroyKey(pkcs11.Key{Label: req.Label})

	case opRandom:
		s, err := d.userSession()
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
	return &response{N: ops.Load(), Text: el.String(), Data: []byte(fmt.Sprint(el.Nanoseconds()))}, nil
}
