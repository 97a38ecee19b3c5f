package awsjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/keyhold/keyhold/internal/jsonscan"
)

func serializationError(err error) *Error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case asErr(err, &te):
		return Errorf(SerializationException, 400, "Value for %q is a %s, which cannot be converted to %s.", te.Field, te.Value, te.Type.String())
	case asErr(err, &se):
		return Errorf(SerializationException, 400, "Malformed JSON at offset %d.", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(SerializationException, 400, "Malformed JSON: the document ends too early.")
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return Errorf(SerializationException, 400, "Unrecognized field %s.", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return Errorf(SerializationException, 400, "The request body could not be parsed as JSON.")
	}
}

func asErr[T error](err error, target *T) bool {
	for err != nil {
		if t, ok := err.(T); ok {
			*target = t
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// Model is the request-validation part of an AWS service model (the format
// of the JSON models the SDKs are generated from, trimmed of documentation).
type Model struct {
	ops    map[string]modelOp
	shapes map[string]*shape
}

type modelOp struct {
	Input  string   `json:"input"`
	Output string   `json:"output"`
	Errors []string `json:"errors"`
}

type shapeRef struct {
	Shape string `json:"shape"`
}

type shape struct {
	Type      string              `json:"type"`
	Members   map[string]shapeRef `json:"members"`
	Required  []string            `json:"required"`
	Min       *float64            `json:"min"`
	Max       *float64            `json:"max"`
	Pattern   string              `json:"pattern"`
	Enum      []string            `json:"enum"`
	Member    *shapeRef           `json:"member"`
	Key       *shapeRef           `json:"key"`
	Value     *shapeRef           `json:"value"`
	Sensitive bool                `json:"sensitive"`
	re        *regexp.Regexp

	// Resolved by compile for the fast check.
	fast                              *compiled
	memberShape, keyShape, valueShape *shape
}

// LoadModel parses a (trimmed) AWS JSON service model.
func LoadModel(data []byte) (*Model, error) {
	var raw struct {
		Operations map[string]modelOp `json:"operations"`
		Shapes     map[string]*shape  `json:"shapes"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("awsjson.LoadModel: %w", err)
	}
	for _, s := range raw.Shapes {
		if s.Pattern != "" {
			// Java patterns the Go engine cannot compile are skipped: the
			// domain still checks what matters for those fields.
			if re, err := regexp.Compile(s.Pattern); err == nil {
				s.re = re
			}
		}
	}
	m := &Model{ops: raw.Operations, shapes: raw.Shapes}
	m.compile()
	return m, nil
}

// HasOperation reports whether the model defines op.
func (m *Model) HasOperation(op string) bool { _, ok := m.ops[op]; return ok }

// DecodeInput validates body against op's input shape (types, unknown
// members, required members, lengths, ranges, enums, patterns) and then
// decodes it into v. Type problems are SerializationExceptions; constraint
// violations are one ValidationException listing every violation, worded as
// AWS words them.
func (m *Model) DecodeInput(op string, body []byte, v any) error {
	o, ok := m.ops[op]
	if !ok {
		return Errorf(UnknownOperation, 400, "Operation %s is not supported.", op)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if o.Input != "" && jsonscan.Valid(body) {
		sc := scanner{jsonscan.Scanner{B: body}}
		if sc.fastOK(m.shapes[o.Input]) {
			return decodeInto(body, v)
		}
	}
	if err := m.checkBody(o, body); err != nil {
		return err
	}
	return decodeInto(body, v)
}

func decodeInto(body []byte, v any) error {
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return serializationError(err)
	}
	return nil
}

// checkBody is the full walk: decode into generic values, then check them
// against the input shape, collecting every violation with AWS's wording.
func (m *Model) checkBody(o modelOp, body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return serializationError(err)
	}
	if dec.More() {
		return Errorf(SerializationException, 400, "Unexpected content after the end of the JSON document.")
	}
	if o.Input != "" {
		var vs validation
		if err := m.check(o.Input, doc, "", &vs); err != nil {
			return err
		}
		if len(vs) > 0 {
			return vs.err()
		}
	}
	return nil
}

type validation []string

func (vs validation) err() *Error {
	n := "1 validation error detected: "
	if len(vs) > 1 {
		n = fmt.Sprintf("%d validation errors detected: ", len(vs))
	}
	return &Error{Type: ValidationException, Status: 400, Message: n + strings.Join(vs, "; ")}
}

func (vs *validation) add(s *shape, val any, path, constraint string) {
	if s.Sensitive {
		*vs = append(*vs, fmt.Sprintf("Value at '%s' failed to satisfy constraint: %s", path, constraint))
		return
	}
	*vs = append(*vs, fmt.Sprintf("Value '%v' at '%s' failed to satisfy constraint: %s", shortValue(val), path, constraint))
}

func shortValue(v any) string {
	s := fmt.Sprint(v)
	if m, ok := v.(map[string]any); ok {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		s = "{" + strings.Join(keys, ", ") + "}"
	}
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	return s
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "STRING_VALUE"
	case json.Number:
		return "NUMBER_VALUE"
	case bool:
		return "BOOLEAN_VALUE"
	case []any:
		return "START_ARRAY"
	case map[string]any:
		return "START_OBJECT"
	}
	return "VALUE"
}

func mismatch(v any, want, path string) *Error {
	return Errorf(SerializationException, 400, "%s can not be converted to %s (at '%s').", typeName(v), want, path)
}

func (m *Model) check(shapeName string, v any, path string, vs *validation) *Error {
	s := m.shapes[shapeName]
	if s == nil {
		return nil
	}
	if v == nil {
		return nil // JSON null is an absent member
	}
	switch s.Type {
	case "structure":
		obj, ok := v.(map[string]any)
		if !ok {
			return mismatch(v, "a structure", path)
		}
		for k := range obj {
			if _, known := s.Members[k]; !known {
				return Errorf(SerializationException, 400, "Unrecognized field %q at '%s'.", k, strings.TrimPrefix(path+"."+k, "."))
			}
		}
		for _, r := range s.Required {
			if obj[r] == nil {
				*vs = append(*vs, fmt.Sprintf("Value null at '%s' failed to satisfy constraint: Member must not be null", joinPath(path, lowerFirst(r))))
			}
		}
		names := make([]string, 0, len(obj))
		for k := range obj {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if err := m.check(s.Members[k].Shape, obj[k], joinPath(path, lowerFirst(k)), vs); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return mismatch(v, "a String", path)
		}
		n := float64(utf8.RuneCountInString(str))
		m.checkLen(s, str, n, path, vs)
		if len(s.Enum) > 0 && !contains(s.Enum, str) {
			vs.add(s, str, path, "Member must satisfy enum value set: ["+strings.Join(s.Enum, ", ")+"]")
		} else if s.re != nil && !s.re.MatchString(str) {
			vs.add(s, str, path, "Member must satisfy regular expression pattern: "+s.Pattern)
		}
	case "blob":
		str, ok := v.(string)
		if !ok {
			return mismatch(v, "a Blob", path)
		}
		b, err := base64.StdEncoding.DecodeString(str)
		if err != nil {
			return Errorf(SerializationException, 400, "Value at '%s' is not valid base64.", path)
		}
		m.checkLen(s, str, float64(len(b)), path, vs)
	case "integer", "long":
		num, ok := v.(json.Number)
		if !ok {
			return mismatch(v, "an Integer", path)
		}
		i, err := num.Int64()
		if err != nil || (s.Type == "integer" && (i > math.MaxInt32 || i < math.MinInt32)) {
			return Errorf(SerializationException, 400, "Value '%s' at '%s' is not a valid integer.", num, path)
		}
		if s.Min != nil && float64(i) < *s.Min {
			vs.add(s, i, path, fmt.Sprintf("Member must have value greater than or equal to %v", *s.Min))
		}
		if s.Max != nil && float64(i) > *s.Max {
			vs.add(s, i, path, fmt.Sprintf("Member must have value less than or equal to %v", *s.Max))
		}
	case "double", "float":
		if _, ok := v.(json.Number); !ok {
			return mismatch(v, "a Double", path)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return mismatch(v, "a Boolean", path)
		}
	case "timestamp":
		if _, ok := v.(json.Number); !ok {
			return mismatch(v, "a Timestamp", path)
		}
	case "list":
		arr, ok := v.([]any)
		if !ok {
			return mismatch(v, "a List", path)
		}
		m.checkLen(s, arr, float64(len(arr)), path, vs)
		for i, e := range arr {
			if e == nil {
				vs.add(s, arr, path, "Member must not contain null elements")
				continue
			}
			if err := m.check(s.Member.Shape, e, fmt.Sprintf("%s.%d.member", path, i+1), vs); err != nil {
				return err
			}
		}
	case "map":
		obj, ok := v.(map[string]any)
		if !ok {
			return mismatch(v, "a Map", path)
		}
		m.checkLen(s, obj, float64(len(obj)), path, vs)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := m.check(s.Key.Shape, k, path+".key", vs); err != nil {
				return err
			}
			if obj[k] == nil {
				continue
			}
			if err := m.check(s.Value.Shape, obj[k], path+".value", vs); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Model) checkLen(s *shape, v any, n float64, path string, vs *validation) {
	if s.Min != nil && n < *s.Min {
		vs.add(s, v, path, fmt.Sprintf("Member must have length greater than or equal to %v", *s.Min))
	}
	if s.Max != nil && n > *s.Max {
		vs.add(s, v, path, fmt.Sprintf("Member must have length less than or equal to %v", *s.Max))
	}
}

func joinPath(p, m string) string {
	if p == "" {
		return m
	}
	return p + "." + m
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
