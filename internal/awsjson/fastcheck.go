package awsjson

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/keyhold/keyhold/internal/jsonscan"
)

// The fast check answers one question about a request body that is already
// known to be valid JSON: would the model walk (check) find nothing wrong?
// It reads the bytes in place, allocating nothing on the common path, and is
// allowed to be wrong in one direction only: whenever it is unsure (escaped
// member names, duplicate members, anything unusual) or finds a problem, it
// says "no" and DecodeInput runs the full walk, which words the errors. So
// every error a client sees still comes from check, and a body the fast
// check accepts is one check accepts (FuzzFastCheck holds it to that).

// compiled is the per-shape data the fast check needs, built once.
type compiled struct {
	// members of a structure, by wire name; index is the bit in the
	// seen/required masks.
	members  map[string]member
	required uint64
	// tooWide marks structures with more than 64 members (none in the AWS
	// models keyhold serves): they always take the full walk.
	tooWide bool
}

type member struct {
	index int
	shape *shape
}

func (m *Model) compile() {
	for _, s := range m.shapes {
		if s.Type != "structure" {
			continue
		}
		c := &compiled{members: make(map[string]member, len(s.Members))}
		names := make([]string, 0, len(s.Members))
		for name := range s.Members {
			names = append(names, name)
		}
		sort.Strings(names)
		if len(names) > 64 {
			c.tooWide = true
		}
		for i, name := range names {
			c.members[name] = member{index: i, shape: m.shapes[s.Members[name].Shape]}
		}
		for _, r := range s.Required {
			mb, ok := c.members[r]
			if !ok || mb.index >= 64 {
				c.tooWide = true
				continue
			}
			c.required |= 1 << mb.index
		}
		s.fast = c
	}
	for _, s := range m.shapes {
		if s.Member != nil {
			s.memberShape = m.shapes[s.Member.Shape]
		}
		if s.Key != nil {
			s.keyShape = m.shapes[s.Key.Shape]
		}
		if s.Value != nil {
			s.valueShape = m.shapes[s.Value.Shape]
		}
	}
}

// blobScratch holds base64 decode buffers so that checking a blob's decoded
// length allocates nothing.
var blobScratch = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// scanner walks a byte slice that jsonscan.Valid accepted.
type scanner struct{ jsonscan.Scanner }

