package awsjson

import "testing"

func TestMaxInputBytes(t *testing.T) {
	m, err := LoadModel([]byte(`{"operations":{
		"Small":{"input":"SmallRequest"},
		"Encrypt":{"input":"EncryptRequest"},
		"Huge":{"input":"HugeRequest"},
		"NoInput":{}},
	"shapes":{
		"SmallRequest":{"type":"structure","members":{"KeyId":{"shape":"KeyId"}}},
		"EncryptRequest":{"type":"structure","members":{"KeyId":{"shape":"KeyId"},"Plaintext":{"shape":"Plaintext"},
			"EncryptionContext":{"shape":"Context"}}},
		"HugeRequest":{"type":"structure","members":{"Docs":{"shape":"Docs"}}},
		"Docs":{"type":"list","max":100,"member":{"shape":"Doc"}},
		"Doc":{"type":"string","max":131072},
		"KeyId":{"type":"string","max":2048},
		"Plaintext":{"type":"blob","max":4096},
		"Context":{"type":"map","key":{"shape":"KeyId"},"value":{"shape":"KeyId"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	// {"KeyId":"<2048>","Plaintext":"<5464 base64>","EncryptionContext":<4096>}
	encrypt := int64(2 + (5 + 4 + 2050) + (9 + 4 + 5466) + (17 + 4 + unboundedAllowance))
	for op, want := range map[string]int64{
		"Small":   MinBodyLimit,
		"Encrypt": bodyLimitMargin * encrypt,
		"Huge":    DefaultMaxBody,
		"NoInput": MinBodyLimit,
		"Unknown": 0,
	} {
		if got := m.MaxInputBytes(op); got != want {
			t.Errorf("%s: %d, want %d", op, got, want)
		}
	}
}
