package policy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Condition is one key test of a Condition element:
// {"Operator": {"Key": Values}}.
type Condition struct {
	Operator string // as written, e.g. "ForAnyValue:StringLike"
	Key      string // as written, e.g. "kms:EncryptionContext:Department"
	Values   []string

	key      string // lower-cased
	op       opcode
	negate   bool
	set      setQualifier
	ifExists bool
	vars     []bool // value i holds a policy variable
	nums     []float64
	times    []time.Time
	nets     []netip.Prefix
	bins     [][]byte
	null     []bool // Null: true means "the key must be absent"
}

type opcode uint8

const (
	opStringEquals opcode = iota
	opStringEqualsIgnoreCase
	opStringLike
	opNumericEquals
	opNumericLessThan
	opNumericLessThanEquals
	opNumericGreaterThan
	opNumericGreaterThanEquals
	opDateEquals
	opDateLessThan
	opDateLessThanEquals
	opDateGreaterThan
	opDateGreaterThanEquals
	opBool
	opBinaryEquals
	opIPAddress
	opARNLike
	opNull
)

type setQualifier uint8

const (
	setNone setQualifier = iota
	setAnyValue
	setAllValues
)

type operator struct {
	op     opcode
	negate bool
}

// operators maps lower-cased operator names (without set prefix or
// IfExists suffix) to what they test.
var operators = map[string]operator{
	"stringequals":              {opStringEquals, false},
	"stringnotequals":           {opStringEquals, true},
	"stringequalsignorecase":    {opStringEqualsIgnoreCase, false},
	"stringnotequalsignorecase": {opStringEqualsIgnoreCase, true},
	"stringlike":                {opStringLike, false},
	"stringnotlike":             {opStringLike, true},
	"numericequals":             {opNumericEquals, false},
	"numericnotequals":          {opNumericEquals, true},
	"numericlessthan":           {opNumericLessThan, false},
	"numericlessthanequals":     {opNumericLessThanEquals, false},
	"numericgreaterthan":        {opNumericGreaterThan, false},
	"numericgreaterthanequals":  {opNumericGreaterThanEquals, false},
	"dateequals":                {opDateEquals, false},
	"datenotequals":             {opDateEquals, true},
	"datelessthan":              {opDateLessThan, false},
	"datelessthanequals":        {opDateLessThanEquals, false},
	"dategreaterthan":           {opDateGreaterThan, false},
	"dategreaterthanequals":     {opDateGreaterThanEquals, false},
	"bool":                      {opBool, false},
	"binaryequals":              {opBinaryEquals, false},
	"ipaddress":                 {opIPAddress, false},
	"notipaddress":              {opIPAddress, true},
	"arnequals":                 {opARNLike, false},
	"arnlike":                   {opARNLike, false},
	"arnnotequals":              {opARNLike, true},
	"arnnotlike":                {opARNLike, true},
	"null":                      {opNull, false},
}

func parseOperator(name string) (Condition, string) {
	c := Condition{Operator: name}
	rest := name
	if p, r, ok := strings.Cut(rest, ":"); ok {
		switch strings.ToLower(p) {
		case "foranyvalue":
			c.set = setAnyValue
		case "forallvalues":
			c.set = setAllValues
		default:
			return c, fmt.Sprintf("Condition operator %q has an unknown prefix %q; use ForAnyValue: or ForAllValues:.", name, p)
		}
		rest = r
	}
	lname := strings.ToLower(rest)
	if base, ok := strings.CutSuffix(lname, "ifexists"); ok && base != "" {
		c.ifExists = true
		lname = base
	}
	o, ok := operators[lname]
	if !ok {
		return c, fmt.Sprintf("Condition operator %q is not known; use one such as StringEquals, StringLike, NumericLessThan, DateGreaterThan, Bool, IpAddress, ArnLike or Null.", name)
	}
	if o.op == opNull && (c.ifExists || c.set != setNone) {
		return c, fmt.Sprintf("Condition operator %q is not valid: Null takes neither IfExists nor a set prefix.", name)
	}
	c.op, c.negate = o.op, o.negate
	return c, ""
}

