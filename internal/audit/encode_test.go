package audit

import (
	"bytes"
	"encoding/json"
	"testing"
)

// appendEvent must write exactly what encoding/json writes for the same
// Event: readers (LookupEvents, tools) and the golden files see one format.
func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	e := newTestEncoder(t)
	check := func(name string, ev *Event) {
		t.Helper()
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, ok := appendEvent(nil, ev)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("%s (ok=%v):\n got %s\nwant %s", name, ok, got, want)
		}
	}
	for _, tc := range cases(t) {
		check(tc.name, e.Event(&tc.rec))
	}
	odd := "<script>&\"\\\x00\x01\b\f\n\r\t\x7f\u2028\u2029 é \xff\xfe 日本"
	ev := e.Event(&cases(t)[0].rec)
	ev.UserAgent, ev.ErrorMessage, ev.ErrorCode = odd, odd, odd
	ev.UserIdentity.SessionContext = &SessionContext{SessionIssuer{Type: "Role", ARN: odd}}
	ev.RequestParameters = map[string]any{odd: []any{json.Number("-1.5e+10"), json.Number("0"), json.Number(""), true, nil,
		map[string]any{}, []any{}, map[string]any{"b": "x", "a": odd, "B": false}}}
	ev.ResponseElements = []any(nil)
	check("odd strings and values", ev)

	ev.RequestParameters = map[string]any{"n": json.Number("01")}
	if _, ok := appendEvent(nil, ev); ok {
		t.Error("an invalid json.Number was encoded; encoding/json refuses it")
	}
	ev.RequestParameters = map[string]any{"n": 3}
	if _, ok := appendEvent(nil, ev); ok {
		t.Error("a type render never produces was encoded")
	}
	if b, err := e.Marshal(&Record{Operation: "X"}); err != nil || !json.Valid(b) {
		t.Errorf("Marshal: %s, %v", b, err)
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("plain")
	f.Add("<&>\"\\\x00\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func FuzzValidNumber(f *testing.F) {
	for _, s := range []string{"0", "-0", "1.5", "1e5", "1E+5", "-1.5e-3", "01", "1.", ".5", "-", "1e", "+1", "0x1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, err := json.Marshal(json.Number(s))
		if s != "" && validNumber(s) != (err == nil) {
			t.Fatalf("validNumber(%q) = %v, encoding/json error %v", s, validNumber(s), err)
		}
	})
}
