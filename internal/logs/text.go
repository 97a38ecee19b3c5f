package logs

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// textHandler writes what slog's TextHandler writes, byte for byte
// (TestTextHandlerMatchesSlog and FuzzTextHandler hold the two equal), for
// the records keyhold logs on every request: no groups, no attributes added
// with WithAttrs, and attribute values that are strings, integers, floats or
// booleans. It formats them in one pass into a pooled buffer; anything else
// (and every handler WithAttrs or WithGroup derives) is slog's TextHandler
// itself, writing to the same writer under the same lock.
type textHandler struct {
	slow  slog.Handler // slog.NewTextHandler over w
	w     *lockedWriter
	level slog.Leveler
}

// lockedWriter serializes the lines of both paths.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newTextHandler(w io.Writer, opts *slog.HandlerOptions) *textHandler {
	lw := &lockedWriter{w: w}
	level := opts.Level
	if level == nil {
		level = slog.LevelInfo
	}
	return &textHandler{slow: slog.NewTextHandler(lw, opts), w: lw, level: level}
}

func (h *textHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *textHandler) WithAttrs(as []slog.Attr) slog.Handler { return h.slow.WithAttrs(as) }

func (h *textHandler) WithGroup(name string) slog.Handler { return h.slow.WithGroup(name) }

var textBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (h *textHandler) Handle(ctx context.Context, r slog.Record) error {
	plain := true
	r.Attrs(func(a slog.Attr) bool {
		switch a.Value.Kind() {
		case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool:
			plain = a.Key != ""
		default:
			plain = false
		}
		return plain
	})
	if !plain {
		return h.slow.Handle(ctx, r)
	}
	bp := textBuffers.Get().(*[]byte)
	b := (*bp)[:0]
	if !r.Time.IsZero() {
		b = append(b, "time="...)
		b = appendRFC3339Millis(b, r.Time.Round(0))
		b = append(b, ' ')
	}
	b = append(b, "level="...)
	b = appendTextString(b, r.Level.String())
	b = append(b, " msg="...)
	b = appendTextString(b, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b = append(b, ' ')
		b = appendTextString(b, a.Key)
		b = append(b, '=')
		switch v := a.Value; v.Kind() {
		case slog.KindString:
			b = appendTextString(b, v.String())
		case slog.KindInt64:
			b = strconv.AppendInt(b, v.Int64(), 10)
		case slog.KindUint64:
			b = strconv.AppendUint(b, v.Uint64(), 10)
		case slog.KindFloat64:
			b = strconv.AppendFloat(b, v.Float64(), 'g', -1, 64)
		case slog.KindBool:
			b = strconv.AppendBool(b, v.Bool())
		}
		return true
	})
	b = append(b, '\n')
	_, err := h.w.Write(b)
	if cap(b) <= 64<<10 {
		*bp = b
		textBuffers.Put(bp)
	}
	return err
}

// appendRFC3339Millis is slog's time format: RFC 3339 with exactly three
// digits of milliseconds.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...) // drop the 4th digit
}

// appendTextString writes s as slog's TextHandler does: as it is, or
// quoted (strconv.Quote) when it holds anything but printable characters
// other than space, '=' and '"'.
func appendTextString(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

// needsQuoting is slog's rule for text values.
func needsQuoting(s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		if i+8 <= len(s) && !special8(load64(s[i:])) {
			i += 8
			continue
		}
		c := s[i]
		if c < utf8.RuneSelf {
			// Control characters, space, '=' and '"' (a backslash and
			// DEL are written as they are).
			if c <= ' ' || c == '=' || c == '"' {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// special8 reports whether any byte of x is a control character, a space,
// '=', '"' or not ASCII: (y - 0x01…) &^ y & 0x80… is non-zero exactly when
// some byte of y is zero, (x - 0x21…) &^ x & 0x80… when some byte is below
// 0x21.
func special8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	eq, q := x^'='*ones, x^'"'*ones
	return (x|(x-0x21*ones)&^x|(eq-ones)&^eq|(q-ones)&^q)&highs != 0
}

// load64 reads s[0:8] as a little-endian word (one load).
func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}