func parseConditions(raw json.RawMessage, vars bool) ([]Condition, *ParseError) {
	fail := func(format string, args ...any) ([]Condition, *ParseError) {
		return nil, &ParseError{Msg: fmt.Sprintf(format, args...)}
	}
	m, err := decodeObject(raw)
	if err != nil || m == nil {
		return fail("Condition must be an object such as {\"StringEquals\": {\"kms:CallerAccount\": \"111122223333\"}}.")
	}
	var out []Condition
	for _, opName := range sortedKeys(m) {
		proto, msg := parseOperator(opName)
		if msg != "" {
			return fail("%s", msg)
		}
		inner, err := decodeObject(m[opName])
		if err != nil || inner == nil {
			return fail("Condition operator %q must map condition keys to values.", opName)
		}
		if len(inner) == 0 {
			return fail("Condition operator %q has no condition keys.", opName)
		}
		for _, key := range sortedKeys(inner) {
			if i := strings.IndexByte(key, ':'); i <= 0 || i == len(key)-1 {
				return fail("Condition key %q needs a service prefix, for example \"kms:EncryptionContext:Project\" or \"aws:SourceIp\".", key)
			}
			vals, err := conditionValues(inner[key])
			if err != nil {
				return fail("Condition %s %q: values must be strings, numbers or booleans, or a list of them.", opName, key)
			}
			if len(vals) == 0 {
				return fail("Condition %s %q has no values.", opName, key)
			}
			c := proto
			c.Key, c.key, c.Values = key, strings.ToLower(key), vals
			if msg := c.compile(vars); msg != "" {
				return fail("Condition %s %q: %s", opName, key, msg)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// compile checks and pre-parses the values for the operator.
func (c *Condition) compile(vars bool) string {
	switch c.op {
	case opStringEquals, opStringEqualsIgnoreCase, opStringLike, opARNLike:
		if vars {
			c.vars = make([]bool, len(c.Values))
			for i, v := range c.Values {
				c.vars[i] = strings.Contains(v, "${")
			}
		}
	case opNumericEquals, opNumericLessThan, opNumericLessThanEquals, opNumericGreaterThan, opNumericGreaterThanEquals:
		for _, v := range c.Values {
			n, ok := parseNumber(v)
			if !ok {
				return fmt.Sprintf("%q is not a number.", v)
			}
			c.nums = append(c.nums, n)
		}
	case opDateEquals, opDateLessThan, opDateLessThanEquals, opDateGreaterThan, opDateGreaterThanEquals:
		for _, v := range c.Values {
			t, ok := parseDate(v)
			if !ok {
				return fmt.Sprintf("%q is not a date; use ISO 8601 such as \"2026-01-31T12:00:00Z\" or epoch seconds.", v)
			}
			c.times = append(c.times, t)
		}
	case opBool:
		for _, v := range c.Values {
			if !strings.EqualFold(v, "true") && !strings.EqualFold(v, "false") {
				return fmt.Sprintf("%q is not \"true\" or \"false\".", v)
			}
		}
	case opNull:
		for _, v := range c.Values {
			switch strings.ToLower(v) {
			case "true":
				c.null = append(c.null, true)
			case "false":
				c.null = append(c.null, false)
			default:
				return fmt.Sprintf("%q is not \"true\" or \"false\".", v)
			}
		}
	case opBinaryEquals:
		for _, v := range c.Values {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return fmt.Sprintf("%q is not base64.", v)
			}
			c.bins = append(c.bins, b)
		}
	case opIPAddress:
		for _, v := range c.Values {
			p, ok := parseCIDR(v)
			if !ok {
				return fmt.Sprintf("%q is not an IP address or CIDR block such as \"203.0.113.0/24\".", v)
			}
			c.nets = append(c.nets, p)
		}
	}
	return ""
}

// conditionValues decodes a condition value: a string, number or boolean,
// or a list of them. Numbers keep their written form.
func conditionValues(raw json.RawMessage) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	one := func(x any) (string, bool) {
		switch x := x.(type) {
		case string:
			return x, true
		case json.Number:
			return x.String(), true
		case bool:
			return strconv.FormatBool(x), true
		}
		return "", false
	}
	if s, ok := one(v); ok {
		return []string{s}, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("not a scalar or list")
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, ok := one(x)
		if !ok {
			return nil, fmt.Errorf("not a scalar")
		}
		out = append(out, s)
	}
	return out, nil
}

func parseNumber(s string) (float64, bool) {
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return n, err == nil && !math.IsNaN(n)
}

var dateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04:05",
	"2006-01-02T15:04",
	"2006-01-02",
	"20060102T150405Z",
}

// parseDate reads ISO 8601 dates and times (UTC unless a zone is given)
// and epoch seconds.
func parseDate(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && math.Abs(f) < 1e15 {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
	}
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func parseCIDR(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p, true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// eval reports whether the condition holds for the request.
//
// A key missing from the request fails a positive test and passes a
// negated one (StringNotEquals, NotIpAddress...); ...IfExists passes;
// ForAllValues passes (the empty set) and ForAnyValue fails. Without a set
// prefix, a multi-valued key passes a positive test when any value does and
// a negated test when every value does.
func (c *Condition) eval(e *env) bool {
	vals, one, present := e.get(c.key)
	if c.op == opNull {
		for _, absent := range c.null {
			if absent != present {
				return true
			}
		}
		return false
	}
	if !present {
		switch {
		case c.ifExists, c.set == setAllValues:
			return true
		case c.set == setAnyValue:
			return false
		}
		return c.negate
	}
	all := c.set == setAllValues || (c.set == setNone && c.negate)
	n := len(vals)
	if vals == nil {
		n = 1 // the derived value in one
	}
	for i := 0; i < n; i++ {
		v := one
		if vals != nil {
			v = vals[i]
		}
		ok, resolved := c.valueOK(v, e)
		if !resolved {
			return false
		}
		if all && !ok {
			return false
		}
		if !all && ok {
			return true
		}
	}
	return all
}

// valueOK tests one request value: whether some policy value matches it,
// inverted for negated operators. resolved is false when a policy variable
// has no value, which makes the whole condition fail.
func (c *Condition) valueOK(v string, e *env) (ok, resolved bool) {
	m, resolved := c.anyMatch(v, e)
	return m != c.negate, resolved
}

func (c *Condition) anyMatch(v string, e *env) (bool, bool) {
	switch c.op {
	case opStringEquals, opStringEqualsIgnoreCase, opStringLike, opARNLike:
		for i, pv := range c.Values {
			escaped := false
			if c.vars != nil && c.vars[i] {
				asGlob := c.op == opStringLike || c.op == opARNLike
				s, ok := substitute(pv, e, asGlob)
				if !ok {
					return false, false
				}
				pv, escaped = s, asGlob
			}
			var m bool
			switch c.op {
			case opStringEquals:
				m = pv == v
			case opStringEqualsIgnoreCase:
				m = strings.EqualFold(pv, v)
			case opStringLike:
				m = glob(pv, v, false, escaped)
			case opARNLike:
				m = matchARN(pv, v, escaped)
			}
			if m {
				return true, true
			}
		}
	case opNumericEquals, opNumericLessThan, opNumericLessThanEquals, opNumericGreaterThan, opNumericGreaterThanEquals:
		n, ok := parseNumber(v)
		if !ok {
			return false, true
		}
		for _, pn := range c.nums {
			if compare(c.op-opNumericEquals, cmp3(n, pn)) {
				return true, true
			}
		}
	case opDateEquals, opDateLessThan, opDateLessThanEquals, opDateGreaterThan, opDateGreaterThanEquals:
		t, ok := parseDate(v)
		if !ok {
			return false, true
		}
		for _, pt := range c.times {
			if compare(c.op-opDateEquals, t.Compare(pt)) {
				return true, true
			}
		}
	case opBool:
		for _, pv := range c.Values {
			if strings.EqualFold(pv, v) {
				return true, true
			}
		}
	case opBinaryEquals:
		b, err := base64.StdEncoding.DecodeString(v)
		for i, pb := range c.bins {
			if err == nil && bytes.Equal(b, pb) || err != nil && v == c.Values[i] {
				return true, true
			}
		}
	case opIPAddress:
		a, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil {
			return false, true
		}
		a = a.Unmap()
		for _, p := range c.nets {
			if p.Contains(a) {
				return true, true
			}
		}
	}
	return false, true
}

// compare applies the k-th of Equals, LessThan, LessThanEquals,
// GreaterThan, GreaterThanEquals to a three-way comparison result.
func compare(k opcode, c int) bool {
	switch k {
	case 0:
		return c == 0
	case 1:
		return c < 0
	case 2:
		return c <= 0
	case 3:
		return c > 0
	case 4:
		return c >= 0
	}
	return false
}

func cmp3(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
