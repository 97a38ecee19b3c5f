package kmsapi

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/keyhold/keyhold/internal/awsjson"
)

var fastDecodeSeeds = []string{
	`{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","Plaintext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","EncryptionContext":{"purpose":"test"}}`,
	`{"EncryptionContext":{"bench":"loadgen"},"KeyId":"alias/x","KeySpec":"AES_256"}`,
	`{"KeyId":"alias/\u0078","GrantTokens":["a\"b","c"],"DryRun":true,"EncryptionAlgorithm":"SYMMETRIC_DEFAULT","Plaintext":""}`,
	`{"CiphertextBlob":"AQIDBA==","EncryptionContext":{"k":null,"e":"ü"},"GrantTokens":[],"DryRun":false}`,
	`{"KeyId":"k","NumberOfBytes":32,"EncryptionContext":{},"GrantTokens":null,"DryRun":null,"KeySpec":null}`,
	`{"KeyId":"k","Recipient":{"KeyEncryptionAlgorithm":"RSAES_OAEP_SHA_256"}}`, `{}`, ` { } `, `null`, ``,
	`{"KeyId":"k","NumberOfBytes":-0}`, `{"KeyId":"k","NumberOfBytes":1e1}`, `{"KeyId" : "k" , "GrantTokens" : [ "t" ] }`,
}

// TestFastDecodeMatchesJSON: whenever the fast decode succeeds, the value is
// json.Unmarshal's and DecodeInput accepts the body.
func TestFastDecodeMatchesJSON(t *testing.T) {
	m, err := LoadModel()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range fastDecodeSeeds {
		checkFastDecode(t, m, []byte(s))
	}
	// The common bodies do take the fast path.
	var in encryptIn
	if !m.DecodeFast("Encrypt", []byte(fastDecodeSeeds[0]), &in) {
		t.Error("an SDK's Encrypt body missed the fast decode")
	}
	var g generateDataKeyIn
	if !m.DecodeFast("GenerateDataKey", []byte(fastDecodeSeeds[1]), &g) {
		t.Error("an SDK's GenerateDataKey body missed the fast decode")
	}
}

func FuzzFastDecode(f *testing.F) {
	m, err := LoadModel()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range fastDecodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkFastDecode(t, m, b) })
}

func checkFastDecode(t *testing.T, m *awsjson.Model, body []byte) {
	t.Helper()
	check(t, m, "Encrypt", body, func() any { return new(encryptIn) })
	check(t, m, "Decrypt", body, func() any { return new(decryptIn) })
	check(t, m, "GenerateDataKey", body, func() any { return new(generateDataKeyIn) })
	check(t, m, "GenerateDataKeyWithoutPlaintext", body, func() any { return new(generateDataKeyWithoutPlaintextIn) })
	check(t, m, "DescribeKey", body, func() any { return new(keyIDIn) })
}

func check(t *testing.T, m *awsjson.Model, op string, body []byte, fresh func() any) {
	t.Helper()
	got := fresh()
	if !m.DecodeFast(op, body, got.(awsjson.MemberDecoder)) {
		return
	}
	want := fresh()
	if err := m.DecodeInput(op, body, want); err != nil {
		t.Fatalf("%s %q: DecodeFast accepted what DecodeInput rejects: %v", op, body, err)
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Fatalf("%s %q: DecodeFast stored %s (%#v), json.Unmarshal %s (%#v)", op, body, g, got, w, want)
	}
}

// BenchmarkDecodeEncrypt is input validation and decoding of an SDK's
// Encrypt body as the handler does it: DecodeFast, against the model's
// fast check followed by json.Unmarshal (DecodeInput) it replaces.
func BenchmarkDecodeEncrypt(b *testing.B) {
	m, err := LoadModel()
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(fastDecodeSeeds[0])
	b.Run("DecodeFast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in encryptIn
			if !m.DecodeFast("Encrypt", body, &in) {
				b.Fatal("slow path")
			}
		}
	})
	b.Run("DecodeInput", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in encryptIn
			if err := m.DecodeInput("Encrypt", body, &in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestAppendJSONMatchesMarshal(t *testing.T) {
	id := "3f9c0a51e2d84b7c9a6f1e0d2c3b4a59"
	for _, blob := range [][]byte{nil, {}, []byte("x"), []byte("some ciphertext bytes \x00\xff<>&")} {
		for _, s := range []string{"", "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "<&>\"\\\u2028\xff"} {
			for _, mid := range []*string{nil, &id, &s} {
				for _, v := range []any{
					encryptOut{CiphertextBlob: blob, KeyId: s, EncryptionAlgorithm: s},
					decryptOut{KeyId: s, Plaintext: blob, EncryptionAlgorithm: s, KeyMaterialId: mid},
					generateDataKeyOut{CiphertextBlob: blob, Plaintext: blob, KeyId: s, KeyMaterialId: mid},
					generateDataKeyOut{CiphertextBlob: []byte("c"), KeyId: s},
				} {
					want, err := json.Marshal(v)
					if err != nil {
						t.Fatal(err)
					}
					if got := v.(awsjson.JSONAppender).AppendJSON(nil); string(got) != string(want) {
						t.Errorf("%T: AppendJSON %s, json.Marshal %s", v, got, want)
					}
				}
			}
		}
	}
}
