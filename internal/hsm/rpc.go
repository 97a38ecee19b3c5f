package hsm

import (
	"context"
	"crypto/tls"
	"encoding/gob"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// The HSM daemon protocol: gob-encoded request/response pairs on persistent
// connections, one call in flight per connection: TCP with mutual TLS for
// an HSM (tls.go), a unix socket for a temporary daemon that does one job
// for its parent. The client keeps a pool of connections per daemon so
// concurrent callers never wait for a dial; the daemon serves each
// connection on its own goroutine over a pool of logged-in PKCS#11
// sessions.

type rpcOp uint8

const (
	opPing rpcOp = iota + 1
	opInitToken
	opCSR
	opLogin
	opLogout
	opSetPIN
	opSOSetPIN
	opSOInitPIN
	opGenerateKey
	opEncrypt
	opDecrypt
	opDestroyKey
	opRandom
	opBench
	opNotePIN
)

type request struct {
	Op       rpcOp
	Label    string
	PIN      Password
	NewPIN   Password
	IV       []byte
	Data     []byte
	AAD      []byte
	N        int
	Duration time.Duration
	// Session is the login a crypto-user operation runs under (what
	// opLogin returned): several clients (keyhold replicas) share one
	// daemon, each with its own session.
	Session string
}

type rpcCode uint8

const (
	codeOK rpcCode = iota
	codeInternal
	codeBadRequest
	codePINIncorrect
	codeUserNotFound
	codeNotLoggedIn
	codeKeyNotFound
	codeKeyExists
	codeDecrypt
	codeTokenNotFound
)

type response struct {
	Code rpcCode
	Msg  string // never holds a secret
	Data []byte
	IV   []byte
	Text string
	N    int64
}

func (r *response) err() error {
	switch r.Code {
	case codeOK:
		return nil
	case codePINIncorrect:
		return ErrInvalidCredentials
	case codeUserNotFound:
		return ErrUserNotFound
	case codeNotLoggedIn:
		return ErrSessionClosed
	case codeKeyNotFound:
		return ErrKeyNotFound
	case codeKeyExists:
		return ErrKeyExists
	case codeDecrypt:
		return ErrDecrypt
	case codeTokenNotFound:
		return fmt.Errorf("hsm daemon: token not found: %s", r.Msg)
	}
	return fmt.Errorf("hsm daemon: %s", r.Msg)
}

type rpcConn struct {
	c   net.Conn
	enc *gob.Encoder
	dec *gob.Decoder
}

// client talks to one daemon.
type client struct {
	addr string // unix socket path or host:port
	tls  *tls.Config
	mu   sync.Mutex
	idle []*rpcConn
	done bool
	// downUntil: after a failed dial, calls fail at once until then, so a
	// dead HSM does not cost every request a dial.
	downUntil time.Time
}

const maxIdleConns = 32

// newClient talks to a temporary daemon's unix socket.
func newClient(path string) *client { return &client{addr: path} }

// newTLSClient talks to an HSM daemon over TCP with mutual TLS.
func newTLSClient(addr string, cfg *tls.Config) *client { return &client{addr: addr, tls: cfg} }

func (c *client) get(ctx context.Context) (*rpcConn, error) {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: connection closed", ErrNetwork)
	}
	if n := len(c.idle); n > 0 {
		rc := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return rc, nil
	}
	down := time.Now().Before(c.downUntil)
	c.mu.Unlock()
	if down {
		return nil, fmt.Errorf("%w: %s did not answer a moment ago", ErrNetwork, c.addr)
	}
	var conn net.Conn
	var err error
	if c.tls == nil {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "unix", c.addr)
	} else {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 3 * time.Second}, Config: c.tls}
		conn, err = d.DialContext(ctx, "tcp", c.addr)
	}
	if err != nil {
		if c.tls != nil && ctx.Err() == nil {
			c.mu.Lock()
			c.downUntil = time.Now().Add(250 * time.Millisecond)
			c.mu.Unlock()
		}
		return nil, fmt.Errorf("%w: %v", ErrNetwork, err)
	}
	return &rpcConn{c: conn, enc: gob.NewEncoder(conn), dec: gob.NewDecoder(conn)}, nil
}

func (c *client) put(rc *rpcConn) {
	c.mu.Lock()
	if !c.done && len(c.idle) < maxIdleConns {
		c.idle = append(c.idle, rc)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	rc.c.Close()
}

// call sends req and returns the daemon's response. Transport failures wrap
// ErrNetwork; daemon-side failures come back as the response's error.
func (c *client) call(ctx context.Context, req *request) (*response, error) {
	rc, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if req.Op == opBench {
		deadline = deadline.Add(req.Duration)
	}
	rc.c.SetDeadline(deadline)
	var resp response
	if err := rc.enc.Encode(req); err != nil {
		rc.c.Close()
		return nil, fmt.Errorf("%w: %v", ErrNetwork, err)
	}
	if err := rc.dec.Decode(&resp); err != nil {
		rc.c.Close()
		return nil, fmt.Errorf("%w: %v", ErrNetwork, err)
	}
	c.put(rc)
	return &resp, resp.err()
}

func (c *client) close() {
	c.mu.Lock()
	c.done = true
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, rc := range idle {
		rc.c.Close()
	}
}

// serveConn answers requests on one connection until it fails; peer
// names the client (its certificate, or "local" on a unix socket).
func serveConn(conn net.Conn, peer string, handle func(*request, string) *response) {
	defer conn.Close()
	enc, dec := gob.NewEncoder(conn), gob.NewDecoder(conn)
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			return
		}
		resp := handle(&req, peer)
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
}

func isNetwork(err error) bool { return errors.Is(err, ErrNetwork) }
