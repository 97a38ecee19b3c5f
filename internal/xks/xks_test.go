package xks

import (
	"bytes"
	"encoding/base64"
	"testing"
)

func TestCDIVSpecVector(t *testing.T) {
	// Test vector from the XKS proxy API spec, appendix C.
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	got := CDIV([]byte("project=nile,department=marketing"), []byte("key_version=1"),
		dec("HMrlRw85cAJUd5Ax"), dec("ghxkK1txeDNn3q8Y"), dec("vBxN2ncH1oEkR8WVXpmyYQ=="))
	if want := "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc="; got != want {
		t.Fatalf("CDIV = %s, want %s", got, want)
	}
}

func TestGCMAAD(t *testing.T) {
	tests := []struct {
		name    string
		aad, md []byte
		want    []byte
		wantErr bool
	}{
		{"both absent", nil, nil, []byte{0, 0, 0}, false},
		{"aad only", []byte("ab"), nil, []byte{0, 2, 'a', 'b', 0}, false},
		{"md only", nil, []byte("v1"), []byte{0, 0, 2, 'v', '1'}, false},
		{"both", []byte("a"), []byte("m"), []byte{0, 1, 'a', 1, 'm'}, false},
		{"md too long", nil, make([]byte, 21), nil, true},
		{"aad too long", make([]byte, 65536), nil, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := GCMAAD(tc.aad, tc.md)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("GCMAAD = %v, want %v", got, tc.want)
			}
		})
	}
	// Moving a byte from the AAD into the metadata must change the result.
	a, _ := GCMAAD([]byte("xy"), []byte("z"))
	b, _ := GCMAAD([]byte("x"), []byte("yz"))
	if bytes.Equal(a, b) {
		t.Fatal("AAD/metadata boundary not bound")
	}
}
