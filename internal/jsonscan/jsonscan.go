// Package jsonscan walks JSON text in place, token by token, without
// decoding it: the request validator's fast check (awsjson) and the audit
// trail's body renderer (audit) read member names, strings and numbers
// straight from the request bytes, allocating nothing.
//
// Valid is the one check: json.Valid's answer at a fraction of its cost.
// Scanner checks nothing: the text must be one Valid accepted (both callers
// check that first). On other input the results mean nothing, but a
// Scanner never reads outside its slice.
package jsonscan

import "encoding/binary"

// Scanner reads B from offset I.
type Scanner struct {
	B []byte
	I int
}

// Peek passes over white space and returns the next byte (0 at the end)
// without consuming it.
func (sc *Scanner) Peek() byte {
	for sc.I < len(sc.B) {
		switch c := sc.B[sc.I]; c {
		case ' ', '\t', '\n', '\r':
			sc.I++
		default:
			return c
		}
	}
	return 0
}

// String reads the string token at I (its opening quote): raw is the text
// between the quotes, as it stands, and escaped says whether it holds a
// backslash escape (then raw is not the value: decode B[I-len(raw)-2:I]).
func (sc *Scanner) String() (raw []byte, escaped bool) {
	b := sc.B
	i := sc.I + 1 // the opening quote
	start := i
	for {
		// Eight bytes at a time up to a quote or a backslash.
		for i+8 <= len(b) && !quoteOrBackslash(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i >= len(b) {
			sc.I = i
			if start > len(b) {
				start = len(b)
			}
			return b[start:], escaped
		}
		if b[i] == '"' {
			sc.I = i + 1
			return b[start:i], escaped
		}
		escaped = true
		i += 2
	}
}

// quoteOrBackslash reports whether any byte of x is '"' or '\\': (y -
// 0x01…) &^ y & 0x80… is non-zero exactly when some byte of y is zero.
func quoteOrBackslash(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q, bs := x^'"'*ones, x^'\\'*ones
	return ((q-ones)&^q|(bs-ones)&^bs)&highs != 0
}

// Number reads the number token at I.
func (sc *Scanner) Number() []byte {
	start := sc.I
	for sc.I < len(sc.B) {
		switch c := sc.B[sc.I]; {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			sc.I++
			continue
		}
		break
	}
	return sc.B[start:sc.I]
}

// Skip passes over the value at I, whatever its kind.
func (sc *Scanner) Skip() {
	switch sc.Peek() {
	case '"':
		sc.String()
	case '{', '[':
		depth := 0
		for sc.I < len(sc.B) {
			switch sc.B[sc.I] {
			case '"':
				sc.String()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					sc.I++
					return
				}
			}
			sc.I++
		}
	case 't', 'n': // true, null
		sc.I += 4
	case 'f': // false
		sc.I += 5
	default:
		sc.Number()
	}
}
