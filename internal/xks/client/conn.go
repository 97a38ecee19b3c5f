package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// connPool keeps HTTP/1.1 keep-alive connections to one proxy; a call writes
// its request and reads the answer on the caller's goroutine. net/http's
// Transport hands every request to a writer goroutine and every answer
// back from a reader goroutine (three goroutine switches a call); for a
// small signed JSON call that is about a third of keyhold's CPU per XKS
// request. HTTP/1.1 is what every XKS proxy must speak.
type connPool struct {
	addr        string // host:port
	tls         *tls.Config
	dialTimeout time.Duration

	mu     sync.Mutex
	idle   []*poolConn // most recently used last
	closed bool
}

// Bounds of the pool.
const (
	maxIdleConns = 64               // more in flight than this are closed after their call
	idleTimeout  = 90 * time.Second // older idle connections are not reused
)

type poolConn struct {
	nc       net.Conn
	br       *bufio.Reader
	idleFrom time.Time
}

func newConnPool(addr string, cfg *tls.Config, dialTimeout time.Duration) *connPool {
	return &connPool{addr: addr, tls: cfg, dialTimeout: dialTimeout}
}

// get returns an idle connection (reused) or a new one, dialled by
// deadline.
func (p *connPool) get(ctx context.Context, deadline time.Time) (pc *poolConn, reused bool, err error) {
	now := time.Now()
	p.mu.Lock()
	for len(p.idle) > 0 {
		pc = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(pc.idleFrom) < idleTimeout {
			p.mu.Unlock()
			return pc, true, nil
		}
		pc.nc.Close()
	}
	p.mu.Unlock()
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: p.dialTimeout, KeepAlive: 30 * time.Second}, Config: p.tls}
	nc, err := d.DialContext(dctx, "tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	return &poolConn{nc: nc, br: bufio.NewReaderSize(nc, 4096)}, false, nil
}

func (p *connPool) put(pc *poolConn) {
	pc.nc.SetDeadline(time.Time{})
	pc.idleFrom = time.Now()
	p.mu.Lock()
	if !p.closed && len(p.idle) < maxIdleConns {
		p.idle = append(p.idle, pc)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	pc.nc.Close()
}

// closeIdle closes the idle connections; calls in flight keep theirs until
// they end.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, pc := range idle {
		pc.nc.Close()
	}
}

// errAnswerTooLarge: the proxy's answer is over maxResponse.
var errAnswerTooLarge = errors.New("answer larger than 1 MiB")

// do sends req (a whole HTTP/1.1 request) and returns the status and body
// of the answer, all by deadline (or until ctx ends). A connection kept
// alive that the proxy closed meanwhile fails before any byte of an answer
// arrives: the call is then sent once more on a new connection (every XKS
// call can be repeated: none changes state).
func (p *connPool) do(ctx context.Context, deadline time.Time, req []byte) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		pc, reused, err := p.get(ctx, deadline)
		if err != nil {
			return 0, nil, err
		}
		status, data, answered, err := pc.roundTrip(ctx, deadline, req)
		if err == nil {
			p.put(pc)
			return status, data, nil
		}
		pc.nc.Close()
		if errors.Is(err, errAnswerTooLarge) || errors.Is(err, errConnClose) {
			return status, data, nil // a whole answer; the connection is not reused
		}
		if !reused || answered || attempt > 0 || ctx.Err() != nil {
			return 0, nil, err
		}
	}
}

// longAgo is a deadline in the past: it interrupts pending I/O.
var longAgo = time.Unix(1, 0)

// roundTrip writes req and reads its answer. answered reports that some of
// an answer arrived (so the call was received). A nil error means the
// connection can be reused; errAnswerTooLarge returns the first maxResponse
// bytes.
func (pc *poolConn) roundTrip(ctx context.Context, deadline time.Time, req []byte) (status int, data []byte, answered bool, err error) {
	pc.nc.SetDeadline(deadline)
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { pc.nc.SetDeadline(longAgo) })
		defer stop()
	}
	if _, err := pc.nc.Write(req); err != nil {
		return 0, nil, false, err
	}
	if _, err := pc.br.Peek(1); err != nil {
		return 0, nil, false, err
	}
	resp, err := http.ReadResponse(pc.br, nil)
	if err != nil {
		return 0, nil, true, err
	}
	data, err = io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	resp.Body.Close()
	if err != nil {
		return 0, nil, true, err
	}
	if len(data) > maxResponse {
		return resp.StatusCode, data[:maxResponse], true, errAnswerTooLarge
	}
	if resp.Close {
		return resp.StatusCode, data, true, errConnClose
	}
	return resp.StatusCode, data, true, nil
}

// errConnClose: the proxy asked to close the connection after its answer.
var errConnClose = errors.New("connection: close")
