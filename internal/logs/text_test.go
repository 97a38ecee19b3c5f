package logs

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"
)

// same logs r through slog's TextHandler and through textHandler and
// compares the lines.
func same(t *testing.T, r slog.Record) {
	t.Helper()
	var want, got bytes.Buffer
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	if err := slog.NewTextHandler(&want, opts).Handle(context.Background(), r.Clone()); err != nil {
		t.Fatal(err)
	}
	if err := newTextHandler(&got, opts).Handle(context.Background(), r.Clone()); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Fatalf("textHandler wrote\n%q\nslog's TextHandler\n%q", got.String(), want.String())
	}
}

func TestTextHandlerMatchesSlog(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 16, 38, 16, 123_456_789, time.UTC)
	for _, tm := range []time.Time{t0, {}, t0.In(time.FixedZone("x", 5400)), time.Date(2026, 1, 1, 0, 0, 0, 999_999_999, time.UTC), time.Now()} {
		for _, lv := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError, slog.LevelInfo + 2, slog.LevelDebug - 3} {
			r := slog.NewRecord(tm, lv, "request", 0)
			r.AddAttrs(slog.String("request_id", "5f0c1e0a-7d0b-4d0e-9b7e-2d8f0e6c1a3b"), slog.String("service", "kms"),
				slog.String("operation", "Encrypt"), slog.String("principal", "arn:aws:iam::111122223333:user/keyhold-admin"),
				slog.String("access_key_id", "AKIA..."), slog.String("source_ip", "127.0.0.1"), slog.Int("status", 200),
				slog.Float64("latency_ms", 0.123), slog.String("error", ""), slog.String("error_code", "a b=c\"d\\e\x7f\x01é\u00a0\u2028\xff"),
				slog.Uint64("u", math.MaxUint64), slog.Bool("b", true), slog.Float64("f", 1e-7), slog.Float64("nan", math.NaN()),
				slog.Int64("neg", -5))
			same(t, r)
		}
	}
	// What the fast path leaves to slog.
	r := slog.NewRecord(t0, slog.LevelInfo, "msg with space", 0)
	r.AddAttrs(slog.Any("err", errors.New("boom")), slog.Duration("d", time.Second), slog.Group("g", slog.String("k", "v")),
		slog.Time("t", t0), slog.Attr{}, slog.String("", "v"))
	same(t, r)
	var out bytes.Buffer
	h := newTextHandler(&out, &slog.HandlerOptions{})
	slog.New(h).With("k", "v").WithGroup("g").Info("m", "a", 1)
	if want := "level=INFO msg=m k=v g.a=1\n"; !bytes.HasSuffix(out.Bytes(), []byte(want)) {
		t.Errorf("derived handler wrote %q", out.String())
	}
	if h.Enabled(context.Background(), slog.LevelDebug) || !h.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("Enabled does not follow the level")
	}
}

func FuzzTextHandler(f *testing.F) {
	f.Add("request", "key", "value", int64(7), 0.5, false)
	f.Add("", "", "", int64(-1), math.Inf(1), true)
	f.Add("a=b", "k y", "\"q\"\t\\", int64(0), 1e300, true)
	f.Fuzz(func(t *testing.T, msg, key, val string, i int64, fl float64, b bool) {
		r := slog.NewRecord(time.Unix(0, i).UTC(), slog.Level(i%12), msg, 0)
		r.AddAttrs(slog.String(key, val), slog.Int64(key+"i", i), slog.Float64("f", fl), slog.Bool("b", b), slog.String("v", val))
		same(t, r)
	})
}

func BenchmarkRequestLine(b *testing.B) {
	for _, bc := range []struct {
		name string
		h    slog.Handler
	}{
		{"slog", slog.NewTextHandler(discard{}, nil)},
		{"textHandler", newTextHandler(discard{}, &slog.HandlerOptions{})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			log := slog.New(bc.h)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				log.LogAttrs(ctx, slog.LevelInfo, "request", slog.String("request_id", "5f0c1e0a-7d0b-4d0e-9b7e-2d8f0e6c1a3b"),
					slog.String("service", "kms"), slog.String("operation", "Encrypt"),
					slog.String("principal", "arn:aws:iam::111122223333:user/keyhold-admin"),
					slog.String("access_key_id", "AKIAEXAMPLE000000001"), slog.String("source_ip", "127.0.0.1"),
					slog.Int("status", 200), slog.Float64("latency_ms", 0.123))
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestSpecial8(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			w := []byte("aaaaaaaa")
			w[pos] = byte(c)
			want := c <= ' ' || c == '=' || c == '"' || c >= 0x80
			if got := special8(load64(string(w))); got != want {
				t.Fatalf("special8 with %#x at %d = %v", c, pos, got)
			}
		}
	}
}
