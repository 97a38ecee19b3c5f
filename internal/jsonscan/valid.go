package jsonscan

import (
	"encoding/binary"
	"encoding/json"
)

// Valid reports whether b is one JSON value, with optional white space
// around it: exactly what json.Valid accepts (FuzzValid holds the two
// equal), at a fraction of its cost. json.Valid runs encoding/json's
// byte-at-a-time state machine (a call through a function value per byte);
// this is a direct loop. Documents nested deeper than a uint64 of
// container kinds are handed to json.Valid, which owns the depth limit.
func Valid(b []byte) bool {
	v := validator{b: b}
	v.space()
	if !v.value() {
		return false
	}
	if v.deep {
		return json.Valid(b)
	}
	v.space()
	return v.i == len(v.b)
}

type validator struct {
	b    []byte
	i    int
	deep bool // nesting went past maxDepth: json.Valid decides
}

// maxDepth is the nesting validator tracks in a uint64 (one bit per level:
// object or array).
const maxDepth = 64

func (v *validator) space() {
	b, i := v.b, v.i
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	v.i = i
}

// value reads one value with everything nested in it, without recursion:
// stack holds a bit per open container (1: object), depth how many.
func (v *validator) value() bool {
	var stack uint64
	depth := 0
	for {
		// A value is expected at v.i.
		if v.i >= len(v.b) {
			return false
		}
		switch c := v.b[v.i]; {
		case c == '{' || c == '[':
			v.i++
			v.space()
			if v.i >= len(v.b) {
				return false
			}
			if closer := c + 2; v.b[v.i] == closer { // '{'+2 is '}', '['+2 is ']'
				v.i++
				break // an empty container is a whole value
			}
			if depth == maxDepth {
				v.deep = true
				return true
			}
			stack = stack<<1 | boolBit(c == '{')
			depth++
			if c == '{' && !v.memberName() {
				return false
			}
			continue
		case c == '"':
			if !v.str() {
				return false
			}
		case c == '-' || '0' <= c && c <= '9':
			if !v.number() {
				return false
			}
		case c == 't':
			if !v.literal("true") {
				return false
			}
		case c == 'f':
			if !v.literal("false") {
				return false
			}
		case c == 'n':
			if !v.literal("null") {
				return false
			}
		default:
			return false
		}
		// A value ended (a scalar, or an empty container): close every
		// container that ends here, then expect the next element.
		for {
			if depth == 0 {
				return true
			}
			v.space()
			if v.i >= len(v.b) {
				return false
			}
			c := v.b[v.i]
			v.i++
			if c == ',' {
				v.space()
				if stack&1 == 1 && !v.memberName() {
					return false
				}
				break
			}
			if stack&1 == 1 && c == '}' || stack&1 == 0 && c == ']' {
				stack >>= 1
				depth--
				continue
			}
			return false
		}
	}
}

func boolBit(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// memberName reads `"name" :` and the white space after it.
func (v *validator) memberName() bool {
	if v.i >= len(v.b) || v.b[v.i] != '"' || !v.str() {
		return false
	}
	v.space()
	if v.i >= len(v.b) || v.b[v.i] != ':' {
		return false
	}
	v.i++
	v.space()
	return true
}

// strSpecial marks the bytes that end a run of plain string bytes: the
// quote, the backslash and control characters (not allowed raw). Any other
// byte, invalid UTF-8 included, is allowed, as encoding/json's scanner
// allows it.
var strSpecial = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

func (v *validator) str() bool {
	b, i := v.b, v.i+1 // past the opening quote
	for i < len(b) {
		// Eight plain bytes at a time, the common case.
		for i+8 <= len(b) && !hasSpecial(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && !strSpecial[b[i]] {
			i++
		}
		if i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			v.i = i + 1
			return true
		case c == '\\':
			if i+1 >= len(b) {
				return false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return false
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return false
					}
				}
				i += 6
			default:
				return false
			}
		default: // a control character
			return false
		}
	}
	return false
}

// hasSpecial reports whether any byte of x is a quote, a backslash or a
// control character (below 0x20), eight bytes at once: (y - 0x01…) &^ y &
// 0x80… is non-zero exactly when some byte of y is zero, and (x - 0x20…) &^
// x & 0x80… exactly when some byte of x is below 0x20.
func hasSpecial(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q := x ^ ('"' * ones)
	bs := x ^ ('\\' * ones)
	return ((x-0x20*ones)&^x|(q-ones)&^q|(bs-ones)&^bs)&highs != 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (v *validator) number() bool {
	if v.b[v.i] == '-' {
		v.i++
	}
	switch {
	case v.i >= len(v.b):
		return false
	case v.b[v.i] == '0':
		v.i++
	case '1' <= v.b[v.i] && v.b[v.i] <= '9':
		v.digits()
	default:
		return false
	}
	if v.i < len(v.b) && v.b[v.i] == '.' {
		v.i++
		if !v.digits() {
			return false
		}
	}
	if v.i < len(v.b) && (v.b[v.i] == 'e' || v.b[v.i] == 'E') {
		v.i++
		if v.i < len(v.b) && (v.b[v.i] == '+' || v.b[v.i] == '-') {
			v.i++
		}
		if !v.digits() {
			return false
		}
	}
	return true
}

// digits reads [0-9]+.
func (v *validator) digits() bool {
	start := v.i
	for v.i < len(v.b) && '0' <= v.b[v.i] && v.b[v.i] <= '9' {
		v.i++
	}
	return v.i > start
}

func (v *validator) literal(lit string) bool {
	if len(v.b)-v.i < len(lit) || string(v.b[v.i:v.i+len(lit)]) != lit {
		return false
	}
	v.i += len(lit)
	return true
}
