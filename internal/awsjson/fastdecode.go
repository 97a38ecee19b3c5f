package awsjson

import (
	"encoding/base64"
	"encoding/json"
	"strconv"

	"github.com/keyhold/keyhold/internal/jsonscan"
)

// MemberDecoder is an input struct that decodes its own members from a
// body the fast check accepted, without encoding/json's reflection: the
// hot operations' inputs (Encrypt, Decrypt, GenerateDataKey...). What it
// stores must be exactly what json.Unmarshal would store (nil and empty
// kept apart); the tests of each implementation hold it to that.
type MemberDecoder interface {
	// DecodeMember decodes the value of member name from v. It returns
	// false for a member it does not decode itself: DecodeFast then
	// gives up and the caller decodes a fresh value with DecodeInput.
	DecodeMember(name string, v *Value) bool
}

// Value is one member's value inside a body that Valid and the fast check
// accepted: the fast check has already matched its type to the model's.
type Value struct {
	sc scanner
	ok bool // false once a value could not be decoded as asked
}

// DecodeFast validates body against op's input shape as DecodeInput does
// and, when the fast check passes, decodes it into d. It returns false
// whenever it does not decode (a problem, an unusual body, a member d does
// not decode itself); d may then hold part of the body, and the caller must
// decode a fresh value with DecodeInput, which also words any error.
func (m *Model) DecodeFast(op string, body []byte, d MemberDecoder) bool {
	o, ok := m.ops[op]
	if !ok || o.Input == "" || !jsonscan.Valid(body) {
		return false
	}
	in := m.shapes[o.Input]
	sc := scanner{jsonscan.Scanner{B: body}}
	if !sc.fastOK(in) {
		return false
	}
	v := Value{sc: scanner{jsonscan.Scanner{B: body}}, ok: true}
	if v.sc.Peek() != '{' {
		return false // a top-level null: json.Unmarshal's business
	}
	v.sc.I++
	if v.sc.Peek() == '}' {
		return true
	}
	for {
		// The fast check accepted the body: member names are strings
		// without escapes, each followed by ':' and a value.
		name, _ := v.sc.String()
		v.sc.Peek()
		v.sc.I++ // ':'
		v.sc.Peek()
		if !d.DecodeMember(unsafeString(name), &v) || !v.ok {
			return false
		}
		if v.sc.Peek() == ',' {
			v.sc.I++
			v.sc.Peek()
			continue
		}
		return true
	}
}

// null consumes a null; json.Unmarshal leaves a string, number or boolean
// as it was and sets a pointer, map or slice to nil, all of which a fresh
// value already is.
func (v *Value) null() bool {
	if v.sc.Peek() == 'n' {
		v.sc.I += 4
		return true
	}
	return false
}

// str reads a string token as json.Unmarshal decodes it.
func (v *Value) str() string {
	start := v.sc.I
	raw, esc := v.sc.String()
	if !esc {
		return string(raw)
	}
	var s string
	if json.Unmarshal(v.sc.B[start:v.sc.I], &s) != nil {
		v.ok = false
	}
	return s
}

// String decodes a string member.
func (v *Value) String(dst *string) bool {
	if v.null() {
		return true
	}
	if v.sc.Peek() != '"' {
		return false
	}
	*dst = v.str()
	return true
}

// Blob decodes a base64 member as json.Unmarshal does into a []byte.
func (v *Value) Blob(dst *[]byte) bool {
	if v.null() {
		return true
	}
	if v.sc.Peek() != '"' {
		return false
	}
	raw, esc := v.sc.String()
	if esc {
		return false
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(raw)))
	n, err := base64.StdEncoding.Decode(b, raw)
	if err != nil {
		return false
	}
	*dst = b[:n]
	return true
}

// StringMap decodes a map of strings (a null value is stored as "", as
// json.Unmarshal stores it).
func (v *Value) StringMap(dst *map[string]string) bool {
	if v.null() {
		return true
	}
	if v.sc.Peek() != '{' {
		return false
	}
	v.sc.I++
	m := *dst
	if m == nil {
		m = make(map[string]string)
		*dst = m
	}
	if v.sc.Peek() == '}' {
		v.sc.I++
		return true
	}
	for {
		if v.sc.Peek() != '"' {
			return false
		}
		k := v.str()
		if v.sc.Peek() != ':' {
			return false
		}
		v.sc.I++
		var s string
		if !v.String(&s) {
			return false
		}
		m[k] = s
		switch v.sc.Peek() {
		case ',':
			v.sc.I++
		case '}':
			v.sc.I++
			return true
		default:
			return false
		}
	}
}

// StringList decodes a list of strings ([] is an empty, non-nil slice, as
// json.Unmarshal makes it).
func (v *Value) StringList(dst *[]string) bool {
	if v.null() {
		return true
	}
	if v.sc.Peek() != '[' {
		return false
	}
	v.sc.I++
	out := []string{}
	if v.sc.Peek() == ']' {
		v.sc.I++
		*dst = out
		return true
	}
	for {
		if v.sc.Peek() != '"' {
			return false // null elements never pass the fast check
		}
		out = append(out, v.str())
		switch v.sc.Peek() {
		case ',':
			v.sc.I++
		case ']':
			v.sc.I++
			*dst = out
			return true
		default:
			return false
		}
	}
}

// Bool decodes a boolean member into a *bool.
func (v *Value) Bool(dst **bool) bool {
	if v.null() {
		return true
	}
	switch v.sc.Peek() {
	case 't':
		v.sc.I += 4
		b := true
		*dst = &b
	case 'f':
		v.sc.I += 5
		b := false
		*dst = &b
	default:
		return false
	}
	return true
}

// Int decodes an integer member (the fast check let through only integers
// within the shape's range).
func (v *Value) Int(dst *int) bool {
	if v.null() {
		return true
	}
	c := v.sc.Peek()
	if c != '-' && (c < '0' || c > '9') {
		return false
	}
	i, err := strconv.ParseInt(unsafeString(v.sc.Number()), 10, 0)
	if err != nil {
		return false
	}
	*dst = int(i)
	return true
}

// JSONAppender is an output that encodes itself, exactly as json.Marshal
// encodes it, without reflection: the hot operations' outputs. The tests of
// each implementation hold it to json.Marshal.
type JSONAppender interface {
	AppendJSON(b []byte) []byte
}
