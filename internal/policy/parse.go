package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// MaxSize is the largest policy document KMS accepts: 32 KiB.
const MaxSize = 32 * 1024

// Version strings of the policy language. Only 2012-10-17 substitutes
// policy variables such as ${aws:username}; in 2008-10-17 (also assumed when
// Version is absent) they are literal text, as in AWS.
const (
	Version2012 = "2012-10-17"
	Version2008 = "2008-10-17"
)

// Kind says what a document is for, which decides whether statements must
// or must not name a principal.
type Kind int

const (
	// AnyPolicy checks the language only; Principal is optional.
	AnyPolicy Kind = iota
	// KeyPolicy requires Principal or NotPrincipal in every statement.
	KeyPolicy
	// IdentityPolicy forbids Principal and NotPrincipal: the principal is
	// whoever the policy is attached to.
	IdentityPolicy
)

// Option changes how Parse validates a document. A Kind is an Option.
type Option interface{ apply(*parseConfig) }

type parseConfig struct{ kind Kind }

func (k Kind) apply(c *parseConfig) { c.kind = k }

// Effect is what a statement does when it applies.
type Effect string

// The two effects.
const (
	Allow Effect = "Allow"
	Deny  Effect = "Deny"
)

// Document is a parsed policy. It is immutable after Parse and safe for
// concurrent use.
type Document struct {
	Version    string
	ID         string
	Statements []Statement
	vars       bool // policy variables are substituted (Version 2012-10-17)
}

// Statement is one entry of a policy's Statement list. Exactly one of
// Action/NotAction and of Resource/NotResource is set; at most one of
// Principal/NotPrincipal.
type Statement struct {
	Sid          string
	Effect       Effect
	Principal    *Principals
	NotPrincipal *Principals
	Action       []string
	NotAction    []string
	Resource     []string
	NotResource  []string
	Conditions   []Condition

	resources []pattern
}

// Principals is the value of a Principal or NotPrincipal element.
type Principals struct {
	Any           bool     // "*" or {"AWS": "*"}
	AWS           []string // account IDs and IAM/STS ARNs, as written
	Service       []string // e.g. "kms.amazonaws.com"
	Federated     []string
	CanonicalUser []string

	aws []awsPrincipal
}

// awsPrincipal is one compiled AWS principal: an account (written as its id
// or its root ARN) or an exact IAM/STS ARN.
type awsPrincipal struct {
	account string // set for an account: matches its root directly and delegates to its other principals
	arn     string // set for a user, role, assumed-role session or federated user
}

// pattern is a value that may hold wildcards and policy variables.
type pattern struct {
	s    string
	wild bool // contains * or ?
	vars bool // contains ${...} and the document substitutes variables
}

func newPattern(s string, vars bool) pattern {
	return pattern{s: s, wild: strings.ContainsAny(s, "*?"), vars: vars && strings.Contains(s, "${")}
}

// ParseError says what is wrong with a policy document, in words meant for
// the person who wrote it. Its message names the statement and element at
// fault and is safe to return as a MalformedPolicyDocumentException message.
type ParseError struct {
	Statement int    // 1-based statement number; 0 for the document as a whole
	Sid       string // the statement's Sid, if it has one
	Msg       string
}

func (e *ParseError) Error() string {
	switch {
	case e.Statement == 0:
		return e.Msg
	case e.Sid != "":
		return fmt.Sprintf("Statement %d (Sid %q): %s", e.Statement, e.Sid, e.Msg)
	default:
		return fmt.Sprintf("Statement %d: %s", e.Statement, e.Msg)
	}
}

var (
	docElements  = []string{"Version", "Id", "Statement"}
	stmtElements = []string{"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition"}
)

