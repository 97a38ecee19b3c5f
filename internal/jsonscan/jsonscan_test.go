package jsonscan

import (
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
