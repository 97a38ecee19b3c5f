package audit

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/keyhold/keyhold/internal/jsonscan"
)

// The streaming renderer reads a request or response body in place against
// the model: blobs (plaintexts, ciphertexts, data keys) are skipped without
// being decoded, strings are slices of one copy of the body, member names
// come precomputed from the model. It renders exactly what value renders
// from the decoded body (TestStreamingRenderMatchesMapRender holds the two
// equal); Event uses it when no error message has to be scrubbed of what
// was dropped.

// keyRefs are the members of a body that can name keys, as keyResources
// reads them: top-level strings, and KeyMetadata.Arn.
type keyRefs struct {
	KeyId, SourceKeyId, DestinationKeyId, TargetKeyId, MetadataArn string
}

func refsFromMap(m map[string]any) keyRefs {
	str := func(v any) string { s, _ := v.(string); return s }
	r := keyRefs{KeyId: str(m["KeyId"]), SourceKeyId: str(m["SourceKeyId"]),
		DestinationKeyId: str(m["DestinationKeyId"]), TargetKeyId: str(m["TargetKeyId"])}
	if md, ok := m["KeyMetadata"].(map[string]any); ok {
		r.MetadataArn = str(md["Arn"])
	}
	return r
}

// jsonScan walks a byte slice that jsonscan.Valid accepted; str is the same
// bytes as a string, so that values can be sliced from it.
type jsonScan struct {
	jsonscan.Scanner
	str string
}

// stringToken reads a string token and returns its decoded value.
func (sc *jsonScan) stringToken() string {
	start := sc.I
	raw, escaped := sc.String()
	if !escaped && ascii(raw) {
		return sc.str[start+1 : sc.I-1]
	}
	// Escapes or non-ASCII (invalid UTF-8 becomes U+FFFD): let
	// encoding/json decode it, as the map path does.
	var s string
	json.Unmarshal(sc.B[start:sc.I], &s)
	return s
}

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func (sc *jsonScan) numberToken() string {
	start := sc.I
	sc.Number()
	return sc.str[start:sc.I]
}

// members calls fn for each member of the object at sc (positioned on its
// '{'), with sc on the member's value; fn must consume the value.
func (sc *jsonScan) members(fn func(name string)) {
	sc.I++ // '{'
	if sc.Peek() == '}' {
		sc.I++
		return
	}
	for {
		sc.Peek()
		name := sc.stringToken()
		sc.Peek()
		sc.I++ // ':'
		fn(name)
		if sc.Peek() == ',' {
			sc.I++
			continue
		}
		sc.I++ // '}'
		return
	}
}

// readBody renders body against shapeName as render(shapeName,
// parseObject(body), nil) does, and reads its keyRefs as
// refsFromMap(parseObject(body)) does.
func (s *source) readBody(shapeName string, body []byte) (any, keyRefs) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, keyRefs{}
	}
	if !jsonscan.Valid(body) {
		// What json.Decoder still reads (a value followed by junk) is
		// the map path's business.
		m := parseObject(body)
		return s.render(shapeName, m, nil), refsFromMap(m)
	}
	str := string(body)
	sc := &jsonScan{Scanner: jsonscan.Scanner{B: body}, str: str}
	if sc.Peek() != '{' {
		return nil, keyRefs{}
	}
	refs := readRefs(sc)
	if shapeName == "" {
		return nil, refs
	}
	sc = &jsonScan{Scanner: jsonscan.Scanner{B: body}, str: str}
	out, ok := s.valueAt(shapeName, sc)
	if m, isMap := out.(map[string]any); !ok || (isMap && len(m) == 0) {
		return nil, refs
	}
	return out, refs
}

// readRefs reads the keyRefs of the object at sc.
func readRefs(sc *jsonScan) keyRefs {
	var r keyRefs
	str := func(dst *string) {
		*dst = "" // the last occurrence wins, whatever its type
		if sc.Peek() == '"' {
			*dst = sc.stringToken()
			return
		}
		sc.Skip()
	}
	sc.members(func(name string) {
		switch name {
		case "KeyId":
			str(&r.KeyId)
		case "SourceKeyId":
			str(&r.SourceKeyId)
		case "DestinationKeyId":
			str(&r.DestinationKeyId)
		case "TargetKeyId":
			str(&r.TargetKeyId)
		case "KeyMetadata":
			r.MetadataArn = ""
			if sc.Peek() != '{' {
				sc.Skip()
				return
			}
			sc.members(func(name string) {
				if name == "Arn" {
					str(&r.MetadataArn)
					return
				}
				sc.Skip()
			})
		default:
			sc.Skip()
		}
	})
	return r
}

// valueAt is value for the JSON value at sc, which it consumes.
func (s *source) valueAt(name string, sc *jsonScan) (any, bool) {
	sh := s.shapes[name]
	c := sc.Peek()
	if sh == nil || c == 'n' || sh.Type == "blob" {
		sc.Skip()
		return nil, false
	}
	if sh.Sensitive {
		sc.Skip()
		return Hidden, true
	}
	switch sh.Type {
	case "structure":
		if c != '{' {
			break
		}
		out := make(map[string]any, 4)
		sc.members(func(k string) {
			ref, known := sh.Members[k]
			if !known {
				sc.Skip()
				return
			}
			lk := sh.lower[k]
			if rv, ok := s.valueAt(ref.Shape, sc); ok {
				out[lk] = rv
			} else {
				delete(out, lk) // a repeated member: the last one counts
			}
		})
		return out, true
	case "list":
		if c != '[' || sh.Member == nil {
			break
		}
		sc.I++
		out := make([]any, 0, 4)
		if sc.Peek() == ']' {
			sc.I++
			return out, true
		}
		for {
			if rv, ok := s.valueAt(sh.Member.Shape, sc); ok {
				out = append(out, rv)
			}
			if sc.Peek() == ',' {
				sc.I++
				continue
			}
			sc.I++ // ']'
			return out, true
		}
	case "map":
		if c != '{' || sh.Value == nil {
			break
		}
		out := make(map[string]any, 4)
		sc.members(func(k string) {
			if rv, ok := s.valueAt(sh.Value.Shape, sc); ok {
				out[k] = rv
			} else {
				delete(out, k)
			}
		})
		return out, true
	case "string":
		if c == '"' {
			return sc.stringToken(), true
		}
	case "boolean":
		if c == 't' || c == 'f' {
			sc.Skip()
			return c == 't', true
		}
	case "integer", "long", "double", "float":
		if c == '-' || (c >= '0' && c <= '9') {
			return json.Number(sc.numberToken()), true
		}
	case "timestamp":
		if c == '-' || (c >= '0' && c <= '9') {
			f, err := strconv.ParseFloat(sc.numberToken(), 64)
			if err != nil {
				return nil, false
			}
			sec := int64(f)
			return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC().Format(cloudTrailDate), true
		}
	}
	sc.Skip()
	return nil, false
}
