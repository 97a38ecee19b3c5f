package audit

import (
	"bytes"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/keyhold/keyhold/internal/blob"
	"github.com/keyhold/keyhold/internal/jsonquote"
	"github.com/keyhold/keyhold/internal/jsonscan"
)

// The direct encoder writes an event's JSON line straight from the record:
// request and response bodies are rendered against the model into the line
// as they are read (no maps of values, no sorting of map keys unless the body
// is out of order), strings are read in place from the bodies, the event
// time and id are appended, not formatted into strings. It writes exactly
// what json.Marshal(Event(r)) writes (TestAppendMatchesEvent and
// FuzzAppendMatchesEvent hold the two equal); Marshal uses it whenever no
// error message has to be scrubbed of what the event drops.
//
// What it reads from the bodies are views, not copies: it keeps none of
// them once it returns (Event, whose values outlive the call, copies).

// appendDirect appends r's event to b; ok is false when r takes the Event
// path (an error message to scrub, a value the line writer does not know).
func (e *Encoder) appendDirect(b []byte, r *Record) (_ []byte, ok bool) {
	if r.ErrorMessage != "" {
		return b, false
	}
	start := len(b)
	id := identityOf(r)
	b = append(b, `{"eventVersion":"1.08","userIdentity":`...)
	b = appendIdentity(b, &id)
	b = append(b, `,"eventTime":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339) // digits, '-', ':', 'T', 'Z', '+': nothing to escape
	b = append(b, `","eventSource":`...)
	src := e.sources[r.TargetPrefix]
	if src != nil {
		b = jsonquote.AppendString(b, src.eventSource)
	} else {
		b = append(b, `"kms.amazonaws.com"`...)
	}
	b = append(b, `,"eventName":`...)
	b = jsonquote.AppendString(b, r.Operation)
	b = append(b, `,"awsRegion":`...)
	b = jsonquote.AppendString(b, e.region(r))
	b = append(b, `,"sourceIPAddress":`...)
	b = jsonquote.AppendString(b, r.SourceIP)
	b = append(b, `,"userAgent":`...)
	b = jsonquote.AppendString(b, r.UserAgent)
	if c := errorCode(r.ErrorCode); c != "" {
		b = append(b, `,"errorCode":`...)
		b = jsonquote.AppendString(b, c)
	}
	ro := readOnly(r.Operation)
	var reqRefs, respRefs keyRefs
	var ids responseIDs
	b = append(b, `,"requestParameters":`...)
	op, known := modelOp{}, false
	if src != nil {
		op, known = src.ops[r.Operation]
	}
	if known {
		if r.ErrorCode == "" && ro {
			ids = parseIDsView(r.Response)
		}
		if b, reqRefs, ok = src.appendBody(b, op.Input, r.Request); !ok {
			return b[:start], false
		}
		b = append(b, `,"responseElements":`...)
		if r.ErrorCode == "" && !ro {
			if b, respRefs, ok = src.appendBody(b, op.Output, r.Response); !ok {
				return b[:start], false
			}
		} else {
			b = append(b, "null"...)
		}
	} else {
		b = append(b, `null,"responseElements":null`...)
	}
	b = append(b, `,"requestID":`...)
	b = jsonquote.AppendString(b, r.RequestID)
	b = append(b, `,"eventID":`...)
	if e.randomIDs {
		b = appendUUID(b)
	} else {
		b = jsonquote.AppendString(b, e.cfg.NewEventID())
	}
	b = append(b, `,"readOnly":`...)
	b = strconv.AppendBool(b, ro)
	recipient := r.Caller.AccountID
	if r.TargetPrefix == "TrentService" {
		var buf [4]Resource
		res := e.keyResourcesInto(buf[:0], r, reqRefs, respRefs, ids)
		if len(res) > 0 {
			recipient = res[0].AccountID
			b = appendResources(b, res)
		}
	}
	if recipient == "" {
		recipient = e.cfg.AccountID
	}
	b = append(b, `,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":`...)
	b = jsonquote.AppendString(b, recipient)
	b = append(b, `,"eventCategory":"Management"}`...)
	return b, true
}

// appendUUID appends a quoted random (version 4) UUID, as newUUID makes.
func appendUUID(b []byte) []byte {
	b = append(b, '"')
	b = blob.AppendUUID(b, randomUUID())
	return append(b, '"')
}

func appendResources(b []byte, res []Resource) []byte {
	b = append(b, `,"resources":[`...)
	for i, r := range res {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"accountId":`...)
		b = jsonquote.AppendString(b, r.AccountID)
		b = append(b, `,"type":`...)
		b = jsonquote.AppendString(b, r.Type)
		b = append(b, `,"ARN":`...)
		b = jsonquote.AppendString(b, r.ARN)
		b = append(b, '}')
	}
	return append(b, ']')
}

// view is b as a string without a copy, for reads that end before the
// bytes can change (the record's bodies are fixed during Marshal).
func view(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// parseIDsView is parseIDs with strings that are views of b.
func parseIDsView(b []byte) responseIDs {
	var ids responseIDs
	ids.KeyId = memberView(b, `"KeyId":"`)
	ids.SourceKeyId = memberView(b, `"SourceKeyId":"`)
	if i := bytes.Index(b, []byte(`"KeyMetadata":{`)); i >= 0 {
		ids.KeyMetadata.Arn = memberView(b[i:], `"Arn":"`)
	}
	return ids
}

func memberView(b []byte, prefix string) string {
	i := bytes.Index(b, []byte(prefix))
	if i < 0 {
		return ""
	}
	rest := b[i+len(prefix):]
	j := bytes.IndexAny(rest, `"\`)
	if j < 0 || rest[j] != '"' {
		return ""
	}
	return view(rest[:j])
}

// appendBody appends what readBody renders from body, encoded, and returns
// the same keyRefs; ok is false if the render holds a value appendValue
// does not know.
func (s *source) appendBody(b []byte, shapeName string, body []byte) (_ []byte, refs keyRefs, ok bool) {
	if len(bytes.TrimSpace(body)) == 0 {
		return append(b, "null"...), keyRefs{}, true
	}
	if !jsonscan.Valid(body) {
		// The rare path, as readBody takes it.
		m := parseObject(body)
		b, ok = appendValue(b, s.render(shapeName, m, nil))
		return b, refsFromMap(m), ok
	}
	str := view(body)
	sc := &jsonScan{Scanner: jsonscan.Scanner{B: body}, str: str}
	if sc.Peek() != '{' {
		return append(b, "null"...), keyRefs{}, true
	}
	refs = readRefs(sc)
	if shapeName == "" {
		return append(b, "null"...), refs, true
	}
	sc = &jsonScan{Scanner: jsonscan.Scanner{B: body}, str: str}
	mark := len(b)
	b, ok, members := s.appendAt(b, shapeName, sc)
	if !ok || members == 0 {
		// Nothing rendered, or an empty object: CloudTrail's null.
		b = append(b[:mark], "null"...)
	}
	return b, refs, true
}

// appendAt is valueAt for the JSON value at sc, which it consumes, with the
// rendered value appended to b instead of returned. ok is false (and b as
// it was) when valueAt drops the value; members is the number of members of
// a rendered structure or map, -1 for other values.
func (s *source) appendAt(b []byte, name string, sc *jsonScan) (_ []byte, ok bool, members int) {
	sh := s.shapes[name]
	c := sc.Peek()
	if sh == nil || c == 'n' || sh.Type == "blob" {
		sc.Skip()
		return b, false, -1
	}
	if sh.Sensitive {
		sc.Skip()
		return append(b, `"`+Hidden+`"`...), true, -1
	}
	switch sh.Type {
	case "structure":
		if c != '{' {
			break
		}
		b, n := s.appendObject(b, sc, sh, false)
		return b, true, n
	case "map":
		if c != '{' || sh.Value == nil {
			break
		}
		b, n := s.appendObject(b, sc, sh, true)
		return b, true, n
	case "list":
		if c != '[' || sh.Member == nil {
			break
		}
		sc.I++
		b = append(b, '[')
		if sc.Peek() == ']' {
			sc.I++
			return append(b, ']'), true, -1
		}
		n := 0
		for {
			mark := len(b)
			if n > 0 {
				b = append(b, ',')
			}
			var elemOK bool
			if b, elemOK, _ = s.appendAt(b, sh.Member.Shape, sc); elemOK {
				n++
			} else {
				b = b[:mark]
			}
			if sc.Peek() == ',' {
				sc.I++
				continue
			}
			sc.I++ // ']'
			return append(b, ']'), true, -1
		}
	case "string":
		if c == '"' {
			return jsonquote.AppendString(b, sc.stringToken()), true, -1
		}
	case "boolean":
		if c == 't' || c == 'f' {
			sc.Skip()
			return strconv.AppendBool(b, c == 't'), true, -1
		}
	case "integer", "long", "double", "float":
		if c == '-' || (c >= '0' && c <= '9') {
			// A number token of a body Valid accepted: what encoding/json
			// writes for the json.Number.
			return append(b, sc.numberToken()...), true, -1
		}
	case "timestamp":
		if c == '-' || (c >= '0' && c <= '9') {
			f, err := strconv.ParseFloat(sc.numberToken(), 64)
			if err != nil {
				return b, false, -1
			}
			sec := int64(f)
			b = append(b, '"')
			b = time.Unix(sec, int64((f-float64(sec))*1e9)).UTC().AppendFormat(b, cloudTrailDate)
			return append(b, '"'), true, -1
		}
	}
	sc.Skip()
	return b, false, -1
}

// member is one rendered member of an object being appended: its key
// (CloudTrail's name, or the map key) and where `"key":value` sits in b;
// ok false for a member that was dropped (it still deletes an earlier
// occurrence of its key, as valueAt's delete does).
type member struct {
	key        string
	start, end int
	ok         bool
}

// appendObject appends a structure (isMap false: known members only,
// renamed) or a map at sc, members in encoding/json's order (sorted keys),
// the last occurrence of a repeated key deciding. It returns the number of
// members written.
func (s *source) appendObject(b []byte, sc *jsonScan, sh *shape, isMap bool) ([]byte, int) {
	var buf [16]member
	ms := buf[:0]
	open := len(b)
	b = append(b, '{')
	inOrder := true // keys increasing, none dropped or repeated: b is final
	sc.members(func(k string) {
		var key, valueShape string
		if isMap {
			key, valueShape = k, sh.Value.Shape
		} else {
			ref, known := sh.Members[k]
			if !known {
				sc.Skip()
				return
			}
			key, valueShape = sh.lower[k], ref.Shape
		}
		mark := len(b)
		if len(b) > open+1 {
			b = append(b, ',')
		}
		pair := len(b)
		b = jsonquote.AppendString(b, key)
		b = append(b, ':')
		var ok bool
		b, ok, _ = s.appendAt(b, valueShape, sc)
		if !ok {
			b = b[:mark]
			inOrder = false
			ms = append(ms, member{key: key})
			return
		}
		if n := len(ms); n > 0 && ms[n-1].key >= key {
			inOrder = false
		}
		ms = append(ms, member{key: key, start: pair, end: len(b), ok: true})
	})
	if inOrder {
		return append(b, '}'), len(ms)
	}
	// Out of order, repeated or dropped keys: keep each key's last
	// occurrence if it rendered, sort, and write the pairs again.
	var kbuf [16]member
	keep := kbuf[:0]
	for i, m := range ms {
		last := true
		for _, later := range ms[i+1:] {
			if later.key == m.key {
				last = false
				break
			}
		}
		if last && m.ok {
			keep = append(keep, m)
		}
	}
	for i := 1; i < len(keep); i++ { // insertion sort: a handful of keys
		for j := i; j > 0 && strings.Compare(keep[j-1].key, keep[j].key) > 0; j-- {
			keep[j-1], keep[j] = keep[j], keep[j-1]
		}
	}
	pairs := append([]byte(nil), b[open+1:]...)
	b = append(b[:open], '{')
	for i, m := range keep {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, pairs[m.start-open-1:m.end-open-1]...)
	}
	return append(b, '}'), len(keep)
}

// keyResourcesInto is keyResources appending to out (a caller's array, so
// that the common event allocates nothing for its resources).
func (e *Encoder) keyResourcesInto(out []Resource, r *Record, req, resp keyRefs, ids responseIDs) []Resource {
	for _, c := range [...]struct {
		s           string
		fromRequest bool
	}{
		{resp.MetadataArn, false}, {resp.KeyId, false}, {resp.SourceKeyId, false},
		{ids.KeyMetadata.Arn, false}, {ids.KeyId, false}, {ids.SourceKeyId, false},
		{req.KeyId, true}, {req.SourceKeyId, true}, {req.DestinationKeyId, true}, {req.TargetKeyId, true},
	} {
		out = e.addKeyResource(out, r, c.s, c.fromRequest)
	}
	return out
}

// addKeyResource is keyResources' add.
func (e *Encoder) addKeyResource(out []Resource, r *Record, s string, fromRequest bool) []Resource {
	if s == "" {
		return out
	}
	arn := s
	if !strings.HasPrefix(s, "arn:") {
		if !fromRequest || !isKeyID(s) || r.Caller.AccountID == "" {
			return out
		}
		arn = "arn:aws:kms:" + e.region(r) + ":" + r.Caller.AccountID + ":key/" + s
	}
	parts, ok := splitARN(arn)
	if !ok || parts[2] != "kms" || !strings.HasPrefix(parts[5], "key/") {
		return out
	}
	for _, o := range out {
		if o.ARN == arn {
			return out
		}
	}
	return append(out, Resource{AccountID: parts[4], Type: "AWS::KMS::Key", ARN: arn})
}
