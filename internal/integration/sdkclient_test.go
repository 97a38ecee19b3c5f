package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// TestSDKWriterAfterAnswer forces, on every request, the schedule behind
// the "use of closed network connection" failures of
// TestSDKNoFailuresUnderLoad on a saturated machine (see sdkHTTPClient):
// net/http's writer goroutine, once the last byte of a request is on the
// wire, continues only after the SDK has had keyhold's answer and closed
// the request body. No request may then end in a write error (on which
// net/http closes the connection under the caller reading the answer),
// and every call must succeed. With the SDK's own HTTP client instead of
// sdkHTTPClient every request ends in a write error (io.EOF): whether the
// caller was still reading when its connection closed is then a race.
func TestSDKWriterAfterAnswer(t *testing.T) {
	oncePerSuite(t, "it is about the SDK's client, not storage")
	e := start(t)
	var (
		mu      sync.Mutex
		current *closeSignal // the body of the request in flight
		held    atomic.Int64
	)
	holdWriter := func() {
		// Counted before the wait: the writer is held before keyhold can
		// answer, so before the call returns.
		held.Add(1)
		mu.Lock()
		c := current
		mu.Unlock()
		<-c.closed
	}
	transport := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		dial := tr.DialContext
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &holdAfterRequest{Conn: c, hold: holdWriter}, nil
		}
	})
	client := e.client(t, e.AccessKey, e.Secret, func(o *kms.Options) {
		o.HTTPClient = seeBodyClose{next: sdkHTTPClient(transport), start: func(s *closeSignal) {
			mu.Lock()
			current = s
			mu.Unlock()
		}}
	})

	const rounds = 10
	requests := int64(1 + 2*rounds) // CreateKey, then an Encrypt and a Decrypt a round
	var (
		wrote, writeErrs atomic.Int64
		firstWriteErr    atomic.Value
		allWritten       = make(chan struct{})
	)
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err != nil && writeErrs.Add(1) == 1 {
				firstWriteErr.Store(i.Err.Error())
			}
			if wrote.Add(1) == requests {
				close(allWritten)
			}
		},
	})
	k, err := client.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	// 4 KB plaintexts: the answers are longer than net/http's 4 KB read
	// buffer, so the caller is still reading from the connection after
	// the headers.
	pt := make([]byte, 4096)
	for range rounds {
		rand.Read(pt)
		enc, err := client.Encrypt(ctx, &kms.EncryptInput{KeyId: k.KeyMetadata.KeyId, Plaintext: pt})
		if err != nil {
			t.Fatalf("Encrypt: %v", err)
		}
		dec, err := client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
		if err != nil {
			t.Fatalf("Decrypt: %v", err)
		}
		if !bytes.Equal(dec.Plaintext, pt) {
			t.Fatal("Decrypt returned another plaintext")
		}
	}
	if held.Load() != requests {
		t.Fatalf("the writer was held after %d requests, want %d: the schedule was not forced", held.Load(), requests)
	}
	// The last request's writer may still be on its way after its call
	// returned.
	<-allWritten
	if n := writeErrs.Load(); n != 0 {
		t.Fatalf("%d of %d requests ended in a write error, the first: %v", n, requests, firstWriteErr.Load())
	}
}

// holdAfterRequest is a client connection that calls hold once each
// request (headers and Content-Length bytes of body) has been written,
// before its writer goes on.
type holdAfterRequest struct {
	net.Conn
	hold    func()
	pending []byte // written bytes of the request not yet complete
}

func (c *holdAfterRequest) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.pending = append(c.pending, p[:n]...)
	for {
		end := bytes.Index(c.pending, []byte("\r\n\r\n"))
		if end < 0 {
			break
		}
		req, rerr := http.ReadRequest(bufio.NewReader(bytes.NewReader(c.pending[:end+4])))
		if rerr != nil {
			return n, rerr
		}
		size := end + 4 + int(max(req.ContentLength, 0))
		if len(c.pending) < size {
			break
		}
		c.pending = c.pending[size:]
		c.hold()
	}
	return n, err
}

// seeBodyClose puts a closeSignal around the body of each request the SDK
// sends (in the SDK's own request, so that its close is seen) and arms it
// once next has returned the answer.
type seeBodyClose struct {
	next  aws.HTTPClient
	start func(*closeSignal)
}

func (s seeBodyClose) Do(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return s.next.Do(r)
	}
	sig := &closeSignal{ReadCloser: r.Body, closed: make(chan struct{})}
	r.Body = sig
	if _, ok := sig.ReadCloser.(io.WriterTo); ok {
		// Keep the body's WriteTo: net/http uses it.
		r.Body = closeSignalWriterTo{sig}
	}
	s.start(sig)
	resp, err := s.next.Do(r)
	sig.armed.Store(true)
	if err != nil {
		sig.signal()
	}
	return resp, err
}

// closeSignal closes closed at the first Close once armed (that is, the
// SDK's close after the answer, not a close on the way to net/http).
type closeSignal struct {
	io.ReadCloser
	armed  atomic.Bool
	once   sync.Once
	closed chan struct{}
}

func (s *closeSignal) Close() error {
	err := s.ReadCloser.Close()
	if s.armed.Load() {
		s.signal()
	}
	return err
}

func (s *closeSignal) signal() { s.once.Do(func() { close(s.closed) }) }

type closeSignalWriterTo struct{ *closeSignal }

func (s closeSignalWriterTo) WriteTo(w io.Writer) (int64, error) {
	return s.ReadCloser.(io.WriterTo).WriteTo(w)
}
