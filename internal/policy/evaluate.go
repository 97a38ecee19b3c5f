package policy

// Match names the statement that decided something. Statement is 1-based;
// 0 means no statement matched.
type Match struct {
	Statement int
	Sid       string
}

// Found reports whether a statement matched.
func (m Match) Found() bool { return m.Statement > 0 }

// Evaluation is what one document says about a request.
type Evaluation struct {
	// Deny is the first Deny statement that applies.
	Deny Match
	// Allow is the first Allow statement that applies to the caller itself
	// (or, in a document without principals, to whoever it is attached to).
	Allow Match
	// AccountAllow is the first Allow statement that names only the
	// caller's account. In a key policy this grants nothing by itself: it
	// lets the account's identity policies decide.
	AccountAllow Match
}

// Evaluate reports which statements of d apply to req. Statements without
// Principal or NotPrincipal apply to the caller, as identity policies do.
func (d *Document) Evaluate(req Request) Evaluation {
	e := env{req: &req, vars: d.vars}
	return d.evaluate(&e)
}

func (d *Document) evaluate(e *env) Evaluation {
	var ev Evaluation
	e.vars = d.vars
	for i := range d.Statements {
		s := &d.Statements[i]
		if s.Effect == Allow && ev.Allow.Found() {
			continue // a later Allow cannot change the outcome; only a Deny can
		}
		pm := s.principalMatch(&e.req.Principal)
		if pm == noMatch || !s.actionMatches(e.req.Action) || !s.resourceMatches(e) || !s.conditionsHold(e) {
			continue
		}
		m := Match{Statement: i + 1, Sid: s.Sid}
		switch {
		case s.Effect == Deny:
			ev.Deny = m
			return ev
		case pm == directMatch:
			ev.Allow = m
		case !ev.AccountAllow.Found():
			ev.AccountAllow = m
		}
	}
	return ev
}

func (s *Statement) principalMatch(p *Principal) principalMatch {
	switch {
	case s.Principal != nil:
		return s.Principal.match(p)
	case s.NotPrincipal != nil:
		// Only principals named exactly are excepted: naming an account's
		// root in NotPrincipal spares the account itself, not its users.
		if s.NotPrincipal.match(p) == directMatch {
			return noMatch
		}
	}
	return directMatch
}

func (s *Statement) actionMatches(action string) bool {
	list, not := s.Action, false
	if s.NotAction != nil {
		list, not = s.NotAction, true
	}
	for _, p := range list {
		if matchAction(p, action) {
			return !not
		}
	}
	return not
}

func (s *Statement) resourceMatches(e *env) bool {
	not := s.NotResource != nil
	if e.anyResource {
		return !not
	}
	r := e.req.Resource
	if r == "" {
		r = "*"
	}
	for i := range s.resources {
		m, ok := matchPattern(&s.resources[i], r, e)
		if !ok {
			return false // a variable without a value: the statement does not apply
		}
		if m {
			return !not
		}
	}
	return not
}

func (s *Statement) conditionsHold(e *env) bool {
	for i := range s.Conditions {
		if !s.Conditions[i].eval(e) {
			return false
		}
	}
	return true
}
