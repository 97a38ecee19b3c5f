package policy

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzParse(f *testing.F) {
	f.Add(DefaultKeyPolicy(testAccount))
	f.Add(tenStatementPolicy)
	f.Add(`{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}}`)
	f.Add(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":"111122223333"},"NotAction":"kms:En?rypt","NotResource":"arn:aws:kms:*:*:alias/${aws:username}","Condition":{"ForAllValues:StringLikeIfExists":{"kms:EncryptionContextKeys":["a*","${*}"]},"Null":{"x:y":"true"}}}]}`)
	f.Add(`{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"::ffff:10.0.0.0/104"},"DateLessThan":{"aws:CurrentTime":1.5},"BinaryEquals":{"a:b":"AA=="},"ArnLike":{"a:c":"arn:*:*:*:*:*"}}}}`)
	f.Add(`{"Statement": [}`)
	f.Add(`[]`)
	reqs := []Request{
		{Principal: Principal{Type: User, ARN: "arn:aws:iam::111122223333:user/bob", AccountID: "111122223333"}, Action: "kms:Encrypt",
			Resource: "arn:aws:kms:us-east-1:111122223333:key/k",
			Context:  NewContext().SetEncryptionContext(map[string]string{"a": "b"}).Set(KeySourceIP, "10.1.2.3").Set(KeyCurrentTime, "2026-01-01T00:00:00Z")},
		{Principal: Principal{Type: AssumedRole, ARN: "arn:aws:sts::444455556666:assumed-role/R/s", RoleARN: "arn:aws:iam::444455556666:role/R", AccountID: "444455556666"},
			Action: "kms:CreateKey", Resource: "*", Context: Context{"X:Y": {"*", "", "\xff"}}},
		{Principal: Principal{Type: Service, ARN: "kms.amazonaws.com"}, Action: "", Context: nil},
		{},
	}
	f.Fuzz(func(t *testing.T, doc string) {
		for _, kind := range []Kind{AnyPolicy, KeyPolicy, IdentityPolicy} {
			d, err := Parse(doc, kind)
			if err != nil {
				if err.Error() == "" {
					t.Fatal("empty error message")
				}
				continue
			}
			for _, r := range reqs {
				_ = d.Evaluate(r)
				in := Input{Request: r, IdentityPolicies: []*Document{d, nil}}
				if kind != IdentityPolicy {
					in.KeyPolicy = d
				}
				res := Decide(in)
				if res.Allowed == (res.Message(r.Action, r.Principal.ARN, r.Resource) != "") {
					t.Fatalf("allowed=%v with message mismatch", res.Allowed)
				}
				_ = LockoutSafe(d, r.Principal)
			}
		}
	})
}

// FuzzGlob checks glob against the same pattern as a regular expression.
func FuzzGlob(f *testing.F) {
	f.Add("a*b?c", "axxbyc")
	f.Add("*", "")
	f.Add("?", "é")
	f.Add("**?*", "ab")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if !utf8.ValidString(pattern) || !utf8.ValidString(s) || len(pattern) > 64 {
			return
		}
		var re strings.Builder
		re.WriteString(`(?s)^`)
		for _, r := range pattern {
			switch r {
			case '*':
				re.WriteString(`.*`)
			case '?':
				re.WriteString(`.`)
			default:
				re.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		re.WriteString(`$`)
		want := regexp.MustCompile(re.String()).MatchString(s)
		if got := glob(pattern, s, false, false); got != want {
			t.Fatalf("glob(%q, %q) = %v, regexp says %v", pattern, s, got, want)
		}
	})
}
