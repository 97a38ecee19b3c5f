package sqlstore

import (
	"reflect"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// fill sets every field reachable from v (structs, pointers to structs,
// slices) to a non-zero value.
func fill(t *testing.T, v reflect.Value) {
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.Unix(1700000000, 123456789).UTC()))
		return
	case v.Type() == reflect.TypeFor[[]byte]():
		v.SetBytes([]byte{1, 2, 3})
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("s-" + v.Type().Name())
	case reflect.Int, reflect.Int64:
		v.SetInt(7)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i))
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(t, v.Index(i))
		}
	default:
		t.Fatalf("fill: no value for a %s (teach keycodec.go and this test the new field)", v.Type())
	}
}

// TestKeyCodecEveryField: every field of a key record that is not a column
// of its own survives the binary form; a field added to store.Key (or a
// struct it holds) and not to encodeKeyData fails here.
func TestKeyCodecEveryField(t *testing.T) {
	var k store.Key
	fill(t, reflect.ValueOf(&k).Elem())
	var got store.Key
	if err := decodeKeyData(encodeKeyData(&k), &got); err != nil {
		t.Fatal(err)
	}
	// The columns of their own (keyCols) are not in the data column.
	k.AccountID, k.Region, k.ID, k.State, k.CustomKeyStoreID, k.XksKeyID, k.Version = "", "", "", "", "", "", 0
	if !reflect.DeepEqual(k, got) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, k)
	}
	// Zero and absent values stay zero and absent (nil, not empty).
	var empty, gotEmpty store.Key
	if err := decodeKeyData(encodeKeyData(&empty), &gotEmpty); err != nil || !reflect.DeepEqual(gotEmpty, empty) {
		t.Fatalf("empty record: %+v, %v", gotEmpty, err)
	}
}

// oldRecord is a key record as keyhold wrote it before the binary form.
const oldRecord = `{"c":"2026-12-02T12:56:47.144Z","d":"keyhold bench","u":"ENCRYPT_DECRYPT","s":"SYMMETRIC_DEFAULT","o":"AWS_KMS","dd":"0001-01-01T00:00:00Z","p":"{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {\n    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {\n      \"AWS\" : \"arn:aws:iam::330586219047:root\"\n    },\n    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  } ]\n}","b":"z6ugfU7jRlsaZpUep5wViw==","m":"ATJqdsVNWSmxxGY5n3f/ToWsTPZECraJBXkWU2IH4h6+1qDmyd7kysBJMq7mvqQr/Hg5ku1dLCwYBl9ZSA==","ms":[{"i":"z6ugfU7jRlsaZpUep5wViw==","m":"ATJqdsVNWSmxxGY5n3f/ToWsTPZECraJBXkWU2IH4h6+1qDmyd7kysBJMq7mvqQr/Hg5ku1dLCwYBl9ZSA==","c":"2026-12-02T12:56:47.144Z","v":"0001-01-01T00:00:00Z"}],"r":{"n":"0001-01-01T00:00:00Z","o":"0001-01-01T00:00:00Z","p":365}}`

// TestKeyCodecReadsJSON: records written as JSON read as before, and
// rewritten in the binary form they read the same.
func TestKeyCodecReadsJSON(t *testing.T) {
	var k store.Key
	if err := decodeKeyData([]byte(oldRecord), &k); err != nil {
		t.Fatal(err)
	}
	if k.KeySpec != "SYMMETRIC_DEFAULT" || len(k.SealedMaterial) != 61 || len(k.Materials) != 1 || k.Rotation.PeriodDays != 365 ||
		!k.CreationDate.Equal(time.Date(2026, 12, 2, 12, 56, 47, 144e6, time.UTC)) || !k.DeletionDate.IsZero() {
		t.Fatalf("JSON record read as %+v", k)
	}
	var again store.Key
	if err := decodeKeyData(encodeKeyData(&k), &again); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(k, again) {
		t.Fatalf("rewritten:\n binary %+v\n   JSON %+v", again, k)
	}
}

// TestKeyCodecCorrupt: a damaged record is an error, never a panic or a
// huge allocation.
func TestKeyCodecCorrupt(t *testing.T) {
	var k store.Key
	fill(t, reflect.ValueOf(&k).Elem())
	b := encodeKeyData(&k)
	for n := 1; n < len(b); n++ {
		var got store.Key
		if err := decodeKeyData(b[:n], &got); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(b))
		}
	}
	var got store.Key
	if err := decodeKeyData(append(b, 0), &got); err == nil {
		t.Fatal("trailing byte: no error")
	}
	huge := []byte{keyCodecV1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if err := decodeKeyData(huge, &got); err == nil {
		t.Fatal("a list longer than the record: no error")
	}
}

// BenchmarkKeyDecode: a default symmetric key's record, the form every
// request at a million keys reads (the caches hold 10,000).
func BenchmarkKeyDecode(b *testing.B) {
	var k store.Key
	if err := decodeKeyData([]byte(oldRecord), &k); err != nil {
		b.Fatal(err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"json", []byte(oldRecord)}, {"binary", encodeKeyData(&k)}} {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(f.data)))
			for b.Loop() {
				var k store.Key
				if err := decodeKeyData(f.data, &k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
