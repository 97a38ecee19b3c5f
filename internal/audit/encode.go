package audit

import (
	"encoding/json"
	"slices"
	"strconv"
	"sync"

	"github.com/keyhold/keyhold/internal/jsonquote"
)

// appendEvent appends ev exactly as encoding/json marshals it (same member
// order, omitempty, HTML-safe string escaping, sorted map keys), without
// reflection: the event is encoded once per API request. ok is false for a
// value it does not know (only what render produces is handled); Marshal
// then uses encoding/json. TestAppendEventMatchesEncodingJSON holds the two
// byte for byte.
func appendEvent(b []byte, ev *Event) (_ []byte, ok bool) {
	b = append(b, `{"eventVersion":`...)
	b = jsonquote.AppendString(b, ev.EventVersion)
	b = append(b, `,"userIdentity":`...)
	b = appendIdentity(b, &ev.UserIdentity)
	b = append(b, `,"eventTime":`...)
	b = jsonquote.AppendString(b, ev.EventTime)
	b = append(b, `,"eventSource":`...)
	b = jsonquote.AppendString(b, ev.EventSource)
	b = append(b, `,"eventName":`...)
	b = jsonquote.AppendString(b, ev.EventName)
	b = append(b, `,"awsRegion":`...)
	b = jsonquote.AppendString(b, ev.AWSRegion)
	b = append(b, `,"sourceIPAddress":`...)
	b = jsonquote.AppendString(b, ev.SourceIPAddress)
	b = append(b, `,"userAgent":`...)
	b = jsonquote.AppendString(b, ev.UserAgent)
	if ev.ErrorCode != "" {
		b = append(b, `,"errorCode":`...)
		b = jsonquote.AppendString(b, ev.ErrorCode)
	}
	if ev.ErrorMessage != "" {
		b = append(b, `,"errorMessage":`...)
		b = jsonquote.AppendString(b, ev.ErrorMessage)
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
	b = jsonquote.AppendString(b, ev.RequestID)
	b = append(b, `,"eventID":`...)
	b = jsonquote.AppendString(b, ev.EventID)
	b = append(b, `,"readOnly":`...)
	b = strconv.AppendBool(b, ev.ReadOnly)
	if len(ev.Resources) > 0 {
		b = appendResources(b, ev.Resources)
	}
	b = append(b, `,"eventType":`...)
	b = jsonquote.AppendString(b, ev.EventType)
	b = append(b, `,"managementEvent":`...)
	b = strconv.AppendBool(b, ev.ManagementEvent)
	b = append(b, `,"recipientAccountId":`...)
	b = jsonquote.AppendString(b, ev.RecipientAccountID)
	b = append(b, `,"eventCategory":`...)
	b = jsonquote.AppendString(b, ev.EventCategory)
	return append(b, '}'), true
}

func appendIdentity(b []byte, id *UserIdentity) []byte {
	b = append(b, `{"type":`...)
	b = jsonquote.AppendString(b, id.Type)
	b = appendOmitEmpty(b, `,"principalId":`, id.PrincipalID)
	b = appendOmitEmpty(b, `,"arn":`, id.ARN)
	b = appendOmitEmpty(b, `,"accountId":`, id.AccountID)
	b = appendOmitEmpty(b, `,"accessKeyId":`, id.AccessKeyID)
	b = appendOmitEmpty(b, `,"userName":`, id.UserName)
	if sc := id.SessionContext; sc != nil {
		si := &sc.SessionIssuer
		b = append(b, `,"sessionContext":{"sessionIssuer":{"type":`...)
		b = jsonquote.AppendString(b, si.Type)
		b = appendOmitEmpty(b, `,"principalId":`, si.PrincipalID)
		b = append(b, `,"arn":`...)
		b = jsonquote.AppendString(b, si.ARN)
		b = append(b, `,"accountId":`...)
		b = jsonquote.AppendString(b, si.AccountID)
		b = append(b, `,"userName":`...)
		b = jsonquote.AppendString(b, si.UserName)
		b = append(b, "}}"...)
	}
	return append(b, '}')
}

func appendOmitEmpty(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return jsonquote.AppendString(append(b, name...), v)
}

// appendValue encodes what render produces: nil, strings, booleans,
// json.Numbers, and maps and lists of them.
func appendValue(b []byte, v any) (_ []byte, ok bool) {
	switch t := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return jsonquote.AppendString(b, t), true
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
			b = jsonquote.AppendString(b, k)
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