// fastOK reports whether the value at sc, read against s, certainly passes
// check; false means "run check" (a problem, or not sure).
func (sc *scanner) fastOK(s *shape) bool {
	c := sc.Peek()
	if c == 'n' { // null is an absent member, whatever the shape
		sc.I += 4
		return true
	}
	if s == nil {
		sc.Skip()
		return true
	}
	switch s.Type {
	case "structure":
		if c != '{' || s.fast == nil || s.fast.tooWide {
			return false
		}
		sc.I++
		var seen, present uint64
		if sc.Peek() == '}' {
			sc.I++
			return s.fast.required == 0
		}
		for {
			if sc.Peek() != '"' {
				return false
			}
			name, esc := sc.String()
			if esc {
				return false
			}
			mb, known := s.fast.members[string(name)]
			if !known {
				return false
			}
			bit := uint64(1) << mb.index
			if seen&bit != 0 {
				return false // duplicate member: the last one wins in check
			}
			seen |= bit
			if sc.Peek() != ':' {
				return false
			}
			sc.I++
			if sc.Peek() != 'n' {
				present |= bit
			}
			if !sc.fastOK(mb.shape) {
				return false
			}
			switch sc.Peek() {
			case ',':
				sc.I++
			case '}':
				sc.I++
				return present&s.fast.required == s.fast.required
			default:
				return false
			}
		}
	case "string":
		if c != '"' {
			return false
		}
		raw, esc := sc.String()
		if esc {
			var str string
			if json.Unmarshal(sc.B[sc.I-len(raw)-2:sc.I], &str) != nil {
				return false
			}
			return stringOK(s, str)
		}
		if !utf8.Valid(raw) {
			return false
		}
		return stringOK(s, unsafeString(raw))
	case "blob":
		if c != '"' {
			return false
		}
		raw, esc := sc.String()
		if esc {
			return false
		}
		return blobOK(s, raw)
	case "integer", "long":
		if c != '-' && (c < '0' || c > '9') {
			return false
		}
		num := sc.Number()
		i, err := strconv.ParseInt(unsafeString(num), 10, 64)
		if err != nil || (s.Type == "integer" && (i > math.MaxInt32 || i < math.MinInt32)) {
			return false
		}
		if s.Min != nil && float64(i) < *s.Min || s.Max != nil && float64(i) > *s.Max {
			return false
		}
		return true
	case "double", "float", "timestamp":
		if c != '-' && (c < '0' || c > '9') {
			return false
		}
		sc.Number()
		return true
	case "boolean":
		switch c {
		case 't':
			sc.I += 4
		case 'f':
			sc.I += 5
		default:
			return false
		}
		return true
	case "list":
		if c != '[' || s.Member == nil {
			return false
		}
		sc.I++
		n := 0
		if sc.Peek() == ']' {
			sc.I++
			return lengthOK(s, 0)
		}
		for {
			if sc.Peek() == 'n' {
				return false // null elements are a violation
			}
			if !sc.fastOK(s.memberShape) {
				return false
			}
			n++
			switch sc.Peek() {
			case ',':
				sc.I++
			case ']':
				sc.I++
				return lengthOK(s, n)
			default:
				return false
			}
		}
	case "map":
		if c != '{' || s.Key == nil || s.Value == nil {
			return false
		}
		sc.I++
		if sc.Peek() == '}' {
			sc.I++
			return lengthOK(s, 0)
		}
		// Keys are checked for duplicates only in small maps; a larger
		// one takes the full walk (its length counts distinct keys).
		var keys [32][]byte
		n := 0
		for {
			if sc.Peek() != '"' {
				return false
			}
			key, esc := sc.String()
			if esc || n == len(keys) {
				return false
			}
			for _, k := range keys[:n] {
				if string(k) == string(key) {
					return false
				}
			}
			keys[n] = key
			n++
			if s.keyShape != nil && !stringLikeOK(s.keyShape, key) {
				return false
			}
			if sc.Peek() != ':' {
				return false
			}
			sc.I++
			if !sc.fastOK(s.valueShape) {
				return false
			}
			switch sc.Peek() {
			case ',':
				sc.I++
			case '}':
				sc.I++
				return lengthOK(s, n)
			default:
				return false
			}
		}
	}
	// A type check does not know: let it decide.
	return false
}

// stringLikeOK checks a map key (always a JSON string) against its shape.
func stringLikeOK(s *shape, key []byte) bool {
	if s.Type != "string" || !utf8.Valid(key) {
		return false
	}
	return stringOK(s, unsafeString(key))
}

func stringOK(s *shape, str string) bool {
	if !lengthOK(s, utf8.RuneCountInString(str)) {
		return false
	}
	if len(s.Enum) > 0 {
		return contains(s.Enum, str)
	}
	if s.re != nil {
		return s.re.MatchString(str)
	}
	return true
}

func blobOK(s *shape, raw []byte) bool {
	bp := blobScratch.Get().(*[]byte)
	defer blobScratch.Put(bp)
	need := base64.StdEncoding.DecodedLen(len(raw))
	if cap(*bp) < need {
		*bp = make([]byte, need)
	}
	n, err := base64.StdEncoding.Decode((*bp)[:need], raw)
	if err != nil {
		return false
	}
	return lengthOK(s, n)
}

// unsafeString views b as a string for a read-only check that does not
// keep it.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func lengthOK(s *shape, n int) bool {
	return (s.Min == nil || float64(n) >= *s.Min) && (s.Max == nil || float64(n) <= *s.Max)
}