// Parse parses and validates a policy document. Errors are *ParseError.
//
//	doc, err := policy.Parse(text, policy.KeyPolicy)
func Parse(doc string, opts ...Option) (*Document, error) {
	var cfg parseConfig
	for _, o := range opts {
		o.apply(&cfg)
	}
	if len(doc) > MaxSize {
		return nil, &ParseError{Msg: fmt.Sprintf("The policy is %d bytes; the limit is %d bytes (32 KiB).", len(doc), MaxSize)}
	}
	if strings.TrimSpace(doc) == "" {
		return nil, &ParseError{Msg: "The policy is empty."}
	}
	top, err := decodeObject([]byte(doc))
	if err != nil {
		return nil, &ParseError{Msg: jsonProblem(doc, err)}
	}
	if top == nil {
		return nil, &ParseError{Msg: "The policy must be a JSON object with a Statement element."}
	}
	if err := checkElements(top, docElements, "policy"); err != "" {
		return nil, &ParseError{Msg: err}
	}
	d := &Document{}
	if raw, ok := top["Version"]; ok {
		if json.Unmarshal(raw, &d.Version) != nil || (d.Version != Version2012 && d.Version != Version2008) {
			return nil, &ParseError{Msg: fmt.Sprintf("Version must be %q or %q.", Version2012, Version2008)}
		}
	}
	d.vars = d.Version == Version2012
	if raw, ok := top["Id"]; ok {
		if json.Unmarshal(raw, &d.ID) != nil {
			return nil, &ParseError{Msg: "Id must be a string."}
		}
	}
	raw, ok := top["Statement"]
	if !ok {
		return nil, &ParseError{Msg: "The policy has no Statement element."}
	}
	var stmts []json.RawMessage
	switch firstByte(raw) {
	case '{':
		stmts = []json.RawMessage{raw}
	case '[':
		if json.Unmarshal(raw, &stmts) != nil {
			return nil, &ParseError{Msg: "Statement must be an object or a list of objects."}
		}
	default:
		return nil, &ParseError{Msg: "Statement must be an object or a list of objects."}
	}
	if len(stmts) == 0 {
		return nil, &ParseError{Msg: "Statement must not be empty."}
	}
	d.Statements = make([]Statement, len(stmts))
	for i, raw := range stmts {
		if err := parseStatement(raw, &d.Statements[i], cfg.kind, d.vars); err != nil {
			err.Statement = i + 1
			err.Sid = d.Statements[i].Sid
			return nil, err
		}
	}
	return d, nil
}

// MustParse is Parse for policies written in code; it panics on error.
func MustParse(doc string, opts ...Option) *Document {
	d, err := Parse(doc, opts...)
	if err != nil {
		panic("policy.MustParse: " + err.Error())
	}
	return d
}

func parseStatement(raw json.RawMessage, s *Statement, kind Kind, vars bool) *ParseError {
	fail := func(format string, args ...any) *ParseError {
		return &ParseError{Msg: fmt.Sprintf(format, args...)}
	}
	m, err := decodeObject(raw)
	if err != nil || m == nil {
		return fail("each statement must be a JSON object.")
	}
	if raw, ok := m["Sid"]; ok {
		if json.Unmarshal(raw, &s.Sid) != nil {
			return fail("Sid must be a string.")
		}
	}
	if msg := checkElements(m, stmtElements, "statement"); msg != "" {
		return fail("%s", msg)
	}

	rawEffect, ok := m["Effect"]
	if !ok {
		return fail("Effect is missing; it must be \"Allow\" or \"Deny\".")
	}
	var effect string
	if json.Unmarshal(rawEffect, &effect) != nil {
		return fail("Effect must be the string \"Allow\" or \"Deny\".")
	}
	switch Effect(effect) {
	case Allow, Deny:
		s.Effect = Effect(effect)
	default:
		return fail("unknown Effect %q; it must be \"Allow\" or \"Deny\" (case-sensitive).", effect)
	}

	// Principal.
	_, hasP := m["Principal"]
	_, hasNP := m["NotPrincipal"]
	switch {
	case hasP && hasNP:
		return fail("a statement cannot have both Principal and NotPrincipal.")
	case kind == KeyPolicy && !hasP && !hasNP:
		return fail("a key policy statement must have a Principal (or NotPrincipal) saying who it applies to.")
	case kind == IdentityPolicy && (hasP || hasNP):
		return fail("an identity-based policy cannot have a Principal or NotPrincipal; it applies to whoever it is attached to.")
	}
	var perr *ParseError
	if hasP {
		s.Principal, perr = parsePrincipals(m["Principal"], "Principal")
	} else if hasNP {
		s.NotPrincipal, perr = parsePrincipals(m["NotPrincipal"], "NotPrincipal")
	}
	if perr != nil {
		return perr
	}

	// Action.
	_, hasA := m["Action"]
	_, hasNA := m["NotAction"]
	switch {
	case hasA && hasNA:
		return fail("a statement cannot have both Action and NotAction.")
	case !hasA && !hasNA:
		return fail("Action is missing; name the actions the statement covers, for example \"kms:Encrypt\" or \"kms:*\".")
	}
	name := "Action"
	if hasNA {
		name = "NotAction"
	}
	actions, err := stringList(m[name])
	if err != nil {
		return fail("%s must be a string or a list of strings.", name)
	}
	if len(actions) == 0 {
		return fail("%s must not be empty.", name)
	}
	for _, a := range actions {
		if msg := checkAction(a); msg != "" {
			return fail("%s %q %s", name, a, msg)
		}
	}
	if hasA {
		s.Action = actions
	} else {
		s.NotAction = actions
	}

	// Resource.
	_, hasR := m["Resource"]
	_, hasNR := m["NotResource"]
	switch {
	case hasR && hasNR:
		return fail("a statement cannot have both Resource and NotResource.")
	case !hasR && !hasNR:
		return fail("Resource is missing; in a key policy it is \"*\", meaning this key.")
	}
	name = "Resource"
	if hasNR {
		name = "NotResource"
	}
	resources, err := stringList(m[name])
	if err != nil {
		return fail("%s must be a string or a list of strings.", name)
	}
	if len(resources) == 0 {
		return fail("%s must not be empty.", name)
	}
	for _, r := range resources {
		if r != "*" && !strings.HasPrefix(r, "arn:") {
			return fail("%s %q must be \"*\" or an ARN (wildcards allowed).", name, r)
		}
		s.resources = append(s.resources, newPattern(r, vars))
	}
	if hasR {
		s.Resource = resources
	} else {
		s.NotResource = resources
	}

	// Condition.
	if raw, ok := m["Condition"]; ok {
		conds, perr := parseConditions(raw, vars)
		if perr != nil {
			return perr
		}
		s.Conditions = conds
	}
	return nil
}

