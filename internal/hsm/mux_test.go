package hsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestMuxCodecRoundTrip(t *testing.T) {
	reqs := []request{
		{},
		{Op: opEncrypt, Label: "arn:aws:kms:us-east-1:111122223333:key/x", Data: []byte("plaintext"), AAD: []byte{0, 1, 2}, Session: "s1"},
		{Op: opDecrypt, Label: "k", IV: bytes.Repeat([]byte{7}, 12), Data: make([]byte, 4096)},
		{Op: opSetPIN, PIN: "old-pin", NewPIN: "new-pin", Session: "s"},
		{Op: opBench, N: -3, Duration: 90 * time.Second},
		{Op: opRandom, N: 1 << 16},
	}
	for i, want := range reqs {
		var got request
		if err := decodeRequest(appendRequest(nil, &want), &got); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("request %d: got %+v, want %+v", i, got, want)
		}
	}
	resps := []response{
		{},
		{Code: codeOK, Data: []byte("ct"), IV: []byte("123456789012")},
		{Code: codeKeyNotFound, Msg: "pkcs11.FindKey \"k\": key not found"},
		{Text: "session", N: 1 << 40},
	}
	for i, want := range resps {
		var got response
		if err := decodeResponse(appendResponse(nil, &want), &got); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("response %d: got %+v, want %+v", i, got, want)
		}
	}
	// Truncated or padded bodies are refused.
	b := appendRequest(nil, &reqs[1])
	for _, bad := range [][]byte{b[:len(b)-1], append(b[:len(b):len(b)], 0), {}} {
		var r request
		if err := decodeRequest(bad, &r); !errors.Is(err, errBadFrame) {
			t.Errorf("decodeRequest(%d bytes) = %v, want errBadFrame", len(bad), err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(appendRequest(nil, &request{Op: opEncrypt, Label: "k", Data: []byte("x"), Session: "s"}))
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, body []byte) {
		var r request
		if decodeRequest(body, &r) != nil {
			return
		}
		var again request
		if err := decodeRequest(appendRequest(nil, &r), &again); err != nil || !reflect.DeepEqual(r, again) {
			t.Fatalf("re-encoded %+v decodes as %+v (%v)", r, again, err)
		}
	})
}

// muxPair serves handle on a loopback TCP listener with the multiplexed
// protocol and returns a client connection to it.
func muxPair(t *testing.T, handle func(*request, string) *response) (*muxConn, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); serveMux(conn, "test", handle) }()
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	mc := newMuxConn(nc)
	t.Cleanup(mc.close)
	return mc, ln
}

func TestMuxConnConcurrentCalls(t *testing.T) {
	// Answers come back out of order (later calls sleep less); each caller
	// gets its own.
	mc, _ := muxPair(t, func(r *request, peer string) *response {
		time.Sleep(time.Duration(100-r.N%100) * 10 * time.Microsecond)
		if r.Label == "missing" {
			return &response{Code: codeKeyNotFound, Msg: "no key"}
		}
		return &response{Data: append([]byte(peer+":"), r.Data...), N: int64(r.N)}
	})
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				n := g*1000 + i
				resp, err := mc.call(ctx, deadline, &request{Op: opEncrypt, N: n, Data: fmt.Appendf(nil, "call %d", n)})
				if err != nil {
					t.Error(err)
					return
				}
				if want := fmt.Sprintf("test:call %d", n); string(resp.Data) != want || resp.N != int64(n) {
					t.Errorf("call %d got %q (N %d)", n, resp.Data, resp.N)
				}
			}
		}()
	}
	wg.Wait()
	if _, err := mc.call(ctx, deadline, &request{Label: "missing"}); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("daemon error: %v, want ErrKeyNotFound", err)
	}
	if mc.broken() {
		t.Error("connection broken after daemon errors")
	}
}

func TestMuxConnFailures(t *testing.T) {
	release := make(chan struct{})
	mc, ln := muxPair(t, func(r *request, _ string) *response {
		if r.Label == "hang" {
			<-release
		}
		return &response{Text: "ok"}
	})
	defer close(release)
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)

	// A caller that gives up leaves the connection usable for others.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := mc.call(cctx, deadline, &request{Label: "hang"})
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, ErrNetwork) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call: %v", err)
	}
	if resp, err := mc.call(ctx, deadline, &request{}); err != nil || resp.Text != "ok" {
		t.Fatalf("call after a cancelled one: %v %v", resp, err)
	}
	// So does one whose own deadline passed.
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err := mc.call(dctx, deadline, &request{Label: "hang"})
	dcancel()
	if !errors.Is(err, ErrNetwork) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("call past its ctx deadline: %v", err)
	}
	if mc.broken() {
		t.Fatal("a caller's deadline failed the connection")
	}

	// A call past its deadline fails the connection: the HSM stopped
	// answering, and every call waiting on it fails too.
	waiting := make(chan error, 1)
	go func() {
		_, err := mc.call(ctx, deadline, &request{Label: "hang"})
		waiting <- err
	}()
	if _, err := mc.call(ctx, time.Now().Add(50*time.Millisecond), &request{Label: "hang"}); !errors.Is(err, ErrNetwork) {
		t.Errorf("timed out call: %v", err)
	}
	if err := <-waiting; !errors.Is(err, ErrNetwork) {
		t.Errorf("call waiting on a failed connection: %v", err)
	}
	if !mc.broken() {
		t.Error("connection not failed after a timeout")
	}
	if _, err := mc.call(ctx, deadline, &request{}); !errors.Is(err, ErrNetwork) {
		t.Errorf("call on a failed connection: %v", err)
	}

	// The daemon going away fails calls on a new connection with ErrNetwork.
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	mc2 := newMuxConn(nc)
	defer mc2.close()
	go func() {
		time.Sleep(20 * time.Millisecond)
		nc.Close()
	}()
	if _, err := mc2.call(ctx, deadline, &request{Label: "hang"}); !errors.Is(err, ErrNetwork) {
		t.Errorf("call on a closed connection: %v", err)
	}
}
