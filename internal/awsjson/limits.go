package awsjson

// Body limits derived from the service model: the largest JSON document an
// operation's input can legitimately be, so that the listener never buffers
// more than that for anyone.

const (
	// unboundedAllowance is what a string, blob, list or map without a
	// model maximum may take (encryption context, for one).
	unboundedAllowance = 4 << 10
	// MinBodyLimit is the least any operation accepts, so that small
	// inputs keep room for whitespace and unknown-member errors.
	MinBodyLimit = 8 << 10
	// bodyLimitMargin covers JSON escaping (a quote inside a key policy
	// takes two bytes, a non-ASCII character up to six with botocore's
	// ensure_ascii) and pretty-printing.
	bodyLimitMargin = 2
	maxShapeDepth   = 16
)

// MaxInputBytes is the body limit of op: bodyLimitMargin times the largest
// compact JSON encoding of its input shape, counting model maxima (strings
// in characters, blobs base64-encoded, lists and maps by their counts) and
// unboundedAllowance for members without one, at least MinBodyLimit and at
// most DefaultMaxBody. 0 when the model does not define op.
func (m *Model) MaxInputBytes(op string) int64 {
	o, ok := m.ops[op]
	if !ok {
		return 0
	}
	n := int64(2) // {}
	if o.Input != "" {
		n = m.maxJSON(o.Input, 0)
	}
	n *= bodyLimitMargin
	return min(max(n, MinBodyLimit), DefaultMaxBody)
}

// maxJSON is the largest compact JSON encoding of a value of shape name.
func (m *Model) maxJSON(name string, depth int) int64 {
	s := m.shapes[name]
	if s == nil || depth > maxShapeDepth {
		return unboundedAllowance
	}
	switch s.Type {
	case "structure":
		n := int64(2)
		for member, ref := range s.Members {
			n += int64(len(member)) + 4 + m.maxJSON(ref.Shape, depth+1) // "member":value,
		}
		return n
	case "string":
		if len(s.Enum) > 0 {
			longest := 0
			for _, e := range s.Enum {
				longest = max(longest, len(e))
			}
			return int64(longest) + 2
		}
		if s.Max != nil {
			return int64(*s.Max) + 2
		}
		return unboundedAllowance
	case "blob":
		if s.Max != nil {
			return (int64(*s.Max)+2)/3*4 + 2
		}
		return unboundedAllowance
	case "list":
		if s.Max == nil || s.Member == nil {
			return unboundedAllowance
		}
		return 2 + int64(*s.Max)*(m.maxJSON(s.Member.Shape, depth+1)+1)
	case "map":
		if s.Max == nil || s.Key == nil || s.Value == nil {
			return unboundedAllowance
		}
		return 2 + int64(*s.Max)*(m.maxJSON(s.Key.Shape, depth+1)+m.maxJSON(s.Value.Shape, depth+1)+2)
	case "boolean":
		return 5
	default: // integer, long, double, timestamp
		return 32
	}
}
