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

// The HSM daemon protocol: request/response pairs on persistent
// connections: TCP with mutual TLS for an HSM (tls.go), a unix socket for a
// temporary daemon that does one job for its parent. Over TLS, a client and
// a daemon that both offer it (ALPN) share one multiplexed connection
// (mux.go). Otherwise (a unix socket, or a peer from before the multiplexed
// protocol) calls are gob-encoded, one in flight per connection, and the
// client keeps a pool of connections per daemon so concurrent callers never
// wait for a dial; the daemon serves each connection on its own goroutine
// over a pool of logged-in PKCS#11 sessions.

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
	mux       *muxConn // the multiplexed connection, once dialled
	noMux     bool     // the daemon did not offer muxProto: gob

	dialMu sync.Mutex // one dial of the multiplexed connection at a time
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
	c.mu.Unlock()
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	return &rpcConn{c: conn, enc: gob.NewEncoder(conn), dec: gob.NewDecoder(conn)}, nil
}

// getMux returns the multiplexed connection to the daemon, dialling it if
// there is none (or it failed), or nil when the daemon speaks only gob.
func (c *client) getMux(ctx context.Context) (*muxConn, error) {
	cur := func() (*muxConn, bool, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch {
		case c.done:
			return nil, true, fmt.Errorf("%w: connection closed", ErrNetwork)
		case c.noMux:
			return nil, true, nil
		case c.mux != nil && !c.mux.broken():
			return c.mux, true, nil
		}
		return nil, false, nil
	}
	if mc, ok, err := cur(); ok {
		return mc, err
	}
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	if mc, ok, err := cur(); ok {
		return mc, err
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*tls.Conn); !ok || tc.ConnectionState().NegotiatedProtocol != muxProto {
		c.mu.Lock()
		c.noMux = true
		c.mu.Unlock()
		c.put(&rpcConn{c: conn, enc: gob.NewEncoder(conn), dec: gob.NewDecoder(conn)})
		return nil, nil
	}
	mc := newMuxConn(conn)
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		mc.close()
		return nil, fmt.Errorf("%w: connection closed", ErrNetwork)
	}
	c.mux = mc
	c.mu.Unlock()
	return mc, nil
}

// dial connects to the daemon (TLS handshake included).
func (c *client) dial(ctx context.Context) (net.Conn, error) {
	c.mu.Lock()
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
	return conn, nil
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
	// An HSM that does not answer in a minute is gone; a caller with less
	// time stops waiting earlier (its ctx).
	limit := 60 * time.Second
	if req.Op == opBench {
		limit += req.Duration
	}
	if c.tls != nil {
		mc, err := c.getMux(ctx)
		if err != nil {
			return nil, err
		}
		if mc != nil {
			// Only the HSM's own limit fails the shared connection; a
			// caller's deadline abandons just its call.
			return mc.call(ctx, time.Now().Add(limit), req)
		}
	}
	deadline := time.Now().Add(limit)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	rc, err := c.get(ctx)
	if err != nil {
		return nil, err
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
	mc := c.mux
	c.mux = nil
	c.mu.Unlock()
	if mc != nil {
		mc.close()
	}
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
