package blob

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	id, ok := ParseUUID("1234abcd-12ab-34cd-56ef-1234567890ab")
	if !ok {
		t.Fatal("ParseUUID failed")
	}
	h := Header{Kind: KindSoft, KeyID: id}
	h.BackingKeyID[0] = 7
	b := Encode(h, Fields([]byte("iv"), []byte("ct")))
	got, payload, err := Decode(b)
	if err != nil || got != h {
		t.Fatalf("Decode = %+v, %v", got, err)
	}
	if got.KeyIDString() != "1234abcd-12ab-34cd-56ef-1234567890ab" {
		t.Fatalf("KeyIDString = %s", got.KeyIDString())
	}
	fs, err := SplitFields(payload, 2)
	if err != nil || string(fs[0]) != "iv" || string(fs[1]) != "ct" {
		t.Fatalf("SplitFields = %q, %v", fs, err)
	}
	if _, err := SplitFields(payload, 3); err != ErrInvalid {
		t.Fatalf("too many fields: %v", err)
	}
	if _, err := SplitFields(payload, 1); err != ErrInvalid {
		t.Fatalf("trailing bytes: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":       nil,
		"short":       {1, 1, 2},
		"bad version": append([]byte{9, 1}, make([]byte, 40)...),
		"bad kind":    append([]byte{1, 99}, make([]byte, 40)...),
		"no payload":  append([]byte{1, 1}, make([]byte, 32)...),
	} {
		if _, _, err := Decode(b); err != ErrInvalid {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestAADDistinguishesContexts(t *testing.T) {
	h := []byte("hdr")
	cases := []map[string]string{nil, {"a": "b"}, {"a": "bc"}, {"ab": "c"}, {"a": "b", "c": "d"}}
	seen := map[string]int{}
	for i, c := range cases {
		k := string(AAD(h, c))
		if j, dup := seen[k]; dup {
			t.Fatalf("contexts %d and %d encode alike", i, j)
		}
		seen[k] = i
	}
	if !bytes.Equal(AAD(h, map[string]string{"x": "1", "y": "2"}), AAD(h, map[string]string{"y": "2", "x": "1"})) {
		t.Fatal("AAD depends on map order")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(Header{Kind: KindXKS}, Fields([]byte("a"), []byte("b"))))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, p, err := Decode(b)
		if err != nil {
			return
		}
		if !bytes.Equal(Encode(h, p), b) {
			t.Fatal("Decode/Encode not inverse")
		}
		for n := 0; n < 6; n++ {
			SplitFields(p, n)
		}
	})
}

func TestMultiRegionKeyID(t *testing.T) {
	id, mrk, ok := ParseKeyID("mrk-1234ABCD12ab34cd56ef1234567890ab")
	if !ok || !mrk || FormatKeyID(id, mrk) != "mrk-1234abcd12ab34cd56ef1234567890ab" {
		t.Fatalf("ParseKeyID(mrk) = %x, %v, %v", id, mrk, ok)
	}
	for _, bad := range []string{"mrk-1234", "mrk-1234abcd12ab34cd56ef1234567890zz", "mrk-1234abcd-12ab-34cd-56ef-1234567890ab", "xyz-1234abcd12ab34cd56ef1234567890ab"} {
		if _, _, ok := ParseKeyID(bad); ok {
			t.Errorf("ParseKeyID(%q) accepted", bad)
		}
	}
	if _, mrk, ok := ParseKeyID("1234abcd-12ab-34cd-56ef-1234567890ab"); !ok || mrk {
		t.Fatal("a UUID key id")
	}
	h := Header{Kind: KindSoft, KeyID: id, MultiRegion: true}
	got, _, err := Decode(Encode(h, []byte{1}))
	if err != nil || !got.MultiRegion || got.Kind != KindSoft || got.KeyIDString() != "mrk-1234abcd12ab34cd56ef1234567890ab" {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	single, _, _ := Decode(Encode(Header{Kind: KindXKS, KeyID: id}, []byte{1}))
	if single.MultiRegion || single.Kind != KindXKS {
		t.Fatalf("single-Region header: %+v", single)
	}
}

// FuzzParseKeyID holds ParseKeyID and FormatUUID to the plain forms they
// replaced (strings.ReplaceAll and hex.DecodeString; hex.EncodeToString
// and concatenation).
func FuzzParseKeyID(f *testing.F) {
	f.Add("1234abcd-12ab-34cd-56ef-1234567890ab")
	f.Add("mrk-1234abcd12ab34cd56ef1234567890ab")
	f.Add("MRK-1234ABCD12AB34CD56EF1234567890AB")
	f.Add("1234abcd-12ab-34cd-56ef-1234567890ag")
	f.Add("1234abcd-12ab-34cd-56ef-12345678-0ab")
	f.Fuzz(func(t *testing.T, s string) {
		var want [16]byte
		wantMR, wantOK := false, false
		if len(s) == len(MultiRegionPrefix)+32 && strings.EqualFold(s[:len(MultiRegionPrefix)], MultiRegionPrefix) {
			if b, err := hex.DecodeString(s[len(MultiRegionPrefix):]); err == nil && len(b) == 16 {
				copy(want[:], b)
				wantMR, wantOK = true, true
			}
		} else if len(s) == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-' {
			if b, err := hex.DecodeString(strings.ReplaceAll(s, "-", "")); err == nil && len(b) == 16 {
				copy(want[:], b)
				wantOK = true
			}
		}
		id, mr, ok := ParseKeyID(s)
		if ok != wantOK || mr != wantMR || ok && id != want {
			t.Fatalf("ParseKeyID(%q) = %x %v %v, want %x %v %v", s, id, mr, ok, want, wantMR, wantOK)
		}
		h := hex.EncodeToString(id[:])
		if got, want := FormatUUID(id), h[0:8]+"-"+h[8:12]+"-"+h[12:16]+"-"+h[16:20]+"-"+h[20:32]; got != want {
			t.Fatalf("FormatUUID(%x) = %q, want %q", id, got, want)
		}
	})
}
