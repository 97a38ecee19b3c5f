package netlimit

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serve runs an HTTP server with limits l on 127.0.0.1; /big answers 32 MB.
func serve(t *testing.T, l Limits) (string, *Listener, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var writeErrors atomic.Int64
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			for range 32 {
				if _, err := w.Write(chunk); err != nil {
					writeErrors.Add(1)
					return
				}
			}
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "ok %d", len(b))
	})
	lim := l.Listen(ln, nil, HTTPReject("application/x-amz-json-1.1", "ThrottlingException"))
	srv := l.Server(h)
	go srv.Serve(lim)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), lim, &writeErrors
}

// closedWithin waits for the server to close c, reading whatever comes.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v", limit)
	}
	return time.Since(start)
}

func get(t *testing.T, addr string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatalf("well-behaved client: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestTimeoutsCutOffBadClients: an idle keep-alive connection, a client
// sending its body one byte at a time and a client that never reads its
// answer are each cut off after the configured timeout, while a
// well-behaved client is served all along.
func TestTimeoutsCutOffBadClients(t *testing.T) {
	l := Limits{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond, IdleTimeout: 400 * time.Millisecond}
	addr, _, writeErrors := serve(t, l)

	t.Run("idle", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// One request, then nothing: the keep-alive connection is closed.
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		if got := get(t, addr); got != "ok 5" {
			t.Fatalf("well-behaved client got %q", got)
		}
		if d := closedWithin(t, c, 10*time.Second); d < 300*time.Millisecond {
			t.Errorf("idle connection closed after %v, before IdleTimeout", d)
		}
	})
	t.Run("silent after connect", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		closedWithin(t, c, 10*time.Second)
	})
	t.Run("slow body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
					if _, err := c.Write([]byte("a")); err != nil {
						return
					}
				}
			}
		}()
		defer close(stop)
		if got := get(t, addr); got != "ok 5" {
			t.Fatalf("well-behaved client got %q", got)
		}
		// The server gives up on the body (ReadTimeout) and closes: the
		// client sees an error answer or just the close, never "ok".
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("slow-body connection still open after 10s")
		}
		if strings.Contains(string(b), "ok 100") {
			t.Fatalf("slow body was served: %q", b)
		}
	})
	t.Run("never reads its answer", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
		deadline := time.Now().Add(10 * time.Second)
		for writeErrors.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the handler writing to a client that never reads was not cut off")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got := get(t, addr); got != "ok 5" {
			t.Fatalf("well-behaved client got %q", got)
		}
	})
}

// TestConnectionCaps: past the per-client and the total cap a connection
// gets a 503 with a ThrottlingException saying why; closing a connection
// frees its slot.
func TestConnectionCaps(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits Limits
		want   string
	}{
		{"per client", Limits{MaxConns: 100, MaxConnsPerClient: 3}, "Too many concurrent connections from 127.0.0.1 (at most 3)"},
		{"total", Limits{MaxConns: 3, MaxConnsPerClient: 100}, "This server holds its maximum of 3 concurrent connections"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, lim, _ := serve(t, tc.limits)
			var held []net.Conn
			for range 3 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				held = append(held, c)
			}
			deadline := time.Now().Add(5 * time.Second)
			for lim.Open() < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections accepted", lim.Open())
				}
				time.Sleep(5 * time.Millisecond)
			}
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
			resp, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader("hello"))
			if err != nil {
				t.Fatalf("refused client got no answer: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 || resp.Header.Get("x-amzn-ErrorType") != "ThrottlingException" || !strings.Contains(string(b), tc.want) {
				t.Fatalf("got %d %q, want 503 ThrottlingException %q", resp.StatusCode, b, tc.want)
			}
			held[0].Close()
			deadline = time.Now().Add(5 * time.Second)
			for lim.Open() >= 3 {
				if time.Now().After(deadline) {
					t.Fatal("closed connection's slot not freed")
				}
				time.Sleep(5 * time.Millisecond)
			}
			if got := get(t, addr); got != "ok 5" {
				t.Fatalf("after a slot freed: %q", got)
			}
		})
	}
}
