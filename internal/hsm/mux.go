package hsm

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"time"
)

// The multiplexed HSM protocol, chosen by TLS ALPN (muxProto) between a
// keyhold and an HSM daemon that both speak it; older peers negotiate
// nothing and speak gob, one call per connection (rpc.go).
//
// Why: a KMS Encrypt through a CloudHSM key store is one small call to an
// HSM. With one call per connection, each call cost a write and a read
// system call on both sides and a sleep and wake-up of a thread in both
// processes, plus gob's reflection: in a profile of `keyhold serve`
// encrypting through a cluster, more CPU than the PKCS#11 encrypt itself
// (pkcs11-bench). Here every caller shares one connection per HSM: calls
// are frames tagged with an id, written together by whichever caller finds
// the connection idle (the others' frames ride along in the same write),
// and the answers come back in whatever order the HSM finishes them, read
// in bulk by one goroutine per connection. Under load many calls share one
// system call, and the frames are a fixed binary layout, not gob.
//
// A frame: u32 length of what follows, u64 call id, then a request or a
// response (appendRequest, appendResponse).

const muxProto = "keyhold-hsm-mux/1"

// maxFrame bounds a frame either side accepts (the largest call carries a
// few KiB; GenerateRandom at most 64 KiB).
const maxFrame = 1 << 20

// maxInFlight bounds the calls a daemon runs at once for one connection;
// its reader waits (the client's writes then wait) beyond it.
const maxInFlight = 256

// muxWriteTimeout bounds one write of frames.
const muxWriteTimeout = 10 * time.Second

// frameWriter writes frames to a connection from many goroutines, letting
// frames queued during a write go out together in the next one.
type frameWriter struct {
	nc net.Conn

	mu      sync.Mutex
	buf     []byte // frames waiting for a write
	spare   []byte
	writing bool  // a goroutine is writing; it takes buf after its write
	err     error // the first write error: later sends fail with it
}

// send queues frame and, unless another goroutine is writing, writes
// everything queued, repeatedly until nothing is. It returns the write
// error that hit this frame (or an earlier one), not waiting when another
// goroutine writes it (a failed write closes the connection, which fails
// every call waiting on it).
func (w *frameWriter) send(frame []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.buf = append(w.buf, frame...)
	if w.writing {
		w.mu.Unlock()
		return nil
	}
	w.writing = true
	for len(w.buf) > 0 && w.err == nil {
		out := w.buf
		w.buf = w.spare[:0]
		w.mu.Unlock()
		w.nc.SetWriteDeadline(time.Now().Add(muxWriteTimeout))
		_, err := w.nc.Write(out)
		w.mu.Lock()
		if cap(out) <= 64<<10 {
			w.spare = out
		}
		if err != nil {
			w.err = err
			w.buf = nil
			w.nc.Close()
		}
	}
	w.writing = false
	err := w.err
	w.mu.Unlock()
	return err
}

// readFrame reads one frame from br: the call id and its body (a fresh
// slice).
func readFrame(br *bufio.Reader) (uint64, []byte, error) {
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 8 || n-8 > maxFrame {
		return 0, nil, fmt.Errorf("hsm mux: frame of %d bytes", n)
	}
	body := make([]byte, n-8)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, nil, err
	}
	return binary.BigEndian.Uint64(hdr[4:]), body, nil
}

// startFrame begins a frame for call id in b; endFrame fills in its length.
func startFrame(b []byte, id uint64) []byte {
	b = append(b, 0, 0, 0, 0)
	return binary.BigEndian.AppendUint64(b, id)
}

func endFrame(b []byte) []byte {
	binary.BigEndian.PutUint32(b[:4], uint32(len(b)-4))
	return b
}

// muxConn is the client side of one multiplexed connection.
type muxConn struct {
	w  frameWriter
	br *bufio.Reader

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan []byte // calls waiting for an answer
	err     error                  // set once the connection failed
	done    chan struct{}          // closed with err
}

func newMuxConn(nc net.Conn) *muxConn {
	c := &muxConn{w: frameWriter{nc: nc}, br: bufio.NewReaderSize(nc, 32<<10),
		pending: map[uint64]chan []byte{}, done: make(chan struct{})}
	go c.readLoop()
	return c
}

// readLoop hands each answer to its caller until the connection fails.
func (c *muxConn) readLoop() {
	for {
		id, body, err := readFrame(c.br)
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- body // buffered: a caller that gave up is not waited for
		}
	}
}

// fail ends the connection: every call waiting on it, and later ones, get
// err.
func (c *muxConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		close(c.done)
	}
	c.mu.Unlock()
	c.w.nc.Close()
}

func (c *muxConn) broken() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// chanPool recycles the one-answer channels of calls (each is drained
// before it is put back).
var chanPool = sync.Pool{New: func() any { return make(chan []byte, 1) }}

