package audit

import (
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// appendEvent appends ev exactly as encoding/json marshals it (same member
// order, omitempty, HTML-safe string escaping, sorted map keys), without
// reflection: the event is encoded once per API request. ok is false for a
// value it does not know (only what render produces is handled); Marshal
// then uses encoding/json. TestAppendEventMatchesEncodingJSON holds the two
// byte for byte.
func appendEvent(b []byte, ev *Event) (_ []byte, ok bool) {
	b = append(b, `{"eventVersion":`...)
	b = appendString(b, ev.EventVersion)
	b = append(b, `,"userIdentity":`...)
	b = appendIdentity(b, &ev.UserIdentity)
	b = append(b, `,"eventTime":`...)
	b = appendString(b, ev.EventTime)
	b = append(b, `,"eventSource":`...)
	b = appendString(b, ev.EventSource)
	b = append(b, `,"eventName":`...)
	b = appendString(b, ev.EventName)
	b = append(b, `,"awsRegion":`...)
	b = appendString(b, ev.AWSRegion)
	b = append(b, `,"sourceIPAddress":`...)
	b = appendString(b, ev.SourceIPAddress)
	b = append(b, `,"userAgent":`...)
	b = appendString(b, ev.UserAgent)
	if ev.ErrorCode != "" {
		b = append(b, `,"errorCode":`...)
		b = appendString(b, ev.ErrorCode)
	}
	if ev.ErrorMessage != "" {
		b = append(b, `,"errorMessage":`...)
		b = appendString(b, ev.ErrorMessage)
	}
	b = append(b, `,"requestParameters":`...)
	if b, ok = appendValue(b, ev.RequestParameters); !ok {
		return b, false
	}
	b = append(b, `,"responseElements":`...)
	if b, ok = appendValue(b, ev.ResponseElements); !ok {
		return b, false
	}
	b = append(b, `,"requestID":`...)
	b = appendString(b, ev.RequestID)
	b = append(b, `,"eventID":`...)
	b = appendString(b, ev.EventID)
	b = append(b, `,"readOnly":`...)
	b = strconv.AppendBool(b, ev.ReadOnly)
	if len(ev.Resources) > 0 {
		b = append(b, `,"resources":[`...)
		for i, r := range ev.Resources {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"accountId":`...)
			b = appendString(b, r.AccountID)
			b = append(b, `,"type":`...)
			b = appendString(b, r.Type)
			b = append(b, `,"ARN":`...)
			b = appendString(b, r.ARN)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"eventType":`...)
	b = appendString(b, ev.EventType)
	b = append(b, `,"managementEvent":`...)
	b = strconv.AppendBool(b, ev.ManagementEvent)
	b = append(b, `,"recipientAccountId":`...)
	b = appendString(b, ev.RecipientAccountID)
	b = append(b, `,"eventCategory":`...)
	b = appendString(b, ev.EventCategory)
	return append(b, '}'), true
}

func appendIdentity(b []byte, id *UserIdentity) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, id.Type)
	b = appendOmitEmpty(b, `,"principalId":`, id.PrincipalID)
	b = appendOmitEmpty(b, `,"arn":`, id.ARN)
	b = appendOmitEmpty(b, `,"accountId":`, id.AccountID)
	b = appendOmitEmpty(b, `,"accessKeyId":`, id.AccessKeyID)
	b = appendOmitEmpty(b, `,"userName":`, id.UserName)
	if sc := id.SessionContext; sc != nil {
		si := &sc.SessionIssuer
		b = append(b, `,"sessionContext":{"sessionIssuer":{"type":`...)
		b = appendString(b, si.Type)
		b = appendOmitEmpty(b, `,"principalId":`, si.PrincipalID)
		b = append(b, `,"arn":`...)
		b = appendString(b, si.ARN)
		b = append(b, `,"accountId":`...)
		b = appendString(b, si.AccountID)
		b = append(b, `,"userName":`...)
		b = appendString(b, si.UserName)
		b = append(b, "}}"...)
	}
	return append(b, '}')
}

func appendOmitEmpty(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return appendString(append(b, name...), v)
}

// appendValue encodes what render produces: nil, strings, booleans,
// json.Numbers, and maps and lists of them.
func appendValue(b []byte, v any) (_ []byte, ok bool) {
	switch t := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return appendString(b, t), true
	case bool:
		return strconv.AppendBool(b, t), true
	case json.Number:
		if t == "" {
			return append(b, '0'), true
		}
		if !validNumber(string(t)) {
			return b, false
		}
		return append(b, t...), true
	case map[string]any:
		if t == nil {
			return append(b, "null"...), true
		}
		keys := keysPool.Get().(*[]string)
		defer keysPool.Put(keys)
		*keys = (*keys)[:0]
		for k := range t {
			*keys = append(*keys, k)
		}
		slices.Sort(*keys)
		b = append(b, '{')
		for i, k := range *keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			if b, ok = appendValue(b, t[k]); !ok {
				return b, false
			}
		}
		return append(b, '}'), true
	case []any:
		if t == nil {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i, e := range t {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = appendValue(b, e); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	}
	return b, false
}

var keysPool = sync.Pool{New: func() any { k := make([]string, 0, 16); return &k }}

// validNumber is JSON's number grammar, which encoding/json checks a
// json.Number against.
func validNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does with HTML escaping on:
// control characters, <, > and & as \u00XX (or the short escapes), invalid
// UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
