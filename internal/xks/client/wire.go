package client

import (
	"encoding/base64"
	"encoding/json"

	"github.com/keyhold/keyhold/internal/jsonquote"
	"github.com/keyhold/keyhold/internal/xks"
)

// The bodies of encrypt and decrypt, the calls on KMS's request path,
// without reflection: the requests are appended byte for byte as
// encoding/json marshals them, and the answers are read by a parser of the
// shape every proxy sends (one object of escape-free strings) that hands
// anything else to encoding/json, so either way the result is
// encoding/json's. wire_test.go checks both against encoding/json.

// appendJSONBytes appends v as encoding/json marshals a []byte.
func appendJSONBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

func appendField(b []byte, first bool, name string) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

func appendMetadata(b []byte, md *xks.RequestMetadata) []byte {
	if md == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	first := true
	opt := func(name, v string) {
		if v != "" {
			b = appendField(b, first, name)
			b = jsonquote.AppendString(b, v)
			first = false
		}
	}
	opt("awsPrincipalArn", md.AWSPrincipalARN)
	opt("awsSourceVpc", md.AWSSourceVPC)
	opt("awsSourceVpce", md.AWSSourceVPCE)
	opt("kmsKeyArn", md.KMSKeyARN)
	b = appendField(b, first, "kmsOperation")
	b = jsonquote.AppendString(b, md.KMSOperation)
	b = appendField(b, false, "kmsRequestId")
	b = jsonquote.AppendString(b, md.KMSRequestID)
	first = false
	opt("kmsViaService", md.KMSViaService)
	return append(b, '}')
}

func appendEncryptRequest(b []byte, in *xks.EncryptRequest) []byte {
	b = append(b, `{"requestMetadata":`...)
	b = appendMetadata(b, in.RequestMetadata)
	b = appendField(b, false, "plaintext")
	b = appendJSONBytes(b, in.Plaintext)
	b = appendField(b, false, "encryptionAlgorithm")
	b = jsonquote.AppendString(b, in.EncryptionAlgorithm)
	if len(in.AdditionalAuthenticatedData) > 0 {
		b = appendField(b, false, "additionalAuthenticatedData")
		b = appendJSONBytes(b, in.AdditionalAuthenticatedData)
	}
	if in.CiphertextDataIntegrityValueAlgorithm != "" {
		b = appendField(b, false, "ciphertextDataIntegrityValueAlgorithm")
		b = jsonquote.AppendString(b, in.CiphertextDataIntegrityValueAlgorithm)
	}
	return append(b, '}')
}

func appendDecryptRequest(b []byte, in *xks.DecryptRequest) []byte {
	b = append(b, `{"requestMetadata":`...)
	b = appendMetadata(b, in.RequestMetadata)
	b = appendField(b, false, "ciphertext")
	b = appendJSONBytes(b, in.Ciphertext)
	if len(in.CiphertextMetadata) > 0 {
		b = appendField(b, false, "ciphertextMetadata")
		b = appendJSONBytes(b, in.CiphertextMetadata)
	}
	b = appendField(b, false, "encryptionAlgorithm")
	b = jsonquote.AppendString(b, in.EncryptionAlgorithm)
	if len(in.AdditionalAuthenticatedData) > 0 {
		b = appendField(b, false, "additionalAuthenticatedData")
		b = appendJSONBytes(b, in.AdditionalAuthenticatedData)
	}
	b = appendField(b, false, "initializationVector")
	b = appendJSONBytes(b, in.InitializationVector)
	b = appendField(b, false, "authenticationTag")
	b = appendJSONBytes(b, in.AuthenticationTag)
	return append(b, '}')
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// parseFlat reads data as one JSON object whose keys and values are all
// strings of printable ASCII without escapes, calling set for each member
// in order. It reports false, having perhaps called set for some members,
// when data is not of that shape or set refused a member; the caller then
// decodes data with encoding/json instead.
func parseFlat(data []byte, set func(key, val []byte) bool) bool {
	i := 0
	skip := func() {
		for i < len(data) && isSpace(data[i]) {
			i++
		}
	}
	str := func() ([]byte, bool) {
		if i >= len(data) || data[i] != '"' {
			return nil, false
		}
		i++
		start := i
		for i < len(data) {
			c := data[i]
			switch {
			case c == '"':
				i++
				return data[start : i-1], true
			case c < 0x20 || c >= 0x7f || c == '\\':
				return nil, false
			}
			i++
		}
		return nil, false
	}
	skip()
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i++
	skip()
	if i < len(data) && data[i] == '}' {
		i++
	} else {
		for {
			skip()
			k, ok := str()
			if !ok {
				return false
			}
			skip()
			if i >= len(data) || data[i] != ':' {
				return false
			}
			i++
			skip()
			v, ok := str()
			if !ok || !set(k, v) {
				return false
			}
			skip()
			if i >= len(data) {
				return false
			}
			if data[i] == '}' {
				i++
				break
			}
			if data[i] != ',' {
				return false
			}
			i++
		}
	}
	skip()
	return i == len(data)
}

// flatField is one []byte or string field of an answer for parseFlat.
type flatField struct {
	name string
	b    *[]byte
	s    *string
}

// setFlat stores val into the field named key (base64 for a []byte, as
// encoding/json decodes it). It refuses a key that encoding/json would
// match to a field only case-insensitively, and base64 that does not
// decode; unknown keys are ignored, as encoding/json ignores them.
func setFlat(fields []flatField, key, val []byte) bool {
	for _, f := range fields {
		if string(key) == f.name {
			if f.s != nil {
				*f.s = string(val)
				return true
			}
			out := make([]byte, base64.StdEncoding.DecodedLen(len(val)))
			n, err := base64.StdEncoding.Decode(out, val)
			if err != nil {
				return false
			}
			*f.b = out[:n]
			return true
		}
		if equalFoldASCII(key, f.name) {
			return false
		}
	}
	return true
}

func equalFoldASCII(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// decodeFlat stores data's members into fields through parseFlat, or
// reports false when data is of another shape (the caller then decodes it
// with encoding/json, from scratch).
func decodeFlat(data []byte, fields []flatField) bool {
	return parseFlat(data, func(k, v []byte) bool { return setFlat(fields, k, v) })
}

func decodeEncryptResponse(data []byte, out *xks.EncryptResponse) error {
	var r xks.EncryptResponse
	if decodeFlat(data, []flatField{
		{name: "authenticationTag", b: &r.AuthenticationTag},
		{name: "ciphertext", b: &r.Ciphertext},
		{name: "ciphertextDataIntegrityValue", s: &r.CiphertextDataIntegrityValue},
		{name: "ciphertextMetadata", b: &r.CiphertextMetadata},
		{name: "initializationVector", b: &r.InitializationVector},
	}) {
		*out = r
		return nil
	}
	*out = xks.EncryptResponse{}
	return json.Unmarshal(data, out)
}

func decodeDecryptResponse(data []byte, out *xks.DecryptResponse) error {
	var r xks.DecryptResponse
	if decodeFlat(data, []flatField{{name: "plaintext", b: &r.Plaintext}}) {
		*out = r
		return nil
	}
	*out = xks.DecryptResponse{}
	return json.Unmarshal(data, out)
}
