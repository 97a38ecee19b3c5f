package jsonscan

import (
	"encoding/binary"
	"encoding/json"
	"testing"
)

// TestSkip: Skip passes over exactly one value, whatever it holds, and
// leaves I on what follows it.
func TestSkip(t *testing.T) {
	for _, v := range []string{
		`"plain"`, `"esc\"aped\\"`, `"ünïcode"`, `""`,
		`0`, `-12.5e+3`, `true`, `false`, `null`,
		`{}`, `[]`, `{"a":[1,{"b":"}]"}],"c":null}`, `[[[]],{"x":"[{"}]`,
	} {
		doc := `[ ` + v + ` ,7]`
		if !json.Valid([]byte(doc)) {
			t.Fatalf("test input %s is not JSON", doc)
		}
		sc := Scanner{B: []byte(doc), I: 1}
		sc.Skip()
		if sc.Peek() != ',' {
			t.Errorf("after skipping %s: at %q, want ','", v, doc[sc.I:])
		}
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		doc, raw string
		escaped  bool
	}{
		{`"abc"`, `abc`, false},
		{`""`, ``, false},
		{`"a\"b"`, `a\"b`, true},
		{`"tab\t"`, `tab\t`, true},
		{`"ü"`, `ü`, false},
	} {
		sc := Scanner{B: []byte(tc.doc + `,`)}
		raw, esc := sc.String()
		if string(raw) != tc.raw || esc != tc.escaped || sc.B[sc.I] != ',' {
			t.Errorf("String(%s) = %q, %v, then %q", tc.doc, raw, esc, sc.B[sc.I:])
		}
	}
}

func TestNumberAndPeek(t *testing.T) {
	sc := Scanner{B: []byte(" \n\t-1.5E+10 ")}
	if c := sc.Peek(); c != '-' {
		t.Fatalf("Peek = %q", c)
	}
	if n := sc.Number(); string(n) != "-1.5E+10" {
		t.Fatalf("Number = %q", n)
	}
	if c := sc.Peek(); c != 0 {
		t.Fatalf("Peek at the end = %q, want 0", c)
	}
}

func TestQuoteOrBackslash(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			w := []byte("aaaaaaaa")
			w[pos] = byte(c)
			if got, want := quoteOrBackslash(binary.LittleEndian.Uint64(w)), c == '"' || c == '\\'; got != want {
				t.Fatalf("quoteOrBackslash with %#x at %d = %v", c, pos, got)
			}
		}
	}
}

// FuzzString: String finds the same end and escapes as a byte-at-a-time
// reading, on any input (JSON or not).
func FuzzString(f *testing.F) {
	f.Add([]byte(`"plain string of some length"`), 0)
	f.Add([]byte(`"esc\"aped\\ and more than eight"`), 0)
	f.Add([]byte(`"unterminated \`), 0)
	f.Fuzz(func(t *testing.T, b []byte, at int) {
		if at < 0 || at >= len(b) {
			return
		}
		sc := Scanner{B: b, I: at}
		raw, esc := sc.String()
		// Byte at a time, as String read it before it took eight.
		i, start, wantEsc := at+1, at+1, false
		var wantRaw []byte
		for {
			if i >= len(b) {
				if start > len(b) {
					start = len(b)
				}
				wantRaw = b[start:]
				break
			}
			if b[i] == '"' {
				wantRaw = b[start:i]
				i++
				break
			}
			if b[i] == '\\' {
				wantEsc = true
				i += 2
				continue
			}
			i++
		}
		if sc.I != i || esc != wantEsc || string(raw) != string(wantRaw) {
			t.Fatalf("String(%q at %d) = %q, %v, I=%d; want %q, %v, I=%d", b, at, raw, esc, sc.I, wantRaw, wantEsc, i)
		}
	})
}
