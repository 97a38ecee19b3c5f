package policy

import (
	"strings"
	"unicode/utf8"
)

// glob reports whether s matches pattern, where * matches any run of
// characters (including none) and ? exactly one. fold compares ASCII
// letters case-insensitively (actions); escaped treats a backslash as
// quoting the next byte (patterns built by substitute).
func glob(pattern, s string, fold, escaped bool) bool {
	px, sx := 0, 0
	starPx, starSx := -1, 0
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			c := pattern[px]
			switch {
			case c == '*':
				if px == len(pattern)-1 {
					return true // a trailing * takes whatever is left
				}
				starPx, starSx = px, sx
				px++
				continue
			case c == '?':
				if sx < len(s) {
					_, n := utf8.DecodeRuneInString(s[sx:])
					px++
					sx += n
					continue
				}
			default:
				step := 1
				if escaped && c == '\\' && px+1 < len(pattern) {
					c = pattern[px+1]
					step = 2
				}
				if sx < len(s) && (c == s[sx] || fold && lower(c) == lower(s[sx])) {
					px += step
					sx++
					continue
				}
			}
		}
		// Mismatch: let the last * swallow one more character.
		if starPx >= 0 && starSx < len(s) {
			_, n := utf8.DecodeRuneInString(s[starSx:])
			starSx += n
			// Skip straight to where the literal after the * occurs next.
			if next := starPx + 1; !fold && next < len(pattern) {
				if c := pattern[next]; c != '*' && c != '?' && (!escaped || c != '\\') {
					i := strings.IndexByte(s[starSx:], c)
					if i < 0 {
						return false
					}
					starSx += i
				}
			}
			px, sx = starPx+1, starSx
			continue
		}
		return false
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// matchAction matches an action pattern such as "kms:Re*" against an
// action; both parts are case-insensitive.
func matchAction(pattern, action string) bool {
	if pattern == "*" {
		return true
	}
	if !strings.ContainsAny(pattern, "*?") {
		return strings.EqualFold(pattern, action)
	}
	return glob(pattern, action, true, false)
}

// substitute replaces policy variables (${aws:username},
// ${aws:PrincipalTag/team, 'default'}, and the escapes ${*} ${?} ${$}) in
// s. With forGlob the result is a pattern for glob(..., escaped=true):
// wildcards the policy author wrote stay wildcards, while characters that
// come from a variable or an escape are quoted, so a user named "*" does
// not widen a statement. ok is false when a variable has no value and no
// default: the element then matches nothing.
func substitute(s string, e *env, forGlob bool) (out string, ok bool) {
	var b strings.Builder
	b.Grow(len(s) + 16)
	lit := func(text string, quote bool) {
		if !forGlob {
			b.WriteString(text)
			return
		}
		for i := 0; i < len(text); i++ {
			c := text[i]
			if c == '\\' || (quote && (c == '*' || c == '?')) {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
	}
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			lit(s, false)
			return b.String(), true
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			lit(s, false)
			return b.String(), true
		}
		lit(s[:i], false)
		inner := s[i+2 : i+j]
		s = s[i+j+1:]
		switch inner {
		case "*", "?", "$":
			lit(inner, true)
			continue
		}
		key, def, hasDef := strings.Cut(inner, ",")
		key = strings.ToLower(strings.TrimSpace(key))
		v, found := e.single(key)
		if !found {
			if !hasDef {
				return "", false
			}
			def = strings.TrimSpace(def)
			if len(def) >= 2 && def[0] == '\'' && def[len(def)-1] == '\'' {
				def = def[1 : len(def)-1]
			}
			v = def
		}
		lit(v, true)
	}
}

// matchPattern matches a Resource-style pattern (case-sensitive,
// wildcards, variables) against s.
func matchPattern(p *pattern, s string, e *env) (matched, ok bool) {
	if !p.vars {
		if !p.wild {
			return p.s == s, true
		}
		return p.s == "*" || glob(p.s, s, false, false), true
	}
	sub, ok := substitute(p.s, e, true)
	if !ok {
		return false, false
	}
	return glob(sub, s, false, true), true
}

// matchARN implements ArnLike/ArnEquals: each of the six colon-separated
// parts matches separately, with wildcards, so a * never spans parts. A
// pattern that is not an ARN (such as "*") matches the whole string; an ARN
// pattern with fewer than six parts matches nothing.
func matchARN(pattern, s string, escaped bool) bool {
	if !strings.HasPrefix(pattern, "arn:") {
		return glob(pattern, s, false, escaped)
	}
	if strings.Count(pattern, ":") < 5 {
		return false
	}
	for range 5 {
		pi := strings.IndexByte(pattern, ':')
		si := strings.IndexByte(s, ':')
		if si < 0 {
			return false
		}
		if !glob(pattern[:pi], s[:si], false, escaped) {
			return false
		}
		pattern, s = pattern[pi+1:], s[si+1:]
	}
	return glob(pattern, s, false, escaped)
}
