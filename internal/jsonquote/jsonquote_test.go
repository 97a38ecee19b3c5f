package jsonquote

import (
	"bytes"
	"encoding/json"
	"testing"
)

func FuzzAppendString(f *testing.F) {
	f.Add("plain")
	f.Add("<&>\"\\\x00\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func TestSpecial8(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			w := []byte("aaaaaaaa")
			w[pos] = byte(c)
			if got, want := special8(load64(string(w))), !plain[c]; got != want {
				t.Fatalf("special8 with %#x at %d = %v", c, pos, got)
			}
		}
	}
}

func TestAppendStringRuns(t *testing.T) {
	for _, s := range []string{"", "a", "abcdefgh", "abcdefghi", "abcdefg<", "<abcdefgh", "ünïcode strings of some length", "a\u2028b\xffc\"d\\e&f>g<h\x01i", "arn:aws:kms:us-east-1:111122223333:key/6f1b0d6e-2a4b-4c9e-9d5e-0b1c2d3e4f50"} {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, want)
		}
	}
}

func BenchmarkAppendString(b *testing.B) {
	s := "arn:aws:kms:us-east-1:111122223333:key/6f1b0d6e-2a4b-4c9e-9d5e-0b1c2d3e4f50"
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendString(buf[:0], s)
	}
}