// call sends req and waits for its answer until deadline or ctx ends. A
// call still unanswered at deadline (the HSM's limit, not the caller's)
// fails the connection: the HSM stopped answering. One whose ctx ended
// (cancelled, or its own deadline) only abandons its answer, so that one
// impatient caller does not fail the calls of others.
func (c *muxConn) call(ctx context.Context, deadline time.Time, req *request) (*response, error) {
	ch := chanPool.Get().(chan []byte)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		chanPool.Put(ch)
		return nil, fmt.Errorf("%w: %v", ErrNetwork, err)
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()

	frame := endFrame(appendRequest(startFrame(make([]byte, 0, 96+len(req.Data)+len(req.AAD)+len(req.Label)), id), req))
	if err := c.w.send(frame); err != nil {
		c.fail(err)
		c.forget(id)
		return nil, fmt.Errorf("%w: %v", ErrNetwork, err)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case body := <-ch:
		chanPool.Put(ch)
		var resp response
		if err := decodeResponse(body, &resp); err != nil {
			c.fail(err)
			return nil, fmt.Errorf("%w: %v", ErrNetwork, err)
		}
		return &resp, resp.err()
	case <-c.done:
		c.forget(id)
		return nil, fmt.Errorf("%w: %v", ErrNetwork, c.err)
	case <-t.C:
		c.fail(errors.New("hsm mux: call timed out"))
		c.forget(id)
		return nil, fmt.Errorf("%w: %s did not answer in time", ErrNetwork, c.w.nc.RemoteAddr())
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("%w: %w", ErrNetwork, ctx.Err())
	}
}

// forget drops a call that stopped waiting (its channel is not reused: an
// answer may still be on its way into it).
func (c *muxConn) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

func (c *muxConn) close() { c.fail(errors.New("hsm mux: connection closed")) }

// serveMux answers a multiplexed connection until it fails: requests are
// read in bulk and each runs on its own goroutine (at most maxInFlight at
// once), answers written back as they finish.
func serveMux(conn net.Conn, peer string, handle func(*request, string) *response) {
	w := &frameWriter{nc: conn}
	br := bufio.NewReaderSize(conn, 32<<10)
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer func() {
		conn.Close()
		wg.Wait()
	}()
	for {
		id, body, err := readFrame(br)
		if err != nil {
			return
		}
		var req request
		if err := decodeRequest(body, &req); err != nil {
			return
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			resp := handle(&req, peer)
			frame := endFrame(appendResponse(startFrame(make([]byte, 0, 64+len(resp.Data)+len(resp.IV)+len(resp.Msg)+len(resp.Text)), id), resp))
			if w.send(frame) != nil {
				conn.Close()
			}
		}()
	}
}

// The bodies: fields in a fixed order, byte strings as a uvarint length
// and the bytes, integers as varints. An empty byte string decodes as nil
// (as gob decodes it).

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendRequest(b []byte, r *request) []byte {
	b = append(b, byte(r.Op))
	b = appendString(b, r.Label)
	b = appendString(b, string(r.PIN))
	b = appendString(b, string(r.NewPIN))
	b = appendBytes(b, r.IV)
	b = appendBytes(b, r.Data)
	b = appendBytes(b, r.AAD)
	b = binary.AppendVarint(b, int64(r.N))
	b = binary.AppendVarint(b, int64(r.Duration))
	return appendString(b, r.Session)
}

func appendResponse(b []byte, r *response) []byte {
	b = append(b, byte(r.Code))
	b = appendString(b, r.Msg)
	b = appendBytes(b, r.Data)
	b = appendBytes(b, r.IV)
	b = appendString(b, r.Text)
	return binary.AppendVarint(b, r.N)
}

var errBadFrame = errors.New("hsm mux: malformed frame")

// fields reads a body's fields in order; the first failure sticks.
type fields struct {
	b   []byte
	err error
}

func (f *fields) byte() byte {
	if f.err != nil || len(f.b) < 1 {
		f.err = errBadFrame
		return 0
	}
	v := f.b[0]
	f.b = f.b[1:]
	return v
}

func (f *fields) bytes() []byte {
	if f.err != nil {
		return nil
	}
	n, k := binary.Uvarint(f.b)
	if k <= 0 || n > uint64(len(f.b)-k) {
		f.err = errBadFrame
		return nil
	}
	v := f.b[k : k+int(n) : k+int(n)]
	f.b = f.b[k+int(n):]
	if len(v) == 0 {
		return nil
	}
	return v
}

func (f *fields) string() string { return string(f.bytes()) }

func (f *fields) varint() int64 {
	if f.err != nil {
		return 0
	}
	v, k := binary.Varint(f.b)
	if k <= 0 {
		f.err = errBadFrame
		return 0
	}
	f.b = f.b[k:]
	return v
}

func (f *fields) end() error {
	if f.err == nil && len(f.b) != 0 {
		f.err = errBadFrame
	}
	return f.err
}

func decodeRequest(body []byte, r *request) error {
	f := fields{b: body}
	r.Op = rpcOp(f.byte())
	r.Label = f.string()
	r.PIN = Password(f.string())
	r.NewPIN = Password(f.string())
	r.IV = f.bytes()
	r.Data = f.bytes()
	r.AAD = f.bytes()
	n := f.varint()
	if n > math.MaxInt32 || n < math.MinInt32 {
		return errBadFrame
	}
	r.N = int(n)
	r.Duration = time.Duration(f.varint())
	r.Session = f.string()
	return f.end()
}

func decodeResponse(body []byte, r *response) error {
	f := fields{b: body}
	r.Code = rpcCode(f.byte())
	r.Msg = f.string()
	r.Data = f.bytes()
	r.IV = f.bytes()
	r.Text = f.string()
	r.N = f.varint()
	return f.end()
}
