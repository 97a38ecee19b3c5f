package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

var validCases = []string{
	``, ` `, `{}`, `[]`, ` {} `, `{`, `}`, `[`, `{]`, `[}`, `{"a":1}`, `{"a":1,}`, `{"a" : 1 , "b":[true,false,null]}`,
	`{"a"}`, `{"a":}`, `{1:2}`, `{"a":1 "b":2}`, `[1,]`, `[,1]`, `[1 2]`, `[[[[]]],{}]`, `{"a":{"b":{"c":[{}]}}}`,
	`"x"`, `"\"\\\/\b\f\n\r\t\u00e9\uD834\uDD1E"`, `"\x"`, `"\u12"`, `"\u12g4"`, `"tab	in"`, "\"nul\x00\"", "\"\xff\xfe\"",
	`"unterminated`, `"\`, `0`, `-0`, `-`, `01`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e-05`, `1e`, `1e+`, `-1.5e3`, `2.`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `1 2`, `{} {}`, "\t\n\r{}\r\n", `{"a":"b"}x`, `[-]`, `[1e1.5]`,
	strings.Repeat("[", 64) + strings.Repeat("]", 64), strings.Repeat("[", 65) + strings.Repeat("]", 65),
	strings.Repeat("[", 65) + strings.Repeat("]", 64), strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001), strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	`{"KeyId":"alias/x","Plaintext":"AAAA","EncryptionContext":{"a":"b"},"GrantTokens":["t"],"DryRun":false}`,
}

func TestValid(t *testing.T) {
	for _, s := range validCases {
		if got, want := Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%.80q) = %v, json.Valid says %v", s, got, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range validCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	body := []byte(`{"EncryptionContext":{"bench":"loadgen"},"KeyId":"6f1b0d6e-2a4b-4c9e-9d5e-0b1c2d3e4f50","Plaintext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`)
	for _, bc := range []struct {
		name  string
		valid func([]byte) bool
	}{{"jsonscan", Valid}, {"encoding-json", json.Valid}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !bc.valid(body) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

func TestHasSpecial(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			var w [8]byte
			for i := range w {
				w[i] = 'a'
			}
			w[pos] = byte(c)
			x := uint64(0)
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(w[i])
			}
			if got, want := hasSpecial(x), c < 0x20 || c == '"' || c == '\\'; got != want {
				t.Fatalf("hasSpecial with %#x at %d = %v", c, pos, got)
			}
		}
	}
}