func checkAction(a string) string {
	if a == "*" {
		return ""
	}
	if a == "" || strings.ContainsAny(a, " \t\r\n") {
		return "is not a valid action."
	}
	i := strings.IndexByte(a, ':')
	if i <= 0 || i == len(a)-1 || strings.IndexByte(a[i+1:], ':') >= 0 {
		return "is not of the form service:action, for example \"kms:Encrypt\"."
	}
	return ""
}

func parsePrincipals(raw json.RawMessage, elem string) (*Principals, *ParseError) {
	fail := func(format string, args ...any) (*Principals, *ParseError) {
		return nil, &ParseError{Msg: elem + " " + fmt.Sprintf(format, args...)}
	}
	p := &Principals{}
	var star string
	if firstByte(raw) == '"' && json.Unmarshal(raw, &star) == nil {
		if star != "*" {
			return fail("must be \"*\" or an object such as {\"AWS\": \"arn:aws:iam::111122223333:root\"}; got the string %q.", star)
		}
		p.Any = true
		return p, nil
	}
	m, err := decodeObject(raw)
	if err != nil || m == nil {
		return fail("must be \"*\" or an object such as {\"AWS\": \"arn:aws:iam::111122223333:root\"}.")
	}
	if len(m) == 0 {
		return fail("must name at least one principal.")
	}
	for _, k := range sortedKeys(m) {
		vals, err := stringList(m[k])
		if err != nil {
			return fail("%s must be a string or a list of strings.", k)
		}
		if len(vals) == 0 {
			return fail("%s must not be empty.", k)
		}
		switch k {
		case "AWS":
			p.AWS = vals
			for _, v := range vals {
				ap, msg := parseAWSPrincipal(v)
				if msg != "" {
					return fail("%q %s", v, msg)
				}
				if ap == (awsPrincipal{}) {
					p.Any = true
					continue
				}
				p.aws = append(p.aws, ap)
			}
		case "Service":
			for _, v := range vals {
				if v == "" || strings.ContainsAny(v, " \t\r\n*?") || !strings.Contains(v, ".") {
					return fail("%q is not a service principal such as \"kms.amazonaws.com\".", v)
				}
			}
			p.Service = vals
		case "Federated":
			for _, v := range vals {
				if v == "" || strings.ContainsAny(v, " \t\r\n*?") {
					return fail("%q is not a valid federated principal.", v)
				}
			}
			p.Federated = vals
		case "CanonicalUser":
			for _, v := range vals {
				if v == "" || strings.ContainsAny(v, " \t\r\n*?") {
					return fail("%q is not a valid canonical user.", v)
				}
			}
			p.CanonicalUser = vals
		default:
			hint := ""
			for _, known := range []string{"AWS", "Service", "Federated", "CanonicalUser"} {
				if strings.EqualFold(k, known) {
					hint = fmt.Sprintf(" (did you mean %q? names are case-sensitive)", known)
				}
			}
			return fail("has an unknown principal type %q%s; use AWS, Service, Federated or CanonicalUser.", k, hint)
		}
	}
	return p, nil
}

