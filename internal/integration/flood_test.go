package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/keyhold/keyhold/internal/cli"
	"github.com/keyhold/keyhold/internal/netlimit"
	"github.com/keyhold/keyhold/internal/server"
)

// memInUse is the memory the Go runtime holds from the OS (mapped and not
// returned), from runtime/metrics.
func memInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64() - s[1].Value.Uint64()
}

// TestFloodStaysUnderCeiling floods an in-process server with 2,000
// unsigned requests carrying 1 MB bodies, then 1,000 more: unsigned and
// claiming a real access key with bodies under the operation's limit (so
// that they are read, within the body budget), and chunked 1 MB ones
// without a length — from more clients than the connection cap, and checks that the memory the process holds stays under
// the documented ceiling:
//
//	(1 + GOGC/100) × (MaxConns × PerConnBytes + MaxBufferedBody)
//
// above what it held before (the client side of the test included). On
// the code before issue 14 the same 1 MB flood took the server from 16 MB
// to 3.1 GB (scripts/flood.py).
func TestFloodStaysUnderCeiling(t *testing.T) {
	oncePerSuite(t, "its server uses SQLite in every pass")
	dir := t.TempDir()
	in, err := cli.Open(context.Background(), cli.ServeConfig{DataDir: dir, Region: "us-east-1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	accessKey, secret := readCredentials(t, filepath.Join(dir, "credentials"))
	limits := netlimit.Limits{MaxConns: 256, MaxConnsPerClient: 256, ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := limits.Listen(ln, nil, netlimit.HTTPReject("application/x-amz-json-1.1", "ThrottlingException"))
	srv := limits.Server(in.Handler)
	go srv.Serve(lim)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	gogc := debug.SetGCPercent(100)
	debug.SetGCPercent(gogc)
	ceiling := uint64(float64(int64(limits.WithDefaults().MaxConns)*limits.PerConnBytes()+server.DefaultMaxBufferedBody) * (1 + float64(gogc)/100))

	body := bytes.Repeat([]byte("A"), 1<<20)
	copy(body, `{"KeyId":"`)
	body[len(body)-2], body[len(body)-1] = '"', '}'
	now := time.Now().UTC().Format("20060102T150405Z")
	claimed := "AWS4-HMAC-SHA256 Credential=" + accessKey + "/" + now[:8] + "/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + fmt.Sprintf("%064d", 0)

	runtime.GC()
	base := memInUse()
	var peak atomic.Uint64
	peak.Store(base)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if m := memInUse(); m > peak.Load() {
				peak.Store(m)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	const total, clients = 3000, 300
	var next atomic.Int64
	var mu sync.Mutex
	statuses := map[string]int{}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				kind := 0
				if i > 2000 {
					kind = 1 + int(i%3)
				}
				st := flood1(addr, kind, body, claimed, now)
				mu.Lock()
				statuses[st]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	grew := peak.Load() - base
	t.Logf("flood: %d requests from %d clients: answers %v; held %d MiB before, peak +%d MiB, ceiling %d MiB; %d connections refused at the cap",
		total, clients, statuses, base>>20, grew>>20, ceiling>>20, lim.Rejected.Load())
	if grew > ceiling {
		t.Fatalf("memory grew by %d MiB under the flood, over the documented ceiling of %d MiB", grew>>20, ceiling>>20)
	}
	if statuses["200"] != 0 {
		t.Fatalf("a forged request succeeded: %v", statuses)
	}
	// A well-behaved client still works.
	e := &env{Endpoint: "http://" + addr}
	if _, err := e.client(t, accessKey, secret).ListKeys(context.Background(), &kms.ListKeysInput{}); err != nil {
		t.Fatalf("after the flood: %v", err)
	}
}

// flood1 sends one request of kind 0..3 and returns the status (or what
// went wrong): 0 unsigned with 1 MiB, 1 unsigned with 150 KB (under
// Encrypt's limit), 2 claiming a real access key with 150 KB, 3 claiming it
// with 1 MiB chunked.
func flood1(addr string, kind int, body []byte, claimed, now string) string {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "dial error"
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	hdr := "POST / HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: TrentService.Encrypt\r\n"
	if kind == 2 || kind == 3 {
		hdr += "X-Amz-Date: " + now + "\r\nAuthorization: " + claimed + "\r\n"
	}
	w := bufio.NewWriterSize(c, 64<<10)
	if kind == 1 || kind == 2 {
		body = append(append([]byte{}, body[:150<<10-2]...), '"', '}')
	}
	if kind == 3 {
		w.WriteString(hdr + "Transfer-Encoding: chunked\r\n\r\n")
		for off := 0; off < len(body); off += 64 << 10 {
			fmt.Fprintf(w, "%x\r\n", 64<<10)
			w.Write(body[off : off+64<<10])
			w.WriteString("\r\n")
		}
		w.WriteString("0\r\n\r\n")
	} else {
		w.WriteString(hdr + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)))
		w.Write(body)
	}
	// The server may answer and close before taking the whole body.
	go w.Flush()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "no answer"
	}
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}
