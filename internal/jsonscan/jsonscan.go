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
	sc.I++ // the opening quote
	start := sc.I
	for sc.I < len(sc.B) {
		switch sc.B[sc.I] {
		case '"':
			raw = sc.B[start:sc.I]
			sc.I++
			return raw, escaped
		case '\\':
			escaped = true
			sc.I += 2
			continue
		}
		sc.I++
	}
	if start > len(sc.B) {
		start = len(sc.B)
	}
	return sc.B[start:], escaped
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