// parseAWSPrincipal compiles one value of {"AWS": ...}. The zero
// awsPrincipal with no message means "*".
func parseAWSPrincipal(v string) (awsPrincipal, string) {
	if v == "*" {
		return awsPrincipal{}, ""
	}
	if isAccountID(v) {
		return awsPrincipal{account: v}, ""
	}
	if !strings.HasPrefix(v, "arn:") {
		return awsPrincipal{}, "is not a valid AWS principal: use a 12-digit account ID, an IAM or STS ARN, or \"*\"."
	}
	if strings.ContainsAny(v, "*?") {
		return awsPrincipal{}, "has a wildcard; principal ARNs cannot. Use \"*\" with a condition on aws:PrincipalArn instead."
	}
	a, ok := splitARN(v)
	if !ok || a.partition == "" || !isAccountID(a.account) || a.region != "" {
		return awsPrincipal{}, "is not a valid principal ARN such as arn:aws:iam::111122223333:user/name."
	}
	switch a.service {
	case "iam":
		switch {
		case a.resource == "root":
			return awsPrincipal{account: a.account}, ""
		case hasNamedPrefix(a.resource, "user/"), hasNamedPrefix(a.resource, "role/"):
			return awsPrincipal{arn: v}, ""
		case strings.HasPrefix(a.resource, "group/"):
			return awsPrincipal{}, "is an IAM group; groups cannot be principals. Name the users, or the account."
		}
	case "sts":
		if hasNamedPrefix(a.resource, "assumed-role/") && strings.Count(a.resource, "/") >= 2 || hasNamedPrefix(a.resource, "federated-user/") {
			return awsPrincipal{arn: v}, ""
		}
	}
	return awsPrincipal{}, "is not a principal: use an account root, user, role, assumed-role session or federated user ARN."
}

func hasNamedPrefix(s, prefix string) bool {
	return strings.HasPrefix(s, prefix) && len(s) > len(prefix) && !strings.HasSuffix(s, "/")
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

type arn struct{ partition, service, region, account, resource string }

// splitARN splits arn:partition:service:region:account:resource.
// It does not allocate: Decide calls it on every request.
func splitARN(s string) (arn, bool) {
	rest, ok := strings.CutPrefix(s, "arn:")
	if !ok {
		return arn{}, false
	}
	var parts [4]string
	for i := range parts {
		j := strings.IndexByte(rest, ':')
		if j < 0 {
			return arn{}, false
		}
		parts[i], rest = rest[:j], rest[j+1:]
	}
	return arn{parts[0], parts[1], parts[2], parts[3], rest}, true
}

// checkElements reports an unknown element, with a hint when only the case
// is wrong, or "" when all are known.
func checkElements(m map[string]json.RawMessage, known []string, where string) string {
	for _, k := range sortedKeys(m) {
		found := false
		for _, n := range known {
			if k == n {
				found = true
				break
			}
		}
		if found {
			continue
		}
		for _, n := range known {
			if strings.EqualFold(k, n) {
				return fmt.Sprintf("unknown %s element %q; did you mean %q? Element names are case-sensitive.", where, k, n)
			}
		}
		return fmt.Sprintf("unknown %s element %q; allowed: %s.", where, k, strings.Join(known, ", "))
	}
	return ""
}

// decodeObject decodes a JSON object, rejecting trailing data. It returns
// nil, nil for valid JSON that is not an object.
func decodeObject(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b[dec.InputOffset():])) > 0 {
		return nil, errors.New("unexpected data after the end of the policy")
	}
	if firstByte(v) != '{' {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	return m, nil
}

func firstByte(b []byte) byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// stringList decodes a string or a list of strings.
func stringList(raw json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, err
	}
	if many == nil {
		return nil, errors.New("null")
	}
	return many, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jsonProblem turns a decoding error into a message with a line and column.
func jsonProblem(doc string, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var off int64 = -1
	switch {
	case errors.As(err, &syn):
		off = syn.Offset
	case errors.As(err, &typ):
		off = typ.Offset
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "unexpected end of input"
	}
	if off < 0 || off > int64(len(doc)) {
		return "The policy is not valid JSON: " + msg + "."
	}
	line, col := 1, 1
	for _, r := range doc[:off] {
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("The policy is not valid JSON: %s (line %d, column %d).", msg, line, col)
}
