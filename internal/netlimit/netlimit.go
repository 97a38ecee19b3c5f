// Package netlimit bounds what network clients can make a listener hold:
// how many connections at once (in all and per client address), how long a
// request may take to arrive and its answer to leave, how long an idle
// keep-alive connection stays open, and how large request headers may be.
// Past a connection cap a client gets a clear answer (the listener's Reject
// bytes, e.g. an HTTP 503 with an AWS-shaped error) and the connection is
// closed, rather than piling up until file descriptors run out.
//
// Memory: an open HTTP connection is budgeted at PerConnBytes (header block,
// buffers, goroutine, request state), so clients can make a server hold at
// most MaxConns × PerConnBytes for connections; keyhold serve adds its
// request-body budget (server.Config.MaxBufferedBody) to that for its
// documented ceiling (README, TestFloodStaysUnderCeiling).
//
// It knows nothing of the APIs served: each server (keyhold serve, the XKS
// proxy, the HSM daemon) wraps its listener with Limits.Listen and, for HTTP,
// takes its timeouts from Limits.Server.
package netlimit

import (
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Limits are a listener's bounds. The zero value of a field means its
// default (see Defaults); a negative value turns that bound off.
type Limits struct {
	// MaxConns caps concurrent connections on the listener.
	MaxConns int
	// MaxConnsPerClient caps concurrent connections from one IP address.
	MaxConnsPerClient int
	// ReadHeaderTimeout bounds the arrival of a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the arrival of a whole request, body included
	// (a slow-body client is cut off after it).
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the end of a request's headers to
	// the end of its answer (a client that does not read is cut off).
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle for longer.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header block.
	MaxHeaderBytes int
}

// Defaults are the safe defaults of every serving command.
func Defaults() Limits {
	return Limits{
		MaxConns:          1024,
		MaxConnsPerClient: 256,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// WithDefaults fills zero fields from Defaults.
func (l Limits) WithDefaults() Limits {
	d := Defaults()
	if l.MaxConns == 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxConnsPerClient == 0 {
		l.MaxConnsPerClient = d.MaxConnsPerClient
	}
	if l.ReadHeaderTimeout == 0 {
		l.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if l.ReadTimeout == 0 {
		l.ReadTimeout = d.ReadTimeout
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	return l
}

// RegisterFlags adds --PREFIXmax-conns and the other bounds to fs, writing
// into l (call WithDefaults on the result).
func (l *Limits) RegisterFlags(fs *flag.FlagSet, prefix string) {
	d := Defaults()
	fs.IntVar(&l.MaxConns, prefix+"max-conns", d.MaxConns, "most concurrent client connections (-1: no cap)")
	fs.IntVar(&l.MaxConnsPerClient, prefix+"max-conns-per-client", d.MaxConnsPerClient, "most concurrent connections from one IP address (-1: no cap)")
	fs.DurationVar(&l.ReadHeaderTimeout, prefix+"read-header-timeout", d.ReadHeaderTimeout, "time allowed for a request's headers to arrive")
	fs.DurationVar(&l.ReadTimeout, prefix+"read-timeout", d.ReadTimeout, "time allowed for a whole request, body included, to arrive")
	fs.DurationVar(&l.WriteTimeout, prefix+"write-timeout", d.WriteTimeout, "time allowed from a request's headers to the end of its answer")
	fs.DurationVar(&l.IdleTimeout, prefix+"idle-timeout", d.IdleTimeout, "how long an idle keep-alive connection stays open")
	fs.IntVar(&l.MaxHeaderBytes, prefix+"max-header-bytes", d.MaxHeaderBytes, "largest request header block, in bytes")
}

// PerConnBytes is the most memory one open HTTP connection is budgeted at
// (header block, read and write buffers, goroutine stack, request state):
// MemoryCeiling's unit.
func (l Limits) PerConnBytes() int64 {
	l = l.WithDefaults()
	return int64(max(l.MaxHeaderBytes, 0)) + 64<<10
}

// Server returns an http.Server for h with l's timeouts and header limit.
func (l Limits) Server(h http.Handler) *http.Server {
	l = l.WithDefaults()
	pos := func(d time.Duration) time.Duration { return max(d, 0) }
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: pos(l.ReadHeaderTimeout),
		ReadTimeout:       pos(l.ReadTimeout),
		WriteTimeout:      pos(l.WriteTimeout),
		IdleTimeout:       pos(l.IdleTimeout),
		MaxHeaderBytes:    max(l.MaxHeaderBytes, 0),
	}
}

// Listen wraps ln so that it holds at most l.MaxConns connections, at most
// l.MaxConnsPerClient from one IP address. A connection past a cap gets
// reject(reason) written to it (nil reject: nothing) and is closed; it never
// reaches the server. With tlsConfig, accepted connections are *tls.Conn
// (as tls.NewListener makes them, so net/http still serves HTTP/2), and a
// refused client gets its answer over TLS, offered HTTP/1.1 only so that it
// can read it.
func (l Limits) Listen(ln net.Listener, tlsConfig *tls.Config, reject func(reason string) []byte) *Listener {
	l = l.WithDefaults()
	out := &Listener{Listener: ln, limits: l, reject: reject, perClient: map[string]int{}, tls: tlsConfig}
	if tlsConfig != nil {
		out.refuseTLS = tlsConfig.Clone()
		out.refuseTLS.NextProtos = []string{"http/1.1"}
	}
	return out
}

// Listener is a net.Listener with connection caps. Its counters are safe to
// read concurrently.
type Listener struct {
	net.Listener
	limits Limits
	reject func(reason string) []byte
	tls    *tls.Config
	// refuseTLS is tls offering HTTP/1.1 only, for refusals.
	refuseTLS *tls.Config

	mu        sync.Mutex
	open      int
	perClient map[string]int

	rejecting atomic.Int32
	// Rejected counts connections refused at a cap.
	Rejected atomic.Int64
}

// maxRejecting bounds the goroutines writing rejections at once; past it a
// refused connection is closed without a word.
const maxRejecting = 64

// Accept returns the next connection within the caps; connections past a cap
// are answered and closed here.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := clientOf(c.RemoteAddr())
		reason := l.admit(client)
		if reason == "" {
			var nc net.Conn = &conn{Conn: c, l: l, client: client}
			if l.tls != nil {
				nc = tls.Server(nc, l.tls)
			}
			return nc, nil
		}
		l.Rejected.Add(1)
		l.refuse(c, reason)
	}
}

func (l *Listener) admit(client string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limits.MaxConns > 0 && l.open >= l.limits.MaxConns {
		return fmt.Sprintf("This server holds its maximum of %d concurrent connections. Close idle connections or retry later.", l.limits.MaxConns)
	}
	if l.limits.MaxConnsPerClient > 0 && l.perClient[client] >= l.limits.MaxConnsPerClient {
		return fmt.Sprintf("Too many concurrent connections from %s (at most %d). Close idle connections or retry later.", client, l.limits.MaxConnsPerClient)
	}
	l.open++
	l.perClient[client]++
	return ""
}

func (l *Listener) release(client string) {
	l.mu.Lock()
	l.open--
	if l.perClient[client] <= 1 {
		delete(l.perClient, client)
	} else {
		l.perClient[client]--
	}
	l.mu.Unlock()
}

// Open is the number of connections held.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// refuse answers a connection past a cap and closes it, off the accept loop.
func (l *Listener) refuse(c net.Conn, reason string) {
	if l.reject == nil || l.rejecting.Add(1) > maxRejecting {
		if l.reject != nil {
			l.rejecting.Add(-1)
		}
		c.Close()
		return
	}
	go func() {
		defer l.rejecting.Add(-1)
		raw := c
		defer raw.Close()
		if l.refuseTLS != nil {
			c = tls.Server(raw, l.refuseTLS)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		// Let the request's headers arrive first: an HTTP client treats an
		// answer that comes before its request as garbage.
		buf := make([]byte, 4096)
		var seen []byte
		for len(seen) < 16<<10 && !bytes.Contains(seen, []byte("\r\n\r\n")) {
			n, err := c.Read(buf)
			seen = append(seen, buf[:n]...)
			if err != nil {
				break
			}
		}
		if _, err := c.Write(l.reject(reason)); err != nil {
			return
		}
		// Half-close, then read what the client sent (briefly, boundedly):
		// closing with unread data would reset the connection and could
		// destroy the answer before the client reads it.
		if cw, ok := c.(interface{ CloseWrite() error }); ok && l.refuseTLS == nil {
			cw.CloseWrite()
		}
		io.CopyN(io.Discard, c, 256<<10)
	}()
}

// conn releases its slot once, on Close.
type conn struct {
	net.Conn
	l      *Listener
	client string
	once   sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.client) })
	return err
}

// clientOf is the IP address a connection comes from ("" for unix sockets:
// one client).
func clientOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// HTTPReject builds an HTTP/1.1 answer for a refused connection: status 503,
// the AWS JSON error shape with errorType (e.g. "ThrottlingException") and
// the reason as its message, Connection: close.
func HTTPReject(contentType, errorType string) func(reason string) []byte {
	return func(reason string) []byte {
		body := `{"__type":` + strconv.Quote(errorType) + `,"message":` + strconv.Quote(reason) + `}`
		return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: " + contentType +
			"\r\nx-amzn-ErrorType: " + errorType + "\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	}
}
